//! `cargo xtask bench`: what profiling costs the workload, on this machine's kernel or (`--vm`)
//! in our 7.2 kernel under QEMU, where every rmapprof mode and `perf lock contention -b` load.
//!
//! For each workload, alternating run by run: the workload alone, then under a tool; that
//! pair once per tool per round, the tools' order rotated each round. A
//! tool is started first and the workload timed only once the tool is attached, so the ratio
//! is the steady-state slowdown; attach and detach time are measured apart. Peak RSS comes
//! from wait4(). A tool that cannot attach on this kernel is listed with its reason.
//! `--stress` then finds where rmapprof starts losing events: mmap-churn over ever more
//! distinct files (map capacity) and ever more parallel jobs (event rate).
//! Results: target/bench/[vm/]bench.txt and bench.json.

use anyhow::{bail, Context, Result};
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use crate::{
    host::{have, root, sh},
    kernel, perf,
    setup::build,
    tools::{rmapprof_events, start, stop, tools, Kind, Tool},
    vm,
};

pub struct Opts {
    pub pairs: usize,
    pub cycles: Option<u64>,
    pub jobs: u64,
    /// Run the whole bench inside our kernel under QEMU with this many vCPUs.
    pub vm: Option<u32>,
    /// Already inside the VM: no build, no apt.
    pub guest: bool,
    /// With `vm`: QEMU's instruction-count clock ([`vm::VmOpts::icount`]).
    pub icount: bool,
    pub stress: bool,
    pub workloads: Vec<String>,
    /// Only these tools (their short names, [`crate::tools::TOOL_NAMES`]); all when empty.
    pub tools: Vec<String>,
}

struct Sample {
    ratio: f64,
    attach_ms: f64,
    detach_ms: f64,
    rss_kb: i64,
    events: u64,
    lost: std::collections::BTreeMap<String, u64>,
    secs: f64,
}

/// A workload's command line without its cycle count and jobs, and the root it runs under.
struct Workload {
    argv: Vec<String>,
    chroot: Option<PathBuf>,
}

fn workload(name: &str, out: &Path, chroot: Option<&Path>) -> Result<Workload> {
    let (bin, dir) = match chroot {
        Some(r) => (format!("/bin/{name}"), r.to_path_buf()),
        None => (root().join("target/release").join(name).display().to_string(), out.to_path_buf()),
    };
    let argv = match name {
        "spawn" | "execl" => vec![bin],
        "mmap-churn" => {
            std::fs::write(dir.join("mmap-churn.dat"), vec![1u8; 64 << 10])?;
            let file = if chroot.is_some() { "/mmap-churn.dat".into() } else { dir.join("mmap-churn.dat") };
            vec![bin, file.display().to_string()]
        }
        w => bail!("unknown workload {w} (spawn, execl, mmap-churn)"),
    };
    Ok(Workload { argv, chroot: chroot.map(Path::to_path_buf) })
}

/// Where the workloads run when `/` is the host's file system over 9p (our VM): a tmpfs copy
/// of them, `/bin/true` and their libraries. Over 9p every exec's path walk and ELF reads are
/// round trips to QEMU: they made up more than half of a spawn cycle (3.0 s against 1.37 s per
/// 100 cycles from tmpfs) and diluted every tool's cost by as much. None on a disk-backed root.
fn tmpfs_root() -> Result<Option<PathBuf>> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    let fs_at = |p: &Path| {
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(1) == p.to_str().as_ref()).then(|| f.get(2).unwrap_or(&"").to_string())
        })
    };
    if fs_at(Path::new("/")).as_deref() != Some("9p") {
        return Ok(None);
    }
    let r = PathBuf::from("/tmp/rmapprof-bench-root");
    std::fs::create_dir_all(&r)?;
    if fs_at(&r).is_none() {
        sh(Command::new("mount").args(["-t", "tmpfs", "rmapprof-bench"]).arg(&r))?;
    }
    let bins = ["spawn", "execl", "mmap-churn"].map(|w| root().join("target/release").join(w));
    let mut files: Vec<(PathBuf, PathBuf)> =
        bins.iter().map(|b| (b.clone(), Path::new("/bin").join(b.file_name().unwrap()))).collect();
    files.push(("/bin/true".into(), "/bin/true".into()));
    // Their shared libraries and loader, at the paths ldd names (the paths the binaries ask for).
    let ldd = Command::new("ldd").args(&bins).arg("/bin/true").output().context("running ldd")?;
    for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
        let lib = lib.trim_end_matches(':');
        if !bins.iter().any(|b| b.as_os_str() == lib) && lib != "/bin/true" {
            files.push((lib.into(), lib.into()));
        }
    }
    for (from, to) in files {
        let to = r.join(to.strip_prefix("/").unwrap_or(&to));
        std::fs::create_dir_all(to.parent().unwrap())?;
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    // execl re-executes /proc/self/exe.
    let proc_dir = r.join("proc");
    std::fs::create_dir_all(&proc_dir)?;
    if fs_at(&proc_dir).is_none() {
        sh(Command::new("mount").args(["-t", "proc", "proc"]).arg(&proc_dir))?;
    }
    Ok(Some(r))
}

/// mmap-churn's cycle (mmap, touch, munmap) is some 500x shorter than a fork+exec+exit.
fn workload_cycles(workload: &str, cycles: u64) -> u64 {
    if workload == "mmap-churn" {
        cycles * 500
    } else {
        cycles
    }
}

fn time_workload(w: &Workload, cycles: u64, jobs: u64) -> Result<f64> {
    let argv = &w.argv;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).args([cycles.to_string(), "-j".into(), jobs.to_string()]);
    if let Some(r) = w.chroot.clone() {
        // SAFETY: chroot and chdir are async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                std::os::unix::fs::chroot(&r)?;
                std::env::set_current_dir("/")
            })
        };
    }
    let t = Instant::now();
    let st = cmd.status().with_context(|| format!("running {}", argv[0]))?;
    if !st.success() {
        bail!("{} failed", argv.join(" "));
    }
    Ok(t.elapsed().as_secs_f64())
}

fn median(v: Vec<f64>) -> f64 {
    quantile(v, 0.5)
}

/// The `q` quantile of `v` (nearest rank, no interpolation); NaN when empty.
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

pub fn run(o: &Opts) -> Result<()> {
    if o.icount && o.vm.is_none() && !o.guest {
        bail!("--icount is a QEMU clock: use it with --vm");
    }
    if !o.guest {
        build()?;
        if !have("bpftrace") {
            let _ = sh(Command::new("apt-get")
                .args(["install", "-y", "-q", "bpftrace"])
                .env("DEBIAN_FRONTEND", "noninteractive"));
        }
        if let Err(e) = perf::ensure() {
            eprintln!("xtask: perf with BPF skeletons not built: {e:#}");
        }
    }
    if let Some(cpus) = o.vm {
        // The same bench, inside our kernel: this binary, on the same repository, as root.
        let me = std::env::current_exe()?.display().to_string();
        let mut cmd = vec![me, "bench".into(), "--guest".into(), "--pairs".into(), o.pairs.to_string()];
        cmd.extend(["--workloads".into(), o.workloads.join(",")]);
        if !o.tools.is_empty() {
            cmd.extend(["--tools".into(), o.tools.join(",")]);
        }
        cmd.extend(["--cycles".into(), o.cycles.unwrap_or(200).to_string(), "-j".into(), o.jobs.to_string()]);
        if o.stress {
            cmd.push("--stress".into());
        }
        if o.icount {
            cmd.push("--icount".into());
        }
        let opts = vm::VmOpts {
            kernel: kernel::OURS,
            patched: false,
            debug: false,
            cpus,
            memory: "2G".into(),
            icount: o.icount,
        };
        let code = vm::run(&opts, &cmd)?;
        if code != 0 {
            bail!("bench in the VM failed (exit {code})");
        }
        return Ok(());
    }
    let out = root().join(if o.guest { "target/bench/vm" } else { "target/bench" });
    std::fs::create_dir_all(&out)?;
    let cycles = o.cycles.unwrap_or(1000);
    let (tools, unavailable) = tools(&out, &o.tools)?;
    let wroot = tmpfs_root()?;
    let mut text = String::new();
    let mut json = Vec::new();
    for workload in &o.workloads {
        let w = self::workload(workload, &out, wroot.as_deref())?;
        let (t, j) = compare(workload, &w, &tools, o.pairs, workload_cycles(workload, cycles), o.jobs)?;
        text += &t;
        json.extend(j);
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut header = format!(
        "cargo xtask bench on {cpus} CPUs, Linux {}{}; throughput = unprofiled time / profiled time (median)\n",
        kernel.trim(),
        match (o.guest, o.icount) {
            (true, true) => " under QEMU TCG, timed by its instruction-count clock (1 ns per instruction)",
            (true, false) => " under QEMU TCG",
            _ => "",
        }
    );
    for u in &unavailable {
        header += &format!("not compared: {u}\n");
    }
    let mut doc = serde_json::json!({
        "kernel": kernel.trim(), "cpus": cpus, "vm": o.guest, "icount": o.icount, "workload_root": wroot, "not_compared": unavailable, "results": json,
    });
    if o.stress {
        let (t, j) = crate::stress::run(&tools, o.jobs)?;
        text += &t;
        doc["stress"] = j;
    }
    let text = header + &text;
    std::fs::write(out.join("bench.txt"), &text)?;
    std::fs::write(out.join("bench.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    print!("{text}");
    eprintln!("xtask: wrote {}/bench.txt and bench.json", out.display());
    Ok(())
}

/// One workload (`argv`, without cycles and jobs): `pairs` rounds of one (alone, under the
/// tool) pair per tool; a table and JSON rows.
fn compare(
    workload: &str,
    w: &Workload,
    tools: &[Tool],
    pairs: usize,
    cycles: u64,
    jobs: u64,
) -> Result<(String, Vec<serde_json::Value>)> {
    let mut base = Vec::new();
    let mut samples: Vec<Vec<Sample>> = tools.iter().map(|_| Vec::new()).collect();
    for pair in 0..pairs {
        eprintln!("xtask: bench {workload}: round {}/{pairs}", pair + 1);
        // Every profiled run right after its own unprofiled run (a drift in the machine's speed
        // cancels out of the ratio), and the tools' order rotated round by round (no tool always
        // runs right after the same other tool's detach).
        for k in 0..tools.len() {
            let i = (k + pair) % tools.len();
            let tool = &tools[i];
            let b = time_workload(w, cycles, jobs)?;
            base.push(b);
            let (child, attach_ms, rx) = start(tool)?;
            let secs = time_workload(w, cycles, jobs)?;
            let (detach_ms, rss_kb) = stop(child, tool.kind)?;
            let (events, lost) = match tool.kind {
                Kind::Rmapprof => rmapprof_events(tool.report_dir()?)?,
                Kind::Bpftrace => (
                    rx.iter()
                        .find_map(|l| l.strip_prefix("@n: ").and_then(|n| n.trim().parse().ok()))
                        .unwrap_or(0),
                    std::collections::BTreeMap::new(),
                ),
                Kind::Perf => {
                    let (events, bad) = perf::events(rx.iter());
                    (events, [("bad".to_owned(), bad)].into_iter().filter(|(_, n)| *n > 0).collect())
                }
            };
            samples[i].push(Sample { ratio: b / secs, attach_ms, detach_ms, rss_kb, events, lost, secs });
        }
    }
    let base_rate = cycles as f64 / median(base.clone());
    let mut text = format!(
        "\n{workload} {cycles} -j {jobs}: unprofiled median {base_rate:.0} cycles/s, {pairs} rounds of (unprofiled, profiled) pairs\n"
    );
    text += &format!(
        "{:<24} {:>9} {:>13} {:>10} {:>6} {:>10} {:>10} {:>9}\n",
        "TOOL", "THRUPUT", "Q1-Q3", "EVENTS/S", "LOST", "ATTACH", "DETACH", "PEAK RSS"
    );
    let mut json = Vec::new();
    for (tool, s) in tools.iter().zip(&samples) {
        let ratios: Vec<f64> = s.iter().map(|x| x.ratio).collect();
        let ratio = median(ratios.clone());
        // The spread of the per-pair ratios: what separates a slowdown from this machine's noise.
        let (q1, q3) = (quantile(ratios.clone(), 0.25), quantile(ratios.clone(), 0.75));
        let eps = median(s.iter().map(|x| x.events as f64 / x.secs).collect());
        let mut by_cause = std::collections::BTreeMap::<String, u64>::new();
        for (k, v) in s.iter().flat_map(|x| x.lost.iter()) {
            *by_cause.entry(k.clone()).or_default() += v;
        }
        let lost: u64 = by_cause.values().sum();
        let attach = median(s.iter().map(|x| x.attach_ms).collect());
        let detach = median(s.iter().map(|x| x.detach_ms).collect());
        let rss = s.iter().map(|x| x.rss_kb).max().unwrap_or(0);
        text += &format!(
            "{:<24} {:>9.3} {:>13} {:>10.0} {:>6} {:>7.0} ms {:>7.0} ms {:>6.1} MB\n",
            tool.name,
            ratio,
            format!("{q1:.3}-{q3:.3}"),
            eps,
            lost,
            attach,
            detach,
            rss as f64 / 1024.0
        );
        if lost > 0 {
            let causes: Vec<String> = by_cause.iter().map(|(k, v)| format!("{k} {v}")).collect();
            text += &format!("  {} lost: {}\n", tool.name, causes.join(", "));
        }
        let (runs, ns, share) = bpf_cost(tool, w, cycles, jobs)?;
        let (runs, ns) = (runs as f64 / cycles as f64, ns as f64 / cycles as f64);
        text += &format!(
            "  {} own BPF cost (median of {BPF_COST_RUNS} runs with bpf_stats_enabled): {runs:.2} program runs, {:.2} us per cycle, {:.2}% of CPU time\n",
            tool.name,
            ns / 1e3,
            share * 100.0
        );
        json.push(serde_json::json!({
            "bpf_runs_per_cycle": runs, "bpf_ns_per_cycle": ns, "bpf_cpu_share": share,
            "workload": workload, "tool": tool.name, "throughput_ratio": ratio, "throughput_ratio_q1": q1, "throughput_ratio_q3": q3, "events_per_s": eps,
            "lost": lost, "lost_by_cause": by_cause, "attach_ms": attach, "detach_ms": detach, "peak_rss_kb": rss, "pairs": pairs,
            "ratios": ratios,
        }));
    }
    Ok((text, json))
}

/// A tool's own BPF cost in [`BPF_COST_RUNS`] more runs with the kernel's BPF statistics on
/// (`kernel.bpf_stats_enabled`, restored after): total program runs and run time of every
/// program the tool's process holds, read from `/proc/PID/fdinfo` (`run_cnt`, `run_time_ns`)
/// while it is still attached, so rmapprof, perf and bpftrace are measured the same way; and
/// their share of the CPU time the run had (wall time x CPUs). A direct measure where
/// throughput ratios drown in noise. Not in it: the kprobe/trampoline entry itself.
/// The median of those runs by run time: one run's figure moved by a third
/// between two benches of the same code under TCG.
fn bpf_cost(tool: &Tool, w: &Workload, cycles: u64, jobs: u64) -> Result<(u64, u64, f64)> {
    let mut runs =
        (0..BPF_COST_RUNS).map(|_| bpf_cost_once(tool, w, cycles, jobs)).collect::<Result<Vec<_>>>()?;
    runs.sort_by_key(|&(_, ns, _)| ns);
    Ok(runs[runs.len() / 2])
}
const BPF_COST_RUNS: usize = 3;

fn bpf_cost_once(tool: &Tool, w: &Workload, cycles: u64, jobs: u64) -> Result<(u64, u64, f64)> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(SYSCTL).context("reading kernel.bpf_stats_enabled")?;
    std::fs::write(SYSCTL, "1").context("enabling kernel.bpf_stats_enabled")?;
    let res = (|| {
        let (child, _, _) = start(tool)?;
        let run = time_workload(w, cycles, jobs);
        let held = prog_stats(child.id());
        stop(child, tool.kind)?;
        Ok::<_, anyhow::Error>((run?, held))
    })();
    std::fs::write(SYSCTL, before.trim())?;
    let (secs, (runs, ns)) = res?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    Ok((runs, ns, ns as f64 / (secs * cpus * 1e9)))
}

/// Sum of `run_cnt` and `run_time_ns` over the distinct BPF programs process `pid` holds.
fn prog_stats(pid: u32) -> (u64, u64) {
    let mut seen = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).into_iter().flatten().flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else { continue };
        let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok());
        if let (Some(id), Some(runs), Some(ns)) =
            (field("prog_id:"), field("run_cnt:"), field("run_time_ns:"))
        {
            // Links name their program too, without the counters; a program held twice counts once.
            seen.insert(id, (runs, ns));
        }
    }
    seen.values().fold((0, 0), |(r, n), (runs, ns)| (r + runs, n + ns))
}
