//! rmapprof's subcommands, one module each: `profile` (no subcommand: a profiling run),
//! `diff` and `model` (saved reports), `dist_assets` (man pages and completions, hidden).

pub mod diff;
pub mod dist_assets;
pub mod model;
pub mod profile;

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

use crate::{errors::UsageError, report::Report, schema::REPORT_SCHEMA};

/// A saved report.json. One that is not (another tool's JSON, a report of an older rmapprof
/// whose fields were renamed) is a one-line error naming the file and the first field that
/// does not fit; one of another tool says so, and one of a later report schema than this
/// binary reads ([`REPORT_SCHEMA`]) is refused before it could be misread.
fn read_report(p: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(p).map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
    let not_ours = || format!("{} is not an rmapprof report.json", p.display());
    let value: serde_json::Value = serde_json::from_str(&text).with_context(not_ours)?;
    match value.get("tool").and_then(|t| t.as_str()) {
        Some("rmapprof") => {}
        Some(tool) => bail!("{}: its \"tool\" is {:?}, not rmapprof", not_ours(), tool),
        None => bail!("{}: it has no \"tool\": \"rmapprof\"", not_ours()),
    }
    let schema = value.get("schema").and_then(|s| s.as_u64()).unwrap_or(0);
    if schema > u64::from(REPORT_SCHEMA) {
        bail!(
            "{} is a report of schema {schema} (rmapprof {}); this rmapprof {} reads schema {REPORT_SCHEMA} and older: read it with a newer rmapprof",
            p.display(),
            value.get("version").and_then(|v| v.as_str()).unwrap_or("?"),
            env!("CARGO_PKG_VERSION")
        );
    }
    // Parsed again from the text, so that an error says where (line and column).
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", not_ours()))
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

    /// Another tool's JSON is refused in one line that says so; a report of a later schema is
    /// refused, even one that would parse, naming both schemas; an older or unversioned one of
    /// the same shape reads.
    #[test]
    fn other_tools_and_later_schemas_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let r = crate::render::text::tests::sample();
        let write = |name: &str, v: &serde_json::Value| {
            let p = dir.path().join(name);
            std::fs::write(&p, v.to_string()).unwrap();
            p
        };
        let err = |p: &Path| format!("{:#}", read_report(p).unwrap_err());
        let mut v = serde_json::to_value(&r).unwrap();
        v["tool"] = "perf".into();
        let e = err(&write("perf.json", &v));
        assert!(e.ends_with("is not an rmapprof report.json: its \"tool\" is \"perf\", not rmapprof"), "{e}");
        v.as_object_mut().unwrap().remove("tool");
        let e = err(&write("none.json", &v));
        assert!(e.ends_with("it has no \"tool\": \"rmapprof\""), "{e}");
        let mut v = serde_json::to_value(&r).unwrap();
        v["version"] = "99.0.0".into();
        v["schema"] = (REPORT_SCHEMA + 1).into();
        let e = err(&write("later.json", &v));
        let want = format!("is a report of schema {} (rmapprof 99.0.0); this rmapprof {} reads schema {REPORT_SCHEMA} and older", REPORT_SCHEMA + 1, env!("CARGO_PKG_VERSION"));
        assert!(e.contains(&want), "{e}");
        assert!(!e.contains('\n'), "{e}");
        // Unversioned (written before schemas) and this schema: read.
        v.as_object_mut().unwrap().remove("schema");
        assert_eq!(read_report(&write("unversioned.json", &v)).unwrap().files, r.files);
        v["schema"] = REPORT_SCHEMA.into();
        v["files"][0]["dev"] = serde_json::json!({"major": 8});
        let e = err(&write("bad.json", &v));
        assert!(e.contains("is not an rmapprof report.json: ") && !e.contains("schema"), "{e}");
    }
}
