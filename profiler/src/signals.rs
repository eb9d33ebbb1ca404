//! SIGINT, SIGTERM and SIGHUP, at any point of a run.
//!
//! The first one asks the run to stop: the main loop polls `first()`, detaches the probes and
//! writes complete outputs (a signal that comes while they are being written is the first, and
//! is then only noted). The second exits at once, as perf and bpftrace do: the handler removes
//! the temporary output files being written (so nothing half-written is left behind), and the
//! kernel drops our BPF links with our file descriptors; COMMAND's process group, if one runs,
//! is killed (SIGKILL) rather than left behind. Only async-signal-safe calls (`unlinkat`,
//! `kill`, `_exit`) are made in the handler.

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
/// COMMAND's process group while it may have members (0: none), for the hard exit.
static COMMAND_GROUP: AtomicI32 = AtomicI32::new(0);

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
    if COUNT.fetch_add(1, Ordering::SeqCst) == 0 {
        FIRST.store(sig, Ordering::SeqCst);
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
        libc::_exit(128 + sig)
    };
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

/// COMMAND's process group, killed on a hard exit; 0 once it has no members left.
pub fn set_command_group(pgid: i32) {
    COMMAND_GROUP.store(pgid, Ordering::SeqCst);
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
