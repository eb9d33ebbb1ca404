//! `-p PID`: the process to profile, checked before the probes load and again once they are
//! attached. The filter is on the thread group (the process), so a thread id names its process.

use anyhow::{anyhow, Result};

use crate::errors::usage;

/// The process `-p pid` names: refused when there is none or it has exited (a zombie, whose
/// parent has not reaped it: nothing of it runs any more); a thread that is not its process's
/// main thread names its process, which is profiled, as one line says.
pub fn check(pid: u32) -> Result<u32> {
    let status = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.status())
        .map_err(|_| usage(format!("-p {pid}: no such process")))?;
    if status.state.starts_with(['Z', 'X']) {
        return Err(usage(format!(
            "-p {pid}: pid {pid} has exited (zombie): its parent has not reaped it, and it runs no more"
        )));
    }
    let tgid = status.tgid as u32;
    if tgid != pid {
        let comm = procfs::process::Process::new(tgid as i32)
            .and_then(|p| p.stat())
            .map_or_else(|_| status.name.clone(), |s| s.comm);
        say!("rmapprof: -p {pid} is a thread of process {tgid} ({comm}); profiling process {tgid}");
    }
    Ok(tgid)
}

/// Whether process `pid` has exited: gone, or a zombie.
pub fn exited(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .map_or(true, |s| matches!(s.state, 'Z' | 'X' | 'x'))
}

/// The error that ends a run whose process exited while the probes loaded.
pub fn exited_before_profiling(pid: u32) -> anyhow::Error {
    anyhow!("pid {pid} exited before profiling began (while the probes loaded); nothing profiled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_names_its_process_and_a_zombie_is_refused() {
        let me = std::process::id();
        assert_eq!(check(me).unwrap(), me);
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid cannot fail.
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        });
        let tid = rx.recv().unwrap();
        assert_eq!(check(tid).unwrap(), me);
        t.join().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let t = std::time::Instant::now();
        while !exited(pid) {
            assert!(t.elapsed().as_secs() < 5);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let e = check(pid).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {pid} has exited (zombie)")), "{e}");
        child.wait().unwrap();
        assert!(exited(pid));
    }
}
