//! fixed-truncate-stress SECONDS [-j JOBS]: checks that mapping part of a file mapping over
//! itself with MAP_FIXED, as ld.so maps a library's segments over its reservation, never
//! leaves a page mapped that truncate has removed (the rule __mmap_region() keeps: PTEs are
//! cleared while the VMA is still in the file's rmap tree, and every mapped page stays
//! reachable through it).
//!
//! - A truncator process writes generation k (and !k after it, so that a read a concurrent
//!   write tore is told apart) into every page but the first, truncates the file to one page
//!   (publishing "truncated k"), and extends it again (the pages read back as zero).
//! - JOBS workers each loop: map the file MAP_PRIVATE, PROT_READ, the whole of it (the
//!   reservation); populate its pages; map two pages of the same file and offset over it with
//!   MAP_FIXED and other protections (its middle, or its start); read "truncated" (g); read
//!   every page of both mappings through /proc/self/mem, which uses a present PTE as it is:
//!   each must hold 0 or a generation newer than g, or be beyond EOF. Anything else is stale
//!   data, a page some truncation removed but still mapped; then unmap.
//!
//! Exit 0 when no worker saw stale data; prints what happened.
use std::{
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst},
    time::{Duration, Instant},
};

const PAGE: usize = 4096;
const PAGES: usize = 16;

fn main() {
    let a = rmapprof_workloads::parse("fixed-truncate-stress SECONDS [-j JOBS]");
    let secs = a.count;
    let (dir, file) = rmapprof_workloads::scratch_file("fixed-truncate-stress", (PAGES * PAGE) as u64);
    let fd = file.as_raw_fd();

    // Shared between processes: the last truncation completed, and the workers' tallies.
    let shared = rmapprof_workloads::shared_page();
    let truncated = unsafe { &*(shared as *const AtomicU32) };
    let tally = unsafe { std::slice::from_raw_parts((shared as *const AtomicU64).add(1), 5) };
    let [rounds, current, beyond_eof, stale, torn] = [&tally[0], &tally[1], &tally[2], &tally[3], &tally[4]];

    let truncator = unsafe { libc::fork() };
    if truncator == 0 {
        let mut k = 1u32;
        loop {
            // k and !k: a read that a concurrent write tore shows as such, not as stale data.
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&k.to_ne_bytes());
            b[4..].copy_from_slice(&(!k).to_ne_bytes());
            for p in 1..PAGES {
                unsafe { libc::pwrite(fd, b.as_ptr().cast(), 8, (p * PAGE) as i64) };
            }
            unsafe { libc::ftruncate(fd, PAGE as i64) };
            truncated.store(k, SeqCst);
            unsafe { libc::ftruncate(fd, (PAGES * PAGE) as i64) };
            k += 1;
        }
    }

    let deadline = Instant::now() + Duration::from_secs(secs);
    let ok = rmapprof_workloads::run_parallel(a.jobs, a.jobs, |w, _| {
        let mem = std::fs::File::open("/proc/self/mem").expect("/proc/self/mem");
        let mut i = w as usize;
        while Instant::now() < deadline {
            let len = PAGES * PAGE;
            let res =
                unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0) };
            if res == libc::MAP_FAILED {
                eprintln!("fixed-truncate-stress: mmap: {}", std::io::Error::last_os_error());
                return false;
            }
            let base = res as usize;
            unsafe { libc::madvise(res, len, libc::MADV_POPULATE_READ) };
            // Two pages at the start (i even) or in the middle, writable so that the flags differ.
            let first = if i.is_multiple_of(2) { 0 } else { 1 + i % (PAGES - 3) };
            let at = (base + first * PAGE) as *mut libc::c_void;
            let got = unsafe {
                libc::mmap(
                    at,
                    2 * PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_FIXED,
                    fd,
                    (first * PAGE) as i64,
                )
            };
            if got != at {
                eprintln!("fixed-truncate-stress: mmap MAP_FIXED: {}", std::io::Error::last_os_error());
                return false;
            }
            let g = truncated.load(SeqCst);
            for p in 1..PAGES {
                let mut b = [0u8; 8];
                match mem.read_exact_at(&mut b, (base + p * PAGE) as u64) {
                    // v was written by generation v, and removed by truncation v.
                    Ok(()) => match (
                        u32::from_ne_bytes(b[..4].try_into().unwrap()),
                        u32::from_ne_bytes(b[4..].try_into().unwrap()),
                    ) {
                        (0, 0) => current.fetch_add(1, SeqCst),
                        (v, w) if w != !v => torn.fetch_add(1, SeqCst),
                        (v, _) if v > g => current.fetch_add(1, SeqCst),
                        (v, _) => {
                            let now = truncated.load(SeqCst);
                            eprintln!(
                                "fixed-truncate-stress: STALE: page {p} holds {v}, truncated {g} before the read, {now} after; MAP_FIXED at pages {first}..{}",
                                first + 2
                            );
                            stale.fetch_add(1, SeqCst)
                        }
                    },
                    Err(_) => beyond_eof.fetch_add(1, SeqCst),
                };
            }
            unsafe { libc::munmap(res, len) };
            rounds.fetch_add(1, SeqCst);
            i += a.jobs as usize;
        }
        true
    });
    unsafe { libc::kill(truncator, libc::SIGKILL) };
    unsafe { libc::waitpid(truncator, std::ptr::null_mut(), 0) };
    let _ = std::fs::remove_dir_all(&dir);
    let stale = stale.load(SeqCst);
    println!(
        "fixed-truncate-stress: {} rounds: {} pages read current data, {} beyond EOF, {} torn by a concurrent write, {stale} STALE",
        rounds.load(SeqCst),
        current.load(SeqCst),
        beyond_eof.load(SeqCst),
        torn.load(SeqCst)
    );
    std::process::exit(if ok && stale == 0 { 0 } else { 1 });
}
