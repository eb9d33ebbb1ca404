//! Renderers: each turns a `Report` into one output, and only formats.
pub mod diff;
pub mod folded;
pub mod metrics;
pub mod model;
pub mod pprof;
pub mod text;

use std::borrow::Cow;

use crate::report::Report;

pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("report serialises");
    s.push('\n');
    s
}

/// How every output names a file: its path, or, where none is known, `[dev MAJ:MIN ino N]`.
pub fn file_label(path: Option<&str>, dev: &str, ino: u64) -> String {
    match path {
        Some(p) => p.to_owned(),
        None => format!("[dev {dev} ino {ino}]"),
    }
}

/// A report's output files, by name: a run's, and the daemon's when it stops.
pub fn outputs(report: &Report) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let folded = folded::folded(report);
    let mut files = vec![
        ("report.json".to_owned(), json(report).into_bytes()),
        ("report.txt".to_owned(), text::full(report).into_bytes()),
        ("flamegraph.svg".to_owned(), folded::flamegraph_svg(report, &folded)?),
        ("stacks.folded".to_owned(), folded.into_bytes()),
    ];
    let holders = folded::holders_folded(report);
    files.push(("holders.svg".to_owned(), folded::holders_svg(report, &holders)?));
    files.push(("holders.folded".to_owned(), holders.into_bytes()));
    if report.mode.probed() {
        // On-CPU spinning and off-CPU sleeping apart, as offcputime and profile would show them.
        use folded::{flamegraph_svg_titled, folded_waits, title, WaitPart};
        for (which, name) in [(WaitPart::Spin, "spin"), (WaitPart::Sleep, "sleep")] {
            let f = folded_waits(report, which);
            let t = format!("{} - {name} only", title(report));
            files.push((format!("flamegraph-{name}.svg"), flamegraph_svg_titled(report, &f, t)?));
            files.push((format!("stacks-{name}.folded"), f.into_bytes()));
        }
    }
    Ok(files)
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

/// A name (file path, kernel frame, command argument) as it may appear inside one line of
/// output: a newline or other control character in a file name would otherwise split a table
/// row or a folded stack, or reach a terminal raw. Escapes, as Rust writes them: `\n`, `\r`,
/// `\t`, `\\` (so an escape cannot be mistaken for the name's own text), `\xNN` for the other
/// ASCII controls (C0, DEL), `\u{NN}` for C1 controls and the Unicode line and paragraph
/// separators (U+2028, U+2029). Everything else, non-ASCII included, passes through.
pub fn escape(s: &str) -> Cow<'_, str> {
    let needs = |c: char| c == '\\' || c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Which end of a name too long for its column to keep.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Keep {
    /// The start, marked `~` where cut: a file's base name, `libfoo-very-long-na~`.
    Head,
    /// The end, after `...`: a path, whose file name is at its end, `...gnu/libc.so.6`.
    Tail,
}

/// `name`, escaped, in at most `width` characters. Counted in characters, not bytes: a byte
/// index can fall inside a character (a panic), and `{:<w}` pads by characters, so a column
/// of non-ASCII names stays as wide as an ASCII one.
pub fn clip(name: &str, width: usize, keep: Keep) -> String {
    let name = escape(name);
    let n = name.chars().count();
    if n <= width {
        return name.into_owned();
    }
    let marker = if keep == Keep::Head { "~" } else { "..." };
    // Columns narrower than the marker get the name's characters alone.
    let room = width.saturating_sub(marker.len());
    if room == 0 {
        return name.chars().take(width).collect();
    }
    match keep {
        Keep::Head => name.chars().take(room).chain(marker.chars()).collect(),
        Keep::Tail => marker.chars().chain(name.chars().skip(n - room)).collect(),
    }
}

/// `fmt_ns` of a fractional value (a per-cycle mean), never printing a value above 0 as
/// `0 ns`: under half a nanosecond reads `<1 ns`.
pub fn fmt_ns_f(ns: f64) -> String {
    if ns > 0.0 && ns < 0.5 {
        "<1 ns".into()
    } else {
        fmt_ns(ns.round() as u64)
    }
}

/// `text` when it fits `width` columns, else `v` in scientific notation (`sci`): a column's
/// usual format must not widen a table past 80 columns, whatever a hand-edited or corrupted
/// report holds (u64::MAX counters). Not a number: `-`.
pub fn fit(text: String, v: f64, width: usize) -> String {
    if !v.is_finite() {
        "-".into()
    } else if text.chars().count() <= width {
        text
    } else {
        sci(v, width)
    }
}

/// `v` as `1.84e19`, with as many digits as fit `width`.
pub fn sci(v: f64, width: usize) -> String {
    (0..=3)
        .rev()
        .map(|p| format!("{v:.p$e}"))
        .find(|s| s.len() <= width)
        .unwrap_or_else(|| format!("{v:.0e}"))
}

/// `fmt_ns_f` in at most `width` columns: seconds in scientific notation past that.
pub fn fit_ns(ns: f64, width: usize) -> String {
    let text = fmt_ns_f(ns);
    if !ns.is_finite() || text.chars().count() <= width {
        return fit(text, ns, width);
    }
    format!("{} s", sci(ns / 1e9, width.saturating_sub(2)))
}

/// A count that may be fractional (per cycle) in two decimals, never printing a value above
/// 0 as `0.00`: a rare event (5 waits in 2000 cycles) reads in four, `0.0025`, and one rarer
/// still `<0.0001`.
pub fn fmt_count_f(v: f64) -> String {
    let two = format!("{v:.2}");
    if v <= 0.0 || two != "0.00" {
        return two;
    }
    let four = format!("{v:.4}");
    if four == "0.0000" {
        "<0.0001".into()
    } else {
        four
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_only() {
        assert_eq!(escape("/usr/lib/libc.so.6"), "/usr/lib/libc.so.6");
        assert!(matches!(escape("é;ü x"), Cow::Borrowed("é;ü x")));
        assert_eq!(escape("a\nb\rc\td\\e"), "a\\nb\\rc\\td\\\\e");
        assert_eq!(escape("\0\x1b\x7f"), "\\x00\\x1b\\x7f");
        assert_eq!(escape("\u{85}\u{2028}\u{2029}"), "\\u{85}\\u{2028}\\u{2029}");
    }

    #[test]
    fn clips_by_characters() {
        assert_eq!(clip("libc.so.6", 9, Keep::Head), "libc.so.6");
        assert_eq!(clip("libc.so.6", 5, Keep::Head), "libc~");
        assert_eq!(clip("/usr/lib/libc.so.6", 13, Keep::Tail), ".../libc.so.6");
        assert_eq!(clip(&"ä".repeat(30), 10, Keep::Head), format!("{}~", "ä".repeat(9)));
        assert_eq!(clip(&"ä".repeat(30), 10, Keep::Tail), format!("...{}", "ä".repeat(7)));
        // Escaped first: the escape counts toward the width.
        assert_eq!(clip("a\nb", 4, Keep::Head), "a\\nb");
        assert_eq!(clip("abcdef", 2, Keep::Tail), "ab");
        assert_eq!(clip("abcdef", 0, Keep::Head), "");
    }

    #[test]
    fn small_non_zero_values_are_not_zero() {
        assert_eq!(fmt_ns_f(0.0), "0 ns");
        assert_eq!(fmt_ns_f(0.2), "<1 ns");
        assert_eq!(fmt_ns_f(0.6), "1 ns");
        assert_eq!(fmt_ns_f(3_410.0), "3.41 us");
        assert_eq!(fmt_count_f(0.0), "0.00");
        assert_eq!(fmt_count_f(0.001), "0.0010");
        assert_eq!(fmt_count_f(0.0025), "0.0025");
        assert_eq!(fmt_count_f(0.00003), "<0.0001");
        assert_eq!(fmt_count_f(5.1), "5.10");
    }

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

    mod any_name {
        use super::super::*;
        use crate::report::{AcquirePath, CallPath, ClassRow};
        use proptest::prelude::*;

        /// Any Unicode, weighted toward what breaks lines and columns: control characters,
        /// separators, multi-byte characters; empty to very long.
        fn name() -> impl Strategy<Value = String> {
            let special = [
                '\n', '\r', '\t', '\0', '\x1b', '\x7f', '\u{85}', '\u{2028}', '\u{2029}', ';', ' ', '/',
                '\\', 'é', '中', '🦀',
            ];
            let c = prop_oneof![3 => any::<char>(), 2 => prop::sample::select(special.to_vec())];
            prop::collection::vec(c, 0..400).prop_map(String::from_iter)
        }

        /// A report of every kind of row (waits, spin, acquisitions, caller classes, cycles),
        /// with `path`, a frame, the kernel and a command argument named as given.
        fn report(path: &str, frame: &str, other: &str) -> Report {
            let mut r = text::tests::sample();
            r.kernel = other.into();
            r.command = Some(vec![other.into(), "x".into()]);
            r.cycles = Some(100);
            r.cpus = Some(4);
            let f = &mut r.files[0];
            f.path = Some(path.into());
            f.call_paths[0].frames.insert(1, frame.into());
            let spin = CallPath {
                rw: "spin".into(),
                wait_ns_total: 1000,
                osq_ns: Some(600),
                ..f.call_paths[0].clone()
            };
            f.spin_paths = vec![spin];
            f.spin_ns_total = Some(1000);
            let frames = f.call_paths[0].frames.clone();
            f.acquire_paths = vec![AcquirePath {
                rw: "write".into(),
                frames,
                acquisitions: 50,
                hold_ns_total: 90_000,
                hold_ns_max: 0,
            }];
            f.by_class = vec![ClassRow {
                class: "fork".into(),
                write_acquisitions: Some(50),
                contentions: 3,
                sleep_ns: 7000,
                ..Default::default()
            }];
            // A second file with no path: named by its device and inode.
            let mut g = r.files[0].clone();
            g.path = None;
            r.files.push(g);
            r
        }

        /// Each line of a table: no raw control character, no line or paragraph separator.
        fn clean_lines(what: &str, out: &str) -> Result<(), TestCaseError> {
            for l in out.split('\n') {
                prop_assert!(
                    !l.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')),
                    "{what}: {l:?}"
                );
            }
            Ok(())
        }

        /// Exactly `n` folded stacks, one a line, each `i_mmap_rwsem ...;...;... <count>`.
        fn one_line_per_stack(out: &str, n: usize) -> Result<(), TestCaseError> {
            clean_lines("folded", out)?;
            prop_assert_eq!(out.lines().count(), n, "{:?}", out);
            for l in out.lines() {
                let (stack, count) = l.rsplit_once(' ').unwrap();
                prop_assert!(count.parse::<u64>().is_ok(), "{:?}", l);
                prop_assert!(stack.starts_with("i_mmap_rwsem ") && stack.split(';').count() >= 3, "{:?}", l);
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn text_renderers_keep_lines(path in name(), frame in name(), other in name()) {
                let (b, a) = (report(&path, &frame, &other), report(&path, &frame, "after"));
                clean_lines("summary", &text::summary(&b))?;
                clean_lines("classes", &text::classes(&b))?;
                clean_lines("full", &text::full(&b))?;
                clean_lines("diff", &diff::table(&b, &a))?;
                clean_lines("model", &model::table(&[("before", &b), ("after", &a)], &[64], 100.0).unwrap())?;
                // Per file: one sleep stack, and spin split in osq_lock and owner spinning.
                one_line_per_stack(&folded::folded(&b), 6)?;
                one_line_per_stack(&folded::folded_waits(&b, folded::WaitPart::Sleep), 2)?;
                one_line_per_stack(&folded::folded_waits(&b, folded::WaitPart::Spin), 4)?;
            }
        }

        /// 0, 1, u64::MAX and anything between, weighted to the ends.
        fn extreme() -> impl Strategy<Value = u64> {
            prop_oneof![2 => Just(0u64), 1 => Just(1u64), 2 => Just(u64::MAX), 2 => any::<u64>()]
        }

        /// The diff and model tables of `b` and `a`: at most 80 columns a line, no `inf` or
        /// `NaN` (a model that cannot be made is an error, not a table).
        fn fits_80(b: &Report, a: &Report) -> Result<(), TestCaseError> {
            let mut tables = vec![diff::table(b, a)];
            tables.extend(model::table(&[("before", b), ("after", a)], &[64, 384], 100.0).ok());
            tables.extend(model::table(&[("estimate", b)], &[64], 0.0).ok());
            for t in &tables {
                for l in t.lines() {
                    prop_assert!(l.chars().count() <= 80, "{} columns: {:?}\n{}", l.chars().count(), l, t);
                    prop_assert!(!l.contains("inf") && !l.contains("NaN"), "{:?}", l);
                }
            }
            Ok(())
        }

        proptest! {
            /// Zero durations and u64::MAX counters (a hand-edited or corrupted report) keep the
            /// diff and model tables in 80 columns and print no `inf`.
            #[test]
            fn extreme_values_keep_80_columns(
                v in prop::collection::vec(extreme(), 12),
                cycles in prop::option::of(extreme()),
            ) {
                let mut b = report("/usr/lib/x86_64-linux-gnu/libc.so.6", "dup_mmap", "6.12");
                b.duration_ns = v[0];
                b.cycles = cycles;
                let f = &mut b.files[0];
                f.contentions = v[1];
                f.wait_ns_total = v[2];
                f.spin_ns_total = Some(v[3]);
                f.acquire_paths[0].acquisitions = v[4];
                f.acquire_paths[0].hold_ns_total = v[5];
                f.call_paths[0].wait_ns_total = v[6];
                let c = &mut f.by_class[0];
                c.write_acquisitions = Some(v[7]);
                c.contentions = v[8];
                c.sleep_ns = v[9];
                let mut a = report("/usr/lib/x86_64-linux-gnu/libc.so.6", "dup_mmap", "7.2");
                a.files[0].by_class[0].sleep_ns = v[10];
                a.files[0].by_class[0].contentions = v[11];
                fits_80(&b, &a)?;
                fits_80(&a, &b)?;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]
            #[test]
            fn svg_renderers_never_fail(path in name(), frame in name(), other in name()) {
                let (b, a) = (report(&path, &frame, &other), report(&path, &frame, "after"));
                let svg = folded::flamegraph_svg(&b, &folded::folded(&b)).unwrap();
                prop_assert!(!svg.is_empty());
                for width in [diff::Width::Before, diff::Width::After] {
                    let svg = diff::flamegraph(&b, &a, width).unwrap();
                    prop_assert!(!svg.is_empty());
                }
            }
        }
    }
}
