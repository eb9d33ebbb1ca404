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
    let p = crate::render::file_label(f.path.as_deref(), &f.dev, f.ino);
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
    if !r.recursion_misses.is_empty() {
        let by: Vec<String> = r.recursion_misses.iter().map(|(p, n)| format!("{p}={n}")).collect();
        let _ =
            writeln!(s, "  runs the kernel skipped (program already running on that CPU): {}", by.join(" "));
    }
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
        s.push_str(&holders::file_holders(f));
        s.push_str(&histogram(&f.wait_hist_log2));
    }
    s.push_str(&holders::mmap_lock_by_process(r));
    s.push_str(&holders::by_task(r));
    s
}

/// Frames shown of a call path: more would drown the table.
const SHOWN_FRAMES: usize = 12;

/// A call path's frames, innermost first (the lock call, then who took it), one a line; a
/// stack deeper than `SHOWN_FRAMES` ends in a line saying how many outer frames were cut.
pub(crate) fn frames(outermost_first: &[String]) -> String {
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

mod holders;
pub use holders::by_task;

#[cfg(test)]
pub(crate) mod tests;
