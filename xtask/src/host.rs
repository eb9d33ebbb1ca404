//! The machine xtask runs on: the repository, commands run and echoed, tools looked up, the
//! cache of kernel sources and builds.

use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Runs a command in the repository root (unless it has a directory of its own), echoing it;
/// fails if it fails.
pub fn sh(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", format!("{cmd:?}").replace('"', ""));
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `~/.cache/rmapprof` (or `$RMAPPROF_CACHE`): kernel sources and builds survive the clone.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RMAPPROF_CACHE") {
        return d.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/rmapprof")
}

/// What `cmd` printed on stdout; an error naming it when it cannot run or fails.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let o = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `make -j`'s argument: one job per CPU (2 when that cannot be read).
pub fn make_jobs() -> String {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).to_string()
}

/// An exclusive lock on the file `path` (flock), held until dropped, for the build directory
/// `dir`; waits, and says so, while another process holds it.
pub fn lock(path: &Path, dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::options().create(true).truncate(false).write(true).open(path)?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("xtask: {} is being built by another process: waiting for it", dir.display());
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            anyhow::bail!("locking {}: {}", dir.display(), std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While one process holds a build directory's lock, another cannot take it.
    #[test]
    fn a_build_lock_excludes_another_process() {
        let dir = std::env::temp_dir().join(format!("xtask-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".rmapprof-lock");
        let other = |wait: &str| {
            Command::new("flock").args(["-w", wait]).arg(&path).arg("true").status().unwrap().success()
        };
        let held = lock(&path, &dir).unwrap();
        assert!(!other("0"), "another process took the lock while it was held");
        drop(held);
        // A child another test thread forked meanwhile holds a copy of the descriptor until it
        // execs (O_CLOEXEC): wait for that, not for a lock that stayed taken.
        assert!(other("10"), "the lock stayed taken after it was dropped");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
