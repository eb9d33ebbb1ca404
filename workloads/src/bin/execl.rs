//! execl COUNT [-j JOBS]: each worker re-executes itself COUNT/JOBS times, as UnixBench's execl
//! does: exec only, no fork in the loop.
use std::ffi::CString;

fn main() {
    // Re-exec'd form: execl --left N
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--left" {
        let left: u64 = args[2].parse().unwrap_or(0);
        if left > 0 {
            reexec(left - 1);
        }
        return;
    }
    let a = rmapprof_workloads::parse("execl COUNT [-j JOBS]");
    rmapprof_workloads::exit(rmapprof_workloads::run_parallel(a.count, a.jobs, |_, n| {
        if n > 0 {
            reexec(n - 1);
        }
        true
    }));
}

fn reexec(left: u64) -> ! {
    let exe = CString::new("/proc/self/exe").unwrap();
    let a0 = CString::new("execl").unwrap();
    let a1 = CString::new("--left").unwrap();
    let a2 = CString::new(left.to_string()).unwrap();
    let argv = [a0.as_ptr(), a1.as_ptr(), a2.as_ptr(), std::ptr::null()];
    unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
    eprintln!("execl: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}
