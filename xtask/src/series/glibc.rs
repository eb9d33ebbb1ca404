//! The glibc companion change (patches/glibc/): ld.so reserves a library's range with an
//! anonymous mapping and maps every segment into it. Debian's glibc-source of the machine's
//! glibc (what the VM runs) is built twice, without and with patches/glibc/VERSION/, into
//! `<cache>/glibc/` (the base cold in about 15 minutes on 2 cores, the patched one from it in
//! a minute or two), and the loader tests (elf/) of the two builds are compared; the newest glibc-source of Debian
//! unstable (what would be sent) is checked to take patches/glibc/ITS-VERSION/. For the VM,
//! each build gets a run directory: its ld.so and libc.so.6 under their installed names, and
//! copies of the programs the workloads exec, patchelf'd to that ld.so with the directory as
//! RUNPATH (`ld.so --library-path` does not reach exec'd children).

use anyhow::{bail, Context, Result};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::host::{cache_dir, have, root, sh};

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

/// The source tree of a build: `s`'s own, or `<cache>/glibc/src-VERSION-patched`, a hard-linked
/// copy with patches/glibc/VERSION/ applied, redone when the patches change (`patch` writes new
/// files, so the links to the base tree are not written through).
fn build_source(s: &Source, patched: bool) -> Result<PathBuf> {
    if !patched {
        return Ok(s.tree.clone());
    }
    let ps = patches(&s.version)?;
    let stamp: String = ps.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    let tree = glibc_dir().join(format!("src-{}-patched", s.version));
    if std::fs::read_to_string(tree.join(".rmapprof-patches")).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(tree);
    }
    let _ = std::fs::remove_dir_all(&tree);
    sh(Command::new("cp").arg("-al").arg(&s.tree).arg(&tree))?;
    for p in &ps {
        sh(Command::new("patch").args(["-p1", "--quiet", "-d"]).arg(&tree).arg("-i").arg(p))?;
    }
    std::fs::write(tree.join(".rmapprof-patches"), stamp)?;
    Ok(tree)
}

/// A glibc build directory and how to run make there. The patched build runs with its source
/// tree and its build directory bound over the base's paths (a private mount namespace), so
/// both builds record one source path and one object path: the patched one starts as a copy
/// of the finished base build, and make rebuilds only what includes the files the patch
/// changed (a minute or two, not a second cold build).
pub struct Build {
    pub dir: PathBuf,
    /// (patched source, base source, base build directory).
    bind: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Build {
    /// `args` run in the build directory, inside the binds when there are some.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = match &self.bind {
            None => {
                let mut c = Command::new(args[0]);
                c.current_dir(&self.dir);
                c
            }
            Some((patched_src, base_src, base_dir)) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(r#"mount --bind "$1" "$2" && mount --bind "$3" "$4" && cd "$4" && shift 4 && exec "$@""#)
                    .arg("sh")
                    .arg(patched_src)
                    .arg(base_src)
                    .arg(&self.dir)
                    .arg(base_dir)
                    .arg(args[0]);
                c
            }
        };
        c.args(&args[1..]);
        c
    }
}

/// What configure and make need that the machine may lack (gawk and bison are required by
/// glibc's configure), installed only when missing.
fn ensure_tools() -> Result<()> {
    if ["gawk", "bison", "patchelf"].iter().all(|c| have(c)) {
        return Ok(());
    }
    eprintln!("xtask: installing gawk, bison and patchelf for the glibc builds (apt)");
    sh(Command::new("apt-get").args(["update", "-q"]))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-q", "gawk", "bison", "patchelf"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Configures (once) and builds glibc in `<cache>/glibc/build-VERSION-base|patched`. The base
/// is built first (cold: about 15 minutes on 2 cores); the patched one is a copy of it made
/// again (see [`Build`]). Incremental afterwards: a changed patch rebuilds what includes the
/// files it changes (dl-map-segments.h: ld.so and libc's dynamic loading).
pub fn build(s: &Source, patched: bool) -> Result<Build> {
    ensure_tools()?;
    let dir_of =
        |p: bool| glibc_dir().join(format!("build-{}-{}", s.version, if p { "patched" } else { "base" }));
    let out = dir_of(patched);
    let bind = match patched {
        true => Some((build_source(s, true)?, s.tree.clone(), dir_of(false))),
        false => None,
    };
    let b = Build { dir: out.clone(), bind };
    // Beside the directory, which the patched build replaces with a copy of the base.
    let _lock = crate::host::lock(
        &out.with_file_name(format!("{}.lock", out.file_name().unwrap().to_string_lossy())),
        &out,
    )?;
    if patched && !out.join("config.status").exists() {
        let base = build(s, false)?;
        let tmp = glibc_dir().join(format!("build-{}-patched.copying", s.version));
        let _ = std::fs::remove_dir_all(&tmp);
        sh(Command::new("cp").arg("-a").arg(&base.dir).arg(&tmp))?;
        let _ = std::fs::remove_dir_all(&out);
        std::fs::rename(&tmp, &out)?;
    }
    std::fs::create_dir_all(&out)?;
    if !out.join("config.status").exists() {
        let configure = s.tree.join("configure");
        sh(&mut b.command(&[
            configure.to_str().context("glibc source path is not UTF-8")?,
            "--prefix=/usr",
            "--disable-werror",
            "--disable-profile",
            "--enable-stack-protector=strong",
        ]))?;
    }
    let jobs = crate::host::make_jobs();
    eprintln!(
        "xtask: building glibc {} {} in {} (the base cold: about 15 minutes on 2 cores)",
        s.version,
        if patched { "patched (from the base build)" } else { "base" },
        out.display()
    );
    sh(b.command(&["make", "-s", "-j", &jobs]).stdout(Stdio::null()))?;
    Ok(b)
}

/// Runs the loader tests (`make subdirs=elf check`) of a build; returns the result of every
/// test, "PASS: elf/tst-..." and so on, from its tests.sum.
pub fn elf_tests(build: &Build) -> Result<BTreeSet<String>> {
    let jobs = crate::host::make_jobs();
    // make check fails when any test fails; the summary says which.
    let _ = build
        .command(&["make", "-s", "-k", "-j", &jobs, "subdirs=elf", "check"])
        .stdout(Stdio::null())
        .status()?;
    let sum = build.dir.join("tests.sum");
    let sum =
        std::fs::read_to_string(&sum).with_context(|| format!("make check left no {}", sum.display()))?;
    Ok(sum.lines().filter(|l| l.contains(": ")).map(str::to_owned).collect())
}

/// The loader tests' line: no test fails with the patch that passes without it; the ones that
/// fail or are unsupported on both (as root, in a container) are named.
pub fn compare_tests(base: &BTreeSet<String>, patched: &BTreeSet<String>) -> String {
    let failing = |s: &BTreeSet<String>| -> BTreeSet<String> {
        s.iter().filter_map(|l| l.strip_prefix("FAIL: ")).map(str::to_owned).collect()
    };
    let unsupported = |s: &BTreeSet<String>| s.iter().filter(|l| l.starts_with("UNSUPPORTED: ")).count();
    let passed = |s: &BTreeSet<String>| s.iter().filter(|l| l.starts_with("PASS: ")).count();
    let (fb, fp) = (failing(base), failing(patched));
    let new: Vec<&String> = fp.difference(&fb).collect();
    let both: Vec<&String> = fp.intersection(&fb).collect();
    let fixed: Vec<&String> = fb.difference(&fp).collect();
    let detail = format!(
        "{} passed with the patch ({} without), {} unsupported; failing on both builds: {}{}",
        passed(patched),
        passed(base),
        unsupported(patched),
        if both.is_empty() {
            "none".to_owned()
        } else {
            both.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        },
        if fixed.is_empty() {
            String::new()
        } else {
            format!(
                "; failing only without it: {}",
                fixed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            )
        },
    );
    if new.is_empty() {
        format!("PASS glibc-elf-tests: no new failure: {detail}")
    } else {
        format!(
            "FAIL glibc-elf-tests: failing only with the patch: {}; {detail}",
            new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        )
    }
}

/// The programs the workloads exec (spawn: true; shellscript: sh and its pipeline's tools).
const PROGRAMS: [&str; 5] = ["true", "sh", "tr", "sort", "wc"];
/// The workloads, run from the run directory with its ld.so and libc (execl re-executes
/// itself).
const WORKLOADS: [&str; 3] = ["spawn", "execl", "shellscript"];

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
            "--- {w} {CYCLES} -j {cpus}, glibc {} on tmpfs ---\n{}\n",
            s.version,
            three_columns(&a, &b)
        );
    }
    std::fs::write(out.join("acquisitions.txt"), &text)?;
    println!("{text}");
    lines.push(format!("PASS glibc-acquisitions: measured, {OUT}/acquisitions.txt"));
    Ok(())
}

/// (file, caller) -> (before, after), the acquisition rows of `rmapprof diff BEFORE AFTER`.
fn diff_rows(before: &Path, after: &Path) -> Result<Vec<(String, String, f64, f64)>> {
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
fn three_columns(a: &[(String, String, f64, f64)], b: &[(String, String, f64, f64)]) -> String {
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

    #[test]
    fn the_test_comparison_names_new_and_shared_failures() {
        let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let base =
            set(&["PASS: elf/tst-a", "FAIL: elf/tst-root", "UNSUPPORTED: elf/tst-x", "FAIL: elf/tst-gone"]);
        let same =
            set(&["PASS: elf/tst-a", "FAIL: elf/tst-root", "UNSUPPORTED: elf/tst-x", "PASS: elf/tst-gone"]);
        let line = compare_tests(&base, &same);
        assert!(line.starts_with("PASS glibc-elf-tests: no new failure"), "{line}");
        assert!(line.contains("failing on both builds: elf/tst-root"), "{line}");
        assert!(line.contains("failing only without it: elf/tst-gone"), "{line}");
        let worse = set(&["FAIL: elf/tst-a", "FAIL: elf/tst-root", "UNSUPPORTED: elf/tst-x"]);
        let line = compare_tests(&base, &worse);
        assert!(line.starts_with("FAIL glibc-elf-tests: failing only with the patch: elf/tst-a;"), "{line}");
    }

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
