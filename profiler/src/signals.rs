//! SIGINT, SIGTERM and SIGHUP, at any point of a run.
//!
//! The first one asks the run to stop: the main loop polls `first()`, detaches the probes and
//! writes complete outputs (a signal that comes while they are being written is the first, and
//! is then only noted). The second exits at once, as perf and bpftrace do: the handler removes
//! the temporary output files being written (so nothing half-written is left behind), and the
//! kernel drops our BPF links with our file descriptors; COMMAND's process group, if one runs,
//! is killed (SIGKILL) rather than left behind. Only async-signal-safe calls (`unlink`, `kill`,
//! `_exit`) are made in the handler.

use std::{
    ffi::{CStr, CString},
    sync::{
        atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering},
        Mutex,
    },
};

static COUNT: AtomicU32 = AtomicU32::new(0);
static FIRST: AtomicI32 = AtomicI32::new(0);
/// COMMAND's process group while it may have members (0: none), for the hard exit.
static COMMAND_GROUP: AtomicI32 = AtomicI32::new(0);

/// NULL-terminated array of temporary paths to remove on a hard exit; swapped atomically so the
/// handler always sees a whole list. Lists and paths are leaked, never freed, so a handler that
/// interrupts an update still reads valid memory (a handful of small allocations per run).
static TEMPS: AtomicPtr<*const libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
static ACTIVE: Mutex<Vec<&'static CStr>> = Mutex::new(Vec::new());

extern "C" fn on_signal(sig: libc::c_int) {
    if COUNT.fetch_add(1, Ordering::SeqCst) == 0 {
        FIRST.store(sig, Ordering::SeqCst);
        return;
    }
    let mut p = TEMPS.load(Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: a NULL-terminated array of C strings that is never freed.
        unsafe {
            while !(*p).is_null() {
                libc::unlink(*p);
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

/// Installs the handlers; call before attaching, so a signal during attach is seen.
pub fn install() {
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

/// Registers a temporary file the handler removes on a hard exit.
pub fn add_temp(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return };
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    active.push(Box::leak(c.into_boxed_c_str()));
    publish(&active);
}

/// The temporary file was renamed into place or removed: no longer the handler's to remove.
pub fn remove_temp(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    active.retain(|c| c.to_bytes() != path.as_os_str().as_bytes());
    publish(&active);
}

fn publish(active: &[&'static CStr]) {
    let mut ptrs: Vec<*const libc::c_char> = active.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    TEMPS.store(Box::leak(ptrs.into_boxed_slice()).as_mut_ptr(), Ordering::SeqCst);
}
