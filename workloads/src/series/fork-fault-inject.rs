//! fork-fault-inject ITERATIONS: forks, with allocations failing, a process that maps one
//! file with many VMAs, so that dup_mmap() fails while a batch of that file's child VMAs is
//! pending (linked, or about to be, but not yet copied), then checks that nothing was left
//! behind. For `cargo xtask patches-check` (scripts/series/fault-inject-guest.sh sets up failslab
//! and fail_page_alloc with task-filter; this process marks itself in /proc/self/make-it-fail
//! around each fork(), so only the forking process's allocations fail).
//!
//! - One memfd (MFD_ALLOW_SEALING), VMAS pages; page i is mapped at its own 2 MiB-aligned
//!   address (its own page table), MAP_SHARED read-write for even i (each such VMA counts in
//!   the file's i_mmap_writable), MAP_PRIVATE and written for odd i (an anon_vma: fork copies
//!   its page table, which allocates in the child). All VMAS are of one file, in a row: the
//!   batch fills (8) and flushes VMAS/8 times per fork.
//! - Each fork: make-it-fail on, fork(), make-it-fail off. A fork that fails (ENOMEM) failed
//!   somewhere in copy_process(), often in dup_mmap(); a child that exists clears its own
//!   make-it-fail and checks every page reads what the parent wrote (else exit 3).
//! - Afterwards, in the parent: /proc/self/maps is what it was before the first fork; the
//!   file is truncated and re-extended (an rmap walk over every VMA left in its tree) and its
//!   pages read back as zero through every mapping; a new shared writable mapping can be made
//!   (i_mmap_writable not left negative); and once the shared mappings are unmapped,
//!   F_SEAL_WRITE is accepted (i_mmap_writable back to zero: no failed fork left a count).
//!
//! Prints one line of counts; exit 0 when every check held.
use std::{ffi::CString, io::Read, os::fd::AsRawFd};

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;
const VMAS: usize = 64;

fn check(ok: bool, what: &str, failures: &mut Vec<String>) {
    if !ok {
        let e = std::io::Error::last_os_error();
        failures.push(format!("{what} (errno: {e})"));
    }
}

fn maps() -> String {
    let mut s = String::new();
    std::fs::File::open("/proc/self/maps").and_then(|mut f| f.read_to_string(&mut s)).expect("maps");
    s
}

/// Writes "0"/"1" to an open /proc/PID/make-it-fail, retrying: the write may itself fail.
fn set_fail(fd: i32, on: bool) -> bool {
    let b: &[u8] = if on { b"1" } else { b"0" };
    for _ in 0..1000 {
        if unsafe { libc::pwrite(fd, b.as_ptr().cast(), 1, 0) } == 1 {
            return true;
        }
    }
    false
}

fn main() {
    let iterations: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: fork-fault-inject ITERATIONS");
        std::process::exit(2)
    });
    // A fault here is the kernel's to report (show_unhandled_signals: "segfault at ..."), not
    // Rust's stack-overflow handler's.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
    let mut failures = Vec::new();
    let name = CString::new("fork-fault-inject").unwrap();
    let memfd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC) };
    assert!(memfd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    assert_eq!(unsafe { libc::ftruncate(memfd, (VMAS * PAGE) as i64) }, 0);

    // Room for VMAS 2 MiB slots, 2 MiB-aligned.
    let reserve = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            (VMAS + 1) * HUGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(reserve, libc::MAP_FAILED);
    let base = ((reserve as usize + HUGE - 1) & !(HUGE - 1)) as *mut u8;
    let slot = |i: usize| unsafe { base.add(i * HUGE) };
    let value = |i: usize| if i.is_multiple_of(2) { i as u32 + 1 } else { 1000 + i as u32 };
    for i in 0..VMAS {
        let shared = i % 2 == 0;
        let p = unsafe {
            libc::mmap(
                slot(i).cast(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_FIXED | if shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE },
                memfd,
                (i * PAGE) as i64,
            )
        };
        assert_eq!(p, slot(i).cast(), "mmap slot {i}: {}", std::io::Error::last_os_error());
        unsafe { std::ptr::write_volatile(p as *mut u32, value(i)) };
    }
    let before = maps();

    let fail_file = std::fs::OpenOptions::new().write(true).open("/proc/self/make-it-fail");
    let fail_fd = match &fail_file {
        Ok(f) => f.as_raw_fd(),
        Err(e) => {
            eprintln!("fork-fault-inject: /proc/self/make-it-fail: {e} (no CONFIG_FAULT_INJECTION?)");
            std::process::exit(2);
        }
    };
    let (mut forked, mut enomem, mut other_errors, mut children_ok, mut children_bad, mut children_other) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for _ in 0..iterations {
        if !set_fail(fail_fd, true) {
            failures.push("could not set make-it-fail".into());
            break;
        }
        let pid = unsafe { libc::fork() };
        let err = std::io::Error::last_os_error();
        if pid == 0 {
            // The child inherited make-it-fail: clear its own before it touches anything.
            let path = b"/proc/self/make-it-fail\0";
            let mut cleared = false;
            for _ in 0..1000 {
                let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_WRONLY) };
                if fd >= 0 {
                    cleared = set_fail(fd, false);
                    break;
                }
            }
            if !cleared {
                unsafe { libc::_exit(4) };
            }
            for i in 0..VMAS {
                if unsafe { std::ptr::read_volatile(slot(i) as *const u32) } != value(i) {
                    unsafe { libc::_exit(3) };
                }
            }
            unsafe { libc::_exit(0) };
        }
        if !set_fail(fail_fd, false) {
            failures.push("could not clear make-it-fail".into());
        }
        if pid < 0 {
            if err.raw_os_error() == Some(libc::ENOMEM) {
                enomem += 1;
            } else {
                other_errors += 1;
            }
            continue;
        }
        forked += 1;
        let mut st = 0;
        while unsafe { libc::waitpid(pid, &mut st, 0) } < 0 {}
        match (libc::WIFEXITED(st), libc::WEXITSTATUS(st)) {
            (true, 0) => children_ok += 1,
            (true, 3) => children_bad += 1,
            _ => children_other += 1,
        }
    }
    drop(fail_file);
    if children_bad > 0 {
        failures.push(format!("{children_bad} children read a page the parent did not write"));
    }
    if other_errors > 0 {
        failures.push(format!("{other_errors} forks failed with an error other than ENOMEM"));
    }

    // The parent's own layout is untouched by the failed forks.
    let after = maps();
    check(before == after, "/proc/self/maps changed across the forks", &mut failures);
    // Truncate and re-extend: unmap_mapping_range() walks the file's i_mmap tree, which must
    // hold only live VMAs; every page then reads zero through shared and private mappings
    // alike (private pages were written, so they keep their copy: skip those).
    check(unsafe { libc::ftruncate(memfd, 0) } == 0, "ftruncate to 0", &mut failures);
    check(unsafe { libc::ftruncate(memfd, (VMAS * PAGE) as i64) } == 0, "ftruncate back", &mut failures);
    for i in (0..VMAS).step_by(2) {
        let v = unsafe { std::ptr::read_volatile(slot(i) as *const u32) };
        check(v == 0, &format!("shared page {i} reads {v} after truncation"), &mut failures);
    }
    // i_mmap_writable not negative: a new shared writable mapping is allowed.
    let extra = unsafe {
        libc::mmap(std::ptr::null_mut(), PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, memfd, 0)
    };
    check(extra != libc::MAP_FAILED, "a new MAP_SHARED writable mapping", &mut failures);
    if extra != libc::MAP_FAILED {
        unsafe { libc::munmap(extra, PAGE) };
    }
    // i_mmap_writable back to zero: with every shared mapping gone, F_SEAL_WRITE is accepted
    // (EBUSY if a failed fork left a count behind).
    for i in (0..VMAS).step_by(2) {
        unsafe { libc::munmap(slot(i).cast(), PAGE) };
    }
    let sealed = unsafe { libc::fcntl(memfd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) } == 0;
    check(sealed, "F_SEAL_WRITE with no shared mapping left", &mut failures);
    // Sealed: a shared writable mapping is refused now, a read-only one is fine.
    let ro = unsafe { libc::mmap(std::ptr::null_mut(), PAGE, libc::PROT_READ, libc::MAP_SHARED, memfd, 0) };
    check(ro != libc::MAP_FAILED, "a read-only shared mapping after F_SEAL_WRITE", &mut failures);

    let out = format!(
        "fork-fault-inject: {iterations} forks of {VMAS} VMAs of one file: {enomem} failed with ENOMEM, \
         {forked} forked ({children_ok} children read every page right, {children_bad} wrong, \
         {children_other} other exits), {other_errors} other errors; F_SEAL_WRITE {}; {}",
        if sealed { "accepted" } else { "REFUSED" },
        if failures.is_empty() {
            "all checks held".to_owned()
        } else {
            format!("FAILED: {}", failures.join("; "))
        }
    );
    println!("{out}");
    std::process::exit(if failures.is_empty() { 0 } else { 1 });
}
