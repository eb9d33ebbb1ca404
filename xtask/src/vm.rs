//! `cargo xtask vm`: our kernel (kernel.rs) booted under QEMU (TCG) with virtme-ng, running a
//! command with the repository visible.

use anyhow::{anyhow, bail, Result};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{host::root, kernel::build_kernel};

pub struct VmOpts {
    /// Kernel series, one of [`crate::kernel::KERNELS`].
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

impl VmOpts {
    /// Our kernel, base or patched, as patches-check and patches-report boot it: no lockdep,
    /// 2G, the wall clock.
    pub fn ours(patched: bool, cpus: u32) -> VmOpts {
        VmOpts {
            kernel: crate::kernel::OURS,
            patched,
            debug: false,
            cpus,
            memory: "2G".into(),
            icount: false,
        }
    }
}

/// Boots the kernel and runs `command` inside with the repository as working directory.
/// Returns the command's exit status.
/// `$RMAPPROF_KERNEL_IMAGE`, when set, is booted instead: a bzImage built elsewhere (a kernel
/// tree of one's own while a patch is being written); nothing is built then.
pub fn run(opts: &VmOpts, command: &[String]) -> Result<i32> {
    let image = match std::env::var_os("RMAPPROF_KERNEL_IMAGE") {
        Some(image) => {
            let image = PathBuf::from(image);
            if !image.is_file() {
                bail!("RMAPPROF_KERNEL_IMAGE={}: no such file", image.display());
            }
            image
        }
        None => build_kernel(opts.kernel, opts.patched, opts.debug)?,
    };
    run_image(&image, opts, command)
}

/// As `run`, booting `image` (a kernel built elsewhere, e.g. patches-check's negative
/// control); `opts.kernel`, `patched` and `debug` are not used. With `RMAPPROF_VM_LOCK` set,
/// QEMU runs under `flock` of that file, one guest at a time on a shared machine.
pub fn run_image(image: &Path, opts: &VmOpts, command: &[String]) -> Result<i32> {
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
    let lock = std::env::var_os("RMAPPROF_VM_LOCK").filter(|l| !l.is_empty());
    let mut vng = match &lock {
        Some(l) => {
            let mut c = Command::new("flock");
            c.arg(l).arg("vng");
            c
        }
        None => Command::new("vng"),
    };
    let mut st = vng
        .arg("--run")
        .arg(image)
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
