//! `perf lock contention -b` for the bench: perf built from our kernel tree's tools/perf with
//! BPF skeletons (Debian's perf has none), cached next to the kernel builds. Its BPF objects
//! match our kernel (7.2, `kernel::OURS`); on another kernel they may not load, and the bench
//! says why.

use anyhow::{bail, Result};
use std::{path::PathBuf, process::Command};

use crate::{
    host::{cache_dir, have, sh},
    kernel,
};

const APT_PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "libtraceevent-dev",
    "libelf-dev",
    "libdw-dev",
    "libcap-dev",
    "zlib1g-dev",
    "pkg-config",
];

/// `<cache>/perf/perf`, when built.
pub fn binary() -> Option<PathBuf> {
    let p = cache_dir().join("perf/perf");
    p.exists().then_some(p)
}

/// Builds perf (about 2 minutes on 2 cores, once).
pub fn ensure() -> Result<PathBuf> {
    if let Some(p) = binary() {
        return Ok(p);
    }
    kernel::ensure_tools(kernel::OURS)?;
    if !["clang", "llvm-strip"].iter().all(|c| have(c))
        || !std::path::Path::new("/usr/include/traceevent/event-parse.h").exists()
    {
        eprintln!("xtask: installing perf's build dependencies (apt)");
        sh(Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(APT_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let src = kernel::base_source()?;
    let out = cache_dir().join("perf");
    std::fs::create_dir_all(&out)?;
    eprintln!("xtask: building perf from {}/tools/perf with BUILD_BPF_SKEL=1 (~2 min)", src.display());
    let jobs = crate::host::make_jobs();
    // Only what `perf lock contention -b` needs; no scripting, no GUI, no jevents tables.
    sh(Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(src.join("tools/perf"))
        .arg(format!("O={}", out.display()))
        .args(["BUILD_BPF_SKEL=1", "NO_LIBPYTHON=1", "NO_LIBPERL=1", "NO_JEVENTS=1", "NO_LIBUNWIND=1"])
        .args(["NO_SLANG=1", "NO_GTK2=1", "NO_BABELTRACE=1", "NO_DEMANGLE=1", "-j", &jobs]))?;
    match binary() {
        Some(p) => Ok(p),
        None => bail!("the perf build produced no {}/perf", out.display()),
    }
}

/// Contentions perf reported (the first column of its table) and the ones it lost ("bad: N").
pub fn events(lines: impl Iterator<Item = String>) -> (u64, u64) {
    let (mut events, mut lost) = (0, 0);
    for l in lines {
        let t: Vec<&str> = l.split_whitespace().collect();
        if let Some(bad) = l.trim().strip_prefix("bad: ") {
            lost += bad.split(',').next().and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
        } else if t.len() >= 6 && ["ns", "us", "ms", "s"].contains(&t[2]) {
            events += t[0].parse::<u64>().unwrap_or(0);
        }
    }
    (events, lost)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_perfs_table_and_failures() {
        let out = " contended   total wait     max wait     avg wait         type   caller

         4     12.34 us      5.00 us      3.08 us     rwsem:W   unlink_file_vma_batch_process+0x2a
        10      1.20 ms    300.00 us    120.00 us    spinlock   __schedule+0x5f

=== output for debug ===

bad: 3, total: 17
bad rate: 17.65 %";
        assert_eq!(super::events(out.lines().map(String::from)), (14, 3));
    }
}
