//! rmapprof's subcommands, one module each: `profile` (no subcommand: a profiling run),
//! `diff` and `model` (saved reports).

pub mod diff;
pub mod model;
pub mod profile;

use anyhow::{Context, Result};
use std::path::Path;

use crate::{errors::UsageError, report::Report};

/// A saved report.json. One that is not (another tool's JSON, a report of an older rmapprof
/// whose fields were renamed) is a one-line error naming the file and the first field that
/// does not fit.
fn read_report(p: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(p).map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not an rmapprof report.json", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::AcquirePath;

    /// A report.json from before the acquire paths' fields were renamed, without
    /// `nested_waits`, still reads, under the new names; a file that is not a report is one
    /// line that names it.
    #[test]
    fn older_reports_read_and_others_fail_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = crate::render::text::tests::sample();
        r.nested_waits = 0;
        r.files[0].acquire_paths = vec![AcquirePath {
            rw: "write".into(),
            frames: vec!["dup_mmap".into(), "down_write".into()],
            acquisitions: 5,
            hold_ns_total: 500,
            hold_ns_max: 200,
        }];
        let mut v = serde_json::to_value(&r).unwrap();
        let path = v["files"][0]["acquire_paths"][0].as_object_mut().unwrap();
        for (new, old) in [
            ("acquisitions", "contentions"),
            ("hold_ns_total", "wait_ns_total"),
            ("hold_ns_max", "wait_ns_max"),
        ] {
            let value = path.remove(new).unwrap();
            path.insert(old.into(), value);
        }
        v.as_object_mut().unwrap().remove("nested_waits");
        let old = dir.path().join("old.json");
        std::fs::write(&old, v.to_string()).unwrap();
        assert_eq!(read_report(&old).unwrap(), r);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"files": 3}"#).unwrap();
        let e = format!("{:#}", read_report(&bad).unwrap_err());
        assert!(e.starts_with(&format!("{} is not an rmapprof report.json: ", bad.display())), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
