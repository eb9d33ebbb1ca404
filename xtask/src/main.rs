//! Developer workflows: setup, build, demo, dist, test, bench, soak, many-cpus, the VM (vm, test-vm) and the
//! kernel series (patches-check, patches-report, patches-send-ready); `cargo xtask --help`.
//!
//! Everything a fresh machine needs is installed here, so the README's two commands
//! (`cargo xtask demo`, `cargo xtask test`) work on a clean clone.

mod bench;
mod debian;
mod demo;
mod dist;
mod host;
mod kernel;
mod many_cpus;
mod perf;
mod series;
mod services;
mod setup;
mod stress;
mod tools;
mod vm;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use host::{cargo, root, sh};
use setup::build;
use std::{path::Path, process::Command};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain: nightly rust-src and bpf-linker built against nightly's LLVM.
    Setup,
    /// setup, then build rmapprof (eBPF object embedded) and the workloads, release mode.
    Build,
    /// build, then profile the bundled spawn workload (libc.so.6, ld.so), then one that contends
    /// even on 2 CPUs (holders), and show where the outputs are.
    Demo {
        /// fork+exec cycles to run.
        #[arg(long, default_value_t = 4000)]
        cycles: u64,
        /// Parallel workers.
        #[arg(short, long, default_value_t = 8)]
        jobs: u64,
    },
    /// A static rmapprof (eBPF object embedded, no shared library), its man pages, shell
    /// completions, unit, licences and README: target/dist/rmapprof-VERSION-x86_64-linux.tar.gz
    /// and the Debian package target/dist/rmapprof_VERSION-1_amd64.deb.
    Dist,
    /// Profiling overhead on this kernel: workload throughput alone vs under each tool,
    /// alternating, plus attach/detach time, events/s, lost events and peak RSS.
    Bench {
        /// Rounds per workload; a round is one (unprofiled, profiled) pair per tool.
        #[arg(long, default_value_t = 5)]
        pairs: usize,
        /// Cycles per timed run (default 1000 on the host, 200 under QEMU).
        #[arg(long)]
        cycles: Option<u64>,
        #[arg(short, long, default_value_t = 2)]
        jobs: u64,
        /// Run inside our 7.2 kernel under QEMU with N vCPUs: every rmapprof mode and
        /// perf lock contention -b load there.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "2")]
        vm: Option<u32>,
        /// Then find where rmapprof starts losing events (distinct files, parallel jobs).
        #[arg(long)]
        stress: bool,
        /// Workloads to compare: spawn and execl (fork/exec, little contention on 2 CPUs),
        /// mmap-churn (one file mapped and unmapped by every job: contention on every cycle,
        /// where perf's own slowdown shows).
        #[arg(long, value_delimiter = ',', default_value = "spawn,execl,mmap-churn")]
        workloads: Vec<String>,
        /// Only these tools: tracepoint, kprobe, fentry, kprobe-acq, kprobe-acq-nocache,
        /// fentry-acq, perf, bpftrace ("-acq": rmapprof --acquisitions; default: all that
        /// attach but the no-cache one); fewer tools buy more rounds in the same time.
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
        /// With --vm: time by QEMU's instruction-count clock (1 ns per guest instruction), which
        /// the host's load cannot move: ratios then compare instructions executed (how closely:
        /// docs/performance.md, "The two clocks").
        #[arg(long)]
        icount: bool,
        /// Set by --vm for the run inside the guest (no build, no apt).
        #[arg(long, hide = true)]
        guest: bool,
    },
    /// Our 7.2 kernel with many vCPUs (TCG) and pid_max 4194304: every mode on the bundled
    /// workloads at one job per vCPU must exit 0 and lose nothing to a map's capacity; map
    /// memory and the largest pid per run in target/many-cpus/summary.txt.
    ManyCpus {
        #[arg(long, default_value_t = 64)]
        cpus: u32,
        /// Cycles per workload.
        #[arg(long, default_value_t = 64)]
        cycles: u64,
        /// Only these: tracepoint, kprobe, fentry, kprobe-acq, fentry-acq (default: all).
        #[arg(long, value_delimiter = ',')]
        modes: Vec<String>,
    },
    /// The long soak: rmapprof --interval under the contention workload for MINUTES, its RSS
    /// sampled each second (the short version runs in the tests).
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
    },
    /// Build our 7.2 kernel (cached) and run COMMAND inside it under QEMU, repo visible.
    Vm {
        /// Kernel series: 7.2 (ours, Debian unstable's), 6.1 (Debian's older one) or 6.12.
        #[arg(long, default_value = kernel::OURS, value_parser = kernel_series)]
        kernel: &'static str,
        /// Boot the kernel with patches/ applied (a separate cached build; 7.2 only).
        #[arg(long)]
        patched: bool,
        /// Lockdep + DEBUG_VM kernel (vm/debug.config), another cached build.
        #[arg(long)]
        debug: bool,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Guest memory.
        #[arg(long, default_value = "2G")]
        memory: String,
        /// Time the guest by QEMU's instruction-count clock (1 ns per instruction; see bench).
        #[arg(long)]
        icount: bool,
        /// Only build the kernel.
        #[arg(long)]
        build_only: bool,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Build the VM kernel and run the kprobe/fentry tests (profiler/tests/vm.rs) inside it.
    TestVm {
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Kernel series: 7.2 (ours), 6.1 or 6.12; default 7.2 and 6.1 (CI's, `kernel::CI_KERNELS`), in turn.
        #[arg(long, value_parser = kernel_series)]
        kernel: Option<&'static str>,
    },
    /// checkpatch --strict the series; exec layout (/proc/PID/maps) base vs patched; the
    /// test-only negative control must fail the stress test; on the patched kernel with
    /// lockdep and DEBUG_VM: fork/truncate stress, mm and exec selftests, fault injection in
    /// dup_mmap(), lockdep under memory pressure. Any kernel warning fails. One line per check
    /// at the end (docs/testing.md, "patches-check").
    PatchesCheck {
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Seconds of fork/truncate stress (on the debug kernel, under memory pressure, and on
        /// the negative control).
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Forks per fault-injection run (failslab, then fail_page_alloc).
        #[arg(long, default_value_t = 1000)]
        fault_iterations: u32,
        /// Seconds for all of run_vmtests.sh's categories on the debug kernel (each has at most
        /// 900); those not started in time are listed as skipped for time.
        #[arg(long, default_value_t = 3600)]
        vmtests_seconds: u32,
        /// Only these parts: checkpatch, vma-tests, layout, negative, debug, pressure (default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Build what the parts need (kernels, programs, selftests) and boot nothing.
        #[arg(long)]
        build_only: bool,
    },
    /// Base vs patched kernel under rmapprof: before/after tables, differential flame graphs,
    /// and the cover letter's numbers (target/patches-report/, patches/0000-cover-letter.patch).
    PatchesReport {
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Only rewrite the cover letter from the last report's summary.
        #[arg(long)]
        cover_letter_only: bool,
        /// Only rewrite the letter's correctness section from patches-check's committed
        /// results (patches/checks/), keeping its measured tables as they are.
        #[arg(long, conflicts_with_all = ["cover_letter_only", "tables_only", "keep_instructions"])]
        correctness_only: bool,
        /// Boot nothing: the tables again from the last runs (after a change to rmapprof diff),
        /// then the cover letter.
        #[arg(long, conflicts_with = "cover_letter_only")]
        tables_only: bool,
        /// Boot for the acquisition counts only; keep the last instruction counts (they change
        /// only with the kernels).
        #[arg(long, conflicts_with_all = ["cover_letter_only", "tables_only"])]
        keep_instructions: bool,
    },
    /// Sign patches/ for posting: the poster's From: and Signed-off-by: on every mail (not the
    /// repository's identity), the letter's note dropped, checkpatch --strict on the result,
    /// written to target/patches-send/ for `git send-email --to-cover --cc-cover`.
    PatchesSendReady {
        /// "Name <address>" to sign as (default: your git config's user.name and user.email).
        #[arg(long = "as", value_name = "NAME <ADDRESS>")]
        as_: Option<String>,
    },
    /// setup, then run every test: unit tests and tests that load BPF into this kernel, then
    /// the kprobe/fentry tests inside Debian's 7.2 and 6.1 kernels (test-vm, `kernel::CI_KERNELS`).
    Test {
        /// Only the tests on this machine's kernel (skip the VM).
        #[arg(long)]
        host: bool,
        /// Extra arguments for `cargo test`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Setup => setup::ensure(),
        Cmd::Build => build(),
        Cmd::Demo { cycles, jobs } => demo::run(cycles, jobs),
        Cmd::Dist => dist::run(),
        Cmd::ManyCpus { cpus, cycles, modes } => many_cpus::run(cpus, cycles, &modes),
        Cmd::Test { host, args } => {
            test(&args)?;
            if host {
                Ok(())
            } else {
                kernel::CI_KERNELS.iter().try_for_each(|k| test_vm(2, k))
            }
        }
        Cmd::TestVm { cpus, kernel } => match kernel {
            Some(k) => test_vm(cpus, k),
            None => kernel::CI_KERNELS.iter().try_for_each(|k| test_vm(cpus, k)),
        },
        Cmd::Soak { minutes } => {
            setup::ensure()?;
            let mut c = cargo();
            c.args([
                "test",
                "--release",
                "-p",
                "rmapprof",
                "--test",
                "reliability",
                "soak",
                "--",
                "--nocapture",
            ]);
            sh(c.env("RMAPPROF_SOAK_SECS", (minutes * 60).to_string()))?;
            // The same for the daemon (profiler/tests/serve.rs).
            let mut c = cargo();
            c.args(["test", "--release", "-p", "rmapprof", "--test", "serve", "soak", "--", "--nocapture"]);
            sh(c.env("RMAPPROF_SOAK_SECS", (minutes * 60).to_string()))
        }
        Cmd::Bench { pairs, cycles, jobs, vm, stress, workloads, tools, icount, guest } => {
            bench::run(&bench::Opts { pairs, cycles, jobs, vm, guest, icount, stress, workloads, tools })
        }
        Cmd::PatchesCheck { cpus, seconds, fault_iterations, vmtests_seconds, only, build_only } => {
            series::check::check(cpus, seconds, fault_iterations, vmtests_seconds, &only, build_only)
        }
        Cmd::PatchesReport { correctness_only: true, .. } => series::report::correctness_only(),
        Cmd::PatchesReport { cpus, cover_letter_only, tables_only, keep_instructions, .. } => {
            series::report::report(cpus, cover_letter_only, tables_only, keep_instructions)
        }
        Cmd::PatchesSendReady { as_ } => series::sign::send_ready(as_.as_deref()),
        Cmd::Vm { kernel, patched, debug, cpus, memory, icount, build_only, command } => {
            if build_only {
                kernel::build_kernel(kernel, patched, debug).map(|_| ())
            } else {
                if command.is_empty() {
                    anyhow::bail!("nothing to run: cargo xtask vm [--patched] [--cpus N] -- COMMAND...");
                }
                let code = vm::run(&vm::VmOpts { kernel, patched, debug, cpus, memory, icount }, &command)?;
                std::process::exit(code);
            }
        }
    }
}

/// Root or sudo in front of `cmd`: rmapprof loads BPF programs.
fn as_root(program: &Path) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    }
}

fn test(args: &[String]) -> Result<()> {
    // The kernel tests run the bundled workloads from target/release.
    build()?;
    // xtask/tests/dist.rs checks the artifacts.
    dist::run()?;
    services::ensure()?;
    // Integration tests load BPF into this kernel: one at a time, they share tracepoints.
    sh(cargo().args(["test", "--workspace", "--exclude", "profiler-ebpf"]).args(args))
}

fn kernel_series(s: &str) -> Result<&'static str, String> {
    kernel::KERNELS
        .iter()
        .find(|k| **k == s)
        .copied()
        .ok_or_else(|| format!("one of {}", kernel::KERNELS.join(", ")))
}

/// Builds everything on the host, then runs the VM test binary inside `kernel`.
fn test_vm(cpus: u32, kernel: &'static str) -> Result<()> {
    let t = std::time::Instant::now();
    build()?;
    let out = cargo()
        .args(["test", "-p", "rmapprof", "--test", "vm", "--no-run", "--message-format=json"])
        .current_dir(root())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let bin = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"executable\":\"") && l.contains("\"name\":\"vm\""))
        .find_map(|l| l.split("\"executable\":\"").nth(1)?.split('"').next().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("could not find the vm test binary"))?;
    let code = vm::run(
        &vm::VmOpts { kernel, patched: false, debug: false, cpus, memory: "2G".into(), icount: false },
        &[bin, "--ignored".into(), "--test-threads=1".into()],
    )?;
    eprintln!("xtask: VM tests on {kernel} took {} s in all", t.elapsed().as_secs());
    if code != 0 {
        bail!("VM tests on {kernel} failed (exit {code})");
    }
    Ok(())
}
