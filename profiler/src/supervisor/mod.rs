//! COMMAND (`rmapprof -- COMMAND ARGS...`): started in a cgroup of its own (cgroup.rs) where
//! the machine allows, else in a process group of its own, so that rmapprof can end all of it
//! (the command and whatever it started) and never leaves any of it running behind it.
//!
//! - A signal that ends the run (Ctrl-C, SIGTERM, SIGHUP) is passed on to every process of it;
//!   they have [`GRACE`] to exit, then are killed (SIGKILL). A signal during that time kills
//!   them at once, and the run still writes its outputs (signals.rs: the next one aborts).
//! - `--duration` ending the run while COMMAND runs ends it the same way with SIGTERM, as
//!   timeout(1) does; rmapprof then exits with 124, as timeout(1) does.
//! - COMMAND exiting while other processes of its cgroup (or group) still run
//!   (`sh -c 'daemon &'`): they are ended the same way (SIGTERM, grace, SIGKILL), their pids
//!   named in one line.
//! - An error or panic (`Drop`) and an aborting signal (signals.rs) kill them at once.
//!
//! Each step says so in one line on stderr. Tracked by its process group only (no cgroup2
//! here), a process that leaves the group (setsid(2), as daemons do) is not followed.

mod exec_error;

use anyhow::{anyhow, Result};
use std::{
    ffi::OsStr,
    io::{IsTerminal, Read},
    os::fd::AsRawFd,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};
use tokio::process::Child;

use crate::{cgroup::CommandCgroup, output::invoking_user, signals};

/// How long COMMAND has to exit after a signal before it is killed.
pub const GRACE: Duration = Duration::from_secs(2);

/// How often COMMAND's processes are looked at while waiting for them.
const POLL: Duration = Duration::from_millis(25);

/// Why COMMAND is being ended, for the line that says so.
pub enum Why {
    /// The run was ended by this signal.
    Signal(i32),
    /// `--duration` was up with COMMAND still running.
    Duration(Duration),
    /// COMMAND exited, these processes it started did not.
    LeftBehind(Vec<i32>),
}

/// Where COMMAND's processes are found: its cgroup, or where there is none its process group.
enum Tracking {
    Cgroup(CommandCgroup),
    ProcessGroup,
}

pub struct Command {
    child: Child,
    /// COMMAND's pid, which is also its process group's id.
    pid: i32,
    tracking: Tracking,
    /// COMMAND's own exit status, once reaped.
    status: Option<ExitStatus>,
    /// Nothing of COMMAND is left: nothing for `Drop` to kill.
    done: bool,
}

impl Command {
    /// Starts COMMAND, as the user who ran sudo (root otherwise), in a new process group and,
    /// where the machine allows, a cgroup of its own (else one line says so). What cannot be
    /// started fails as a shell says (exec_error.rs); a script without `#!` runs with
    /// /bin/sh, as execvp(3) runs it.
    pub fn spawn(command: &[String]) -> Result<Option<Self>> {
        let Some((prog, args)) = command.split_first() else {
            return Ok(None);
        };
        let mut cgroup = CommandCgroup::create().map_err(|why| fall_back(&why)).ok();
        let started = match start(prog, args, cgroup.as_ref()) {
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
                let script = exec_error::resolve(prog).unwrap_or_else(|| prog.into());
                let sh_args: Vec<&OsStr> =
                    std::iter::once(script.as_os_str()).chain(args.iter().map(OsStr::new)).collect();
                start("/bin/sh", &sh_args, cgroup.as_ref())
            }
            r => r,
        };
        let (child, joined) = started.map_err(|e| anyhow!(exec_error::describe(prog, &e)))?;
        if let (Err(e), Some(cg)) = (joined, &cgroup) {
            fall_back(&format!("COMMAND could not join the cgroup {}: {e}", cg.path().display()));
            cgroup = None;
        }
        // A child not yet waited for always has its pid.
        let pid = child.id().map_or(0, |p| p as i32);
        signals::set_command_group(pid);
        let tracking = cgroup.map_or(Tracking::ProcessGroup, Tracking::Cgroup);
        Ok(Some(Self { child, pid, tracking, status: None, done: pid <= 0 }))
    }

    /// Waits for COMMAND itself to exit (not the rest of what it started).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(st) = self.status {
            return Ok(st);
        }
        let st = self.child.wait().await?;
        self.status = Some(st);
        Ok(st)
    }

    /// COMMAND's exit status if it has exited (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// COMMAND's processes that still run (an exited, unreaped one does not count).
    pub fn members(&self) -> Vec<i32> {
        match &self.tracking {
            Tracking::Cgroup(cg) => cg.members(),
            Tracking::ProcessGroup => group_members(self.pid),
        }
    }

    /// What holds COMMAND's processes, for the lines that say what was done to them.
    fn holder(&self) -> &'static str {
        match self.tracking {
            Tracking::Cgroup(_) => "cgroup",
            Tracking::ProcessGroup => "process group",
        }
    }

    fn signal(&self, sig: i32) {
        match &self.tracking {
            Tracking::Cgroup(cg) => cg.signal(sig),
            // SAFETY: kill(2) with a negative pid signals the process group; pid > 0 here
            // (else `done`, and nothing is signalled).
            Tracking::ProcessGroup => unsafe {
                libc::kill(-self.pid, sig);
            },
        }
    }

    fn kill(&self) {
        if let Tracking::Cgroup(cg) = &self.tracking {
            cg.kill();
        }
        // SAFETY: as in `signal`; the process group also where the cgroup killed it all.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
    }

    /// Ends what remains of COMMAND: `sig` to each of its processes, up to [`GRACE`] for them
    /// to exit, then SIGKILL; one line says each step. A signal to rmapprof meanwhile kills
    /// them at once. Returns COMMAND's own status if it exited before any SIGKILL.
    pub async fn end(&mut self, sig: i32, why: Why) -> Option<ExitStatus> {
        self.exited();
        if self.members().is_empty() || self.done {
            self.settle().await;
            return self.status;
        }
        let n = self.members().len();
        self.signal(sig);
        signals::grace_begins();
        // Counted before the line below: a signal sent on seeing it must cut the wait short.
        let signals_before = signals::count();
        let (s, pid, grace, holder) = (sig_name(sig), self.pid, GRACE.as_secs(), self.holder());
        let sent = match why {
            Why::Signal(by) => {
                format!(
                    "the run was ended by {}: sent {s} to COMMAND (pid {pid}, {holder} of {})",
                    sig_name(by),
                    plural(n, "process", "processes")
                )
            }
            Why::Duration(d) => format!(
                "--duration {} is up and COMMAND is still running: sent {s} to its {holder} \
                 (pid {pid}), as timeout(1) does",
                humantime::format_duration(d)
            ),
            Why::LeftBehind(pids) => format!(
                "COMMAND exited, leaving {} of its {holder} running ({}): sent {s} to {}",
                plural(pids.len(), "process", "processes"),
                pid_list(&pids),
                if pids.len() == 1 { "it" } else { "them" }
            ),
        };
        say!("rmapprof: {sent}; waiting up to {grace} s for it to exit");
        // Fault injection for the tests: a signal sent on seeing the line above lands before
        // the wait begins (RMAPPROF_FAULT_GRACE_DELAY_MS=N).
        if let Some(ms) = std::env::var("RMAPPROF_FAULT_GRACE_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let t = Instant::now();
        let interrupted = loop {
            tokio::time::sleep(POLL).await;
            self.exited();
            if self.members().is_empty() {
                signals::grace_ends();
                self.settle().await;
                return self.status;
            }
            if signals::count() != signals_before {
                break true;
            }
            if t.elapsed() >= GRACE {
                break false;
            }
        };
        let before_kill = self.status;
        let left = self.members();
        self.kill();
        signals::grace_ends();
        if interrupted {
            say!(
                "rmapprof: {} during the grace period: killed COMMAND's {holder} at once (SIGKILL: {}); \
                 writing the profile (another signal aborts)",
                sig_name(signals::last()),
                pid_list(&left)
            );
        } else {
            say!(
                "rmapprof: COMMAND's {holder} did not exit within {grace} s of {s} ({}); killed it (SIGKILL)",
                pid_list(&left)
            );
        }
        self.settle().await;
        before_kill
    }

    /// Reaps COMMAND and waits (a few seconds at most: a SIGKILLed process in uninterruptible
    /// sleep dies when it wakes) until none of its processes is left, then removes its cgroup.
    async fn settle(&mut self) {
        let t = Instant::now();
        loop {
            let gone = self.exited().is_some() && self.members().is_empty();
            if gone {
                self.done = true;
                signals::set_command_group(0);
                break;
            }
            if t.elapsed() > Duration::from_secs(5) {
                say!("rmapprof: still running after SIGKILL: {}", pid_list(&self.members()));
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        if let Tracking::Cgroup(cg) = &mut self.tracking {
            cg.remove();
        }
    }
}

/// An error (or panic) that ends the run early must not leave COMMAND behind either; the
/// cgroup's own `Drop` then waits for it to empty and removes it.
impl Drop for Command {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let left = self.members();
        if !left.is_empty() {
            self.kill();
            say!(
                "rmapprof: killed COMMAND's {} ({}) as rmapprof stops early",
                self.holder(),
                pid_list(&left)
            );
        }
        signals::set_command_group(0);
    }
}

/// The line that says COMMAND is tracked by its process group, and why.
fn fall_back(why: &str) {
    say!("rmapprof: {why}; tracking COMMAND by its process group (a process that leaves it is not followed)");
}

/// Starts `prog` (tokio's child is reaped when it exits, even unwaited), into `cgroup` if
/// given. Returns the child and whether it joined the cgroup: COMMAND joins it itself between
/// fork and exec, and sends its errno back through a pipe when it cannot (then it runs on,
/// tracked by its process group).
fn start<S: AsRef<OsStr>>(
    prog: impl AsRef<OsStr>,
    args: &[S],
    cgroup: Option<&CommandCgroup>,
) -> std::io::Result<(Child, std::io::Result<()>)> {
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args).process_group(0);
    if let Some((uid, gid)) = invoking_user() {
        cmd.uid(uid).gid(gid);
    }
    // In a group of its own COMMAND is a background job of the terminal: reading from it
    // would stop COMMAND (SIGTTIN) for good. It reads end-of-file instead.
    if std::io::stdin().is_terminal() {
        cmd.stdin(Stdio::null());
    }
    let Some(cg) = cgroup else {
        return Ok((cmd.spawn()?, Ok(())));
    };
    let (mut errno_rx, errno_tx) = std::io::pipe()?;
    let (join, report) = (cg.join_fd(), errno_tx.as_raw_fd());
    // SAFETY: runs in the child between fork and exec, where only async-signal-safe calls
    // are allowed: write(2) on two descriptors that stay open in the parent until spawn
    // returns (the pipe's end is close-on-exec, so the parent sees end-of-file once COMMAND
    // has exec'd), and errno read from a thread-local.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(join, c"0".as_ptr().cast(), 1) != 1 {
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                libc::write(report, (&raw const errno).cast(), 4);
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(errno_tx);
    let child = child?;
    let mut errno = [0u8; 4];
    let joined = match errno_rx.read(&mut errno) {
        Ok(4) => Err(std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno))),
        _ => Ok(()),
    };
    Ok((child, joined))
}

/// Processes of process group `pgid` that still run, from /proc/PID/stat: zombies (exited,
/// waiting to be reaped) and dead tasks excluded.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let (state, pgrp) = stat_state_pgrp(&stat);
                pgrp == Some(pgid) && !matches!(state, Some('Z' | 'X' | 'x'))
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// State and process group from /proc/PID/stat: `pid (comm) state ppid pgrp ...`; comm may
/// hold spaces and parentheses, so fields are counted from the last `)`.
fn stat_state_pgrp(stat: &str) -> (Option<char>, Option<i32>) {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return (None, None) };
    let mut f = rest.split_whitespace();
    let state = f.next().and_then(|s| s.chars().next());
    let pgrp = f.nth(1).and_then(|s| s.parse().ok());
    (state, pgrp)
}

pub fn sig_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        s => format!("signal {s}"),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "pid 12" or "pids 12 13 14", at most 10 named.
fn pid_list(pids: &[i32]) -> String {
    let mut s = if pids.len() == 1 { "pid".to_owned() } else { "pids".to_owned() };
    for p in pids.iter().take(10) {
        s += &format!(" {p}");
    }
    if pids.len() > 10 {
        s += &format!(" and {} more", pids.len() - 10);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4240 4240 0 -1 4194560 100 0 0 0";
        assert_eq!(stat_state_pgrp(stat), (Some('S'), Some(4240)));
        assert_eq!(stat_state_pgrp("17 (z) Z 1 17 17"), (Some('Z'), Some(17)));
        assert_eq!(stat_state_pgrp("garbage"), (None, None));
    }

    #[test]
    fn our_own_group_is_found_and_lists_are_short() {
        // SAFETY: getpgrp cannot fail.
        let me = unsafe { libc::getpgrp() };
        assert!(group_members(me).contains(&(std::process::id() as i32)));
        assert_eq!(pid_list(&[7]), "pid 7");
        let many: Vec<i32> = (1..=12).collect();
        assert_eq!(pid_list(&many), "pids 1 2 3 4 5 6 7 8 9 10 and 2 more");
    }
}
