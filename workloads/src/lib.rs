//! Shared argument handling for the bundled workloads: `NAME COUNT [-j JOBS]`.
//! COUNT cycles in total, split over JOBS parallel workers (processes).

pub struct Args {
    pub count: u64,
    pub jobs: u64,
    pub rest: Vec<String>,
}

pub fn parse(usage: &str) -> Args {
    parse_from(usage, std::env::args().skip(1))
}

/// [`parse`] of `args` (the arguments without the program name).
pub fn parse_from(usage: &str, args: impl IntoIterator<Item = String>) -> Args {
    let mut count = None;
    let mut jobs = 1;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-j" => jobs = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| die(usage)),
            "-h" | "--help" => {
                println!("usage: {usage}");
                std::process::exit(0);
            }
            _ if count.is_none() && a.parse::<u64>().is_ok() => count = a.parse().ok(),
            _ => rest.push(a),
        }
    }
    let jobs: u64 = jobs;
    if jobs == 0 {
        die(usage);
    }
    Args { count: count.unwrap_or_else(|| die(usage)), jobs, rest }
}

/// The program a workload execs: `/bin/NAME`, or `DIR/NAME` with `--bin-dir DIR`, which also
/// becomes PATH for what NAME runs in turn (a directory of programs linked against another
/// glibc's loader, say: `ld.so --library-path` does not reach exec'd children). Anything else
/// left in `a.rest` is a usage error.
pub fn program(a: &Args, usage: &str, name: &str) -> std::ffi::CString {
    let dir = match &a.rest[..] {
        [] => "/bin".to_owned(),
        [flag, dir] if flag == "--bin-dir" && !dir.is_empty() => {
            // Before any thread or worker exists: setenv is not thread-safe.
            std::env::set_var("PATH", dir);
            dir.clone()
        }
        _ => die(usage),
    };
    std::ffi::CString::new(format!("{}/{name}", dir.trim_end_matches('/'))).unwrap_or_else(|_| die(usage))
}

pub fn die(usage: &str) -> ! {
    eprintln!("usage: {usage}");
    std::process::exit(2);
}

/// Runs `work(worker, cycles)` in `jobs` forked processes, cycles split evenly; waits for all.
/// True if every worker succeeded.
pub fn run_parallel(count: u64, jobs: u64, work: impl Fn(u64, u64) -> bool) -> bool {
    let mut pids = Vec::new();
    for w in 0..jobs {
        let n = count / jobs + u64::from(w < count % jobs);
        match unsafe { libc::fork() } {
            0 => {
                let ok = work(w, n);
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            pid if pid > 0 => pids.push(pid),
            _ => {
                eprintln!("fork: {}", std::io::Error::last_os_error());
                return false;
            }
        }
    }
    let mut failed = false;
    for pid in pids {
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        failed |= !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
    }
    !failed
}

/// fork + execv(path, argv) + wait, as the shell and UnixBench's spawn do; true if it exited 0.
pub fn fork_exec_wait(path: &std::ffi::CStr, argv: &[*const libc::c_char]) -> bool {
    unsafe {
        match libc::fork() {
            0 => {
                libc::execv(path.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
            pid if pid > 0 => {
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
                libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
            }
            _ => false,
        }
    }
}

/// `count` × (mmap 4 KiB of a file MAP_SHARED, read a byte, munmap) in `jobs` processes, cycle
/// i on `fds[i % fds.len()]`. Each cycle write-locks the file's i_mmap_rwsem twice:
/// vma_link_file (mmap) and unlink_file_vma_batch (munmap). The jobs walk the files in step, so
/// they contend on exactly these inodes (on one, given one).
pub fn mmap_churn(fds: &[std::os::fd::RawFd], count: u64, jobs: u64) -> bool {
    run_parallel(count, jobs, |_, n| (0..n).all(|i| map_touch_unmap(fds[(i % fds.len() as u64) as usize])))
}

/// One cycle of mmap-churn on `fd`: mmap 4 KiB shared, read a byte, munmap.
pub fn map_touch_unmap(fd: std::os::fd::RawFd) -> bool {
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        if p == libc::MAP_FAILED {
            return false;
        }
        std::ptr::read_volatile(p as *const u8);
        libc::munmap(p, 4096) == 0
    }
}

/// Exit status of a workload binary.
pub fn exit(ok: bool) -> ! {
    std::process::exit(if ok { 0 } else { 1 })
}

/// A file of `len` bytes, `data` in a fresh directory of the temporary directory named after
/// `name` and this process, opened read-write; the caller removes the directory.
pub fn scratch_file(name: &str, len: u64) -> (std::path::PathBuf, std::fs::File) {
    let dir = std::env::temp_dir().join(format!("{name}.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("data");
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.set_len(len).unwrap();
    (dir, file)
}

/// One page shared with every process forked after this call (anonymous, MAP_SHARED).
pub fn shared_page() -> *mut libc::c_void {
    // SAFETY: a new anonymous mapping; nothing else refers to the range it returns.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap of a shared page");
    p
}
