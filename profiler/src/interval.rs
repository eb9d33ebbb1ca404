//! The `--interval` tables: what happened in each period of the run, stamped with its offsets
//! from the start of profiling. The last (partial) period is printed too, before the final
//! report, so the periods' waits add up to the report's.
//!
//! The kernel keeps counts, totals and maxima since the start, and a log2 histogram of wait
//! times per file and lock class. Counts, totals and histograms subtract. A maximum does not:
//! when the run's maximum grew in the period, the period's maximum is that new maximum
//! (exact); otherwise it lies in the highest histogram bucket that grew, and is printed as an
//! upper bound, `<T`, explained under the table.

use std::fmt::Write;

use crate::{
    render::{fmt_ns, text::short_path},
    report::{self, Report},
};

/// The table for the period from `prev` to `cur`, two reports of one run whose `duration_ns`
/// is the time since profiling began; `last` marks the period the run's end cut short.
pub fn table(prev: &Report, cur: &Report, last: bool) -> String {
    let d = report::delta(prev, cur);
    let secs = |ns: u64| ns as f64 / 1e9;
    let mut s = String::new();
    // The mode is the final report's; without it an hour's offsets still fit in 80 columns.
    let _ = writeln!(
        s,
        "i_mmap_rwsem contention by file, +{:.2} s .. +{:.2} s{}",
        secs(prev.duration_ns),
        secs(cur.duration_ns),
        if last { " (end of run)" } else { "" }
    );
    let _ = writeln!(s, "{:<36} {:>7} {:>9} {:>9} {:>9} {:>4}", "FILE", "WAITS", "TOTAL", "MAX", "AVG", "W%");
    if d.files.is_empty() {
        let _ = writeln!(s, "  (no i_mmap_rwsem contention seen)");
    }
    let mut bounded = false;
    for f in &d.files {
        let before =
            prev.files.iter().find(|p| p.dev == f.dev && p.ino == f.ino).map_or(0, |p| p.wait_ns_max);
        let max = period_max(f.contentions, f.wait_ns_max, before, &f.wait_hist_log2);
        bounded |= max.starts_with('<');
        let (avg, wpct) = match f.contentions {
            0 => ("-".to_owned(), "-".to_owned()),
            n => (fmt_ns(f.wait_ns_total / n), (f.write.contentions * 100 / n).to_string()),
        };
        let _ = writeln!(
            s,
            "{:<36} {:>7} {:>9} {:>9} {:>9} {:>4}",
            short_path(f, 36),
            f.contentions,
            fmt_ns(f.wait_ns_total),
            max,
            avg,
            wpct
        );
    }
    let _ = writeln!(s, "\nall lock contention in the same period:");
    let _ = writeln!(s, "{:<36} {:>7} {:>9} {:>9}", "LOCK", "WAITS", "TOTAL", "MAX");
    for l in &d.locks {
        let before = prev.locks.iter().find(|p| p.lock == l.lock).map_or(0, |p| p.wait_ns_max);
        let max = period_max(l.contentions, l.wait_ns_max, before, &l.wait_hist_log2);
        bounded |= max.starts_with('<');
        let _ = writeln!(s, "{:<36} {:>7} {:>9} {:>9}", l.lock, l.contentions, fmt_ns(l.wait_ns_total), max);
    }
    if bounded {
        let _ = writeln!(s, "MAX <T: the period's longest wait was shorter than T (its wait histogram's");
        let _ = writeln!(s, "highest bucket); the kernel keeps exact maxima only for the whole run.");
    }
    s
}

/// The longest wait of a period with `count` waits, from the run's maximum before and after
/// it and the period's histogram: exact when the maximum grew, else `<` the top of the highest
/// bucket that grew; `-` when there were no waits.
pub fn period_max(count: u64, max_after: u64, max_before: u64, hist: &[u64]) -> String {
    if count == 0 {
        return "-".into();
    }
    if max_after > max_before {
        return fmt_ns(max_after);
    }
    // The histogram is read a moment after the counts: a wait counted here may have been in
    // the previous period's histogram. Then the run's maximum is what bounds it.
    let bucket = hist
        .iter()
        .rposition(|&n| n > 0)
        .unwrap_or_else(|| (u64::BITS - max_after.leading_zeros()).saturating_sub(1) as usize);
    match 1u64.checked_shl(bucket as u32 + 1) {
        Some(top) => format!("<{}", fmt_ns(top)),
        None => format!("<={}", fmt_ns(max_after)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::text::tests::sample;

    #[test]
    fn period_maxima_are_exact_or_bounded() {
        let mut hist = vec![0u64; 40];
        assert_eq!(period_max(0, 5000, 5000, &hist), "-");
        assert_eq!(period_max(0, 9000, 5000, &hist), "-", "no waits, no maximum");
        assert_eq!(period_max(2, 9000, 5000, &hist), "9.00 us", "a new run maximum is exact");
        hist[12] = 2; // [4096, 8192) ns
        assert_eq!(period_max(2, 9000, 9000, &hist), "<8.19 us");
        // Counted but not yet in the histogram: bounded by the run's maximum's bucket.
        assert_eq!(period_max(1, 9000, 9000, &[0; 40]), "<16.38 us");
    }

    /// Two snapshots of one run: the period's own counts, totals, histogram and maximum, and
    /// its offsets.
    #[test]
    fn a_period_is_its_own_figures() {
        let mut prev = sample();
        prev.duration_ns = 2_000_000_000;
        let mut cur = prev.clone();
        cur.duration_ns = 4_000_000_000;
        let f = &mut cur.files[0];
        f.contentions += 2; // two waits of 1 and 2 us: the run's maximum (5 us) stays
        f.wait_ns_total += 3000;
        f.write.contentions += 2;
        f.wait_hist_log2[11] += 2;
        let t = table(&prev, &cur, false);
        assert!(t.starts_with("i_mmap_rwsem contention by file, +2.00 s .. +4.00 s\n"), "{t}");
        let row: Vec<&str> =
            t.lines().find(|l| l.contains("libc.so.6")).unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            ["/usr/lib/x86_64-linux-gnu/libc.so.6", "2", "3.00", "us", "<4.10", "us", "1.50", "us", "100"]
        );
        assert!(t.contains("MAX <T: the period's longest wait was shorter than T"), "{t}");
        // A period without waits: no maximum, no average.
        let t = table(&cur, &Report { duration_ns: 5_000_000_000, ..cur.clone() }, true);
        assert!(t.starts_with("i_mmap_rwsem contention by file, +4.00 s .. +5.00 s (end of run)\n"), "{t}");
        assert!(t.contains("(no i_mmap_rwsem contention seen)"), "{t}");
        let lock: Vec<&str> =
            t.lines().rfind(|l| l.starts_with("i_mmap_rwsem ")).unwrap().split_whitespace().collect();
        assert_eq!(lock, ["i_mmap_rwsem", "0", "0", "ns", "-"]);
        assert!(!t.contains("MAX <T"));
        assert!(t.lines().chain(table(&prev, &cur, false).lines()).all(|l| l.len() <= 80));
    }
}
