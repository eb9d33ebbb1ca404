//! SIGINT, SIGTERM and SIGHUP, at any point of a run.
//!
//! The first one asks the run to stop: the main loop polls `first()`, detaches the probes and
//! writes complete outputs (a signal that comes while they are being written is the first, and
//! is then only noted). The next one aborts, as perf and bpftrace do: the handler removes the
//! temporary output files being written (so nothing half-written is left behind), and the
//! kernel drops our BPF links with our file descriptors; COMMAND's cgroup and process group,
//! if one runs, are killed (SIGKILL) rather than left behind, and the cgroup removed.
//!
//! While COMMAND has its grace period (command.rs), one more signal is only counted: the
//! grace period's loop kills COMMAND at once and the run still writes its outputs; the signal
//! after that aborts. Only async-signal-safe calls (`write`, `unlink`, `unlinkat`, `kill`,
//! `nanosleep`, `_exit`) are made in the handler.

use std::{
    ffi::CStr,
    os::fd::{AsRawFd, BorrowedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering},
        Mutex,
    },
};

static COUNT: AtomicU32 = AtomicU32::new(0);
static FIRST: AtomicI32 = AtomicI32::new(0);
/// The signal count at which the handler aborts: the second signal, or the third when one
/// came during COMMAND's grace period.
static ABORT_AT: AtomicU32 = AtomicU32::new(2);
static LAST: AtomicI32 = AtomicI32::new(0);
/// COMMAND's process group while it may have members (0: none), for the hard exit.
static COMMAND_GROUP: AtomicI32 = AtomicI32::new(0);
/// COMMAND's cgroup for the hard exit: its open `cgroup.kill` (-1: none), the directory it is
/// in (-1: no cgroup) and its name there (a leaked C string, never freed).
static CGROUP_KILL: AtomicI32 = AtomicI32::new(-1);
static CGROUP_PARENT: AtomicI32 = AtomicI32::new(-1);
static CGROUP_NAME: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// A temporary file to remove on a hard exit: its name in the output directory `dir` (a
/// descriptor, so a directory swapped for a link meanwhile does not redirect the unlink).
#[derive(Clone, Copy)]
struct Temp {
    dir: libc::c_int,
    name: *const libc::c_char,
}

/// Array of temporaries to remove on a hard exit, ended by a NULL name; swapped atomically so
/// the handler always sees a whole list. Lists and names are leaked, never freed, so a handler
/// that interrupts an update still reads valid memory (a handful of small allocations per
/// run).
static TEMPS: AtomicPtr<Temp> = AtomicPtr::new(std::ptr::null_mut());
static ACTIVE: Mutex<Vec<(RawFd, &'static CStr)>> = Mutex::new(Vec::new());

extern "C" fn on_signal(sig: libc::c_int) {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    LAST.store(sig, Ordering::SeqCst);
    if n == 1 {
        FIRST.store(sig, Ordering::SeqCst);
    }
    if n < ABORT_AT.load(Ordering::SeqCst) {
        return;
    }
    let mut p = TEMPS.load(Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: an array ended by a NULL name, never freed, of C strings never freed; the
        // directory descriptors stay open while their temporaries are listed (output/mod.rs).
        unsafe {
            while !(*p).name.is_null() {
                libc::unlinkat((*p).dir, (*p).name, 0);
                p = p.add(1);
            }
        }
    }
    let group = COMMAND_GROUP.load(Ordering::SeqCst);
    // SAFETY: kill and _exit are async-signal-safe; a group of 0 would mean our own, so it is
    // never passed (kill(-0) is kill(0)).
    unsafe {
        if group > 0 {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    end_cgroup();
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) };
}

/// The hard exit's end of COMMAND's cgroup: `cgroup.kill`, then rmdir once the kernel has
/// taken its processes out (a second at most: a process in uninterruptible sleep dies when it
/// wakes, and then its cgroup stays, as a busy one must).
fn end_cgroup() {
    let (kill, parent) = (CGROUP_KILL.load(Ordering::SeqCst), CGROUP_PARENT.load(Ordering::SeqCst));
    let name = CGROUP_NAME.load(Ordering::SeqCst);
    if parent < 0 || name.is_null() {
        return;
    }
    // SAFETY: write, unlinkat and nanosleep are async-signal-safe; the descriptors stay open
    // while they are published (cgroup.rs unpublishes them first), and the name is a leaked
    // C string, never freed.
    unsafe {
        if kill >= 0 {
            libc::write(kill, c"1".as_ptr().cast(), 1);
        }
        for _ in 0..100 {
            if libc::unlinkat(parent, name, libc::AT_REMOVEDIR) == 0
                || *libc::__errno_location() != libc::EBUSY
            {
                break;
            }
            let ten_ms = libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 };
            libc::nanosleep(&ten_ms, std::ptr::null_mut());
        }
    }
}

/// The handlers are installed: only then is there a hard exit to register temporaries for.
/// The daemon, which never installs them (it takes its signals through tokio), writes its
/// `--pprof` file at every refresh for days, and would leak a registration each time.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the handlers; call before attaching, so a signal during attach is seen.
pub fn install() {
    INSTALLED.store(true, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The first signal received, if any.
pub fn first() -> Option<i32> {
    (COUNT.load(Ordering::SeqCst) > 0).then(|| FIRST.load(Ordering::SeqCst))
}

/// How many signals have arrived.
pub fn count() -> u32 {
    COUNT.load(Ordering::SeqCst)
}

/// The last signal received.
pub fn last() -> i32 {
    LAST.load(Ordering::SeqCst)
}

/// COMMAND's grace period begins: one more signal is only counted (the grace period's loop
/// kills COMMAND at once), the one after aborts.
pub fn grace_begins() {
    ABORT_AT.store(COUNT.load(Ordering::SeqCst) + 2, Ordering::SeqCst);
}

/// COMMAND's grace period is over: the next signal aborts.
pub fn grace_ends() {
    ABORT_AT.store(COUNT.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
}

/// COMMAND's process group, killed on a hard exit; 0 once it has no members left.
pub fn set_command_group(pgid: i32) {
    COMMAND_GROUP.store(pgid, Ordering::SeqCst);
}

/// COMMAND's cgroup, killed and removed on a hard exit: its `cgroup.kill` (-1 where the kernel
/// has none), the directory it is in and its name there; `parent` -1 takes it back. The
/// descriptors must stay open until then.
pub fn set_command_cgroup(kill: i32, parent: i32, name: &CStr) {
    CGROUP_PARENT.store(-1, Ordering::SeqCst);
    CGROUP_KILL.store(kill, Ordering::SeqCst);
    if parent >= 0 {
        let leaked: &'static CStr = Box::leak(name.to_owned().into_boxed_c_str());
        CGROUP_NAME.store(leaked.as_ptr().cast_mut(), Ordering::SeqCst);
        CGROUP_PARENT.store(parent, Ordering::SeqCst);
    }
}

/// Registers a temporary file, `name` in the directory `dir`, that the handler removes on a
/// hard exit. `dir` must stay open until [`remove_temp`].
pub fn add_temp(dir: BorrowedFd, name: &CStr) {
    if !INSTALLED.load(Ordering::SeqCst) {
        return;
    }
    let name: &'static CStr = Box::leak(name.to_owned().into_boxed_c_str());
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    active.push((dir.as_raw_fd(), name));
    publish(&active);
}

/// The temporary file was renamed into place or removed: no longer the handler's to remove.
pub fn remove_temp(dir: BorrowedFd, name: &CStr) {
    if !INSTALLED.load(Ordering::SeqCst) {
        return;
    }
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    active.retain(|&(d, n)| (d, n) != (dir.as_raw_fd(), name));
    publish(&active);
}

fn publish(active: &[(RawFd, &'static CStr)]) {
    let mut temps: Vec<Temp> = active.iter().map(|&(dir, name)| Temp { dir, name: name.as_ptr() }).collect();
    temps.push(Temp { dir: -1, name: std::ptr::null() });
    TEMPS.store(Box::leak(temps.into_boxed_slice()).as_mut_ptr(), Ordering::SeqCst);
}
