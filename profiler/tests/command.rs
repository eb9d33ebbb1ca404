//! COMMAND's life on the running kernel (root): started only when the probes are attached and
//! no signal came while they loaded, in a cgroup of its own that nothing of it escapes, ended
//! whatever a second signal does, and removed with it; what a shell says when it cannot start;
//! and `-p` of a process that is not there to profile.

mod common;

use common::*;
use rmapprof_report::Report;
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

/// rmapprof started with `args` and `env`, its stderr lines collected as they come.
struct Run {
    child: Child,
    out: tempfile::TempDir,
    lines: Arc<Mutex<Vec<String>>>,
    eof: mpsc::Receiver<()>,
}

impl Run {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let out = tempfile::tempdir().unwrap();
        let mut child = rmapprof()
            .args(["-o", out.path().to_str().unwrap()])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, eof) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
            let _ = tx.send(());
        });
        Self { child, out, lines, eof }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (30 s at most) for a line containing `what`.
    fn wait_for(&self, what: &str) -> String {
        let t = Instant::now();
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            assert!(t.elapsed() < Duration::from_secs(30), "no line with {what:?}: {:#?}", self.lines);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the exit: (exit code, -1 when killed by a signal; stderr lines).
    fn finish(&mut self) -> (i32, Vec<String>) {
        let st = self.child.wait().unwrap();
        let _ = self.eof.recv_timeout(Duration::from_secs(3));
        let lines = self.lines.lock().unwrap().clone();
        assert!(!lines.join("\n").contains("panicked"), "{lines:#?}");
        (st.code().unwrap_or(-1), lines)
    }

    fn report(&self) -> Option<Report> {
        let path = self.out.path().join("report.json");
        let json = std::fs::read_to_string(&path).ok()?;
        Some(parse_report(&json, &path))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn said<'a>(lines: &'a [String], what: &str) -> &'a str {
    lines.iter().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no line with {what:?}: {lines:#?}"))
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().next().unwrap_or("");
        !matches!(state, "Z" | "X")
    })
}

/// Reads a pid a shell wrote to `file` (10 s at most for it to appear).
fn pid_in(file: &Path) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(p) = std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok()) {
            return p;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{} never written", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// This process's cgroup2 directory, which rmapprof, our child, starts in: where it makes
/// COMMAND's. None on a machine without cgroup2.
fn own_cgroup_dir() -> Option<PathBuf> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = cg.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if !right.starts_with("cgroup2 ") {
            return None;
        }
        let f: Vec<&str> = left.split(' ').collect();
        let rel = Path::new(&own).strip_prefix(f[3]).ok()?;
        Some(Path::new(f[4]).join(rel))
    })
}

/// The cgroups rmapprof `pid` made and left behind.
fn cgroups_left(pid: u32) -> Vec<PathBuf> {
    let Some(dir) = own_cgroup_dir() else { return Vec::new() };
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("rmapprof-{pid}-")))
        .map(|e| e.path())
        .collect()
}

fn has_cgroup2() -> bool {
    own_cgroup_dir().is_some_and(|d| d.join("cgroup.procs").exists())
}

/// Issue 26 item 4: a second signal during the grace period kills COMMAND at once and the
/// profile of the first is still written; only a third aborts. Also when the second signal
/// lands before the grace period's wait begins (a fresh clone's run lost that race once: the
/// signal was counted as if before the grace period, and the wait ran its 2 s).
#[test]
fn a_second_signal_during_the_grace_period_still_writes_the_profile() {
    let _g = serial();
    let cases = [(libc::SIGINT, "0"), (libc::SIGTERM, "0"), (libc::SIGINT, "300")];
    for (sig, delay) in cases {
        let env = [("RMAPPROF_FAULT_GRACE_DELAY_MS", delay)];
        let mut run = Run::start(&["--", "sh", "-c", "trap '' INT TERM; sleep 1000; exit 0"], &env);
        run.wait_for("rmapprof: profiling");
        run.signal(sig);
        run.wait_for("waiting up to 2 s");
        run.signal(sig);
        let (code, lines) = run.finish();
        assert_eq!(code, 128 + sig, "{lines:#?}");
        let killed = said(&lines, "during the grace period: killed COMMAND's");
        assert!(killed.contains("SIGKILL") && killed.contains("writing the profile"), "{killed}");
        assert!(lines.iter().all(|l| l.starts_with("rmapprof: ")), "{lines:#?}");
        assert!(run.report().is_some(), "no report.json: {lines:#?}");
        said(&lines, "rmapprof: wrote report.json");
        assert_eq!(cgroups_left(run.pid()), Vec::<PathBuf>::new());
    }
}

/// Issue 26 item 5: a signal while the probes load ends the run before COMMAND starts: it
/// never runs. The load is made to last 700 ms more (fault injection), so that each delay
/// falls in it; without that, COMMAND runs only when rmapprof said it was profiling.
#[test]
fn a_signal_while_the_probes_load_never_starts_command() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    for (slow, delays) in [(true, [0, 20, 60, 150, 300]), (false, [0, 20, 60, 150, 300])] {
        for ms in delays {
            let marker = dir.path().join(format!("ran-{slow}-{ms}"));
            let env: &[(&str, &str)] = if slow { &[("RMAPPROF_FAULT_LOAD_DELAY_MS", "700")] } else { &[] };
            let mut run = Run::start(&["--", "touch", marker.to_str().unwrap()], env);
            std::thread::sleep(Duration::from_millis(ms));
            run.signal(libc::SIGINT);
            let (code, lines) = run.finish();
            let profiling = lines.iter().any(|l| l.contains("rmapprof: profiling"));
            if slow {
                assert!(!marker.exists(), "COMMAND ran after a signal {ms} ms in: {lines:#?}");
                // Killed before the handler exists (-1), or the run cancelled in one line.
                if code != -1 {
                    assert_eq!(code, 130, "{lines:#?}");
                    said(
                        &lines,
                        "rmapprof: SIGINT while the probes loaded: COMMAND not started, nothing written",
                    );
                    assert!(run.report().is_none());
                }
            } else {
                assert!(!marker.exists() || profiling, "COMMAND ran, unannounced: {lines:#?}");
            }
            assert_eq!(cgroups_left(run.pid()), Vec::<PathBuf>::new());
        }
    }
}

/// Issue 26 item 6: processes that leave COMMAND's process group (`setsid`, a shell's job
/// control) stay in its cgroup: ended when COMMAND exits, named; the cgroup removed.
#[test]
fn descendants_that_leave_the_process_group_are_ended() {
    let _g = serial();
    if !has_cgroup2() {
        eprintln!("no cgroup2 here: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("setsid.pid"), dir.path().join("job.pid"));
    let script = format!(
        "setsid sleep 1000 & echo $! > {}; bash -c 'set -m; sleep 1000 & echo $! > {}'; exit 0",
        p1.display(),
        p2.display()
    );
    let mut run = Run::start(&["--", "sh", "-c", &script], &[]);
    let (code, lines) = run.finish();
    assert_eq!(code, 0, "{lines:#?}");
    let (a, b) = (pid_in(&p1), pid_in(&p2));
    let line = said(&lines, "COMMAND exited, leaving 2 processes of its cgroup running");
    assert!(line.contains(&format!("pids {} {}", a.min(b), a.max(b))), "{line}");
    assert!(!running(a) && !running(b), "left running: {a} {b}");
    assert_eq!(cgroups_left(run.pid()), Vec::<PathBuf>::new());

    // A signal to rmapprof reaches them too, in the grace period's SIGTERM.
    let (p1, p2) = (dir.path().join("setsid2.pid"), dir.path().join("sh2.pid"));
    let script = format!("setsid sleep 1000 & echo $! > {}; echo $$ > {}; wait", p1.display(), p2.display());
    let mut run = Run::start(&["--", "sh", "-c", &script], &[]);
    let (a, sh) = (pid_in(&p1), pid_in(&p2));
    run.wait_for("rmapprof: profiling");
    run.signal(libc::SIGTERM);
    let (code, lines) = run.finish();
    assert_eq!(code, 128 + libc::SIGTERM, "{lines:#?}");
    said(&lines, &format!("sent SIGTERM to COMMAND (pid {sh}, cgroup of 2 processes)"));
    assert!(!running(a) && !running(sh));
    assert_eq!(cgroups_left(run.pid()), Vec::<PathBuf>::new());
}

/// Issue 26 items 4 and 6: the third signal aborts: no output, COMMAND's cgroup killed and
/// removed, a process that left the process group included. The second and third are
/// SIGINT and SIGTERM sent together (two SIGINTs pending at once would be one), so the third
/// mostly comes while COMMAND still runs and the signal handler ends the cgroup; writing is
/// slowed (fault injection) so that it never comes after the outputs are written.
#[test]
fn a_third_signal_aborts_and_leaves_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("setsid.pid");
    let script = format!("trap '' INT; setsid sleep 1000 & echo $! > {}; sleep 1000; exit 0", p1.display());
    let mut run = Run::start(&["--", "sh", "-c", &script], &[("RMAPPROF_FAULT_WRITE_DELAY_MS", "400")]);
    run.wait_for("rmapprof: profiling");
    let a = pid_in(&p1);
    run.signal(libc::SIGINT);
    run.wait_for("waiting up to 2 s");
    run.signal(libc::SIGINT);
    run.signal(libc::SIGTERM);
    let (code, lines) = run.finish();
    // Whichever of the two the kernel delivers last aborts.
    assert!([128 + libc::SIGINT, 128 + libc::SIGTERM].contains(&code), "{code}: {lines:#?}");
    assert!(run.report().is_none(), "a third signal aborts: {lines:#?}");
    let t = Instant::now();
    while running(a) && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    if has_cgroup2() {
        assert!(!running(a), "the process that left the group is still running");
    }
    assert_eq!(cgroups_left(run.pid()), Vec::<PathBuf>::new());
}

/// Issue 26 item 6: an error after COMMAND started (fault injection) kills its cgroup,
/// a process that left the group included, says so, and removes it.
#[test]
fn an_error_after_command_started_leaves_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("setsid.pid");
    let script = format!("setsid sleep 1000 & echo $! > {}; sleep 1000", p1.display());
    let mut run = Run::start(
        &["-d", "20s", "--", "sh", "-c", &script],
        &[("RMAPPROF_FAULT_FAIL_AFTER_SPAWN_MS", "500")],
    );
    let (code, lines) = run.finish();
    assert_eq!(code, 1, "{lines:#?}");
    said(&lines, "as rmapprof stops early");
    said(&lines, "rmapprof: fault injected");
    let a = pid_in(&p1);
    if has_cgroup2() {
        assert!(!running(a), "the process that left the group is still running");
    }
    assert_eq!(cgroups_left(run.pid()), Vec::<PathBuf>::new());
}

/// Where no cgroup can be made, one line says COMMAND is tracked by its process group, which
/// is ended as before.
#[test]
fn without_a_cgroup_the_process_group_is_tracked() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bg.pid");
    let script = format!("sleep 1000 & echo $! > {}; exit 3", p.display());
    let mut run = Run::start(&["--", "sh", "-c", &script], &[("RMAPPROF_FAULT_NO_CGROUP", "1")]);
    let (code, lines) = run.finish();
    assert_eq!(code, 3, "{lines:#?}");
    said(&lines, "tracking COMMAND by its process group (a process that leaves it is not followed)");
    said(&lines, "COMMAND exited, leaving 1 process of its process group running");
    assert!(!running(pid_in(&p)));
    assert_eq!(cgroups_left(run.pid()), Vec::<PathBuf>::new());
}

/// Issue 26 item 12: what a shell says when COMMAND cannot start; a script without `#!` runs
/// with /bin/sh (with a cgroup and without: execvp(3) and posix_spawn(3) differ there);
/// `rmapprof --` alone is a bad argument; COMMAND is shown shell-quoted.
#[test]
fn command_errors_say_what_a_shell_says() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-interp");
    std::fs::write(&bad, "#!/nonexistent\necho hi\n").unwrap();
    let plain = dir.path().join("plain");
    let ran = dir.path().join("ran");
    std::fs::write(&plain, format!("echo \"$0\" \"$@\" > {}\n", ran.display())).unwrap();
    for f in [&bad, &plain] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = dir.path().join("out");
    let (code, err) = fails(rmapprof().arg("-o").arg(&out).arg("--").arg(&bad));
    assert_eq!(code, 127, "{err}");
    assert_eq!(
        err.trim_end(),
        format!("rmapprof: {}: bad interpreter /nonexistent: No such file or directory", bad.display())
    );
    let (code, err) = fails(rmapprof().arg("-o").arg(&out).args(["--", "no-such-command-rmapprof"]));
    assert_eq!((code, err.trim_end()), (127, "rmapprof: no-such-command-rmapprof: command not found"));
    let (code, err) = fails(rmapprof().arg("-o").arg(&out).arg("--").arg(dir.path()));
    assert_eq!(code, 126, "{err}");
    assert_eq!(err.trim_end(), format!("rmapprof: {}: is a directory", dir.path().display()));
    let (code, err) = fails(rmapprof().arg("-o").arg(&out).args(["-d", "5s", "--"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("rmapprof: `--` without a COMMAND"), "{err}");

    for no_cgroup in [false, true] {
        let _ = std::fs::remove_file(&ran);
        let mut c = rmapprof();
        if no_cgroup {
            c.env("RMAPPROF_FAULT_NO_CGROUP", "1");
        }
        let o = c.arg("-o").arg(&out).arg("--").arg(&plain).args(["a b", "c"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let got = std::fs::read_to_string(&ran).unwrap_or_else(|_| panic!("script did not run: {err}"));
        assert_eq!(got, format!("{} a b c\n", plain.display()));
        assert!(err.contains(&format!("while `{} 'a b' c` runs", plain.display())), "{err}");
    }
}

/// Issue 26 item 11: `-p` of a zombie is refused, of a process that exits while the probes
/// load ends the run in one line, of a thread names and profiles its process.
#[test]
fn pid_that_is_no_process_to_profile() {
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let z = zombie.id();
    let t = Instant::now();
    while running(z as i32) {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    // (`-d`: a run that does not refuse it ends.)
    let (code, err) = fails(rmapprof().args(["-o", o, "-d", "5s", "-p", &z.to_string()]));
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with(&format!("rmapprof: -p {z}: pid {z} has exited (zombie)")), "{err}");
    zombie.wait().unwrap();

    // Exits 1 s in, while the probes load (made to take 2.5 s more); reaped at once.
    let mut short = std::process::Command::new("sleep").arg("1").spawn().unwrap();
    let s = short.id().to_string();
    let reaper = std::thread::spawn(move || short.wait());
    let (code, err) =
        fails(rmapprof().env("RMAPPROF_FAULT_LOAD_DELAY_MS", "2500").args(["-o", o, "-p", &s, "-d", "10s"]));
    reaper.join().unwrap().unwrap();
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "rmapprof: pid {s} exited before profiling began (while the probes loaded); nothing profiled"
        )
    );

    // A thread of this test process: its process is profiled, as a line says.
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        tx.send(unsafe { libc::gettid() }).unwrap();
        let _ = stop.recv();
    });
    let tid = rx.recv().unwrap();
    let me = std::process::id();
    let o = rmapprof()
        .args(["-p", &tid.to_string(), "-d", "300ms", "-o", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    drop(stop_tx);
    thread.join().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("rmapprof: -p {tid} is a thread of process {me} (")), "{err}");
    assert!(err.contains(&format!("profiling process {me}\n")), "{err}");
    assert_eq!(read_report(&out.path().join("report.json")).pid, Some(me));
}
