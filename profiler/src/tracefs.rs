//! tracefs: where the lock tracepoints live. Mounted on demand, as perf does, and read for the
//! tracepoint record layout so field offsets are never assumed.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// The tracefs mount holding `events/lock`, mounting it at /sys/kernel/tracing if needed.
pub fn ensure_mounted() -> Result<PathBuf> {
    for dir in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    let target = std::ffi::CString::new(TRACEFS).unwrap();
    let rc =
        unsafe { libc::mount(c"nodev".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        bail!("tracefs is not mounted and mounting it at {TRACEFS} failed ({e}): run `mount -t tracefs nodev {TRACEFS}`");
    }
    Ok(PathBuf::from(TRACEFS))
}

/// Byte offset of `field` in the record of tracepoint `category:event`.
pub fn field_offset(tracefs: &Path, category: &str, event: &str, field: &str) -> Result<u64> {
    let path = tracefs.join("events").join(category).join(event).join("format");
    let text = std::fs::read_to_string(&path).with_context(|| {
        let why = if category == "lock" {
            "kernel too old or CONFIG_LOCKDEP/CONFIG_LOCK_STAT tracepoints missing"
        } else {
            "not built into this kernel"
        };
        format!("tracepoint {category}:{event} not found ({}): {why}", path.display())
    })?;
    parse_field_offset(&text, field)
        .ok_or_else(|| anyhow!("tracepoint {category}:{event} has no field {field}"))
}

/// Parses a tracefs `format` file: `field:void * lock_addr;\toffset:8;\tsize:8;\tsigned:0;`.
pub fn parse_field_offset(format: &str, field: &str) -> Option<u64> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        let name = decl.rsplit([' ', '*']).next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "name: contention_begin\nID: 408\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:void * lock_addr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:unsigned int flags;\toffset:16;\tsize:4;\tsigned:0;\n\nprint fmt: \"%p (flags=%s)\", REC->lock_addr\n";

    #[test]
    fn finds_fields() {
        assert_eq!(parse_field_offset(BEGIN, "lock_addr"), Some(8));
        assert_eq!(parse_field_offset(BEGIN, "flags"), Some(16));
        assert_eq!(parse_field_offset(BEGIN, "common_pid"), Some(4));
        assert_eq!(parse_field_offset(BEGIN, "lock"), None);
        assert_eq!(parse_field_offset("", "flags"), None);
        assert_eq!(parse_field_offset("\tfield:char comm[16];\toffset:8;\tsize:16;", "comm"), Some(8));
    }

    proptest::proptest! {
        #[test]
        fn format_garbage_never_panics(text in "\\PC{0,300}", field in "\\PC{0,12}") {
            let _ = parse_field_offset(&text, &field);
        }

        // Any field list in tracefs' layout: each field is found at its own offset.
        #[test]
        fn finds_every_field(fields in proptest::collection::btree_map("[a-z_]{1,12}", 0u64..4096, 1..12)) {
            let text: String = fields
                .iter()
                .map(|(n, off)| format!("\tfield:unsigned long {n};\toffset:{off};\tsize:8;\tsigned:0;\n"))
                .collect();
            let text = format!("name: x\nID: 1\nformat:\n{text}\nprint fmt: \"\"\n");
            for (n, off) in &fields {
                proptest::prop_assert_eq!(parse_field_offset(&text, n), Some(*off));
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "field:",
            "field:;offset:x;",
            ";;;;",
            "field:int a;\toffset:;",
            "\u{0}field:a b;offset:99999999999999999999999;",
        ] {
            let _ = parse_field_offset(s, "a");
            let _ = parse_field_offset(s, "b");
        }
    }
}
