//! `rmapprof [OPTIONS] [-- COMMAND]`, one profiling run: check, attach, wait for the end
//! (duration, COMMAND, PID, signal), detach, attribute, write the outputs.

use anyhow::Result;
use std::time::{Duration, Instant};
use tokio::time::{interval_at, Instant as TokioInstant};

use crate::{
    attribution::{files::FileIndex, select, symbols::KernelSymbols, FileId},
    cli::Cli,
    collector::Collector,
    errors::usage,
    interval,
    output::OutputDir,
    preflight, render,
    report::{self, Report},
    signals,
    supervisor::{self, Command},
    target,
};

/// Why profiling stopped.
enum End {
    Duration,
    Command(std::process::ExitStatus),
    PidExited,
    Signal(i32),
}

pub async fn run(mut cli: Cli) -> Result<u8> {
    cli.probes.check()?;
    preflight::check_caps()?;
    // The filter is on the process: a thread's id names its process.
    cli.pid = cli.pid.map(target::check).transpose()?;
    let mut index = FileIndex::default();
    index.scan_proc();
    let selected = cli
        .inodes
        .iter()
        .map(|a| select::resolve(a, &index).map_err(|e| usage(e.to_string())))
        .collect::<Result<Vec<_>>>()?
        .concat();
    // A file nobody maps has no rmap to contend on: without a COMMAND that may map it, that is
    // a mistake (wrong copy, wrong name); with one, it is the usual `--inode ./lib.so -- ./prog`.
    for s in selected.iter().filter(|s| !s.mapped) {
        if cli.command.is_empty() {
            return Err(usage(format!(
                "--inode {}: no process maps it; give the command that does after `--`",
                s.path.display()
            )));
        }
        say!(
            "rmapprof: note: no process maps {} yet; its waits are counted once COMMAND maps it",
            s.path.display()
        );
    }
    let out = OutputDir::create(&cli.output)?;
    let pprof = cli.pprof.as_deref().map(crate::output::PprofFile::new).transpose()?;

    // Signal handlers go in before attaching, so a Ctrl-C during attach ends the run cleanly.
    signals::install();

    // Reading BTF and loading and verifying the programs takes a moment: say what happens.
    say!("rmapprof: loading the probes (kernel BTF, eBPF verifier)...");
    let collector = Collector::start(&cli.probes.config(cli.pid, cli.bpf_stats, cli.by_task))?;
    // Fault injection for the tests: probes that take this long to load.
    if let Some(ms) = std::env::var("RMAPPROF_FAULT_LOAD_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    // A Ctrl-C while the probes loaded cancels the run before COMMAND starts: it never runs,
    // and a report of no COMMAND would be about nothing.
    if let (Some(sig), false) = (signals::first(), cli.command.is_empty()) {
        say!(
            "rmapprof: {} while the probes loaded: COMMAND not started, nothing written",
            supervisor::sig_name(sig)
        );
        return Ok(128 + sig as u8);
    }
    if let Some(pid) = cli.pid.filter(|&p| target::exited(p)) {
        return Err(target::exited_before_profiling(pid));
    }
    // The profiling window opens here, attach complete; nothing slow until the line saying so.
    let window = report::Window {
        mode: collector.mode,
        acquisitions: collector.acquisitions,
        probes: collector.probes.clone(),
        started: Instant::now(),
        cycles: cli.cycles(),
        command: (!cli.command.is_empty()).then(|| cli.command.clone()),
        pid: cli.pid,
        selected: &selected,
    };
    let mut command = Command::spawn(&cli.command)?;
    // Fault injection for the tests: an error while COMMAND runs (what `Drop` cleans up).
    if let Some(ms) = std::env::var("RMAPPROF_FAULT_FAIL_AFTER_SPAWN_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
        anyhow::bail!("fault injected: an error while COMMAND runs");
    }
    say!(
        "rmapprof: profiling i_mmap_rwsem contention ({} mode{}, {}){}",
        collector.mode.name(),
        if collector.acquisitions { ", every acquisition" } else { "" },
        match (&cli.command[..], cli.pid) {
            ([], Some(p)) => format!("pid {p}"),
            ([], None) => "system-wide".into(),
            (c, _) => format!(
                "system-wide while `{}` runs",
                shlex::try_join(c.iter().map(String::as_str)).unwrap_or_else(|_| c.join(" "))
            ),
        },
        if command.is_none() && cli.duration.is_none() { "; Ctrl-C to stop" } else { "" }
    );

    // One base for the deadline and the ticks: a tick due with the deadline does not print a
    // table of its own (the loop's order below puts the deadline first).
    let base = TokioInstant::now();
    let deadline = cli.duration.map(|d| base + d);
    let mut ticks = cli.interval.map(|p| interval_at(base + p, p));
    let mut signal_poll = tokio::time::interval(Duration::from_millis(20));
    let mut pid_poll = tokio::time::interval(Duration::from_millis(200));
    // The previous --interval snapshot's report; its duration_ns is its offset in the run.
    let mut last = Report::default();
    let end = loop {
        tokio::select! {
            biased;
            _ = signal_poll.tick() => if let Some(sig) = signals::first() {
                break End::Signal(sig);
            },
            st = wait_command(&mut command) => break End::Command(st?),
            _ = sleep_until_opt(deadline) => break End::Duration,
            _ = pid_poll.tick(), if cli.pid.is_some() => {
                if cli.pid.is_some_and(target::exited) {
                    break End::PidExited;
                }
            }
            _ = tick_opt(&mut ticks) => {
                let at = Instant::now();
                let snap = collector.snapshot(false)?;
                index.name_unmapped(snap.files().map(FileId::from));
                let cur = window.report(&snap, &index, &KernelSymbols::default(), at);
                out!("{}\n", interval::table(&last, &cur, false));
                last = cur;
            }
        }
    };
    // The window closes here, before detaching: stopping and attributing are not profiled time.
    let ended = Instant::now();
    // From here a signal (the first, if the run ended otherwise) is noted and the outputs are
    // still written whole; a second one exits at once (signals.rs).
    let snap = collector.stop()?;
    // Before COMMAND is ended: its maps name the files it used.
    index.scan_proc();
    index.name_unmapped(snap.files().map(FileId::from));
    let code = end_command(end, command.as_mut(), cli.duration).await;
    drop(command);
    let report = window.report(&snap, &index, &KernelSymbols::load(), ended);
    if cli.interval.is_some() {
        out!("{}\n", interval::table(&last, &report, true));
    }
    let files = render::outputs(&report)?;
    out.write_all(&files)?;
    // The line says what was written: every file of the list, never a list of its own.
    let mut wrote = vec![out.listing(files.iter().map(|(name, _)| name.as_str()))];
    if let Some(p) = &pprof {
        wrote.push(p.write(&report)?.display().to_string());
    }
    out!("{}{}", render::text::summary(&report), render::text::classes(&report));
    if cli.by_task {
        out!("{}", render::text::by_task(&report));
    }
    say!("rmapprof: wrote {}", wrote.join(" and "));
    Ok(code)
}

/// Ends what remains of COMMAND's process group (command.rs) and returns rmapprof's exit
/// status: COMMAND's when it exited by itself or on the signal passed on; 128 + the signal
/// when it had to be killed; 124 when --duration ended it, as timeout(1); else 0.
async fn end_command(end: End, command: Option<&mut Command>, duration: Option<Duration>) -> u8 {
    let Some(c) = command else {
        return match end {
            End::Command(st) => exit_code(st),
            _ => 0,
        };
    };
    // It may have exited just as the run ended otherwise.
    let end = match (end, c.exited()) {
        (End::Duration, Some(st)) => End::Command(st),
        (end, _) => end,
    };
    match end {
        End::Command(st) => {
            let left = c.members();
            if !left.is_empty() {
                c.end(libc::SIGTERM, supervisor::Why::LeftBehind(left)).await;
            }
            exit_code(st)
        }
        End::Signal(sig) => match c.end(sig, supervisor::Why::Signal(sig)).await {
            Some(st) => exit_code(st),
            None => 128 + sig as u8,
        },
        End::Duration => {
            c.end(libc::SIGTERM, supervisor::Why::Duration(duration.unwrap_or_default())).await;
            124
        }
        End::PidExited => 0, // -p and COMMAND exclude each other
    }
}

async fn wait_command(command: &mut Option<Command>) -> std::io::Result<std::process::ExitStatus> {
    match command {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn tick_opt(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(t) => {
            t.tick().await;
        }
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
