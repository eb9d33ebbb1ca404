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
    "libelf-dev",
    "libssl-dev",
    "dwarves",
    "qemu-system-x86",
    "busybox-static",
    "udev", // virtme-ng-init needs udevd in the guest for its virtio-serial script ports
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
        !["qemu-system-x86_64", "pahole", "bison", "flex", "bc", "udevadm"].iter().all(|c| have(c));
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

/// Downloads `linux-source-KERNEL` from Debian's `suite` with an apt sources list, package
/// lists and cache of our own under `<cache>/apt-SUITE` (the machine's apt configuration and
/// suites are not touched; the archive keyring checks the suite's signature), and unpacks it
/// with dpkg -x; its version goes to `<cache>/deb/linux-source-KERNEL.version`.
fn fetch_foreign(kernel: &str, suite: &str) -> Result<()> {
    let apt = cache_dir().join(format!("apt-{suite}"));
    let debs = cache_dir().join("deb");
    for d in [apt.join("lists/partial"), apt.join("cache/archives/partial"), debs.clone()] {
        std::fs::create_dir_all(&d)?;
    }
    let list = apt.join("sources.list");
    std::fs::write(
        &list,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian {suite} main\n"
        ),
    )?;
    let apt_get = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.arg("-q")
            .arg(format!("-oDir::Etc::sourcelist={}", list.display()))
            .arg("-oDir::Etc::sourceparts=-")
            .arg(format!("-oDir::State::Lists={}", apt.join("lists").display()))
            .arg(format!("-oDir::Cache={}", apt.join("cache").display()))
            // Our directories are root's: apt's _apt user could not write them.
            .arg("-oAPT::Sandbox::User=root")
            .args(args);
        c
    };
    eprintln!(
        "xtask: fetching {} from Debian {suite} (private apt list in {})",
        package(kernel),
        apt.display()
    );
    sh(&mut apt_get(&["update"]))?;
    let pkg = package(kernel);
    for e in std::fs::read_dir(&debs)?.flatten() {
        if e.file_name().to_string_lossy().starts_with(&format!("{pkg}_")) {
            std::fs::remove_file(e.path())?;
        }
    }
    sh(apt_get(&["download", &pkg]).current_dir(&debs))?;
    let deb = std::fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_"))))
        .with_context(|| format!("apt-get download {pkg} left no .deb in {}", debs.display()))?;
    let x = debs.join(&pkg);
    if x.exists() {
        std::fs::remove_dir_all(&x)?;
    }
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x))?;
    let version = Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version").output()?;
    std::fs::write(debs.join(format!("{pkg}.version")), String::from_utf8_lossy(&version.stdout).trim())?;
    std::fs::remove_file(&deb)?;
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

/// Source tree for `patched`: the kernel's own, or `<cache>/src/linux-KERNEL-patched`, a copy
/// with its series applied in order, redone whenever the series changes.
pub fn source(kernel: &str, patched: bool) -> Result<PathBuf> {
    let base = unpacked_source(kernel)?;
    if !patched {
        return Ok(base);
    }
    let patches = series(kernel)?;
    // The diffs only: rewriting a commit message or the To:/Cc: headers rebuilds nothing.
    let stamp: String = patches
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .map(|t| t.find("\ndiff --git ").map(|i| t[i..].to_owned()).unwrap_or(t))
        .collect();
    let stamp = format!("{:x}", fnv(stamp.as_bytes()));
    let tree = cache_dir().join(format!("src/linux-{kernel}-patched"));
    if std::fs::read_to_string(tree.join(".rmapprof-patches")).ok().as_deref() == Some(&stamp) {
        return Ok(tree);
    }
    eprintln!("xtask: applying {} patches to a copy of the {kernel} source", patches.len());
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    // A hard-linked copy is instant; `patch` replaces files rather than writing through links.
    sh(Command::new("cp").arg("-al").arg(&base).arg(&tree))?;
    for p in &patches {
        sh(Command::new("patch")
            .args(["-p1", "--quiet", "--no-backup-if-mismatch", "-d"])
            .arg(&tree)
            .arg("-i")
            .arg(p))?;
    }
    std::fs::write(tree.join(".rmapprof-patches"), &stamp)?;
    Ok(tree)
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
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).to_string();
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
