//! COMMAND's own cgroup (cgroup v2), as `systemd-run --scope` gives a command: every process
//! COMMAND starts stays in it, also one that leaves COMMAND's process group (`setsid`, a
//! shell's `set -m` job), so rmapprof can signal and kill all of them and knows when none is
//! left.
//!
//! The cgroup is made under rmapprof's own cgroup2 cgroup (`0::` of /proc/self/cgroup, below
//! the cgroup2 mount of /proc/self/mountinfo) with an unpredictable name, by `mkdirat` on a
//! descriptor of that directory; every file in it is opened relative to its own descriptor.
//! COMMAND joins it between fork and exec (the child writes `0` to `cgroup.procs`, opened by
//! rmapprof: the kernel checks the opener's credentials), so it is in it before it can fork.
//! It is ended by `cgroup.kill` (Linux 5.14), or where that file is missing by freezing it and
//! killing each process until none is left, and removed (rmdir) at the end of the run.

use rustix::{
    fd::{AsRawFd, OwnedFd, RawFd},
    fs::{self, AtFlags, Mode, OFlags},
};
use std::{
    ffi::CString,
    io::Read,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::signals;

pub struct CommandCgroup {
    /// rmapprof's own cgroup directory, where ours is made and removed.
    parent: OwnedFd,
    name: CString,
    dir: OwnedFd,
    /// `cgroup.procs`, opened for writing: COMMAND writes `0` to it to join.
    join: OwnedFd,
    /// `cgroup.kill`, where the kernel has it; the signal handler writes to it too.
    kill: Option<OwnedFd>,
    path: PathBuf,
    removed: bool,
}

impl CommandCgroup {
    /// Makes the cgroup, or says why it cannot (the caller falls back to the process group).
    pub fn create() -> Result<Self, String> {
        // Fault injection for the tests: a machine without a usable cgroup2 hierarchy.
        if std::env::var_os("RMAPPROF_FAULT_NO_CGROUP").is_some() {
            return Err("no cgroup for COMMAND (RMAPPROF_FAULT_NO_CGROUP)".into());
        }
        let own = own_cgroup_dir()?;
        let ro = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let parent = fs::open(&own, ro, Mode::empty())
            .map_err(|e| format!("cannot open rmapprof's cgroup {}: {e}", own.display()))?;
        let mut random = [0u8; 8];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| format!("getrandom: {e}"))?;
        let name = format!(
            "rmapprof-{}-{}",
            std::process::id(),
            random.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let path = own.join(&name);
        // mkdir fails on anything already there: nobody can have planted it.
        fs::mkdirat(&parent, name.as_str(), Mode::from_raw_mode(0o755))
            .map_err(|e| format!("cannot create a cgroup for COMMAND under {}: {e}", own.display()))?;
        let name = CString::new(name).expect("no NUL in a formatted name");
        let made = (|| {
            let dir = fs::openat(&parent, name.as_c_str(), ro, Mode::empty())?;
            let wo = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let join = fs::openat(&dir, "cgroup.procs", wo, Mode::empty())?;
            let kill = fs::openat(&dir, "cgroup.kill", wo, Mode::empty()).ok();
            Ok::<_, rustix::io::Errno>((dir, join, kill))
        })();
        match made {
            Ok((dir, join, kill)) => {
                let cg = Self { parent, name, dir, join, kill, path, removed: false };
                signals::set_command_cgroup(
                    cg.kill.as_ref().map_or(-1, |k| k.as_raw_fd()),
                    cg.parent.as_raw_fd(),
                    &cg.name,
                );
                Ok(cg)
            }
            Err(e) => {
                let _ = fs::unlinkat(&parent, name.as_c_str(), AtFlags::REMOVEDIR);
                Err(format!("cannot set up the cgroup {}: {e}", path.display()))
            }
        }
    }

    /// The descriptor COMMAND writes `0` to, between fork and exec, to join the cgroup.
    pub fn join_fd(&self) -> RawFd {
        self.join.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The processes in the cgroup that have not exited (the kernel lists no zombie).
    pub fn members(&self) -> Vec<i32> {
        let ro = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let Ok(fd) = fs::openat(&self.dir, "cgroup.procs", ro, Mode::empty()) else {
            return Vec::new();
        };
        let mut text = String::new();
        let _ = std::fs::File::from(fd).read_to_string(&mut text);
        let mut pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        pids.sort_unstable();
        pids
    }

    /// Sends `sig` to every process in the cgroup.
    pub fn signal(&self, sig: i32) {
        for pid in self.members() {
            // SAFETY: kill(2) of a process listed in our cgroup; pid > 0 (parsed from the list).
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Kills every process in the cgroup: `cgroup.kill`, or where that file is missing, the
    /// cgroup frozen (no fork can slip through) and each process killed until none is left.
    pub fn kill(&self) {
        if let Some(k) = &self.kill {
            if rustix::io::write(k, b"1").is_ok() {
                return;
            }
        }
        let freeze = fs::openat(&self.dir, "cgroup.freeze", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty());
        if let Ok(f) = &freeze {
            let _ = rustix::io::write(f, b"1");
        }
        let t = Instant::now();
        while !self.members().is_empty() && t.elapsed() < Duration::from_secs(1) {
            self.signal(libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(f) = &freeze {
            let _ = rustix::io::write(f, b"0");
        }
    }

    /// Removes the (empty) cgroup; says so when it cannot.
    pub fn remove(&mut self) {
        if self.removed {
            return;
        }
        signals::set_command_cgroup(-1, -1, c"");
        // The last process may still be on its way out just after it was reaped.
        let t = Instant::now();
        loop {
            match fs::unlinkat(&self.parent, self.name.as_c_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => break,
                Err(rustix::io::Errno::BUSY) if t.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => {
                    say!("rmapprof: cannot remove COMMAND's cgroup {}: {e}", self.path.display());
                    break;
                }
            }
        }
        self.removed = true;
    }
}

/// An error or panic that ends the run early leaves nothing in the cgroup tree either.
impl Drop for CommandCgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if !self.members().is_empty() {
            self.kill();
            let t = Instant::now();
            while !self.members().is_empty() && t.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let left = self.members();
            if !left.is_empty() {
                let pids: Vec<String> = left.iter().map(i32::to_string).collect();
                say!("rmapprof: still running after SIGKILL in COMMAND's cgroup: pids {}", pids.join(" "));
            }
        }
        self.remove();
    }
}

/// rmapprof's own cgroup directory in the cgroup2 hierarchy: its `0::` path in
/// /proc/self/cgroup, under the cgroup2 mount whose root contains it.
fn own_cgroup_dir() -> Result<PathBuf, String> {
    let me = procfs::process::Process::myself().map_err(|e| format!("/proc/self: {e}"))?;
    let groups = me.cgroups().map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let own = groups
        .0
        .iter()
        .find(|g| g.hierarchy == 0 && g.controllers.is_empty())
        .map(|g| g.pathname.clone())
        .ok_or("no cgroup2 hierarchy (no `0::` line in /proc/self/cgroup)")?;
    let mounts = me.mountinfo().map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    mounts
        .0
        .iter()
        .filter(|m| m.fs_type == "cgroup2")
        .find_map(|m| {
            let rel = Path::new(&own).strip_prefix(&m.root).ok()?;
            Some(m.mount_point.join(rel))
        })
        .ok_or_else(|| format!("no cgroup2 mount holds rmapprof's cgroup {own}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_cgroup_is_a_directory_of_the_cgroup2_mount() {
        let Ok(dir) = own_cgroup_dir() else { return }; // a machine without cgroup2
        assert!(dir.join("cgroup.procs").exists(), "{}", dir.display());
    }
}
