//! The two glibc builds of one source, and their loader tests compared.

use anyhow::{Context, Result};
use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::{Command, Stdio},
};

use super::{glibc_dir, patches, Source};
use crate::host::{have, sh};

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
pub(super) fn ensure_tools() -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
