//! `cargo xtask demo`: the main job on a bundled workload, then a picture that is never empty.
//!
//! 1. `spawn` (fork + exec /bin/true + exit) with `--inode libc.so.6 --inode
//!    ld-linux-x86-64.so.2`: the question rmapprof exists for. On a small machine few forks
//!    overlap, so these locks are rarely contended and this run's flame graph may well be
//!    empty; the demo says so and why, rather than leave a blank picture unexplained.
//! 2. `holders` on a file of its own (a hole puncher, a forker and mmap/munmap churners on one
//!    file): contention on one i_mmap_rwsem even on 2 CPUs, so the demo ends with a flame
//!    graph that has towers. Rerun with more cycles, up to three times, if a loaded machine
//!    still recorded no wait.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

use crate::{as_root, host::root, host::sh, setup::build};

/// i_mmap_rwsem waits and their total ns in `dir`'s report.json, per file path.
fn waits(dir: &Path) -> Result<Vec<(String, u64, u64)>> {
    Ok(crate::tools::read_report(dir)?
        .files
        .into_iter()
        .map(|f| (f.path.unwrap_or_else(|| "(unnamed)".to_owned()), f.contentions, f.wait_ns_total))
        .collect())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn run(cycles: u64, jobs: u64) -> Result<()> {
    build()?;
    let rel = root().join("target/release");
    let out = root().join("rmapprof-out");
    let libs = out.join("spawn-libc");
    let contended_out = out.join("holders");
    // rmapprof makes only the last component of --output (never parents, as root).
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    eprintln!("xtask: 1/2: profiling {cycles} x (fork + exec /bin/true + exit) in {jobs} workers");
    sh(as_root(&rel.join("rmapprof"))
        .args(["--inode", "libc.so.6", "--inode", "ld-linux-x86-64.so.2", "--output"])
        .arg(&libs)
        .arg("--")
        .arg(rel.join("spawn"))
        .args([cycles.to_string(), "-j".into(), jobs.to_string()]))?;
    let seen: u64 = waits(&libs)?.iter().map(|w| w.1).sum();
    if seen == 0 {
        eprintln!(
            "\nxtask: no i_mmap_rwsem waits on libc.so.6 or ld-linux-x86-64.so.2 in this run: with {} CPUs \
             few of the forks, execs and exits that take these locks overlap. The melt-down needs \
             many CPUs doing it at once (UnixBench execl and shellscript on 64-384 cores); \
             `rmapprof --acquisitions` in kprobe/fentry mode counts every acquisition even here \
             (README, Modes).",
            cpus()
        );
    }

    contended(&rel, &root().join("target/demo/holders.dat"), &contended_out)?;

    eprintln!("\nxtask: outputs:");
    let listing = |dir: &PathBuf, what: &str| {
        eprintln!("  {what}:");
        for f in ["flamegraph.svg", "report.txt", "report.json", "stacks.folded", "holders.svg"] {
            eprintln!("    {}", dir.join(f).display());
        }
    };
    listing(&libs, "libc.so.6 and ld.so under spawn");
    listing(&contended_out, "one contended file under holders (the flame graph has towers)");
    Ok(())
}

/// Part 2: the holders workload on `file` (created), profiled into `out` until a run records
/// waits on it (three tries, four times the cycles each); returns (path, waits, ns) per file.
fn contended(rel: &Path, file: &Path, out: &Path) -> Result<Vec<(String, u64, u64)>> {
    std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(file, vec![1u8; 65536]).with_context(|| format!("creating {}", file.display()))?;
    let mut count = 20_000u64;
    for attempt in 1..=3 {
        eprintln!(
            "\nxtask: 2/2: profiling the holders workload ({count} cycles: a hole puncher, a forker and \
             4 mmap/munmap churners on {}), which contends on {} CPUs",
            file.display(),
            cpus()
        );
        sh(as_root(&rel.join("rmapprof"))
            .args(["--holder-stacks", "--inode"])
            .arg(file)
            .arg("--output")
            .arg(out)
            .arg("--")
            .arg(rel.join("holders"))
            .arg(file)
            .args([count.to_string(), "-j".into(), "4".into()]))?;
        let found: Vec<_> = waits(out)?.into_iter().filter(|w| w.1 > 0).collect();
        if !found.is_empty() {
            return Ok(found);
        }
        if attempt < 3 {
            eprintln!("xtask: no wait recorded this time (a busy machine); again with more cycles");
        }
        count *= 4;
    }
    bail!("the holders workload recorded no i_mmap_rwsem wait in three runs: {}", out.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's second run ends with a flame graph that has the contended file's towers,
    /// on this 2-CPU machine too (`cargo xtask test` builds the release binaries first).
    #[test]
    fn the_demo_ends_with_a_flame_graph_that_has_towers() {
        let rel = root().join("target/release");
        if !rel.join("rmapprof").exists() || !rel.join("holders").exists() {
            panic!("{} lacks rmapprof or holders: `cargo xtask build` builds them", rel.display());
        }
        let dir = root().join(format!("target/demo-test-{}", std::process::id()));
        let file = dir.join("demo.dat");
        let out = dir.join("out");
        let found = contended(&rel, &file, &out).unwrap();
        let name = file.display().to_string();
        assert!(found.iter().any(|(p, n, ns)| *p == name && *n > 0 && *ns > 0), "{found:?}");
        let folded = std::fs::read_to_string(out.join("stacks.folded")).unwrap();
        assert!(folded.lines().any(|l| l.starts_with("i_mmap_rwsem ") && l.contains("demo.dat")), "{folded}");
        let svg = std::fs::read_to_string(out.join("flamegraph.svg")).unwrap();
        assert!(svg.contains("demo.dat") && !svg.contains("no waits were recorded"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
