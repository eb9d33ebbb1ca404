//! One profiling run: check, attach, wait for the end (duration, COMMAND, PID, signal), detach,
//! attribute, write the outputs.

use anyhow::{anyhow, Result};
use std::{
    path::Path,
    time::{Duration, Instant},
};
use tokio::{
    process::{Child, Command},
    time::{interval_at, Instant as TokioInstant},
};

use crate::{
    attribution::{
        files::{self, FileIndex},
        symbols::KernelSymbols,
    },
    cli::Cli,
    collector::{Collector, ProbeStatus, Snapshot},
    output::{invoking_user, OutputDir},
    preflight, render,
    report::{self, Report},
    signals, UsageError,
};

/// An error that carries its own exit status (127: COMMAND not found, as a shell says).
#[derive(Debug)]
pub struct Exit(pub u8, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow!(UsageError(msg.into()))
}

/// Why profiling stopped.
enum End {
    Duration,
    Command(std::process::ExitStatus),
    PidExited,
    Signal(i32),
}

pub async fn run(cli: Cli) -> Result<u8> {
    if cli.acquisitions && cli.mode == crate::collector::Mode::Tracepoint {
        return Err(usage("--acquisitions needs kprobe or fentry mode; the lock tracepoints see only waits"));
    }
    preflight::check_caps()?;
    if let Some(pid) = cli.pid {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(usage(format!("-p {pid}: no such process")));
        }
    }
    let mut index = FileIndex::default();
    index.scan_proc();
    let selected = cli
        .inodes
        .iter()
        .map(|a| files::resolve(a, &index).map_err(|e| usage(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    // A file nobody maps has no rmap to contend on: without a COMMAND that may map it, that is
    // a mistake (wrong copy, wrong name); with one, it is the usual `--inode ./lib.so -- ./prog`.
    for s in selected.iter().filter(|s| !s.mapped) {
        if cli.command.is_empty() {
            return Err(usage(format!(
                "--inode {}: no process maps it; give the command that does after `--`",
                s.path.display()
            )));
        }
        eprintln!("rmapprof: note: no process maps {} yet; COMMAND may", s.path.display());
    }
    let out = OutputDir::create(&cli.output)?;

    // Signal handlers go in before attaching, so a Ctrl-C during attach ends the run cleanly.
    signals::install();

    let collector =
        Collector::start(cli.mode, &cli.btf, cli.pid, cli.stacks(), cli.bpf_stats, cli.acquisitions)?;
    let mut signal_poll = tokio::time::interval(Duration::from_millis(20));
    let run = Run {
        cli: &cli,
        mode: collector.mode.name(),
        acquisitions: collector.acquisitions,
        probes: collector.probes.clone(),
        started: Instant::now(),
        selected: &selected,
    };
    let mut child = match spawn(&cli.command) {
        Ok(c) => c,
        Err(e) => {
            drop(collector);
            return Err(e);
        }
    };
    eprintln!(
        "rmapprof: profiling i_mmap_rwsem contention ({} mode{}, {}){}",
        collector.mode.name(),
        if collector.acquisitions { ", every acquisition" } else { "" },
        match (&cli.command[..], cli.pid) {
            ([], Some(p)) => format!("pid {p}"),
            ([], None) => "system-wide".into(),
            (c, _) => format!("system-wide while `{}` runs", c.join(" ")),
        },
        if child.is_none() && cli.duration.is_none() { "; Ctrl-C to stop" } else { "" }
    );

    let deadline = cli.duration.map(|d| TokioInstant::now() + d);
    let period = cli.interval.unwrap_or(Duration::from_secs(3600));
    let mut ticks = interval_at(TokioInstant::now() + period, period);
    let mut pid_poll = tokio::time::interval(Duration::from_millis(200));
    let mut last = Report::default();
    let end = loop {
        tokio::select! {
            _ = signal_poll.tick() => if let Some(sig) = signals::first() {
                break End::Signal(sig);
            },
            st = wait_child(&mut child), if child.is_some() => break End::Command(st?),
            _ = sleep_until_opt(deadline), if deadline.is_some() => break End::Duration,
            _ = ticks.tick(), if cli.interval.is_some() => {
                let snap = collector.snapshot(false)?;
                let cur = run.report(&snap, &index, &KernelSymbols::default());
                print!("{}", render::text::summary(&report::delta(&last, &cur)));
                println!();
                last = cur;
            }
            _ = pid_poll.tick(), if cli.pid.is_some() => {
                if !Path::new(&format!("/proc/{}", cli.pid.unwrap_or(0))).exists() {
                    break End::PidExited;
                }
            }
        }
    };
    // From here a signal (the first, if the run ended otherwise) is noted and the outputs are
    // still written whole; a second one exits at once (signals.rs).
    let snap = collector.stop()?;
    index.scan_proc();
    index.name_unmapped(snap.files());
    let report = run.report(&snap, &index, &KernelSymbols::load());
    write_outputs(&out, &report)?;
    print!("{}{}", render::text::summary(&report), render::text::classes(&report));
    eprintln!(
        "rmapprof: wrote report.txt report.json stacks.folded flamegraph.svg in {}",
        cli.output.display()
    );

    Ok(match end {
        End::Command(st) => exit_code(st),
        End::Signal(sig) => {
            if let Some(c) = child.as_mut() {
                // The terminal sent SIGINT to COMMAND too; pass on SIGTERM/SIGHUP ourselves.
                if sig != libc::SIGINT {
                    if let Some(pid) = c.id() {
                        unsafe { libc::kill(pid as i32, sig) };
                    }
                }
                match tokio::time::timeout(Duration::from_secs(5), c.wait()).await {
                    Ok(Ok(st)) => exit_code(st),
                    _ => 128 + sig as u8,
                }
            } else {
                0
            }
        }
        End::Duration | End::PidExited => 0,
    })
}

/// What a report is made of besides the snapshot and files.
struct Run<'a> {
    cli: &'a Cli,
    mode: &'static str,
    acquisitions: bool,
    probes: Vec<ProbeStatus>,
    started: Instant,
    selected: &'a [files::Selected],
}

impl Run<'_> {
    fn report(&self, snap: &Snapshot, index: &FileIndex, symbols: &KernelSymbols) -> Report {
        report::build(
            snap,
            &report::Context {
                mode: self.mode,
                acquisitions: self.acquisitions,
                duration_ns: self.started.elapsed().as_nanos() as u64,
                cycles: self.cli.cycles(),
                command: (!self.cli.command.is_empty()).then(|| self.cli.command.clone()),
                pid: self.cli.pid,
                probes: self.probes.clone(),
                selected: self.selected,
                index,
                symbols,
            },
        )
    }
}

fn write_outputs(out: &OutputDir, report: &Report) -> Result<()> {
    let folded = render::folded::folded(report);
    let mut files = vec![
        ("report.json".to_owned(), render::json(report).into_bytes()),
        ("report.txt".to_owned(), render::text::full(report).into_bytes()),
        ("flamegraph.svg".to_owned(), render::folded::flamegraph_svg(report, &folded)?),
        ("stacks.folded".to_owned(), folded.into_bytes()),
    ];
    if matches!(report.mode.as_str(), "kprobe" | "fentry") {
        // On-CPU spinning and off-CPU sleeping apart, as offcputime and profile would show them.
        use render::folded::{flamegraph_svg_titled, folded_waits, title, Waits};
        for (which, name) in [(Waits::Spin, "spin"), (Waits::Sleep, "sleep")] {
            let f = folded_waits(report, which);
            let t = format!("{} - {name} only", title(report));
            files.push((format!("flamegraph-{name}.svg"), flamegraph_svg_titled(report, &f, t)?));
            files.push((format!("stacks-{name}.folded"), f.into_bytes()));
        }
    }
    out.write_all(&files)
}

/// Starts COMMAND as the user who ran sudo (root otherwise).
fn spawn(command: &[String]) -> Result<Option<Child>> {
    let Some((prog, args)) = command.split_first() else {
        return Ok(None);
    };
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if let Some((uid, gid)) = invoking_user() {
        cmd.uid(uid).gid(gid);
    }
    match cmd.spawn() {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(anyhow!(Exit(127, format!("{prog}: command not found"))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(anyhow!(Exit(126, format!("{prog}: permission denied"))))
        }
        Err(e) => Err(anyhow!(Exit(126, format!("{prog}: {e}")))),
    }
}

async fn wait_child(child: &mut Option<Child>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<TokioInstant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A shell's view of a status: the exit code, or 128 + the signal that killed it.
fn exit_code(st: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.wrapping_add(s as u8),
        _ => 1,
    }
}
