//! `cargo xtask vm`: our own kernel (Debian's linux-source-6.12, optionally with patches/; or
//! Debian's linux-source-6.1, the older kernel the probes must also load on), trimmed by
//! vm/kernel.config, built once into a cache outside the clone, booted under QEMU (TCG) with
//! virtme-ng, running a command with the repository visible.

use anyhow::{anyhow, bail, Context, Result};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use crate::{root, sh};

/// Debian's kernel source packages the harness builds: our kernel first, then the older one.
pub const KERNELS: [&str; 2] = ["6.12", "6.1"];
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

pub struct VmOpts {
    /// Kernel series, one of `KERNELS`.
    pub kernel: &'static str,
    pub patched: bool,
    /// Lockdep and DEBUG_VM on top (vm/debug.config), in a build of its own.
    pub debug: bool,
    pub cpus: u32,
    pub memory: String,
    /// QEMU's instruction-count clock (`-icount shift=0,sleep=off`): guest time advances 1 ns
    /// per instruction executed, whatever the host is doing; the vCPUs take turns on one host
    /// thread. For the bench: timings that do not move with the host's load.
    pub icount: bool,
}

/// `~/.cache/rmapprof` (or `$RMAPPROF_CACHE`): kernel sources and builds survive the clone.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RMAPPROF_CACHE") {
        return d.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/rmapprof")
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tarball(kernel: &str) -> PathBuf {
    PathBuf::from(format!("/usr/src/linux-source-{kernel}.tar.xz"))
}

/// Debian packages and virtme-ng, installed only when missing.
pub fn ensure_tools(kernel: &str) -> Result<()> {
    let missing = !tarball(kernel).exists()
        || !["qemu-system-x86_64", "pahole", "bison", "flex", "bc", "udevadm"].iter().all(|c| have(c));
    if missing {
        eprintln!("xtask: installing kernel build and VM packages (apt)");
        sh(Command::new("apt-get").args(["update", "-q"]))?;
        sh(Command::new("apt-get")
            .args(["install", "-y", "-q", &format!("linux-source-{kernel}")])
            .args(APT_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !have("vng") {
        sh(Command::new("python3").args(["-m", "pip", "install", "-q", "virtme-ng"]))?;
    }
    Ok(())
}

/// Our kernel's unpacked source, `<cache>/src/linux-source-6.12`.
pub fn base_source() -> Result<PathBuf> {
    unpacked_source(KERNELS[0])
}

/// `<cache>/src/linux-source-KERNEL`, extracted once.
fn unpacked_source(kernel: &str) -> Result<PathBuf> {
    let src = cache_dir().join("src");
    let tree = src.join(format!("linux-source-{kernel}"));
    if !tree.join("Makefile").exists() {
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

/// Source tree for `patched`: the base, or a copy with patches/*.patch applied in order.
/// The copy is redone whenever the patch series changes.
fn source(patched: bool) -> Result<PathBuf> {
    let base = base_source()?;
    if !patched {
        return Ok(base);
    }
    let mut patches: Vec<PathBuf> = std::fs::read_dir(root().join("patches"))
        .context("patches/ missing")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "patch") && !p.to_string_lossy().contains("0000-cover-letter")
        })
        .collect();
    patches.sort();
    let stamp: String = patches.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    let stamp = format!("{:x}", fnv(stamp.as_bytes()));
    let tree = cache_dir().join("src/linux-patched");
    if std::fs::read_to_string(tree.join(".rmapprof-patches")).ok().as_deref() == Some(&stamp) {
        return Ok(tree);
    }
    eprintln!("xtask: applying {} patches to a copy of the source", patches.len());
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

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

/// Builds bzImage in `<cache>/build-{base,patched}[-debug]` (6.12) or `build-6.1`;
/// incremental after the first time.
pub fn build_kernel(kernel: &str, patched: bool, debug: bool) -> Result<PathBuf> {
    ensure_tools(kernel)?;
    let (src, what) = if kernel == KERNELS[0] {
        let what =
            format!("{}{}", if patched { "patched" } else { "base" }, if debug { "-debug" } else { "" });
        (source(patched)?, what)
    } else {
        if patched || debug {
            bail!("patches/ and the debug build are for {} only", KERNELS[0]);
        }
        (unpacked_source(kernel)?, kernel.to_owned())
    };
    let out = cache_dir().join(format!("build-{what}"));
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
        eprintln!("xtask: configuring kernel {} (defconfig + vm/kernel.config)", kernel_version(&src)?);
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
    let what = if kernel != KERNELS[0] {
        kernel
    } else if patched {
        "patched"
    } else {
        "base"
    };
    eprintln!(
        "xtask: building the {what} kernel in {} (first time ~15 min on 2 cores; then incremental)",
        out.display()
    );
    run_with_progress(make(&["-j", &jobs, "bzImage"]), what)?;
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

/// Boots the kernel and runs `command` inside with the repository as working directory.
/// Returns the command's exit status.
pub fn run(opts: &VmOpts, command: &[String]) -> Result<i32> {
    let image = build_kernel(opts.kernel, opts.patched, opts.debug)?;
    let repo = root();
    let script = format!(
        "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; cd {} && {}",
        shell_quote(&repo.to_string_lossy()),
        command.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
    );
    eprintln!(
        "xtask: booting {} with {} vCPUs under QEMU (TCG, no KVM{})",
        image.display(),
        opts.cpus,
        if opts.icount { ", instruction-count clock" } else { "" }
    );
    let mut st = Command::new("vng")
        .arg("--run")
        .arg(&image)
        .args(["--disable-kvm", "--force-9p", "--user", "root"])
        .args(["--cpus", &opts.cpus.to_string(), "--memory", &opts.memory])
        .args(opts.icount.then_some("--qemu-opts=-icount shift=0,sleep=off"))
        .arg("--rwdir")
        .arg(&repo)
        .arg("--exec")
        .arg(&script)
        .current_dir(&repo)
        // Through pipes: QEMU reopens /proc/self/fd/1 for the guest's output, which truncates
        // a log file our stdout may be (a CI log would lose everything before the VM).
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow!("running vng: {e}"))?;
    let out = st
        .stdout
        .take()
        .map(|mut o| std::thread::spawn(move || std::io::copy(&mut o, &mut std::io::stdout())));
    let err = st
        .stderr
        .take()
        .map(|mut e| std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::stderr())));
    let st = st.wait()?;
    for t in [out, err].into_iter().flatten() {
        let _ = t.join();
    }
    Ok(st.code().unwrap_or(1))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
