//! The serialised ceiling that i_mmap_rwsem write holds put on a fork/exec workload, from one
//! report (`rmapprof model`; render/model.rs formats it).
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

use crate::report::Report;

/// Per cycle, one file's lock: write acquisitions, write hold time, and the time the lock is
/// unavailable to others (hold + hand-offs).
pub struct Lock {
    pub file: String,
    pub acquisitions_per_cycle: f64,
    pub hold_ns_per_cycle: f64,
    pub busy_ns_per_cycle: f64,
}

/// One run's analysis: its measured rate per CPU, and its locks, busiest first.
pub struct Analysis {
    pub per_cpu_rate: f64,
    pub locks: Vec<Lock>,
}

/// `r`'s locks per cycle; `name` says which run an error is about.
pub fn analyse(r: &Report, name: &str, handoff_ns: f64) -> Result<Analysis> {
    let Some(cycles) = r.cycles.filter(|c| *c > 0) else {
        bail!("{name}: no cycle count (profile a bundled workload, or pass --cycles)");
    };
    if r.files.iter().all(|f| f.acquire_paths.is_empty()) {
        bail!(
            "{name}: no hold times ({} mode{}); the model needs a kprobe or fentry run with --acquisitions",
            r.mode,
            if r.acquisitions_counted == Some(false) { " without --acquisitions" } else { "" }
        );
    }
    if r.duration_ns == 0 {
        bail!("{name}: duration_ns is 0: no rate was measured (a report of no time profiled)");
    }
    let cpus = r.cpus.unwrap_or(1).max(1) as f64;
    let secs = r.duration_ns as f64 / 1e9;
    let mut locks: Vec<Lock> = r
        .files
        .iter()
        .map(|f| {
            let writes = f.acquire_paths.iter().filter(|p| p.rw == "write");
            let acquisitions = writes.clone().map(|p| p.acquisitions as f64).sum::<f64>() / cycles as f64;
            let hold = writes.map(|p| p.hold_ns_total as f64).sum::<f64>() / cycles as f64;
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
    Ok(Analysis { per_cpu_rate: cycles as f64 / secs / cpus, locks })
}

/// At `n` CPUs: the estimated cycles/s, the busiest lock's utilisation, and that lock's file.
pub fn estimate(run: &Analysis, n: u32) -> (f64, f64, &str) {
    let offered = run.per_cpu_rate * n as f64;
    match run.locks.first() {
        Some(l) => {
            let ceiling = 1e9 / l.busy_ns_per_cycle;
            (offered.min(ceiling), (offered * l.busy_ns_per_cycle / 1e9).min(1.0), &l.file)
        }
        None => (offered, 0.0, "-"),
    }
}
