//! Plain-text report: the per-file table (also printed to stdout and at each --interval), the
//! lock classes for comparison, then call paths and histograms per file. 80 columns, ASCII, so
//! it pastes into a mailing-list post unchanged.

use std::fmt::Write;

use super::{clip, escape, fmt_count_f, fmt_ns, fmt_ns_f, Keep};
use crate::{
    mode::RunMode,
    report::{FileReport, Report},
};

fn mode_note(r: &Report) -> &'static str {
    match (r.mode, r.acquisitions_counted) {
        (RunMode::Tracepoint, _) => "sleeping waits only; optimistic spinning not seen",
        (_, Some(false)) => "waits, spinning included; --acquisitions also counts every acquisition",
        _ => "waits, spinning included, and every acquisition",
    }
}

/// A file's path, escaped, in `width` characters; a long one keeps its file name at the end:
/// "...x86_64-linux-gnu/libc.so.6".
pub(crate) fn short_path(f: &FileReport, width: usize) -> String {
    let p = f.path.clone().unwrap_or_else(|| format!("[dev {} ino {}]", f.dev, f.ino));
    clip(&p, width, Keep::Tail)
}

/// The per-file table and lock-class comparison: stdout summary and --interval output.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    let _ =
        writeln!(s, "i_mmap_rwsem contention by file ({} mode, {:.2} s)", r.mode, r.duration_ns as f64 / 1e9);
    let _ = writeln!(s, "{:<36} {:>7} {:>9} {:>9} {:>9} {:>4}", "FILE", "WAITS", "TOTAL", "MAX", "AVG", "W%");
    if r.files.is_empty() {
        let _ = writeln!(s, "  (no i_mmap_rwsem contention seen)");
    }
    for f in &r.files {
        let avg = f.wait_ns_total.checked_div(f.contentions).unwrap_or(0);
        // u128: no overflow whatever a hand-edited report.json holds.
        let wpct = (f.write.contentions as u128 * 100)
            .checked_div(f.contentions as u128)
            .map_or_else(|| "-".to_owned(), |p| p.to_string());
        let _ = writeln!(
            s,
            "{:<36} {:>7} {:>9} {:>9} {:>9} {:>4}",
            short_path(f, 36),
            f.contentions,
            fmt_ns(f.wait_ns_total),
            fmt_ns(f.wait_ns_max),
            fmt_ns(avg),
            wpct
        );
    }
    if !r.files.is_empty() {
        let _ = writeln!(s, "W%: share of the file's waits that were for write (the rest, for read)");
    }
    let _ = writeln!(s, "\nall lock contention in the same run:");
    let _ = writeln!(s, "{:<36} {:>7} {:>9} {:>9}", "LOCK", "WAITS", "TOTAL", "MAX");
    for l in &r.locks {
        let _ = writeln!(
            s,
            "{:<36} {:>7} {:>9} {:>9}",
            clip(&l.lock, 36, Keep::Head),
            l.contentions,
            fmt_ns(l.wait_ns_total),
            fmt_ns(l.wait_ns_max)
        );
    }
    s
}

/// Per file and caller class, per cycle when the cycles are known: what the run measured.
/// With `--acquisitions`: acquisitions, rmap operations, hold, spin and sleep time (the table
/// mm reviewers ask for). Without: the waits (count, time, mean) and, in kprobe/fentry mode,
/// spin, rather than columns of `-` for what the mode cannot see.
pub fn classes(r: &Report) -> String {
    let mut s = String::new();
    if r.files.iter().all(|f| f.by_class.is_empty()) {
        return s;
    }
    let rows = || r.files.iter().flat_map(|f| &f.by_class);
    let acquisitions = rows().any(|c| c.write_acquisitions.is_some() || c.read_acquisitions.is_some());
    let spin = rows().any(|c| c.spin_ns.is_some());
    let per = r.cycles.filter(|c| *c > 0);
    let what = if acquisitions { "" } else { " waits" };
    match per {
        Some(c) => {
            let _ = writeln!(s, "\ni_mmap_rwsem{what} per cycle by caller ({c} cycles):");
        }
        None => {
            let _ = writeln!(s, "\ni_mmap_rwsem{what} by caller (totals; --cycles N gives per cycle):");
        }
    }
    let div = per.unwrap_or(1) as f64;
    // A non-zero mean never prints as 0: `0.0025`, `<1 ns`.
    let count = |v: Option<u64>| match v {
        None => "-".to_owned(),
        Some(v) if per.is_some() => fmt_count_f(v as f64 / div),
        Some(v) => v.to_string(),
    };
    let ns = |v: Option<u64>| v.map(|v| fmt_ns_f(v as f64 / div)).unwrap_or_else(|| "-".into());
    if acquisitions {
        let _ = writeln!(
            s,
            "  {:<12} {:>7} {:>7} {:>6} {:>6} {:>9} {:>9} {:>9}",
            "CALLER", "W-ACQ", "R-ACQ", "INS", "REM", "HOLD", "SPIN", "SLEEP"
        );
    } else {
        let head = format!(
            "  {:<12} {:>9} {:>10} {:>10} {:>10}",
            "CALLER",
            "WAITS",
            "WAITED",
            "PER WAIT",
            if spin { "SPIN" } else { "" }
        );
        let _ = writeln!(s, "{}", head.trim_end());
    }
    for f in r.files.iter().filter(|f| !f.by_class.is_empty()) {
        let _ = writeln!(s, "  {}", short_path(f, 76));
        for c in &f.by_class {
            let class = clip(&c.class, 12, Keep::Head);
            if acquisitions {
                let _ = writeln!(
                    s,
                    "  {:<12} {:>7} {:>7} {:>6} {:>6} {:>9} {:>9} {:>9}",
                    class,
                    count(c.write_acquisitions),
                    count(c.read_acquisitions),
                    count(c.rmap_inserts),
                    count(c.rmap_removes),
                    ns(c.hold_ns),
                    ns(c.spin_ns),
                    ns(Some(c.sleep_ns))
                );
            } else {
                let mean = c.sleep_ns.checked_div(c.contentions).map_or_else(|| "-".to_owned(), fmt_ns);
                let row = format!(
                    "  {:<12} {:>9} {:>10} {:>10} {:>10}",
                    class,
                    count(Some(c.contentions)),
                    ns(Some(c.sleep_ns)),
                    mean,
                    if spin { ns(c.spin_ns) } else { String::new() }
                );
                let _ = writeln!(s, "{}", row.trim_end());
            }
        }
    }
    if !acquisitions {
        let per = if per.is_some() { " per cycle" } else { "" };
        let _ = writeln!(s, "  WAITS, WAITED: sleeping waits and the time they took{per}");
        let _ = writeln!(s, "  PER WAIT: mean of one wait");
        if spin {
            let _ = writeln!(s, "  SPIN: optimistic spinning{per}; --acquisitions also counts acquisitions");
        }
    }
    s
}

/// `report.txt`: header, summary, then per file its call paths and wait histogram.
pub fn full(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "rmapprof {} on Linux {}", escape(&r.version), escape(&r.kernel));
    let _ = writeln!(s, "mode: {} ({})", r.mode, mode_note(r));
    if let Some(c) = &r.command {
        let args: Vec<_> = c.iter().map(|a| escape(a)).collect();
        let _ = writeln!(s, "command: {}", args.join(" "));
    }
    if let Some(p) = r.pid {
        let _ = writeln!(s, "pid: {p}");
    }
    for p in &r.probes {
        let state = if p.attached {
            "attached".to_owned()
        } else {
            format!("NOT attached: {}", escape(p.error.as_deref().unwrap_or("?")))
        };
        let _ = writeln!(s, "probe {}: {state}", escape(&p.probe));
    }
    let lost: Vec<String> = r.lost.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k}={n}")).collect();
    let _ = writeln!(s, "lost: {}", if lost.is_empty() { "none".to_owned() } else { lost.join(" ") });
    if r.nested_waits > 0 {
        let _ = writeln!(s, "nested waits (only the outer wait is measured): {}", r.nested_waits);
    }
    s.push_str(&unwinds(r));
    s.push('\n');
    if let Some(cost) = &r.bpf_cost {
        let (runs, ns) = cost.iter().fold((0, 0), |(r, n), c| (r + c.runs, n + c.ns));
        let per_cycle =
            r.cycles.map(|c| format!(", {} per cycle", fmt_ns(ns / c.max(1)))).unwrap_or_default();
        let _ = writeln!(s, "rmapprof's own BPF cost: {runs} program runs, {}{per_cycle}", fmt_ns(ns));
        for c in cost.iter().take(6) {
            let _ = writeln!(s, "  {:<24} {:>10} runs {:>10}", c.program, c.runs, fmt_ns(c.ns));
        }
        s.push('\n');
    }
    s.push_str(&summary(r));
    s.push_str(&classes(r));
    for f in &r.files {
        let _ = writeln!(
            s,
            "\n== {} (dev {} ino {})",
            escape(f.path.as_deref().unwrap_or("[path unknown]")),
            f.dev,
            f.ino
        );
        let _ = writeln!(
            s,
            "   write: {} waits, {}   read: {} waits, {}",
            f.write.contentions,
            fmt_ns(f.write.wait_ns_total),
            f.read.contentions,
            fmt_ns(f.read.wait_ns_total)
        );
        for p in f.call_paths.iter().take(10) {
            let _ = writeln!(s, "   {:>6} waits {:>10} {:<5}", p.contentions, fmt_ns(p.wait_ns_total), p.rw);
            // Innermost first: the lock call, then who took it.
            s.push_str(&frames(&p.frames));
        }
        for p in f.spin_paths.iter().take(5) {
            let _ = writeln!(s, "   spun {:>10} in {} slowpaths", fmt_ns(p.wait_ns_total), p.contentions);
            s.push_str(&frames(&p.frames));
        }
        s.push_str(&histogram(&f.wait_hist_log2));
    }
    s
}

/// Frames shown of a call path: more would drown the table.
const SHOWN_FRAMES: usize = 12;

/// A call path's frames, innermost first (the lock call, then who took it), one a line; a
/// stack deeper than `SHOWN_FRAMES` ends in a line saying how many outer frames were cut.
fn frames(outermost_first: &[String]) -> String {
    let mut s = String::new();
    for fr in outermost_first.iter().rev().take(SHOWN_FRAMES) {
        let _ = writeln!(s, "        {}", escape(fr));
    }
    let cut = outermost_first.len().saturating_sub(SHOWN_FRAMES);
    if cut > 0 {
        let _ = writeln!(s, "        ... {cut} more frame{}", if cut == 1 { "" } else { "s" });
    }
    s
}

/// How the kernel stacks were taken, when any were: the call-site cache's share and whether
/// any check found a cached stack wrong (kprobe mode).
fn unwinds(r: &Report) -> String {
    let n = |k: &str| r.unwind.get(k).copied().unwrap_or(0);
    let (unwinds, hits, checks) = (n("unwinds"), n("cache_hits"), n("cache_checks"));
    if unwinds == 0 && hits == 0 {
        return String::new();
    }
    let mut s = format!("stacks: {unwinds} unwound");
    if hits > 0 || checks > 0 {
        let (conflicts, split) = (n("cache_conflicts"), n("split_hashes"));
        s += &format!(", {hits} from the call-site cache ({checks} rechecked, {conflicts} differed)");
        if split > 0 {
            s += &format!(", {split} looked up by the stack above a split site");
        }
    }
    s.push('\n');
    for site in &r.unwind_conflict_sites {
        let _ = writeln!(s, "  two paths through one site: {}", escape(site));
    }
    s
}

/// bpftrace-style log2 histogram of wait times.
pub fn histogram(buckets: &[u64]) -> String {
    let mut s = String::new();
    let (Some(lo), Some(hi)) = (buckets.iter().position(|&n| n > 0), buckets.iter().rposition(|&n| n > 0))
    else {
        return s;
    };
    let max = buckets[lo..=hi].iter().copied().max().unwrap_or(1).max(1);
    let _ = writeln!(s, "   wait time (ns)");
    for (b, &n) in buckets.iter().enumerate().take(hi + 1).skip(lo) {
        let from = if b == 0 { 0 } else { 1u64 << b };
        let bar = "@".repeat((n * 40 / max) as usize);
        let _ = writeln!(s, "   [{:>5}, {:>5}) {:>8} |{:<40}|", pow2(from), pow2(1u64 << (b + 1)), n, bar);
    }
    s
}

/// 1024-based short form of a power of two, as bpftrace prints bucket bounds: 512, 1K, 4M.
fn pow2(v: u64) -> String {
    match v {
        0..1024 => v.to_string(),
        1024..1048576 => format!("{}K", v >> 10),
        1048576..1073741824 => format!("{}M", v >> 20),
        _ => format!("{}G", v >> 30),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::{CallPath, LockSummary, Waits};

    pub(crate) fn sample() -> Report {
        let mut hist = vec![0; 40];
        hist[10] = 3;
        hist[12] = 1;
        Report {
            tool: "rmapprof".into(),
            version: "0.1.0".into(),
            mode: RunMode::Tracepoint,
            acquisitions_counted: Some(false),
            kernel: "6.18.0".into(),
            duration_ns: 2_000_000_000,
            command: Some(vec!["spawn".into(), "100".into()]),
            pid: None,
            cycles: None,
            cpus: None,
            selected: vec![],
            probes: vec![],
            lost: [("stats_map_full".to_owned(), 0)].into_iter().collect(),
            nested_waits: 2,
            unwind: [
                ("unwinds", 120),
                ("cache_hits", 99_000),
                ("cache_checks", 1500),
                ("cache_conflicts", 1),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            unwind_conflict_sites: vec!["vma_link_file+0x2f (depth 14920)".into()],
            map_rows: Default::default(),
            bpf_cost: None,
            locks: vec![LockSummary {
                lock: "i_mmap_rwsem".into(),
                contentions: 4,
                wait_ns_total: 8000,
                wait_ns_max: 5000,
                wait_hist_log2: hist.clone(),
            }],
            files: vec![FileReport {
                path: Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
                dev: "254:1".into(),
                ino: 42,
                contentions: 4,
                wait_ns_total: 8000,
                wait_ns_max: 5000,
                wait_hist_log2: hist,
                write: Waits { contentions: 3, wait_ns_total: 7000, wait_ns_max: 5000 },
                read: Waits { contentions: 1, wait_ns_total: 1000, wait_ns_max: 1000 },
                call_paths: vec![CallPath {
                    rw: "write".into(),
                    frames: vec!["entry_SYSCALL_64".into(), "dup_mmap".into(), "down_write".into()],
                    contentions: 3,
                    wait_ns_total: 7000,
                    wait_ns_max: 5000,
                    osq_ns: None,
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn summary_table() {
        let s = summary(&sample());
        let row = s.lines().find(|l| l.contains("libc.so.6")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[0], "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(cols[1], "4");
        assert_eq!(&cols[2..4], ["8.00", "us"]);
        assert_eq!(cols.last(), Some(&"75"));
        assert!(s.lines().all(|l| l.len() <= 80), "{s}");
    }

    #[test]
    fn full_report_has_paths_and_histogram() {
        let s = full(&sample());
        assert!(s.contains("lost: none\nnested waits (only the outer wait is measured): 2\n"), "{s}");
        assert!(
            s.contains(
                "stacks: 120 unwound, 99000 from the call-site cache (1500 rechecked, 1 differed)\n  \
                 two paths through one site: vma_link_file+0x2f (depth 14920)\n"
            ),
            "{s}"
        );
        let i = s.find("down_write").unwrap();
        assert!(i < s.find("dup_mmap").unwrap(), "innermost frame first");
        assert!(s.contains("[   1K,    2K)        3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"), "{s}");
        assert!(s.contains(&format!("[   4K,    8K)        1 |{:<40}|", "@".repeat(13))), "{s}");
        assert!(s.lines().all(|l| l.len() <= 80), "{s}");
    }

    #[test]
    fn per_cycle_table_by_caller() {
        use crate::report::ClassRow;
        let mut r = sample();
        assert_eq!(classes(&r), "", "no caller rows, no table");
        r.cycles = Some(100);
        r.files[0].by_class = vec![ClassRow {
            class: "fork".into(),
            write_acquisitions: Some(500),
            read_acquisitions: Some(0),
            hold_ns: Some(150_000),
            rmap_inserts: Some(500),
            rmap_removes: Some(0),
            slowpath_ns: Some(0),
            spin_ns: Some(20_000),
            contentions: 3,
            sleep_ns: 7000,
            per_cycle: None,
        }];
        let t = classes(&r);
        assert!(t.contains("per cycle by caller (100 cycles)"), "{t}");
        let row: Vec<&str> =
            t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
        assert_eq!(row, ["fork", "5.00", "0.00", "5.00", "0.00", "1.50", "us", "200", "ns", "70", "ns"]);
        r.files[0].by_class[0].write_acquisitions = None; // tracepoint mode: not observed
        r.cycles = None;
        let t = classes(&r);
        assert!(t.lines().any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["fork", "-"]), "{t}");
        assert!(t.lines().all(|l| l.len() <= 80), "{t}");
    }

    /// The mode line says what the run could not see and how to see it.
    #[test]
    fn mode_line_names_what_was_not_counted() {
        let mut r = sample();
        let mode_line = |r: &Report| full(r).lines().find(|l| l.starts_with("mode:")).unwrap().to_owned();
        assert!(mode_line(&r).contains("optimistic spinning not seen"));
        r.mode = RunMode::Fentry;
        assert!(mode_line(&r).contains("--acquisitions also counts every acquisition"), "{}", mode_line(&r));
        r.acquisitions_counted = Some(true);
        assert_eq!(mode_line(&r), "mode: fentry (waits, spinning included, and every acquisition)");
    }

    #[test]
    fn long_paths_keep_the_file_name() {
        let mut r = sample();
        r.files[0].path = Some(format!("/{}/libc.so.6", "x".repeat(60)));
        let s = summary(&r);
        assert!(s.lines().any(|l| l.starts_with("...") && l.contains("libc.so.6 ")));
    }

    /// A newline or other control character in a name (file, frame, command) neither splits a
    /// line nor reaches the terminal raw: it is escaped.
    #[test]
    fn control_characters_are_escaped() {
        let mut r = sample();
        r.files[0].path = Some("/tmp/evil\nname\x1b[31m".into());
        r.files[0].call_paths[0].frames.push("odd\tframe".into());
        r.command = Some(vec!["sh".into(), "-c".into(), "echo a\necho b".into()]);
        r.files[0].by_class = vec![crate::report::ClassRow { class: "fork".into(), ..Default::default() }];
        for out in [summary(&r), classes(&r), full(&r)] {
            for l in out.split('\n') {
                assert!(!l.chars().any(char::is_control), "{l:?}");
            }
        }
        assert!(summary(&r).contains("/tmp/evil\\nname\\x1b[31m "), "{}", summary(&r));
        assert!(full(&r).contains("\n== /tmp/evil\\nname\\x1b[31m (dev"), "{}", full(&r));
        assert!(full(&r).contains("        odd\\tframe\n"), "{}", full(&r));
        assert!(full(&r).contains("command: sh -c echo a\\necho b\n"), "{}", full(&r));
    }

    /// Tracepoint mode sees sleeping waits alone: the per-cycle table shows those (count and
    /// time per cycle), not columns of `-`, and a wait under half a ns per cycle is no `0 ns`.
    #[test]
    fn tracepoint_table_shows_waits() {
        use crate::report::ClassRow;
        let mut r = sample();
        r.cycles = Some(100_000);
        let row =
            |c: &str, n, ns| ClassRow { class: c.into(), contentions: n, sleep_ns: ns, ..Default::default() };
        r.files[0].by_class = vec![row("fork", 3, 7000), row("mmap", 1, 1000)];
        let t = classes(&r);
        let fork: Vec<&str> =
            t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
        // 3 waits and 7 us in 100,000 cycles; 2.33 us a wait.
        assert_eq!(fork, ["fork", "<0.0001", "<1", "ns", "2.33", "us"], "{t}");
        assert!(!t.contains(" - ") && !t.contains(" 0 ns"), "{t}");
        r.cycles = Some(100);
        let t = classes(&r);
        let fork: Vec<&str> =
            t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
        assert_eq!(fork, ["fork", "0.03", "70", "ns", "2.33", "us"], "{t}");
        r.cycles = None;
        let t = classes(&r);
        let fork: Vec<&str> =
            t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
        assert_eq!(fork, ["fork", "3", "7.00", "us", "2.33", "us"], "{t}");
        assert!(t.lines().all(|l| l.len() <= 80 && l.is_ascii()), "{t}");
        // kprobe/fentry mode without --acquisitions: spin as well.
        r.files[0].by_class[0].spin_ns = Some(500);
        r.files[0].by_class[1].spin_ns = Some(0);
        let t = classes(&r);
        let fork: Vec<&str> =
            t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
        assert_eq!(fork, ["fork", "3", "7.00", "us", "2.33", "us", "500", "ns"], "{t}");
        assert!(t.contains("SPIN: optimistic spinning"), "{t}");
    }

    /// The summary says what W% is, where it prints it.
    #[test]
    fn summary_explains_write_share() {
        let s = summary(&sample());
        assert!(s.lines().any(|l| l.starts_with("W%:") && l.contains("write")), "{s}");
        assert!(s.lines().all(|l| l.len() <= 80 && l.is_ascii()), "{s}");
    }

    /// A stack deeper than the 12 frames shown says it was cut.
    #[test]
    fn cut_stacks_say_so() {
        let mut r = sample();
        r.files[0].call_paths[0].frames = (0..15).map(|i| format!("f{i}")).collect();
        let s = full(&r);
        assert!(s.contains("        f3\n        ... 3 more frames\n"), "{s}");
        assert!(!s.contains("        f2\n"), "{s}");
        r.files[0].call_paths[0].frames.truncate(12);
        assert!(!full(&r).contains("more frame"));
        r.files[0].call_paths[0].frames.push("f12".into());
        assert!(full(&r).contains("        f1\n        ... 1 more frame\n"), "{}", full(&r));
    }
}
