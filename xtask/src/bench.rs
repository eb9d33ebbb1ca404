//! `cargo xtask bench`: what profiling costs the workload, on this machine's kernel.
//!
//! For each workload, alternating run by run: the workload alone, then under each tool. A
//! tool is started first and the workload timed only once the tool says it is attached, so
//! the ratio is the steady-state slowdown; attach and detach time are measured apart. Peak RSS
//! comes from wait4(). Results: target/bench/bench.txt and bench.json.

use anyhow::{anyhow, bail, Context, Result};
use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{build, root, sh, vm::have};

/// A bpftrace script doing what tracepoint mode does: per-task wait start, per-stack totals.
const BPFTRACE: &str = "tracepoint:lock:contention_begin { @start[tid] = nsecs; }
tracepoint:lock:contention_end /@start[tid]/ { @ns[kstack] = sum(nsecs - @start[tid]); @n = count(); delete(@start[tid]); }
END { clear(@start); clear(@ns); print(@n); clear(@n); }";

struct Tool {
    name: &'static str,
    /// Command line; the workload is not part of it (the tool runs system-wide).
    argv: Vec<String>,
    /// A line on stdout or stderr that means "attached".
    ready: &'static str,
}

struct Sample {
    ratio: f64,
    attach_ms: f64,
    detach_ms: f64,
    rss_kb: i64,
    events: u64,
    lost: u64,
    secs: f64,
}

fn time_workload(bin: &Path, cycles: u64, jobs: u64) -> Result<f64> {
    let t = Instant::now();
    let st = Command::new(bin).args([cycles.to_string(), "-j".into(), jobs.to_string()]).status()?;
    if !st.success() {
        bail!("{} failed", bin.display());
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Starts `tool`, returns it once attached, with the attach time.
fn start(tool: &Tool) -> Result<(Child, f64, std::sync::mpsc::Receiver<String>)> {
    let t = Instant::now();
    let mut child = Command::new(&tool.argv[0])
        .args(&tool.argv[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", tool.name))?;
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l.contains(tool.ready) => return Ok((child, t.elapsed().as_secs_f64() * 1e3, rx)),
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                bail!("{} did not attach: {}", tool.name, seen.join(" | "));
            }
        }
    }
}

/// SIGINT, then wait4 for the exit and the peak RSS (KiB).
fn stop(child: Child) -> Result<(f64, i64)> {
    let pid = child.id() as i32;
    let t = Instant::now();
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    Ok((t.elapsed().as_secs_f64() * 1e3, ru.ru_maxrss))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

pub fn run(pairs: usize, cycles: u64, jobs: u64) -> Result<()> {
    build()?;
    if !have("bpftrace") {
        let _ = sh(Command::new("apt-get")
            .args(["install", "-y", "-q", "bpftrace"])
            .env("DEBIAN_FRONTEND", "noninteractive"));
    }
    let rel = root().join("target/release");
    let out = root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let rm_out = out.join("rmapprof-out");
    let mut tools = vec![Tool {
        name: "rmapprof (tracepoint)",
        argv: vec![
            rel.join("rmapprof").display().to_string(),
            "--mode".into(),
            "tracepoint".into(),
            "-o".into(),
            rm_out.display().to_string(),
        ],
        ready: "rmapprof: profiling",
    }];
    let mut unavailable =
        vec!["rmapprof kprobe/fentry: this kernel has no kprobes and refuses fentry".to_owned()];
    if have("bpftrace") {
        tools.push(Tool {
            name: "bpftrace",
            argv: vec!["bpftrace".into(), "-e".into(), BPFTRACE.into()],
            ready: "Attaching",
        });
    } else {
        unavailable.push("bpftrace: not installable here".into());
    }
    unavailable.push("perf lock contention -b: this perf was built without BUILD_BPF_SKEL".into());

    let mut text = String::new();
    let mut json = Vec::new();
    for workload in ["spawn", "execl"] {
        let bin = rel.join(workload);
        let mut base = Vec::new();
        let mut samples: Vec<Vec<Sample>> = tools.iter().map(|_| Vec::new()).collect();
        for pair in 0..pairs {
            eprintln!("xtask: bench {workload}: pair {}/{pairs}", pair + 1);
            let b = time_workload(&bin, cycles, jobs)?;
            base.push(b);
            for (i, tool) in tools.iter().enumerate() {
                let (child, attach_ms, rx) = start(tool)?;
                let secs = time_workload(&bin, cycles, jobs)?;
                let (detach_ms, rss_kb) = stop(child)?;
                let (events, lost) = if i == 0 {
                    rmapprof_events(&rm_out)?
                } else {
                    (
                        rx.iter()
                            .find_map(|l| l.strip_prefix("@n: ").and_then(|n| n.trim().parse().ok()))
                            .unwrap_or(0),
                        0,
                    )
                };
                samples[i].push(Sample { ratio: b / secs, attach_ms, detach_ms, rss_kb, events, lost, secs });
            }
        }
        let base_rate = cycles as f64 / median(base.clone());
        text += &format!("\n{workload} {cycles} -j {jobs}: unprofiled median {base_rate:.0} cycles/s, {pairs} alternating pairs\n");
        text += &format!(
            "{:<24} {:>9} {:>10} {:>6} {:>10} {:>10} {:>9}\n",
            "TOOL", "THRUPUT", "EVENTS/S", "LOST", "ATTACH", "DETACH", "PEAK RSS"
        );
        for (tool, s) in tools.iter().zip(&samples) {
            let ratio = median(s.iter().map(|x| x.ratio).collect());
            let eps = median(s.iter().map(|x| x.events as f64 / x.secs).collect());
            let lost: u64 = s.iter().map(|x| x.lost).sum();
            let attach = median(s.iter().map(|x| x.attach_ms).collect());
            let detach = median(s.iter().map(|x| x.detach_ms).collect());
            let rss = s.iter().map(|x| x.rss_kb).max().unwrap_or(0);
            text += &format!(
                "{:<24} {:>9.3} {:>10.0} {:>6} {:>7.0} ms {:>7.0} ms {:>6.1} MB\n",
                tool.name,
                ratio,
                eps,
                lost,
                attach,
                detach,
                rss as f64 / 1024.0
            );
            json.push(serde_json::json!({
                "workload": workload, "tool": tool.name, "throughput_ratio": ratio, "events_per_s": eps,
                "lost": lost, "attach_ms": attach, "detach_ms": detach, "peak_rss_kb": rss, "pairs": pairs,
            }));
        }
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let header = format!(
        "cargo xtask bench on {} CPUs, Linux {}; throughput = unprofiled time / profiled time (median)\nnot compared here: {}\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kernel.trim(),
        unavailable.join("; ")
    );
    let text = header + &text;
    std::fs::write(out.join("bench.txt"), &text)?;
    let doc = serde_json::json!({ "kernel": kernel.trim(), "not_compared": unavailable, "results": json });
    std::fs::write(out.join("bench.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    print!("{text}");
    Ok(())
}

/// Contention events rmapprof handled (every lock class) and what it lost, from report.json.
fn rmapprof_events(dir: &Path) -> Result<(u64, u64)> {
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json"))?)?;
    // "nested" waits (a spinlock inside an rwsem wait) are left out by design, as perf does:
    // they are reported, but they are not events lost to a full map or a failed stack.
    let sum = |v: &serde_json::Value| -> u64 {
        match v {
            serde_json::Value::Array(a) => a.iter().filter_map(|l| l["contentions"].as_u64()).sum(),
            serde_json::Value::Object(o) => {
                o.iter().filter(|(k, _)| *k != "nested").filter_map(|(_, n)| n.as_u64()).sum()
            }
            _ => 0,
        }
    };
    let (events, lost) = (sum(&r["locks"]), sum(&r["lost"]));
    if r["locks"].as_array().is_none() {
        return Err(anyhow!("{}: no locks in report", dir.display()));
    }
    Ok((events, lost))
}
