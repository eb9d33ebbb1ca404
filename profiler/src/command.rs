//! COMMAND (`rmapprof -- COMMAND ARGS...`): started in a process group of its own, so that
//! rmapprof can end all of it (the command and whatever it started) and never leaves any of
//! it running behind it.
//!
//! - A signal that ends the run (Ctrl-C, SIGTERM, SIGHUP) is passed on to the group; the group
//!   has [`GRACE`] to exit, then is killed (SIGKILL).
//! - `--duration` ending the run while COMMAND runs ends the group the same way with SIGTERM,
//!   as timeout(1) does; rmapprof then exits with 124, as timeout(1) does.
//! - COMMAND exiting while other processes of its group still run (`sh -c 'daemon &'`): they
//!   are ended the same way (SIGTERM, grace, SIGKILL), their pids named in one line.
//! - A second signal (signals.rs) and an error or panic (`Drop`) kill the group at once.
//!
//! Each step says so in one line on stderr. A process that leaves the group (setsid(2), as
//! daemons do) is no longer COMMAND's and is left alone.

use anyhow::{anyhow, Result};
use std::{
    io::IsTerminal,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};
use tokio::process::Child;

use crate::{errors::Exit, output::invoking_user, signals};

/// How long COMMAND's group has to exit after a signal before it is killed.
pub const GRACE: Duration = Duration::from_secs(2);

/// How often the group is looked at while waiting for it.
const POLL: Duration = Duration::from_millis(25);

/// Why the group is being ended, for the line that says so.
pub enum Why {
    /// The run was ended by this signal.
    Signal(i32),
    /// `--duration` was up with COMMAND still running.
    Duration(Duration),
    /// COMMAND exited, these processes of its group did not.
    LeftBehind(Vec<i32>),
}

pub struct Command {
    child: Child,
    /// COMMAND's pid, which is also its process group's id.
    pid: i32,
    /// COMMAND's own exit status, once reaped.
    status: Option<ExitStatus>,
    /// The group is known to be empty: nothing left for `Drop` to kill.
    done: bool,
}

impl Command {
    /// Starts COMMAND, as the user who ran sudo (root otherwise), in a new process group.
    /// Not found: exit 127; not executable: 126, as a shell says.
    pub fn spawn(command: &[String]) -> Result<Option<Self>> {
        let Some((prog, args)) = command.split_first() else {
            return Ok(None);
        };
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
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(anyhow!(Exit(127, format!("{prog}: command not found"))))
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(anyhow!(Exit(126, format!("{prog}: permission denied"))))
            }
            Err(e) => return Err(anyhow!(Exit(126, format!("{prog}: {e}")))),
        };
        // A child not yet waited for always has its pid.
        let pid = child.id().map_or(0, |p| p as i32);
        signals::set_command_group(pid);
        Ok(Some(Self { child, pid, status: None, done: pid <= 0 }))
    }

    /// Waits for COMMAND itself to exit (not the rest of its group).
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

    /// The group's processes that still run (an exited, unreaped one does not count).
    pub fn members(&self) -> Vec<i32> {
        group_members(self.pid)
    }

    /// Ends what remains of the group: `sig` to it, up to [`GRACE`] for every member to exit,
    /// then SIGKILL; one line says each step. A signal to rmapprof meanwhile cuts the wait
    /// short. Returns COMMAND's own status if it exited before any SIGKILL.
    pub async fn end(&mut self, sig: i32, why: Why) -> Option<ExitStatus> {
        self.exited();
        if self.members().is_empty() {
            self.settle().await;
            return self.status;
        }
        // SAFETY: kill(2) with a negative pid signals the process group; pid > 0 here.
        unsafe { libc::kill(-self.pid, sig) };
        let (s, pid, grace) = (sig_name(sig), self.pid, GRACE.as_secs());
        let sent = match why {
            Why::Signal(by) => {
                format!(
                    "the run was ended by {}: sent {s} to COMMAND (pid {pid}, process group {pid})",
                    sig_name(by)
                )
            }
            Why::Duration(d) => format!(
                "--duration {} is up and COMMAND is still running: sent {s} to its process group \
                 (pid {pid}), as timeout(1) does",
                humantime::format_duration(d)
            ),
            Why::LeftBehind(pids) => format!(
                "COMMAND exited, leaving {} of its process group running ({}): sent {s} to the group",
                plural(pids.len(), "process", "processes"),
                pid_list(&pids)
            ),
        };
        say!("rmapprof: {sent}; waiting up to {grace} s for it to exit");
        let (t, signals_before) = (Instant::now(), signals::count());
        let interrupted = loop {
            tokio::time::sleep(POLL).await;
            self.exited();
            if self.members().is_empty() {
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
        // SAFETY: as above.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        let what = if interrupted {
            format!("interrupted while waiting for COMMAND's process group ({})", pid_list(&left))
        } else {
            format!("COMMAND's process group did not exit within {grace} s of {s} ({})", pid_list(&left))
        };
        say!("rmapprof: {what}; killed it (SIGKILL)");
        self.settle().await;
        before_kill
    }

    /// Reaps COMMAND and waits (a few seconds at most: a SIGKILLed process in uninterruptible
    /// sleep dies when it wakes) until no member of its group is left.
    async fn settle(&mut self) {
        let t = Instant::now();
        loop {
            let gone = self.exited().is_some() && self.members().is_empty();
            if gone {
                self.done = true;
                signals::set_command_group(0);
                return;
            }
            if t.elapsed() > Duration::from_secs(5) {
                say!("rmapprof: still running after SIGKILL: {}", pid_list(&self.members()));
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// An error (or panic) that ends the run early must not leave COMMAND behind either.
impl Drop for Command {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let left = self.members();
        if !left.is_empty() {
            // SAFETY: kill(2) on our child's process group; pid > 0 (else `done`).
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            say!("rmapprof: killed COMMAND's process group ({}) as rmapprof stops early", pid_list(&left));
        }
        signals::set_command_group(0);
    }
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
