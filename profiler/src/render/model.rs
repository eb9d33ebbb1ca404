//! `rmapprof model` as an 80-column table: the ceiling per CPU count (crate::model), one
//! run or two side by side.

use anyhow::Result;
use std::fmt::Write;

use super::{clip, escape, fit, sci, Keep};
use crate::{
    model::{analyse, estimate, Analysis},
    report::Report,
};

pub fn table(runs: &[(&str, &Report)], cpus: &[u32], handoff_ns: f64) -> Result<String> {
    let analysed: Vec<(&str, Analysis)> =
        runs.iter().map(|(n, r)| Ok((*n, analyse(r, n, handoff_ns)?))).collect::<Result<_>>()?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "i_mmap_rwsem write side per cycle; busy = hold + acquisitions x {handoff_ns} ns hand-off"
    );
    for (name, run) in &analysed {
        let rate = run.per_cpu_rate;
        let _ = writeln!(s, "{name}: {} cycles/s per CPU measured", fit(format!("{rate:.1}"), rate, 12));
        let _ = writeln!(
            s,
            "  {:<24} {:>6} {:>9} {:>9} {:>11}",
            "FILE", "ACQ", "HOLD ns", "BUSY ns", "CEILING/s"
        );
        for l in run.locks.iter().take(4) {
            let (acq, hold, busy) = (l.acquisitions_per_cycle, l.hold_ns_per_cycle, l.busy_ns_per_cycle);
            let ceiling = 1e9 / busy;
            let _ = writeln!(
                s,
                "  {:<24} {:>6} {:>9} {:>9} {:>11}",
                clip(&l.file, 24, Keep::Head),
                fit(format!("{acq:.2}"), acq, 6),
                fit(format!("{hold:.0}"), hold, 9),
                fit(format!("{busy:.0}"), busy, 9),
                whole(ceiling, 11)
            );
        }
    }
    let _ = write!(s, "\n{:>5}", "CPUS");
    for (name, _) in &analysed {
        let _ = write!(s, " {:>12} {:>6}", clip(name, 12, Keep::Head), "LOCK%");
    }
    let _ = writeln!(s, "  BOTTLENECK");
    for &n in cpus {
        let _ = write!(s, "{n:>5}");
        let mut bottlenecks: Vec<&str> = vec![];
        for (_, run) in &analysed {
            let (x, rho, file) = estimate(run, n);
            let _ = write!(s, " {:>12} {:>5.0}%", whole(x, 12), rho * 100.0);
            if !bottlenecks.contains(&file) {
                bottlenecks.push(file);
            }
        }
        let names: Vec<_> = bottlenecks.iter().map(|f| escape(f)).collect();
        let _ = writeln!(s, "  {}", names.join(" / "));
    }
    Ok(s)
}

/// A rate in whole units within `width` columns; one under a half (a lock busy for seconds per
/// cycle) in scientific notation rather than a misleading 0.
fn whole(v: f64, width: usize) -> String {
    if v > 0.0 && v < 0.5 {
        sci(v, width)
    } else {
        fit(format!("{v:.0}"), v, width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::AcquirePath;

    fn report(hold_ns_total: u64) -> Report {
        let mut r = crate::render::text::tests::sample();
        r.cycles = Some(100);
        r.duration_ns = 1_000_000_000;
        r.cpus = Some(2);
        r.files[0].acquire_paths =
            vec![AcquirePath { rw: "write".into(), acquisitions: 500, hold_ns_total, ..Default::default() }];
        r
    }

    #[test]
    fn ceiling_is_one_over_hold_per_cycle() {
        // 100 cycles in 1 s on 2 CPUs: 50/s per CPU. Hold 1 ms per cycle: ceiling 1000/s.
        let t = table(&[("base", &report(100_000_000))], &[2, 64], 0.0).unwrap();
        let row = |n: &str| {
            t.lines()
                .find(|l| l.split_whitespace().next() == Some(n))
                .unwrap()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(row("2"), ["2", "100", "10%", "libc.so.6"]);
        assert_eq!(row("64"), ["64", "1000", "100%", "libc.so.6"]);
        // Halving the hold doubles the ceiling, side by side.
        let t =
            table(&[("base", &report(100_000_000)), ("patched", &report(50_000_000))], &[64], 0.0).unwrap();
        assert!(
            t.lines().last().unwrap().split_whitespace().collect::<Vec<_>>()
                == ["64", "1000", "100%", "2000", "100%", "libc.so.6"],
            "{t}"
        );
    }

    #[test]
    fn handoffs_count_per_acquisition() {
        // 500 acquisitions in 100 cycles = 5 per cycle; 5 x 100 ns hand-off + 1000 ns hold
        // = 1500 ns busy per cycle: ceiling 666,667 cycles/s.
        let t = table(&[("base", &report(100_000))], &[100_000], 100.0).unwrap();
        assert!(t.contains("  5.00      1000      1500      666667"), "{t}");
        assert!(t.lines().last().unwrap().contains(" 666667 "), "{t}");
    }

    #[test]
    fn needs_cycles_and_hold_times() {
        let mut r = report(1);
        r.cycles = None;
        assert!(table(&[("x", &r)], &[64], 0.0).unwrap_err().to_string().contains("no cycle count"));
        let mut r = report(1);
        r.files[0].acquire_paths.clear();
        assert!(table(&[("x", &r)], &[64], 0.0).unwrap_err().to_string().contains("kprobe or fentry"));
    }

    /// A non-ASCII basename longer than the column was cut inside a character (a panic), and
    /// a newline in it split the row.
    #[test]
    fn names_are_cut_by_characters_and_escaped() {
        let mut r = report(100_000_000);
        r.files[0].path = Some(format!("/tmp/x{}", "ö".repeat(30)));
        let t = table(&[("base", &r)], &[64], 0.0).unwrap();
        assert!(t.contains(&format!("  x{}~ ", "ö".repeat(22))), "{t}");
        r.files[0].path = Some("/tmp/x\ny".into());
        let t = table(&[("base", &r)], &[64], 0.0).unwrap();
        assert!(t.contains("  x\\ny "), "{t}");
        assert!(t.lines().all(|l| !l.chars().any(char::is_control)), "{t:?}");
    }
}
