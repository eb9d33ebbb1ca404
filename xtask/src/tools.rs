//! The tools `cargo xtask bench` compares (rmapprof in every mode, perf lock contention -b,
//! bpftrace) and how to run one: start it and wait until it is attached, stop it, read what it
//! handled and lost. Shared by the bench and its `--stress` part.

use anyhow::{anyhow, bail, Context, Result};
use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    host::{have, root},
    perf,
};

/// Short names for `--tools`, in the order the tools run.
pub const TOOL_NAMES: [&str; 8] =
    ["tracepoint", "kprobe", "fentry", "kprobe-acq", "kprobe-acq-nocache", "fentry-acq", "perf", "bpftrace"];

/// A bpftrace script doing what tracepoint mode does: per-task wait start, per-stack totals.
const BPFTRACE: &str = "tracepoint:lock:contention_begin { @start[tid] = nsecs; }
tracepoint:lock:contention_end /@start[tid]/ { @ns[kstack] = sum(nsecs - @start[tid]); @n = count(); delete(@start[tid]); }
END { clear(@start); clear(@ns); print(@n); clear(@n); }";

#[derive(Clone)]
pub(crate) struct Tool {
    /// One of [`TOOL_NAMES`].
    pub short: &'static str,
    pub name: String,
    /// Command line; the workload is not part of it (the tool runs system-wide).
    pub argv: Vec<String>,
    /// rmapprof's output directory (`-o`), where its report.json is written.
    pub output: Option<PathBuf>,
    ready: Ready,
    /// How to read events handled and lost from its output (rmapprof: its report.json).
    pub kind: Kind,
}

impl Tool {
    /// Where rmapprof wrote its report.json; an error for the other tools.
    pub fn report_dir(&self) -> Result<&Path> {
        self.output.as_deref().ok_or_else(|| anyhow!("{} writes no report.json", self.name))
    }
}

/// How a tool says it is attached.
#[derive(Clone)]
enum Ready {
    /// A line on its stdout or stderr.
    Line(&'static str),
    /// It holds this many BPF links (perf prints nothing until it stops).
    BpfLinks(usize),
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Rmapprof,
    Bpftrace,
    Perf,
}

/// rmapprof in every mode, bpftrace and perf lock contention -b: those that attach on this
/// kernel, and the others with the reason they did not.
pub(crate) fn tools(out: &Path, only: &[String]) -> Result<(Vec<Tool>, Vec<String>)> {
    if let Some(t) = only.iter().find(|t| !TOOL_NAMES.contains(&t.as_str())) {
        bail!("--tools: unknown tool {t} (one of {})", TOOL_NAMES.join(", "));
    }
    // By default every tool but the no-cache variant (a development comparison).
    let selected = |short: &str| {
        if only.is_empty() {
            !short.ends_with("nocache")
        } else {
            only.iter().any(|o| o == short)
        }
    };
    let rmapprof = root().join("target/release/rmapprof").display().to_string();
    let mut candidates = Vec::new();
    // "-acq" is --acquisitions (every acquisition: down_*/up_* of every rwsem probed); "no
    // stack cache" shows what the call-site stack cache saves there: one unwind per
    // acquisition, as before it. The most detailed mode comes last (--stress takes it).
    let acq = ["--acquisitions"];
    let acq_nocache = ["--acquisitions", "--stack-cache-check", "0"];
    for (short, name, mode, extra) in [
        ("tracepoint", "tracepoint", "tracepoint", &[][..]),
        ("kprobe", "kprobe", "kprobe", &[]),
        ("fentry", "fentry", "fentry", &[]),
        ("kprobe-acq", "kprobe, acquisitions", "kprobe", &acq),
        ("kprobe-acq-nocache", "kprobe, acquisitions, no stack cache", "kprobe", &acq_nocache),
        ("fentry-acq", "fentry, acquisitions", "fentry", &acq),
    ] {
        let dir = out.join(format!("rmapprof-{}", name.replace([',', ' '], "")));
        let mut argv =
            vec![rmapprof.clone(), "--mode".into(), mode.into(), "-o".into(), dir.display().to_string()];
        argv.extend(extra.iter().map(|a| a.to_string()));
        candidates.push(Tool {
            short,
            name: format!("rmapprof ({name})"),
            argv,
            output: Some(dir),
            ready: Ready::Line("rmapprof: profiling"),
            kind: Kind::Rmapprof,
        });
    }
    let mut unavailable = Vec::new();
    match perf::binary() {
        Some(perf) => candidates.push(Tool {
            short: "perf",
            name: "perf lock con -ab".into(),
            argv: vec![
                perf.display().to_string(),
                "lock".into(),
                "contention".into(),
                "-a".into(),
                "-b".into(),
            ],
            output: None,
            ready: Ready::BpfLinks(2),
            kind: Kind::Perf,
        }),
        None if selected("perf") => {
            unavailable.push("perf lock contention -b: tools/perf not built (see above)".into())
        }
        None => {}
    }
    if have("bpftrace") {
        candidates.push(Tool {
            short: "bpftrace",
            name: "bpftrace".into(),
            argv: vec!["bpftrace".into(), "-e".into(), BPFTRACE.into()],
            output: None,
            ready: Ready::Line("Attaching"),
            kind: Kind::Bpftrace,
        });
    } else if selected("bpftrace") {
        unavailable.push("bpftrace: not installed".into());
    }
    let mut tools = Vec::new();
    for t in candidates.into_iter().filter(|t| selected(t.short)) {
        eprintln!("xtask: bench: does {} attach here?", t.name);
        match start(&t).and_then(|(child, _, _)| stop(child, t.kind)) {
            Ok(_) => tools.push(t),
            Err(e) => {
                let why = format!("{e:#}");
                let why = why.lines().find(|l| l.contains("rmapprof:") || l.contains("rror")).unwrap_or(&why);
                unavailable.push(format!("{}: {}", t.name, why.chars().take(200).collect::<String>()));
            }
        }
    }
    Ok((tools, unavailable))
}

/// BPF links the process holds (its fds that are `anon_inode:bpf_link`).
fn bpf_links(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:bpf_link")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Starts `tool`, returns it once attached, with the attach time.
pub(crate) fn start(tool: &Tool) -> Result<(Child, f64, std::sync::mpsc::Receiver<String>)> {
    let t = Instant::now();
    let mut child = Command::new(&tool.argv[0])
        .args(&tool.argv[1..])
        .stdin(Stdio::null())
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
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let attached = match (rx.recv_timeout(Duration::from_millis(5)), &tool.ready) {
            (Ok(l), Ready::Line(ready)) if l.contains(ready) => true,
            (Ok(l), _) => {
                seen.push(l);
                false
            }
            (Err(_), Ready::BpfLinks(n)) => bpf_links(child.id()) >= *n,
            (Err(_), _) => false,
        };
        if attached {
            return Ok((child, t.elapsed().as_secs_f64() * 1e3, rx));
        }
        if let Ok(Some(st)) = child.try_wait() {
            // Drain what it said before dying: the reason it could not attach.
            seen.extend(rx.try_iter());
            bail!("{} exited ({st}): {}", tool.name, seen.join(" | "));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not attach in 120 s: {}", tool.name, seen.join(" | "));
        }
    }
}

/// SIGINT, then wait4 for the exit and the peak RSS (KiB). bpftrace drops a SIGINT that
/// arrives while it is still attaching, so for it the signal is repeated each second (not for
/// rmapprof: a second SIGINT means "exit at once, no outputs"); after 60 s, SIGKILL.
pub(crate) fn stop(child: Child, kind: Kind) -> Result<(f64, i64)> {
    let pid = child.id() as i32;
    let t = Instant::now();
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut next_signal = Instant::now();
    loop {
        if Instant::now() >= next_signal {
            if t.elapsed() > Duration::from_secs(60) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            } else if kind != Kind::Rmapprof || t.elapsed() < Duration::from_millis(500) {
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            next_signal += Duration::from_secs(1);
        }
        match unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) } {
            0 => std::thread::sleep(Duration::from_millis(2)),
            p if p == pid => break,
            _ => bail!("wait4: {}", std::io::Error::last_os_error()),
        }
    }
    Ok((t.elapsed().as_secs_f64() * 1e3, ru.ru_maxrss))
}

/// Events rmapprof handled, from its report.json: contentions of every lock class, plus, in
/// kprobe/fentry modes, i_mmap_rwsem acquisitions and rmap tree operations; and what it lost.
pub(crate) fn rmapprof_events(dir: &Path) -> Result<(u64, std::collections::BTreeMap<String, u64>)> {
    let r = read_report(dir)?;
    let mut events: u64 = r.locks.iter().map(|l| l.contentions).sum();
    for f in &r.files {
        events += [f.slowpaths, f.acquisitions, f.rmap_inserts, f.rmap_removes].iter().flatten().sum::<u64>();
    }
    Ok((events, lost_of(&r)))
}

pub(crate) fn read_report(dir: &Path) -> Result<rmapprof_report::Report> {
    let p = dir.join("report.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// Lost events by cause, the causes that lost any (nested waits, unmeasured by design as perf
/// does, are not in `lost`: `nested_waits`).
pub(crate) fn lost_of(r: &rmapprof_report::Report) -> std::collections::BTreeMap<String, u64> {
    r.lost.iter().filter(|(_, &v)| v > 0).map(|(k, &v)| (k.clone(), v)).collect()
}
