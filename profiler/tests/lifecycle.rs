//! A run's life, start to end, on the running kernel (root): the first line at once, the
//! duration it reports, the --interval tables, a stdout that goes away, and a COMMAND that is
//! never left running, however the run ends. Over 400 lines: one test per way a run ends,
//! each with its own workload and checks.

mod common;

use common::*;
use rmapprof_report::Report;
use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

/// Processes of process group `pgid` still running (exited ones waiting to be reaped do not
/// count), from /proc/PID/stat: `pid (comm) state ppid pgrp ...`.
fn group_members(pgid: i32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let rest = &stat[stat.rfind(')').unwrap() + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            f[2].parse::<i32>().ok() == Some(pgid) && !matches!(f[0], "Z" | "X")
        })
        .collect()
}

/// rmapprof with `args` started; returns it once it says it is profiling, with threads
/// collecting its stderr lines and stdout.
struct Run {
    child: Child,
    out: tempfile::TempDir,
    started: Instant,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<String>>,
    /// Each reader sends once at end of file.
    eof: mpsc::Receiver<()>,
}

impl Run {
    fn start(args: &[&str], stdout: bool) -> Self {
        let out = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut child = rmapprof()
            .args(["-o", out.path().to_str().unwrap()])
            .args(args)
            .stdout(if stdout { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (eof_tx, eof) = mpsc::channel();
        let text = Arc::new(Mutex::new(String::new()));
        if let Some(mut o) = child.stdout.take() {
            let (text, eof_tx) = (text.clone(), eof_tx.clone());
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = o.read_to_string(&mut s);
                *text.lock().unwrap() = s;
                let _ = eof_tx.send(());
            });
        } else {
            let _ = eof_tx.send(());
        }
        let (profiling_tx, profiling) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(err).lines() {
                    let Ok(l) = l else { break };
                    if l.contains("rmapprof: profiling") {
                        let _ = profiling_tx.send(());
                    }
                    lines.lock().unwrap().push(l);
                }
                let _ = eof_tx.send(());
            });
        }
        let _ = profiling.recv_timeout(Duration::from_secs(30));
        Self { child, out, started, stderr: lines, stdout: text, eof }
    }

    /// COMMAND's pid (its process group's id): rmapprof's child.
    fn command_pid(&self) -> i32 {
        let me = self.child.id().to_string();
        let t = Instant::now();
        loop {
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
                let Some(i) = stat.rfind(')') else { continue };
                let f: Vec<&str> = stat[i + 1..].split_whitespace().collect();
                if f[1] == me {
                    return e.file_name().to_string_lossy().parse().unwrap();
                }
            }
            assert!(t.elapsed() < Duration::from_secs(10), "COMMAND never started");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the exit: (status, stderr lines, stdout, report.json, seconds since start).
    /// A process that kept rmapprof's stderr or stdout (COMMAND left behind) does not make
    /// this wait for ever.
    fn finish(mut self) -> (i32, Vec<String>, String, Report, f64) {
        let st = self.child.wait().unwrap();
        let secs = self.started.elapsed().as_secs_f64();
        for _ in 0..2 {
            let _ = self.eof.recv_timeout(Duration::from_secs(3));
        }
        let err = self.stderr.lock().unwrap().clone();
        let out = self.stdout.lock().unwrap().clone();
        let all = err.join("\n");
        assert!(!all.contains("panicked"), "{all}");
        let path = self.out.path().join("report.json");
        let json =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("report.json: {e}; stderr: {all}"));
        let r = parse_report(&json, &path);
        (st.code().unwrap_or(-1), err, out, r, secs)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until COMMAND's process group has `n` members (sh has started sleep): COMMAND must be
/// a group of its own for what the tests check afterwards to mean anything.
fn wait_for_group(pgid: i32, n: usize) {
    let t = Instant::now();
    while group_members(pgid).len() < n {
        assert!(t.elapsed() < Duration::from_secs(10), "COMMAND is not a process group of its own");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn said<'a>(lines: &'a [String], what: &str) -> &'a str {
    lines.iter().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no line with {what:?}: {lines:#?}"))
}

#[test]
fn out_of_range_durations_are_refused_in_one_line() {
    let _g = serial();
    for args in [
        &["--duration", "18446744073709551615s"][..],
        &["--interval", "18446744073709551615s"],
        &["-d", "18446744073709551615"],
        &["-i", "366days"],
    ] {
        let (code, err) = fails(rmapprof().args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("rmapprof: ") && err.contains("365 days"), "{args:?}: {err}");
    }
}

/// `| head -1`, or a reader that is gone from the start: the run goes on and writes its
/// outputs, exits 0, says nothing about it.
#[test]
fn a_stdout_that_goes_away_loses_nothing() {
    let _g = serial();
    for early_close in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let mut child = rmapprof()
            .args(["-d", "1500ms", "-i", "300ms", "-o", out.path().to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        if early_close {
            // As `head -1`: one line, then the reader exits.
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            assert!(line.contains("+0.00 s .. +0.30 s"), "{line}");
        } else {
            drop(stdout);
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "early close {early_close}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("stdout"),
            "{err}"
        );
        read_report(&out.path().join("report.json"));
        for f in ["report.txt", "stacks.folded", "flamegraph.svg"] {
            assert!(out.path().join(f).exists(), "{f}");
        }
    }
}

/// The report's duration is the profiling window, not the time taken to stop and write.
#[test]
fn the_reported_duration_is_the_profiling_window() {
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let o = rmapprof().args(["-d", "200ms", "-o", out.path().to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = read_report(&out.path().join("report.json")).duration_ns;
    assert!((200_000_000..400_000_000).contains(&d), "-d 200ms reported {d} ns");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("(tracepoint mode, {:.2} s)", d as f64 / 1e9))
    );
}

/// A line at once, before the slow part (BTF, loading and verifying the programs).
#[test]
fn the_first_line_comes_at_once() {
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let mut child = rmapprof()
        .args(["-d", "200ms", "-o", out.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    let at = t.elapsed();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{first}{rest}");
    assert!(first.starts_with(LOADING), "{first}");
    assert!(at < Duration::from_millis(250), "first line after {at:?}");
    eprintln!("first line after {at:?}");
}

/// Each table is that period's own: stamped, contiguous, the last (partial) one printed, the
/// waits adding up to the final report's, and no maximum in a period without waits.
#[test]
fn interval_tables_are_each_periods_own_and_add_up() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "periods.dat");
    let path = hot.path.to_str().unwrap().to_owned();
    assert!(path.len() <= 36, "a path the table prints whole: {path}");
    let run = Run::start(&["-i", "1s", "--inode", &path], true);
    hot.churn(2);
    // Then quiet for more than a period: a period with no waits on the file.
    std::thread::sleep(Duration::from_millis(2300));
    run.signal(libc::SIGINT);
    let (code, err, stdout, r, _) = run.finish();
    assert_eq!(code, 0, "{err:?}");
    let total = file_entry(&r, hot.ino()).expect("churned file reported").contentions;
    assert!(total > 0, "no waits on the churned file");

    let tables: Vec<&str> = stdout.split("i_mmap_rwsem contention by file").skip(1).collect();
    let (final_summary, periods) = tables.split_last().unwrap();
    assert!(periods.len() >= 3, "{stdout}");
    assert!(!final_summary.contains(" .. "), "{final_summary}");
    let (mut sum, mut at, mut quiet) = (0, "+0.00".to_owned(), 0);
    for (i, t) in periods.iter().enumerate() {
        let head = t.lines().next().unwrap();
        let (from, to) = head
            .split_once(", ")
            .and_then(|(_, span)| span.split_once(" s .. "))
            .unwrap_or_else(|| panic!("table without its period: {head}"));
        assert_eq!(from, at, "periods follow each other: {stdout}");
        at = to.split(' ').next().unwrap().to_owned();
        assert_eq!(head.ends_with(" (end of run)"), i == periods.len() - 1, "{head}");
        let row: Vec<&str> = t
            .lines()
            .find(|l| l.starts_with(&path))
            .unwrap_or_else(|| panic!("the selected file is in every table: {t}"))
            .split_whitespace()
            .collect();
        let waits: u64 = row[1].parse().unwrap();
        sum += waits;
        // FILE WAITS TOTAL(2) MAX(1 or 2) ...
        let max = row[4];
        if waits == 0 {
            quiet += 1;
            assert_eq!(max, "-", "a period without waits has no maximum: {t}");
        } else {
            assert_ne!(max, "-", "{t}");
        }
    }
    assert_eq!(sum, total, "the periods' waits add up to the report's: {stdout}");
    assert!(quiet >= 1, "no quiet period seen: {stdout}");
    // The last period ends where the report's duration does.
    assert_eq!(format!("+{:.2}", r.duration_ns as f64 / 1e9), at, "{stdout}");
}

/// `--duration` with COMMAND still running: ended as timeout(1) does, exit 124, said so.
#[test]
fn duration_ends_a_command_still_running() {
    let _g = serial();
    let run = Run::start(&["--duration", "1", "--", "sleep", "1000"], false);
    let pgid = run.command_pid();
    wait_for_group(pgid, 1);
    let (code, err, _, r, secs) = run.finish();
    assert_eq!(code, 124, "{err:?}");
    let line = said(&err, "--duration 1s is up and COMMAND is still running");
    // Its cgroup, or its process group where there is none.
    assert!(
        line.contains("sent SIGTERM to its ") && line.contains(&format!("(pid {pgid}), as timeout(1)")),
        "{line}"
    );
    assert!(group_members(pgid).is_empty(), "left running: {:?}", group_members(pgid));
    assert!(secs < 10.0);
    assert!(r.duration_ns < 1_500_000_000);
}

/// SIGTERM to rmapprof alone: passed on to COMMAND's whole group (here a shell and its
/// child), which exits; rmapprof exits with COMMAND's status.
#[test]
fn sigterm_to_rmapprof_alone_ends_the_command_group() {
    let _g = serial();
    let run = Run::start(&["--", "sh", "-c", "sleep 1000; exit 0"], false);
    let pgid = run.command_pid();
    wait_for_group(pgid, 2);
    let t = Instant::now();
    run.signal(libc::SIGTERM);
    let (code, err, _, _, _) = run.finish();
    assert_eq!(code, 128 + libc::SIGTERM, "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "no grace needed: {:?}", t.elapsed());
    said(&err, &format!("the run was ended by SIGTERM: sent SIGTERM to COMMAND (pid {pgid}"));
    assert!(group_members(pgid).is_empty(), "left running: {:?}", group_members(pgid));
}

/// SIGINT to rmapprof alone, COMMAND ignoring it: killed after the grace period, said so.
#[test]
fn a_command_ignoring_sigint_is_killed_after_the_grace_period() {
    let _g = serial();
    let run = Run::start(&["--", "sh", "-c", "trap '' INT; sleep 1000; exit 0"], false);
    let pgid = run.command_pid();
    wait_for_group(pgid, 2);
    let t = Instant::now();
    run.signal(libc::SIGINT);
    let (code, err, _, _, _) = run.finish();
    assert_eq!(code, 128 + libc::SIGINT, "{err:?}");
    let waited = t.elapsed();
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(6), "{waited:?}");
    said(&err, "waiting up to 2 s for it to exit");
    let killed = said(&err, "did not exit within 2 s of SIGINT");
    assert!(killed.contains(&pgid.to_string()) && killed.contains("SIGKILL"), "{killed}");
    assert!(group_members(pgid).is_empty(), "left running: {:?}", group_members(pgid));
}

/// A second signal while waiting for COMMAND kills the group at once, and the profile is
/// still written (command.rs tests the third signal, which aborts).
#[test]
fn a_second_signal_kills_the_command_group_at_once() {
    let _g = serial();
    let run = Run::start(&["--", "sh", "-c", "trap '' INT TERM; sleep 1000; exit 0"], false);
    let pgid = run.command_pid();
    wait_for_group(pgid, 2);
    run.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    run.signal(libc::SIGINT);
    let (code, err, _, _, _) = run.finish();
    assert_eq!(code, 128 + libc::SIGINT, "{err:?}");
    let killed = said(&err, "SIGINT during the grace period: killed COMMAND's");
    assert!(killed.contains(&pgid.to_string()), "{killed}");
    assert!(group_members(pgid).is_empty(), "left running: {:?}", group_members(pgid));
}

/// COMMAND exits leaving a background child in its group: ended, its pid named; the status
/// is COMMAND's.
#[test]
fn a_command_leaving_a_child_behind() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg.pid");
    let script = format!("sleep 1000 & echo $$ $! > {}; exit 3", pidfile.display());
    let run = Run::start(&["--", "sh", "-c", &script], false);
    let (code, err, _, _, _) = run.finish();
    assert_eq!(code, 3, "{err:?}");
    let ids = std::fs::read_to_string(&pidfile).unwrap();
    let (sh, bg) = ids.trim().split_once(' ').unwrap();
    let pgid: i32 = sh.parse().unwrap();
    let line = said(&err, "COMMAND exited, leaving 1 process of its");
    assert!(line.contains(&format!("(pid {bg})")) && line.contains("sent SIGTERM"), "{line}");
    assert!(group_members(pgid).is_empty(), "left running: {:?}", group_members(pgid));
}

/// The note for a file nobody maps yet is a whole sentence; a subcommand's missing arguments
/// are named.
#[test]
fn messages_say_it_all() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("later.dat");
    std::fs::write(&f, b"x").unwrap();
    let o = rmapprof()
        .args(["--inode", f.to_str().unwrap(), "-o"])
        .arg(dir.path().join("out"))
        .args(["--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "rmapprof: note: no process maps {} yet; its waits are counted once COMMAND maps it\n",
            f.display()
        )),
        "{err}"
    );
    let (code, err) = fails(rmapprof().arg("diff"));
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        "rmapprof: the following required arguments were not provided: <BEFORE> <AFTER> \
         (see rmapprof diff --help)"
    );
    let (code, err) = fails(rmapprof().arg("model"));
    assert_eq!(code, 2);
    assert!(err.contains("<REPORT.json>") && err.contains("rmapprof model --help"), "{err}");
}

/// A newline in a file name, an output directory or a COMMAND argument is escaped on stderr:
/// every line there is one message starting `rmapprof:`.
#[test]
fn a_newline_in_a_name_keeps_stderr_lines_whole() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = fails(rmapprof().args(["--inode", "/no/such\ndir/lib.so"]));
    assert_eq!(code, 2);
    assert!(err.contains("/no/such\\ndir/lib.so"), "{err}");
    let later = dir.path().join("later\nfile.dat");
    std::fs::write(&later, b"x").unwrap();
    let o = rmapprof()
        .arg("--inode")
        .arg(&later)
        .arg("-o")
        .arg(dir.path().join("out\nput"))
        .args(["--", "sh", "-c", "exit 0\n"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.lines().all(|l| l.starts_with("rmapprof: ")), "{err}");
    for want in ["later\\nfile.dat", "out\\nput", "exit 0\\n"] {
        assert!(err.contains(want), "{want} not escaped: {err}");
    }
}
