//! Our own kernel: Debian's linux-source packages (7.2, ours and the base of patches/; 6.1,
//! the older kernel the probes must also load on; 6.12, patches/ v1's base, on request),
//! optionally with patches/, trimmed by vm/kernel.config, built once into a cache outside the
//! clone (`cargo xtask vm` boots it: vm.rs).

use anyhow::{bail, Context, Result};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use crate::host::{cache_dir, have, root, sh};

/// Debian's kernel source packages the harness can build: ours (patches/ is against it), the
/// older one, and 6.12 (patches/ v1's base) on request.
pub const KERNELS: [&str; 3] = ["7.2", "6.1", "6.12"];
/// Our kernel: `cargo xtask vm`'s default, the base of patches/, the bench's kernel.
pub const OURS: &str = KERNELS[0];
/// What `cargo xtask test` (CI) and a bare `test-vm` build and test in: ours and the oldest;
/// two cold kernel builds keep a cold CI run within about an hour on 2 cores. 6.12 on request.
pub const CI_KERNELS: [&str; 2] = ["7.2", "6.1"];
/// Kernels whose source package comes from a Debian suite the machine does not use, fetched
/// with a private apt sources list (the machine's own suites are left alone).
const FOREIGN_SUITE: &[(&str, &str)] = &[("7.2", "unstable")];
const APT_PACKAGES: &[&str] = &[
    "bc",
    "bison",
    "flex",
    // The kernel's awk scripts (x86's cpufeaturemasks.h, included nearly everywhere) run with
    // whichever awk is installed; gawk installed later (the glibc builds need it) regenerated
    // that header and rebuilt the whole kernel once. Installed first, it never changes.
    "gawk",
    "libelf-dev",
    "libssl-dev",
    "dwarves",
    "qemu-system-x86",
    "busybox-static",
    "udev",        // virtme-ng-init needs udevd in the guest for its virtio-serial script ports
    "liburcu-dev", // tools/testing/vma (patches-check)
    "libnuma-dev", // mm selftests: ksm_tests, migration, rmap
    "libcap-dev",  // mm selftests (memfd_secret, mlock-random-test) and exec selftests
];

fn foreign_suite(kernel: &str) -> Option<&'static str> {
    FOREIGN_SUITE.iter().find(|(k, _)| *k == kernel).map(|(_, s)| *s)
}

fn package(kernel: &str) -> String {
    format!("linux-source-{kernel}")
}

/// Where the source tarball is: /usr/src from the installed package, or for a foreign suite's
/// kernel the .deb unpacked (dpkg -x) under `<cache>/deb/linux-source-KERNEL`.
fn tarball(kernel: &str) -> PathBuf {
    let file = format!("usr/src/linux-source-{kernel}.tar.xz");
    match foreign_suite(kernel) {
        Some(_) => cache_dir().join("deb").join(package(kernel)).join(file),
        None => Path::new("/").join(file),
    }
}

/// Debian packages and virtme-ng, installed only when missing; a foreign suite's source package
/// is downloaded, not installed.
pub fn ensure_tools(kernel: &str) -> Result<()> {
    let foreign = foreign_suite(kernel);
    let missing_tools =
        !["qemu-system-x86_64", "pahole", "bison", "flex", "bc", "udevadm", "gawk"].iter().all(|c| have(c))
            || !["x86_64-linux-gnu/urcu.h", "numa.h", "sys/capability.h"]
                .iter()
                .all(|h| Path::new("/usr/include").join(h).exists());
    let missing_source = foreign.is_none() && !tarball(kernel).exists();
    if missing_tools || missing_source {
        eprintln!("xtask: installing kernel build and VM packages (apt)");
        sh(Command::new("apt-get").args(["update", "-q"]))?;
        sh(Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(foreign.is_none().then(|| package(kernel)))
            .args(APT_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if let Some(suite) = foreign {
        if !tarball(kernel).exists() {
            fetch_foreign(kernel, suite)?;
        }
    }
    if !have("vng") {
        sh(Command::new("python3").args(["-m", "pip", "install", "-q", "virtme-ng"]))?;
    }
    Ok(())
}

/// Downloads `linux-source-KERNEL` from Debian's `suite` (private apt list: debian.rs) and
/// unpacks it under `<cache>/deb/linux-source-KERNEL`; its version goes to
/// `<cache>/deb/linux-source-KERNEL.version`.
fn fetch_foreign(kernel: &str, suite: &str) -> Result<()> {
    let debs = cache_dir().join("deb");
    let version = crate::debian::fetch(&package(kernel), Some(suite), &debs.join(package(kernel)))?;
    std::fs::write(debs.join(format!("{}.version", package(kernel))), version)?;
    Ok(())
}

/// The Debian package version the kernel's source came from, e.g. "7.2.13-1" ("?" unknown).
pub fn package_version(kernel: &str) -> String {
    let v = match foreign_suite(kernel) {
        Some(_) => std::fs::read_to_string(cache_dir().join(format!("deb/{}.version", package(kernel)))).ok(),
        None => Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", &package(kernel)])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned()),
    };
    v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).unwrap_or_else(|| "?".into())
}

/// Which Debian suite the kernel's source package comes from, for reports.
pub fn package_suite(kernel: &str) -> &'static str {
    foreign_suite(kernel).unwrap_or("the machine's suites")
}

/// Our kernel's unpacked source, `<cache>/src/linux-source-7.2`.
pub fn base_source() -> Result<PathBuf> {
    unpacked_source(OURS)
}

/// `<cache>/src/linux-source-KERNEL`, extracted once.
pub fn unpacked_source(kernel: &str) -> Result<PathBuf> {
    let src = cache_dir().join("src");
    let tree = src.join(format!("linux-source-{kernel}"));
    if !tree.join("Makefile").exists() {
        ensure_tools(kernel)?;
        std::fs::create_dir_all(&src)?;
        let tar = tarball(kernel);
        eprintln!("xtask: unpacking {} (a minute)", tar.display());
        sh(Command::new("tar").args(["-xaf"]).arg(&tar).arg("-C").arg(&src))?;
    }
    Ok(tree)
}

/// The version the source tree is, e.g. "6.12.117" (recorded in patches/ and reports).
pub fn kernel_version(tree: &Path) -> Result<String> {
    let mk = std::fs::read_to_string(tree.join("Makefile"))?;
    let get = |k: &str| {
        mk.lines()
            .find_map(|l| l.strip_prefix(k)?.trim_start().strip_prefix('=').map(|v| v.trim().to_owned()))
    };
    Ok(format!(
        "{}.{}.{}",
        get("VERSION").unwrap_or_default(),
        get("PATCHLEVEL").unwrap_or_default(),
        get("SUBLEVEL").unwrap_or_default()
    ))
}

/// The patch series for `kernel`: patches/*.patch for ours, patches/KERNEL/*.patch for a
/// backport (none exists at present), cover letters left out; in order.
pub fn series(kernel: &str) -> Result<Vec<PathBuf>> {
    let dir = if kernel == OURS { root().join("patches") } else { root().join("patches").join(kernel) };
    if !dir.is_dir() {
        bail!("patches/ is against {OURS}; there is no {} for {kernel}", dir.display());
    }
    let mut patches: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "patch") && !p.to_string_lossy().contains("0000-cover-letter")
        })
        .collect();
    patches.sort();
    Ok(patches)
}

/// A hash of the series' diffs only: rewriting a commit message or the To:/Cc: headers
/// changes nothing built from it.
pub fn series_stamp(kernel: &str) -> Result<String> {
    let diffs: String = series(kernel)?
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .map(|t| t.find("\ndiff --git ").map(|i| t[i..].to_owned()).unwrap_or(t))
        .collect();
    Ok(format!("{:x}", fnv(diffs.as_bytes())))
}

/// Source tree for `patched`: the kernel's own, or `<cache>/src/linux-KERNEL-patched`, a copy
/// with its series applied in order, redone whenever the series changes.
pub fn source(kernel: &str, patched: bool) -> Result<PathBuf> {
    let base = unpacked_source(kernel)?;
    if !patched {
        return Ok(base);
    }
    let patches = series(kernel)?;
    let stamp = series_stamp(kernel)?;
    let tree = cache_dir().join(format!("src/linux-{kernel}-patched"));
    if std::fs::read_to_string(tree.join(".rmapprof-patches")).ok().as_deref() == Some(&stamp) {
        return Ok(tree);
    }
    eprintln!("xtask: applying {} patches to a copy of the {kernel} source", patches.len());
    // The new tree is made beside the old one, so that what the two series share keeps the
    // old tree's mtimes (below).
    let new = cache_dir().join(format!("src/linux-{kernel}-patched.new"));
    if new.exists() {
        std::fs::remove_dir_all(&new)?;
    }
    // A hard-linked copy is instant; `patch` replaces files rather than writing through links.
    sh(Command::new("cp").arg("-al").arg(&base).arg(&new))?;
    for p in &patches {
        sh(Command::new("patch")
            .args(["-p1", "--quiet", "--no-backup-if-mismatch", "-d"])
            .arg(&new)
            .arg("-i")
            .arg(p))?;
    }
    if tree.exists() {
        let kept = keep_mtimes(&base, &tree, &new)?;
        eprintln!("xtask: {kept} patched files are as before and keep their mtimes (no rebuild for them)");
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::rename(&new, &tree)?;
    std::fs::write(tree.join(".rmapprof-patches"), &stamp)?;
    Ok(tree)
}

/// make rebuilds by mtime, and `patch` gives every file it writes a new one: a series applied
/// again would rebuild whatever includes a header any patch touches (include/linux/mm.h: most
/// of the kernel, an hour for the lockdep build) even when only one .c file changed. So every
/// file the old or the new series patched (not a hard link to `base`'s) keeps the old tree's
/// mtime when its content is the same in both trees; one whose content changed keeps the new
/// mtime `patch` gave it, and one that went back to `base`'s content becomes a copy of its own
/// with a new mtime (a hard link would carry `base`'s old one, and make would not rebuild it).
/// Returns how many files kept their mtime.
fn keep_mtimes(base: &Path, old: &Path, new: &Path) -> Result<usize> {
    let mut paths = patched_files(base, old)?;
    paths.extend(patched_files(base, new)?);
    let mut kept = 0;
    for rel in paths {
        let (o, n, b) = (old.join(&rel), new.join(&rel), base.join(&rel));
        let Ok(n_meta) = std::fs::symlink_metadata(&n) else { continue };
        let linked_to_base = std::fs::symlink_metadata(&b).is_ok_and(|m| same_file(&m, &n_meta));
        let same_content = std::fs::read(&o).ok().is_some_and(|x| std::fs::read(&n).is_ok_and(|y| x == y));
        if same_content && !linked_to_base {
            let mtime = std::fs::symlink_metadata(&o)?.modified()?;
            std::fs::File::options().write(true).open(&n)?.set_modified(mtime)?;
            kept += 1;
        } else if !same_content && linked_to_base {
            let tmp = n.with_extension("rmapprof-tmp");
            std::fs::copy(&n, &tmp)?;
            std::fs::rename(&tmp, &n)?;
        }
    }
    Ok(kept)
}

/// Regular files of `tree` (a `cp -al` of `base`, then patched) that are not hard links to
/// `base`'s: the ones a patch wrote. Relative paths.
fn patched_files(base: &Path, tree: &Path) -> Result<std::collections::BTreeSet<PathBuf>> {
    let mut out = std::collections::BTreeSet::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for e in std::fs::read_dir(tree.join(&rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            let m = e.metadata()?;
            if m.is_dir() {
                dirs.push(r);
            } else if m.is_file()
                && !std::fs::symlink_metadata(base.join(&r)).is_ok_and(|b| same_file(&b, &m))
                && !r.starts_with(".rmapprof-patches")
            {
                out.insert(r);
            }
        }
    }
    Ok(out)
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// `<cache>/build-KERNEL[-patched][-debug]`.
pub fn build_dir(kernel: &str, patched: bool, debug: bool) -> PathBuf {
    cache_dir().join(format!(
        "build-{kernel}{}{}",
        if patched { "-patched" } else { "" },
        if debug { "-debug" } else { "" }
    ))
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

/// Builds bzImage in `build_dir()`; incremental after the first time.
pub fn build_kernel(kernel: &str, patched: bool, debug: bool) -> Result<PathBuf> {
    ensure_tools(kernel)?;
    let src = source(kernel, patched)?;
    let what =
        format!("{kernel}{}{}", if patched { " patched" } else { "" }, if debug { " debug" } else { "" });
    let out = build_dir(kernel, patched, debug);
    std::fs::create_dir_all(&out)?;
    // Two makes in one build directory corrupt it (a second xtask started meanwhile): the
    // second waits for the first, then finds its work done.
    let _lock = crate::host::lock(&out.join(".rmapprof-lock"), &out)?;
    let mut fragments = vec![root().join("vm/kernel.config")];
    let per_kernel = root().join(format!("vm/kernel-{kernel}.config"));
    if per_kernel.exists() {
        fragments.push(per_kernel);
    }
    if debug {
        fragments.push(root().join("vm/debug.config"));
    }
    let mut frag_text = String::new();
    for f in &fragments {
        frag_text += &std::fs::read_to_string(f)?;
    }
    let stamp = format!("{:x}", fnv(frag_text.as_bytes()));
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C").arg(&src).arg(format!("O={}", out.display())).args(args);
        c
    };
    if std::fs::read_to_string(out.join(".rmapprof-config")).ok().as_deref() != Some(&stamp) {
        eprintln!(
            "xtask: configuring kernel {} (defconfig + {})",
            kernel_version(&src)?,
            fragments
                .iter()
                .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        );
        sh(&mut make(&["-s", "defconfig"]))?;
        sh(Command::new(src.join("scripts/kconfig/merge_config.sh"))
            .args(["-m", "-O"])
            .arg(&out)
            .arg(out.join(".config"))
            .args(&fragments)
            .stdout(Stdio::null()))?;
        sh(&mut make(&["-s", "olddefconfig"]))?;
        std::fs::write(out.join(".rmapprof-config"), &stamp)?;
    }
    let jobs = crate::host::make_jobs();
    let image = out.join("arch/x86/boot/bzImage");
    eprintln!(
        "xtask: building the {what} kernel in {} (first time ~15 min on 2 cores; then incremental)",
        out.display()
    );
    run_with_progress(make(&["-j", &jobs, "bzImage"]), &what)?;
    if !image.exists() {
        bail!("kernel build produced no {}", image.display());
    }
    Ok(image)
}

/// Runs make, printing one progress line per 200 compiled objects instead of every line.
fn run_with_progress(mut cmd: Command, what: &str) -> Result<()> {
    let t = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("running make")?;
    let mut n = 0u64;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        let t_line = line.trim_start();
        if t_line.starts_with("CC")
            || t_line.starts_with("AS")
            || t_line.starts_with("LD")
            || t_line.starts_with("BTF")
        {
            n += 1;
            if n.is_multiple_of(200) || t_line.starts_with("BTF") || t_line.starts_with("LD ") {
                eprintln!("xtask: [{what} kernel {:>4}s] {n} objects, now {t_line}", t.elapsed().as_secs());
            }
        }
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("kernel build failed ({st})");
    }
    eprintln!("xtask: {what} kernel built in {} s", t.elapsed().as_secs());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series applied again keeps the mtime of what it patches the same way, so that make
    /// rebuilds only what changed: a header patched alike is not rebuilt, a file patched
    /// differently or no longer patched is.
    #[test]
    fn a_reapplied_series_keeps_the_mtimes_of_unchanged_files() {
        let d = std::env::temp_dir().join(format!("xtask-mtimes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (base, old, new) = (d.join("base"), d.join("old"), d.join("new"));
        std::fs::create_dir_all(base.join("include")).unwrap();
        for (f, t) in [("include/mm.h", "h0"), ("vma.c", "v0"), ("exec.c", "e0"), ("other.c", "o0")] {
            std::fs::write(base.join(f), t).unwrap();
        }
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let copy = |to: &Path, patched: &[(&str, &str)]| {
            sh(Command::new("cp").arg("-al").arg(&base).arg(to)).unwrap();
            for (f, t) in patched {
                // As `patch` does: a new file in place of the link.
                std::fs::remove_file(to.join(f)).unwrap();
                std::fs::write(to.join(f), t).unwrap();
            }
        };
        // The old series patched mm.h, vma.c and exec.c, an hour ago.
        copy(&old, &[("include/mm.h", "h1"), ("vma.c", "v1"), ("exec.c", "e1")]);
        for f in ["include/mm.h", "vma.c", "exec.c"] {
            std::fs::File::options().write(true).open(old.join(f)).unwrap().set_modified(hour_ago).unwrap();
        }
        // The new one patches mm.h alike, vma.c differently, and no longer exec.c.
        copy(&new, &[("include/mm.h", "h1"), ("vma.c", "v2")]);
        assert_eq!(keep_mtimes(&base, &old, &new).unwrap(), 1);
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(mtime(&new.join("include/mm.h")), hour_ago);
        assert!(mtime(&new.join("vma.c")) > hour_ago);
        // exec.c is base's content again, in a file of its own with a new mtime; base keeps its.
        assert_eq!(std::fs::read_to_string(new.join("exec.c")).unwrap(), "e0");
        assert!(mtime(&new.join("exec.c")) > hour_ago);
        assert!(!same_file(
            &std::fs::metadata(new.join("exec.c")).unwrap(),
            &std::fs::metadata(base.join("exec.c")).unwrap()
        ));
        // Untouched files stay hard links to base's.
        assert!(same_file(
            &std::fs::metadata(new.join("other.c")).unwrap(),
            &std::fs::metadata(base.join("other.c")).unwrap()
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
