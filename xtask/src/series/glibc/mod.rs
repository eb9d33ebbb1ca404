//! The glibc companion change (patches/glibc/): ld.so reserves a library's range with an
//! anonymous mapping and maps every segment into it. Debian's glibc-source of the machine's
//! glibc (what the VM runs) is built twice, without and with patches/glibc/VERSION/, into
//! `<cache>/glibc/` (the base cold in about 15 minutes on 2 cores, the patched one from it in
//! a minute or two), and the loader tests (elf/) of the two builds are compared; the newest glibc-source of Debian
//! unstable (what would be sent) is checked to take patches/glibc/ITS-VERSION/. For the VM,
//! each build gets a run directory: its ld.so and libc.so.6 under their installed names, and
//! copies of the programs the workloads exec, patchelf'd to that ld.so with the directory as
//! RUNPATH (`ld.so --library-path` does not reach exec'd children).

mod build;
mod measure;

use anyhow::{bail, Context, Result};
use std::{path::PathBuf, process::Command};

use crate::host::{cache_dir, root, sh};
use build::{build, compare_tests, elf_tests};
use measure::{diff_rows, run_dir, three_columns, WORKLOADS};

/// One unpacked glibc-source: its upstream version ("2.36") and Debian's ("2.36-9+deb12u14").
pub struct Source {
    pub version: String,
    pub debian: String,
    pub tree: PathBuf,
}

/// The suite the newest glibc-source comes from (fetched with a private apt list).
const NEWEST_SUITE: &str = "unstable";

fn glibc_dir() -> PathBuf {
    cache_dir().join("glibc")
}

/// Debian's glibc-source from `suite` (None: the machine's), its tarball unpacked once into
/// `<cache>/glibc/src-VERSION`.
pub fn source(suite: Option<&str>) -> Result<Source> {
    let tag = suite.unwrap_or("machine");
    let deb = glibc_dir().join(format!("deb-{tag}"));
    let pkg = deb.join("glibc-source");
    let stamp = deb.join("version");
    if !stamp.exists() || !pkg.is_dir() {
        let debian = crate::debian::fetch("glibc-source", suite, &pkg)?;
        std::fs::write(&stamp, debian)?;
    }
    let debian = std::fs::read_to_string(&stamp)?.trim().to_owned();
    let version = debian.split('-').next().unwrap_or_default().to_owned();
    let tarball = pkg.join(format!("usr/src/glibc/glibc-{version}.tar.xz"));
    let tree = glibc_dir().join(format!("src-{version}"));
    if !tree.join("configure").exists() {
        if !tarball.exists() {
            bail!("glibc-source {debian} has no {}", tarball.display());
        }
        let tmp = glibc_dir().join(format!("src-{version}.unpacking"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        sh(Command::new("tar").arg("-xaf").arg(&tarball).arg("-C").arg(&tmp))?;
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::rename(tmp.join(format!("glibc-{version}")), &tree)?;
        std::fs::remove_dir_all(&tmp)?;
    }
    Ok(Source { version, debian, tree })
}

/// patches/glibc/VERSION/*.patch, in order.
pub fn patches(version: &str) -> Result<Vec<PathBuf>> {
    let dir = root().join("patches/glibc").join(version);
    let mut p: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| {
            format!("no {}: the glibc change has no version for glibc {version}", dir.display())
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    p.sort();
    if p.is_empty() {
        bail!("{} holds no patch", dir.display());
    }
    Ok(p)
}

/// One PASS/FAIL line: the newest glibc-source takes its patch (`patch --dry-run`).
pub fn check_newest_applies() -> Result<String> {
    let s = source(Some(NEWEST_SUITE))?;
    let ps = match patches(&s.version) {
        Ok(p) => p,
        Err(e) => {
            return Ok(format!("FAIL glibc-patch-applies: Debian {NEWEST_SUITE}'s glibc {}: {e:#}", s.debian))
        }
    };
    for p in &ps {
        let o = Command::new("patch")
            .args(["-p1", "--dry-run", "--quiet", "-d"])
            .arg(&s.tree)
            .arg("-i")
            .arg(p)
            .output()?;
        if !o.status.success() {
            return Ok(format!(
                "FAIL glibc-patch-applies: {} on Debian {NEWEST_SUITE}'s glibc-source {}: {}",
                p.file_name().unwrap().to_string_lossy(),
                s.debian,
                String::from_utf8_lossy(&o.stdout).trim()
            ));
        }
    }
    Ok(format!(
        "PASS glibc-patch-applies: patches/glibc/{}/ applies to Debian {NEWEST_SUITE}'s glibc-source {}",
        s.version, s.debian
    ))
}

/// Cycles per workload and build in the guest (the counts are exact: per-cycle means repeat).
const CYCLES: u64 = 100;
/// Where the guest writes, relative to the repository.
const OUT: &str = "target/patches-check/glibc";

/// `patches-check --only glibc`: the newest glibc-source takes the patch; the machine's glibc
/// built without and with it; its loader tests compared; then the workloads in the VM on the
/// base kernel with the base glibc and on the patched kernel with each glibc, three columns of
/// write acquisitions per cycle for libc.so.6 and ld.so by caller (OUT/acquisitions.txt).
pub fn check(lines: &mut Vec<String>, cpus: u32, build_only: bool) -> Result<()> {
    lines.push(check_newest_applies()?);
    let s = source(None)?;
    let base = build(&s, false)?;
    let patched = build(&s, true)?;
    if build_only {
        return Ok(());
    }
    lines.push(compare_tests(&elf_tests(&base)?, &elf_tests(&patched)?));
    let rb = run_dir(&base.dir, &s.version, "base")?;
    let rp = run_dir(&patched.dir, &s.version, "patched")?;
    let out = root().join(OUT);
    let _ = std::fs::remove_dir_all(&out);
    let runs: [(bool, &str, Vec<(&str, &PathBuf)>); 2] = [
        (false, "base-kernel", vec![("base", &rb)]),
        (true, "patched-kernel", vec![("base", &rb), ("patched", &rp)]),
    ];
    for (patched_kernel, kname, builds) in runs {
        let mut cmd = vec![
            "scripts/series/glibc-guest.sh".to_owned(),
            format!("{OUT}/{kname}"),
            CYCLES.to_string(),
            cpus.to_string(),
        ];
        cmd.extend(builds.iter().map(|(n, d)| format!("{n}={}", d.display())));
        let code = crate::vm::run(&crate::vm::VmOpts::ours(patched_kernel, cpus), &cmd)?;
        if code != 0 {
            lines.push(format!(
                "FAIL glibc-acquisitions: scripts/series/glibc-guest.sh exited {code} on the {kname}"
            ));
            return Ok(());
        }
    }
    // "patched: libc.so.6 on tmpfs, 7.2.13": where the guest put the libraries.
    let said = std::fs::read_to_string(out.join("patched-kernel/patched.txt")).unwrap_or_default();
    let fs = said.split(" on ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("?").to_owned();
    let mut text = String::new();
    for w in WORKLOADS {
        let a = diff_rows(
            &out.join(format!("base-kernel/base/{w}")),
            &out.join(format!("patched-kernel/base/{w}")),
        )?;
        let b = diff_rows(
            &out.join(format!("patched-kernel/base/{w}")),
            &out.join(format!("patched-kernel/patched/{w}")),
        )?;
        text += &format!(
            "--- {w} {CYCLES} -j {cpus}, glibc {} on {fs} ---\n{}\n",
            s.version,
            three_columns(&a, &b)
        );
    }
    std::fs::write(out.join("acquisitions.txt"), &text)?;
    println!("{text}");
    lines.push(format!("PASS glibc-acquisitions: measured, {OUT}/acquisitions.txt"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed change exists for the machine's glibc (what is measured) and applies to
    /// that version's pristine source; needs only the files in patches/glibc and the tarball
    /// name, so it reads the patch's own target lines.
    #[test]
    fn every_glibc_patch_touches_only_the_loader() {
        for version in ["2.36", "2.43"] {
            for p in patches(version).unwrap() {
                let text = std::fs::read_to_string(&p).unwrap();
                let files: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("+++ b/")).collect();
                assert_eq!(files, ["elf/dl-map-segments.h"], "{}", p.display());
            }
        }
    }
}
