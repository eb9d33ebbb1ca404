//! mm-churn COUNT [-j THREADS] [--then PROGRAM ARGS...]: COUNT × (mmap 8 KiB of anonymous
//! memory, touch it, munmap) split over THREADS threads of this one process, named
//! `worker-1` .. `worker-THREADS` (the main thread keeps the program's name): they contend on
//! its own mm's mmap_lock (write-locked by each mmap and munmap), and on no file's
//! i_mmap_rwsem. With `--then`, the process then execs PROGRAM with ARGS (rmapprof's tests
//! chain copies of mm-churn under other names: one process, a program run each).
use std::{ffi::CString, os::unix::ffi::OsStrExt};

fn main() {
    let usage = "mm-churn COUNT [-j THREADS] [--then PROGRAM ARGS...]";
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let then = args.iter().position(|a| a == "--then").map(|i| args.split_off(i)[1..].to_vec());
    let a = rmapprof_workloads::parse_from(usage, args.iter().map(|s| s.to_string_lossy().into_owned()));
    if !a.rest.is_empty() || then.as_ref().is_some_and(|t| t.is_empty()) {
        rmapprof_workloads::die(usage);
    }
    let threads: Vec<_> = (0..a.jobs)
        .map(|t| {
            let n = a.count / a.jobs + u64::from(t < a.count % a.jobs);
            std::thread::Builder::new()
                .name(format!("worker-{}", t + 1))
                .spawn(move || {
                    (0..n).all(|_| unsafe {
                        let p = libc::mmap(
                            std::ptr::null_mut(),
                            8192,
                            libc::PROT_READ | libc::PROT_WRITE,
                            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                            -1,
                            0,
                        );
                        if p == libc::MAP_FAILED {
                            return false;
                        }
                        std::ptr::write_volatile(p as *mut u8, 1);
                        libc::munmap(p, 8192) == 0
                    })
                })
                .expect("mm-churn: spawning a thread")
        })
        .collect();
    let ok = threads.into_iter().all(|t| t.join().unwrap_or(false));
    if let (true, Some(then)) = (ok, then) {
        let argv: Vec<CString> =
            then.iter().map(|a| CString::new(a.as_bytes()).unwrap_or_default()).collect();
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: NUL-terminated strings and a null-terminated array, alive across the call.
        unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
        eprintln!("mm-churn: {}: {}", then[0].to_string_lossy(), std::io::Error::last_os_error());
        std::process::exit(127);
    }
    rmapprof_workloads::exit(ok);
}
