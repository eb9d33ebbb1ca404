//! The MAP_FIXED and unmap checks of `patches-check` (scripts/series/mm-checks/*.c): the two
//! reproducers of the bugs that took patch 3 out of the series, kept for whatever touches
//! those paths next. Built by the host's gcc into target/patches-check/mm-checks; the debug
//! guest runs each (scripts/series/patches-check-guest.sh, category `mm-check`).
//!
//! Each program prints one line, `PASS|FAIL|SKIP NAME: detail`, and exits 0, 1 or 4
//! (kselftest's pass, fail, skip).

use anyhow::Result;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::host::{root, sh};

/// The programs, by source name: what each must survive.
pub const CHECKS: [&str; 2] = [
    // MADV_GUARD_INSTALL on the first page of a private file mapping, MAP_FIXED of that page
    // of the same file: the new mapping reads (a kept guard marker makes it fault).
    "guard-remap",
    // A hugetlb memfd MAP_FIXED over a 2 MiB-aligned, read-faulted range of a private file
    // mapping: the first write works (kept PTE tables: BUG in huge_pte_alloc()).
    "hugetlb-fixed",
];

/// Builds every check into `dir`.
pub fn build_into(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let src = root().join("scripts/series/mm-checks");
    for c in CHECKS {
        sh(Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra", "-Werror"])
            .arg(src.join(format!("{c}.c")))
            .arg("-o")
            .arg(dir.join(c)))?;
    }
    Ok(())
}

/// target/patches-check/mm-checks, built afresh.
pub fn build() -> Result<PathBuf> {
    let dir = crate::series::evidence::out_dir().join("mm-checks");
    let _ = std::fs::remove_dir_all(&dir);
    build_into(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both compile warning-free here and behave on this machine's kernel, which has neither
    /// bug: guard-remap passes (skips only on a kernel without guard regions on file mappings);
    /// hugetlb-fixed passes, or skips when no huge page is free (vm.nr_hugepages is 0 unless
    /// someone set it; the test leaves the machine's setting alone).
    #[test]
    fn the_mm_checks_build_and_pass_on_this_kernel() {
        let dir = std::env::temp_dir().join(format!("xtask-mm-checks-{}", std::process::id()));
        build_into(&dir).unwrap();
        for c in CHECKS {
            let o = Command::new(dir.join(c)).arg(std::env::temp_dir()).output().unwrap();
            let line = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            match o.status.code() {
                Some(0) => assert!(line.starts_with(&format!("PASS {c}: ")), "{line}"),
                Some(4) => {
                    assert!(line.starts_with(&format!("SKIP {c}: ")), "{line}");
                    if c == "guard-remap" {
                        assert!(line.contains("no file-backed guard regions"), "{line}");
                    } else {
                        assert!(line.contains("huge page") || line.contains("hugetlbfs"), "{line}");
                    }
                    eprintln!("{line}");
                }
                _ => panic!("{c} failed on this kernel ({}): {line}", o.status),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
