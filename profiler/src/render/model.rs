//! `rmapprof model REPORT.json [AFTER.json] --cpus 64,128,384`: the serialised ceiling that
//! i_mmap_rwsem write holds put on a fork/exec workload, and how a patch moves it.
//!
//! Model (an upper bound, derived in docs/design.md): a file's i_mmap_rwsem is held for write by
//! one task at a time, for H ns per workload cycle (the sum of its write hold times per cycle), and
//! each of its A write acquisitions per cycle must also move the lock's cache line to the next
//! owner (a hand-off of h ns, --handoff-ns). So the lock is busy S = H + A x h ns per cycle and no
//! machine runs more than 1e9 / S cycles/s, whatever its CPU count. Without the lock, N CPUs run
//! N x r cycles/s, r being the per-CPU rate the profiled run reached. The estimate at N CPUs is
//! min(N x r, 1e9 / S of the busiest lock). Contention itself lengthens holds (wakeups, spinning
//! owners' cache traffic), so real curves bend below this bound before reaching it.

use anyhow::{bail, Result};
use std::fmt::Write;

use super::{clip, escape, Keep};
use crate::report::Report;

/// Per cycle, one file's lock: write acquisitions, write hold time, and the time the lock is
/// unavailable to others (hold + hand-offs).
struct Lock {
    file: String,
    acquisitions_per_cycle: f64,
    hold_ns_per_cycle: f64,
    busy_ns_per_cycle: f64,
}

struct Run {
    per_cpu_rate: f64,
    locks: Vec<Lock>,
}

fn analyse(r: &Report, name: &str, handoff_ns: f64) -> Result<Run> {
    let Some(cycles) = r.cycles.filter(|c| *c > 0) else {
        bail!("{name}: no cycle count (profile a bundled workload, or pass --cycles)");
    };
    if r.files.iter().all(|f| f.acquire_paths.is_empty()) {
        bail!(
            "{name}: no hold times ({} mode{}); the model needs a kprobe or fentry run with --acquisitions",
            escape(&r.mode),
            if r.acquisitions_counted == Some(false) { " without --acquisitions" } else { "" }
        );
    }
    let cpus = r.cpus.unwrap_or(1).max(1) as f64;
    let secs = r.duration_ns as f64 / 1e9;
    let mut locks: Vec<Lock> = r
        .files
        .iter()
        .map(|f| {
            // acquire_paths: `contentions` counts acquisitions, `wait_ns_total` is hold time.
            let writes = f.acquire_paths.iter().filter(|p| p.rw == "write");
            let acquisitions = writes.clone().map(|p| p.contentions as f64).sum::<f64>() / cycles as f64;
            let hold = writes.map(|p| p.wait_ns_total as f64).sum::<f64>() / cycles as f64;
            Lock {
                file: f.path.as_deref().map(|p| p.rsplit('/').next().unwrap_or(p)).unwrap_or("?").to_owned(),
                acquisitions_per_cycle: acquisitions,
                hold_ns_per_cycle: hold,
                busy_ns_per_cycle: hold + acquisitions * handoff_ns,
            }
        })
        .filter(|l| l.busy_ns_per_cycle > 0.0)
        .collect();
    locks.sort_by(|a, b| b.busy_ns_per_cycle.total_cmp(&a.busy_ns_per_cycle));
    Ok(Run { per_cpu_rate: cycles as f64 / secs / cpus, locks })
}

fn estimate(run: &Run, n: u32) -> (f64, f64, &str) {
    let offered = run.per_cpu_rate * n as f64;
    match run.locks.first() {
        Some(l) => {
            let ceiling = 1e9 / l.busy_ns_per_cycle;
            (offered.min(ceiling), (offered * l.busy_ns_per_cycle / 1e9).min(1.0), &l.file)
        }
        None => (offered, 0.0, "-"),
    }
}

pub fn table(runs: &[(&str, &Report)], cpus: &[u32], handoff_ns: f64) -> Result<String> {
    let analysed: Vec<(&str, Run)> =
        runs.iter().map(|(n, r)| Ok((*n, analyse(r, n, handoff_ns)?))).collect::<Result<_>>()?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "i_mmap_rwsem write side per cycle; busy = hold + acquisitions x {handoff_ns} ns hand-off"
    );
    for (name, run) in &analysed {
        let _ = writeln!(s, "{name}: {:.1} cycles/s per CPU measured", run.per_cpu_rate);
        let _ = writeln!(
            s,
            "  {:<24} {:>6} {:>9} {:>9} {:>11}",
            "FILE", "ACQ", "HOLD ns", "BUSY ns", "CEILING/s"
        );
        for l in run.locks.iter().take(4) {
            let _ = writeln!(
                s,
                "  {:<24} {:>6.2} {:>9.0} {:>9.0} {:>11.0}",
                clip(&l.file, 24, Keep::Head),
                l.acquisitions_per_cycle,
                l.hold_ns_per_cycle,
                l.busy_ns_per_cycle,
                1e9 / l.busy_ns_per_cycle
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
            let _ = write!(s, " {:>12.0} {:>5.0}%", x, rho * 100.0);
            if !bottlenecks.contains(&file) {
                bottlenecks.push(file);
            }
        }
        let names: Vec<_> = bottlenecks.iter().map(|f| escape(f)).collect();
        let _ = writeln!(s, "  {}", names.join(" / "));
    }
    Ok(s)
}

pub fn parse_cpus(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(|x| {
            x.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| format!("'{x}' is not a CPU count"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CallPath;

    fn report(hold_ns_total: u64) -> Report {
        let mut r = crate::render::text::tests::sample();
        r.cycles = Some(100);
        r.duration_ns = 1_000_000_000;
        r.cpus = Some(2);
        r.files[0].acquire_paths = vec![CallPath {
            rw: "write".into(),
            contentions: 500,
            wait_ns_total: hold_ns_total,
            ..Default::default()
        }];
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
        assert_eq!(parse_cpus("64,128, 384"), Ok(vec![64, 128, 384]));
        assert!(parse_cpus("64,x").is_err() && parse_cpus("0").is_err());
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
