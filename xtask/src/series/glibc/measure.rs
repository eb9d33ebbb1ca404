//! A build in the guest: its run directory (its ld.so and libc, the workloads and the programs
//! they exec patchelf'd to them), and the three columns read from `rmapprof diff`.

use anyhow::{bail, Context, Result};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use super::{build::ensure_tools, glibc_dir};
use crate::host::{root, sh};

/// The programs the workloads exec (spawn: true; shellscript: sh and its pipeline's tools).
const PROGRAMS: [&str; 5] = ["true", "sh", "tr", "sort", "wc"];
/// The workloads, run from the run directory with its ld.so and libc (execl re-executes
/// itself).
pub(super) const WORKLOADS: [&str; 3] = ["spawn", "execl", "shellscript"];

/// glibc's own libraries a program may need, by soname, and where a build has them.
const GLIBC_LIBS: [(&str, &str); 7] = [
    ("libc.so.6", "libc.so"),
    ("libm.so.6", "math/libm.so"),
    ("libpthread.so.0", "nptl/libpthread.so"),
    ("libdl.so.2", "dlfcn/libdl.so"),
    ("librt.so.1", "rt/librt.so"),
    ("libresolv.so.2", "resolv/libresolv.so"),
    ("ld-linux-x86-64.so.2", "elf/ld.so"),
];

/// Where the guest puts a run directory (a copy on its tmpfs, one build at a time): the
/// programs' PT_INTERP and RUNPATH name it, so that both builds' files have the same paths and
/// `rmapprof diff` matches them (it matches files by path).
pub const GUEST_DIR: &str = "/tmp/rmapprof-glibc";

/// `<cache>/glibc/run-VERSION-NAME`: a build's ld.so and libraries under their installed names,
/// the other libraries the programs need copied from the system, and the programs and the
/// workloads patchelf'd to [`GUEST_DIR`]'s ld.so with [`GUEST_DIR`] as RUNPATH. Returns the directory.
pub fn run_dir(build: &Path, version: &str, name: &str) -> Result<PathBuf> {
    ensure_tools()?;
    let dir = glibc_dir().join(format!("run-{version}-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut programs: Vec<PathBuf> = PROGRAMS
        .iter()
        .map(|p| std::fs::canonicalize(Path::new("/bin").join(p)))
        .collect::<Result<_, _>>()?;
    // The workloads themselves too: the process that forks maps this libc, so fork's share of
    // the acquisitions is this build's.
    for w in WORKLOADS {
        programs.push(root().join("target/release").join(w));
    }
    let mut libs = BTreeSet::new();
    for p in &programs {
        let o = Command::new("ldd").arg(p).output()?;
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = l.split("=>").nth(1).unwrap_or(l).split_whitespace().next().unwrap_or_default();
            if path.starts_with('/') {
                libs.insert(PathBuf::from(path));
            }
        }
    }
    for lib in libs {
        let soname = lib.file_name().context("library without a name")?.to_string_lossy().into_owned();
        let from = match GLIBC_LIBS.iter().find(|(s, _)| *s == soname) {
            Some((_, in_build)) => build.join(in_build),
            None => lib.clone(),
        };
        std::fs::copy(&from, dir.join(&soname)).with_context(|| format!("copying {}", from.display()))?;
    }
    let ldso = dir.join("ld-linux-x86-64.so.2");
    if !ldso.exists() {
        std::fs::copy(build.join("elf/ld.so"), &ldso)?;
    }
    for p in &programs {
        // sh is dash here: keep the name the workloads exec.
        let name = if p.ends_with("dash") { "sh".into() } else { p.file_name().unwrap().to_owned() };
        let to = dir.join(&name);
        std::fs::copy(p, &to)?;
        sh(Command::new("patchelf")
            .arg("--set-interpreter")
            .arg(format!("{GUEST_DIR}/ld-linux-x86-64.so.2"))
            .args(["--set-rpath", GUEST_DIR])
            .arg(&to))?;
    }
    Ok(dir)
}

/// (file, caller) -> (before, after), the acquisition rows of `rmapprof diff BEFORE AFTER`.
pub(super) fn diff_rows(before: &Path, after: &Path) -> Result<Vec<(String, String, f64, f64)>> {
    let o = Command::new(root().join("target/release/rmapprof"))
        .arg("diff")
        .arg(before.join("report.json"))
        .arg(after.join("report.json"))
        .arg("-o")
        .arg(after.with_extension("diff"))
        .output()?;
    if !o.status.success() {
        bail!("rmapprof diff {}: {}", after.display(), String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(rows(&String::from_utf8_lossy(&o.stdout)))
}

/// The rows of a diff's acquisition table: FILE CALLER BEFORE AFTER DELTA.
fn rows(diff: &str) -> Vec<(String, String, f64, f64)> {
    let table = diff.split("write acquisitions per cycle").nth(1).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [file, caller, before, after, ..] => {
                    Some((file.to_owned(), caller.to_owned(), before.parse().ok()?, after.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// libc.so.6's and ld.so's rows in three columns: base kernel and glibc, the kernel series,
/// then the glibc change too (`b`'s before is `a`'s after: the same runs).
pub(super) fn three_columns(a: &[(String, String, f64, f64)], b: &[(String, String, f64, f64)]) -> String {
    let mut out = format!(
        "{:<22} {:<12} {:>8} {:>12} {:>14}\n",
        "FILE", "CALLER", "BASE", "PATCHES 1-2", "+ GLIBC CHANGE"
    );
    for (file, caller, base, series) in a {
        if !(file.starts_with("libc.so") || file.starts_with("ld-linux")) {
            continue;
        }
        let with = b.iter().find(|r| &r.0 == file && &r.1 == caller).map_or(0.0, |r| r.3);
        out += &format!("{file:<22} {caller:<12} {base:>8.2} {series:>12.2} {with:>14.2}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_columns_follow_one_file_and_caller_through_both_diffs() {
        let diff = |rows: &str| {
            format!("header\nwrite acquisitions per cycle\nFILE CALLER BEFORE AFTER DELTA\n{rows}\n\nmore")
        };
        let a = rows(&diff(
            "libc.so.6 fork 5.10 1.02 -80%\nlibc.so.6 all 20.00 16.00 -20%\ntrue all 3.00 2.00 -33%",
        ));
        let b = rows(&diff("libc.so.6 fork 1.02 1.02 0%\nlibc.so.6 all 16.00 8.00 -50%"));
        assert_eq!(a.len(), 3);
        let t = three_columns(&a, &b);
        assert!(t.lines().nth(2).unwrap().ends_with("20.00        16.00           8.00"), "{t}");
        assert!(!t.contains("true"), "{t}");
    }
}
