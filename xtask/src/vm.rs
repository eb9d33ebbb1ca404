//! `cargo xtask vm`: our kernel (kernel.rs) booted under QEMU (TCG) with virtme-ng, running a
//! command with the repository visible.

use anyhow::{anyhow, bail, Result};
use std::io::Write;
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
///
/// A guest that dies before the command starts is booted again, twice at most: 2 vCPUs under
/// TCG sometimes take the int3 of a kernel text patch at boot before the patching CPU's
/// handler is ready ("Oops: int3" in the static-key update of `sched_clock_cpu()`, 1 boot in
/// 4 on a loaded host, base and patched kernels alike), long before any command of ours runs.
pub fn run_image(image: &Path, opts: &VmOpts, command: &[String]) -> Result<i32> {
    for boot in 1..=3 {
        match boot_once(image, opts, command)? {
            Booted::Ran(code) => return Ok(code),
            Booted::DiedBeforeTheCommand(code) if boot < 3 => {
                eprintln!(
                    "xtask: the guest died before the command started (exit {code}; a boot-time \
                     Oops under TCG, see vm.rs); booting again"
                );
            }
            Booted::DiedBeforeTheCommand(code) => {
                bail!("the guest died before the command started, three boots in a row (exit {code})")
            }
        }
    }
    unreachable!()
}

enum Booted {
    /// The command's exit status.
    Ran(i32),
    DiedBeforeTheCommand(i32),
}

/// The first line the guest prints, before the command: it booted and the command starts.
const STARTED: &str = "xtask-guest-command-starts";

fn boot_once(image: &Path, opts: &VmOpts, command: &[String]) -> Result<Booted> {
    let repo = root();
    let script = format!(
        "echo {STARTED}; mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; cd {} && {}",
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
    // The guest's stdout, line by line, without the start marker, which only says it came.
    let out = st.stdout.take().map(|o| {
        std::thread::spawn(move || {
            let mut started = false;
            let mut stdout = std::io::stdout();
            for line in std::io::BufRead::split(std::io::BufReader::new(o), b'\n').map_while(Result::ok) {
                if !started && line.trim_ascii_end() == STARTED.as_bytes() {
                    started = true;
                    continue;
                }
                let _ = stdout.write_all(&line);
                let _ = stdout.write_all(b"\n");
            }
            started
        })
    });
    let err = st
        .stderr
        .take()
        .map(|mut e| std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::stderr())));
    let st = st.wait()?;
    let started = out.map(|t| t.join().unwrap_or(true)).unwrap_or(true);
    if let Some(t) = err {
        let _ = t.join();
    }
    let code = st.code().unwrap_or(1);
    Ok(if started || code == 0 { Booted::Ran(code) } else { Booted::DiedBeforeTheCommand(code) })
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
