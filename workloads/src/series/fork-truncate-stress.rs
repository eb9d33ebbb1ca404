//! fork-truncate-stress SECONDS: checks that fork never leaves a child mapping a page that
//! truncate has removed (the rule dup_mmap must keep: the child VMA is in the file's rmap
//! before its page tables are copied).
//!
//! - The parent maps the file's last TAIL pages, then the rest of it just above (two private
//!   VMAs of one file, adjacent, in this order, each with an anon_vma so that fork copies their
//!   page tables), with a page of another file (a memfd) just below, so that fork takes the two
//!   in one batch and copies the large one's page tables after the tail's: in a kernel that
//!   copies before it links, a truncation of the tail then has that copy's length to miss the
//!   child's tail VMA. Then it forks children in a loop.
//! - A truncator process writes generation k into the tail pages, truncates the tail off
//!   (publishing "truncated k"), and extends the file again (the pages read back as zero).
//! - Each child reads "truncated" (g), then the tail pages through the inherited mapping:
//!   each must be 0 or newer than g, or fault with SIGBUS beyond EOF. Anything else is stale.
//!   A generation is written as k and !k, so a read of one being written is not taken for it.
//! - A thread of the parent keeps splitting and merging another mapping of the file
//!   (mprotect, munmap/mmap, mremap), so fork sees many VMAs of one file.
//! - With `--sync`, the truncator truncates once per fork, at a random point of it (within
//!   the last fork's length), and each child reads once the truncator is idle again. A child
//!   VMA a truncation missed keeps its stale pages until the next truncation zaps them
//!   through the (by then linked) VMA; without `--sync` the truncator cycles much faster than
//!   a child gets to run under QEMU, so that next truncation nearly always comes first and
//!   hides the bug (the negative control of `cargo xtask patches-check`: 0 stale in 60 s
//!   without `--sync`).
//!
//! Until 2026-12-02 the truncation removed all but the first page of an 8 MiB file: under
//! QEMU that took longer than the negative control's window, so truncation's own unmap of
//! each page still mapped (`truncate_cleanup_folio()`) and its second pass found the child
//! VMA linked by then and zapped its entries; the kernel logged "Bad page cache ... still
//! mapped when deleted" for the first batch of pages (104 times in 374 forks) and no child
//! ever read a stale page. A short tail truncates within the window when nothing slows it
//! down, but the kernel's own report of each page still mapped when deleted (a page and stack
//! dump, milliseconds under QEMU even off the console) does: with this 32-page tail the
//! negative control logged 250 such reports in 344 forks, and still no child read a stale
//! page. patches-check's check (scripts/series/fork-truncate-check.sh) counts those reports as a
//! failure too; a one-page tail (one report per truncation) is the next thing to try.
//!
//! Exit 0 when no child saw stale data; prints what happened.
use std::{
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst},
    time::{Duration, Instant},
};

const PAGE: usize = 4096;
/// Pages of the file the splitter maps.
const PAGES: usize = 16;
/// Pages of the file: the tail truncation removes, and the head below it that fork copies
/// after the tail (8 MiB of page table entries: the window a copy-before-link kernel leaves).
const DATA_PAGES: usize = 2048;
/// The pages truncation removes and children read: few enough that a whole truncation (both
/// unmap passes and the page cache deletion) is quick next to the copy of the head's entries.
const TAIL: usize = 32;
/// Where the tail starts in the file.
const TAIL_AT: usize = DATA_PAGES - TAIL;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sync = args.iter().any(|a| a == "--sync");
    let secs: u64 = args.iter().find(|a| *a != "--sync").and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: fork-truncate-stress SECONDS [--sync]");
        std::process::exit(2)
    });
    let dir = std::env::temp_dir().join(format!("fork-truncate-stress.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("data");
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    let fd = file.as_raw_fd();
    file.set_len((DATA_PAGES * PAGE) as u64).unwrap();

    // Shared between processes: the last truncation completed.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(shared, libc::MAP_FAILED);
    let truncated = unsafe { &*(shared as *const AtomicU32) };
    // --sync: the parent is in fork(); the truncator is between cycles.
    let forking = unsafe { &*(shared as *const AtomicU32).add(1) };
    let idle = unsafe { &*(shared as *const AtomicU32).add(2) };
    // --sync: how long the last fork() took, in ns.
    let fork_ns = unsafe { &*(shared as *const AtomicU32).add(3) };

    // The mappings children inherit, private, each with an anon_vma so that fork copies their
    // page tables: [memfd page][tail: file pages TAIL_AT..][head: file pages 0..TAIL_AT].
    let region = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            (1 + DATA_PAGES) * PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as *mut u8;
    assert_ne!(region as *mut libc::c_void, libc::MAP_FAILED);
    let memfd = unsafe { libc::memfd_create(c"fork-truncate-stress".as_ptr(), 0) };
    assert!(memfd >= 0 && unsafe { libc::ftruncate(memfd, PAGE as i64) } == 0);
    let fixed = |at: usize, pages: usize, fd: i32, off: usize| {
        let p = unsafe {
            libc::mmap(
                region.add(at * PAGE).cast(),
                pages * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                fd,
                (off * PAGE) as i64,
            )
        };
        assert_eq!(p, unsafe { region.add(at * PAGE) }.cast());
        p as *mut u8
    };
    // The memfd page: a VMA of another file, so fork's batch of this file starts at the tail.
    fixed(0, 1, memfd, 0);
    let map = fixed(1, TAIL, fd, TAIL_AT);
    let head = fixed(1 + TAIL, TAIL_AT, fd, 0);
    // Page 0 of each written: the VMAs get their anon_vma, kept when truncation zaps the
    // tail's copy. Before the truncator runs: the tail may be beyond EOF afterwards.
    unsafe {
        *map = 1;
        *head = 1;
    }

    let truncator = unsafe { libc::fork() };
    if truncator == 0 {
        // Not the truncator's to keep: its copies would be more for each truncation to zap.
        unsafe { libc::munmap(region.cast(), (1 + DATA_PAGES) * PAGE) };
        let mut k = 1u32;
        let mut rng = u64::from(std::process::id()) | 1;
        let mut tail = vec![0u8; TAIL * PAGE];
        let write_tail = |k: u32, tail: &mut Vec<u8>| {
            for p in 0..TAIL {
                tail[p * PAGE..p * PAGE + 8].copy_from_slice(&record(k).to_ne_bytes());
            }
            unsafe { libc::pwrite(fd, tail.as_ptr().cast(), TAIL * PAGE, (TAIL_AT * PAGE) as i64) };
        };
        loop {
            write_tail(k, &mut tail);
            if sync {
                // One truncation per fork, at a random point of it (the last fork's length): a
                // truncation after the child VMA is linked would zap a stale page before the
                // child gets to read it.
                idle.store(1, SeqCst);
                while forking.load(SeqCst) == 0 {
                    unsafe { libc::sched_yield() };
                }
                idle.store(0, SeqCst);
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let delay = Duration::from_nanos(rng % u64::from(fork_ns.load(SeqCst).max(1)));
                let t = Instant::now();
                while t.elapsed() < delay {
                    std::hint::spin_loop();
                }
            }
            unsafe { libc::ftruncate(fd, (TAIL_AT * PAGE) as i64) };
            truncated.store(k, SeqCst);
            unsafe { libc::ftruncate(fd, (DATA_PAGES * PAGE) as i64) };
            k += 1;
            // Once per fork: a second truncation in the same fork would zap what the first
            // one left behind.
            while sync && forking.load(SeqCst) != 0 {
                unsafe { libc::sched_yield() };
            }
        }
    }

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let splitter = {
        let stop = stop.clone();
        std::thread::spawn(move || split_and_merge(fd, &stop))
    };

    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut forks, mut ok, mut sigbus, mut stale, mut other, mut torn) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        if sync {
            // The truncator has written this round's tail.
            while idle.load(SeqCst) == 0 {
                unsafe { libc::sched_yield() };
            }
        }
        unsafe {
            // Map the file pages into the parent; past EOF this fails (EFAULT) rather than
            // raising SIGBUS as a plain read would.
            libc::madvise(map.add(PAGE).cast(), (TAIL - 1) * PAGE, libc::MADV_POPULATE_READ);
            libc::madvise(head.add(PAGE).cast(), (TAIL_AT - 1) * PAGE, libc::MADV_POPULATE_READ);
        }
        let t = Instant::now();
        forking.store(1, SeqCst);
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if sync {
                // Read once the truncations that ran during fork() are over, before any other.
                while forking.load(SeqCst) != 0 || idle.load(SeqCst) == 0 {
                    unsafe { libc::sched_yield() };
                }
            }
            let g = truncated.load(SeqCst);
            // v was written by generation v, and removed by truncation v.
            // Beyond EOF: die of SIGBUS, not in Rust's handler (forked from a threaded parent).
            unsafe {
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            }
            let (mut stale, mut torn) = (false, false);
            for p in 1..TAIL {
                let r = unsafe { std::ptr::read_volatile(map.add(p * PAGE) as *const u64) };
                match generation(r) {
                    Some(v) => stale |= v != 0 && v <= g,
                    None => torn = true,
                }
            }
            unsafe {
                libc::_exit(if stale {
                    3
                } else if torn {
                    5
                } else {
                    0
                })
            };
        }
        forking.store(0, SeqCst);
        fork_ns.store(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32, SeqCst);
        forks += 1;
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        match (
            libc::WIFEXITED(st),
            libc::WEXITSTATUS(st),
            libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGBUS,
        ) {
            (true, 0, _) => ok += 1,
            (true, 3, _) => stale += 1,
            (true, 5, _) => torn += 1,
            (_, _, true) => sigbus += 1,
            _ => other += 1,
        }
    }
    stop.store(true, SeqCst);
    let splits = splitter.join().unwrap();
    unsafe { libc::kill(truncator, libc::SIGKILL) };
    unsafe { libc::waitpid(truncator, std::ptr::null_mut(), 0) };
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "fork-truncate-stress{}: {forks} forks: {ok} read current data, {sigbus} SIGBUS beyond EOF, {stale} STALE, {other} other, {torn} read a record being written; {splits} split/merge rounds",
        if sync { " --sync" } else { "" }
    );
    std::process::exit(if stale == 0 && other == 0 { 0 } else { 1 });
}

/// Splits and merges a second shared mapping of the file while fork runs: mprotect every
/// other page, punch a hole with munmap and refill it with MAP_FIXED, move a page with mremap.
fn split_and_merge(fd: i32, stop: &AtomicBool) -> u64 {
    let len = PAGES * PAGE;
    let base =
        unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0) } as *mut u8;
    assert_ne!(base as *mut libc::c_void, libc::MAP_FAILED);
    let mut rounds = 0;
    while !stop.load(SeqCst) {
        unsafe {
            for p in (0..PAGES).step_by(2) {
                libc::mprotect(base.add(p * PAGE).cast(), PAGE, libc::PROT_NONE);
            }
            libc::mprotect(base.cast(), len, libc::PROT_READ);
            libc::munmap(base.add(4 * PAGE).cast(), 2 * PAGE);
            libc::mmap(
                base.add(4 * PAGE).cast(),
                2 * PAGE,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                4 * PAGE as i64,
            );
            let moved = libc::mremap(base.add(8 * PAGE).cast(), PAGE, PAGE, libc::MREMAP_MAYMOVE);
            if moved != libc::MAP_FAILED {
                libc::munmap(moved, PAGE);
                libc::mmap(
                    base.add(8 * PAGE).cast(),
                    PAGE,
                    libc::PROT_READ,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd,
                    8 * PAGE as i64,
                );
            }
        }
        rounds += 1;
    }
    rounds
}

/// Generation k as written to a sampled page: k and !k in one 8-byte pwrite. Under QEMU the
/// kernel's copy may store it a byte at a time, and a child reading meanwhile sees part of it:
/// such a read is told apart. (A 4-byte k alone gave 1 STALE in 665 forks on the DEBUG_VM
/// patched kernel on 2026-12-02, which would have hit VM_BUG_ON_FOLIO(folio_mapped) had a
/// truncated page stayed mapped, and did not: most likely such a read.)
fn record(k: u32) -> u64 {
    u64::from(k) | (u64::from(!k) << 32)
}

/// The generation a sampled page holds: 0 for a hole, None for a record being written.
fn generation(r: u64) -> Option<u32> {
    let (lo, hi) = (r as u32, (r >> 32) as u32);
    match (lo, hi) {
        (0, 0) => Some(0),
        _ if hi == !lo => Some(lo),
        _ => None,
    }
}
