//! Renderers: each turns a `Report` into one output, and only formats.
pub mod diff;
pub mod folded;
pub mod model;
pub mod text;

use crate::report::Report;

pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("report serialises");
    s.push('\n');
    s
}

/// Nanoseconds in the unit a person reads fastest: `812 ns`, `3.41 us`, `12.0 ms`, `2.50 s`.
pub fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.2} us", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", f / 1e6),
        _ => format!("{:.2} s", f / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(fmt_ns(0), "0 ns");
        assert_eq!(fmt_ns(999), "999 ns");
        assert_eq!(fmt_ns(3_410), "3.41 us");
        assert_eq!(fmt_ns(12_000_000), "12.00 ms");
        assert_eq!(fmt_ns(2_500_000_000), "2.50 s");
    }

    #[test]
    fn json_round_trips() {
        let r = crate::render::text::tests::sample();
        let back: Report = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        for k in ["mode", "kernel", "duration_ns", "lost", "files"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let f = &v["files"][0];
        for k in ["path", "dev", "ino", "contentions", "wait_ns_total", "wait_ns_max", "wait_hist_log2"] {
            assert!(f.get(k).is_some(), "{k}");
        }
        // What tracepoint mode cannot see is null, not 0.
        assert!(f["spin_ns_total"].is_null() && f["acquisitions"].is_null());
    }
}
