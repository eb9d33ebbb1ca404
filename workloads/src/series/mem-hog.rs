//! mem-hog LEAVE_MB [FILE]: takes anonymous memory until MemFree is down to LEAVE_MB (near
//! the zone watermarks: kswapd and direct reclaim run from then on) and keeps it until killed, so that (without swap) the kernel reclaims file pages, mapped ones
//! included, for everything else that runs: `cargo xtask patches-check` runs fork stress
//! beside it to have reclaim's rmap walks meet fork's i_mmap_rwsem under lockdep. Takes the
//! memory in 4 MiB pieces and stops growing at the first refusal.
//!
//! With FILE (larger than the memory left), it then maps FILE read-only as 64 VMAs, reads a
//! byte of every page over and over, so reclaim keeps unmapping that file's pages (an rmap
//! walk of its i_mmap tree each time), and forks a child that exits at once every 256 pages,
//! so fork's dup_mmap() write-locks the same file's i_mmap_rwsem (64 VMAs: 8 batches) while
//! reclaim wants it: reclaim's trylock fails, and it waits for the lock under fs_reclaim.
fn meminfo_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn mem_available_kb() -> u64 {
    meminfo_kb("MemAvailable:")
}

fn main() {
    let leave_mb: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: mem-hog LEAVE_MB");
        std::process::exit(2)
    });
    const PIECE: usize = 4 << 20;
    let mut pieces: Vec<*mut u8> = Vec::new();
    let mut taken = 0u64;
    loop {
        // MemAvailable counts reclaimable page cache: MemFree is what reclaim starts from.
        if meminfo_kb("MemFree:") / 1024 <= leave_mb + 4 || mem_available_kb() / 1024 <= leave_mb {
            break;
        }
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PIECE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            break;
        }
        // Not copied by the forks below: they would spend their time copying its page tables.
        unsafe { libc::madvise(p, PIECE, libc::MADV_DONTFORK) };
        pieces.push(p.cast());
        taken += 4;
    }
    println!(
        "mem-hog: holding {taken} MiB, MemFree now {} MiB, MemAvailable {} MiB",
        meminfo_kb("MemFree:") / 1024,
        mem_available_kb() / 1024
    );
    if let Some(path) = std::env::args().nth(2) {
        churn_file(&path);
    }
    loop {
        for &p in &pieces {
            for off in (0..PIECE).step_by(4096) {
                unsafe { std::ptr::write_volatile(p.add(off), 1) };
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Reads FILE through 64 private read-only VMAs (alternately PROT_READ and PROT_READ |
/// PROT_WRITE, so they do not merge) forever, forking a child that exits every 256 pages.
fn churn_file(path: &str) -> ! {
    use std::os::fd::AsRawFd;
    const PAGE: usize = 4096;
    const VMAS: usize = 64;
    let f = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!("mem-hog: {path}: {e}");
        std::process::exit(1)
    });
    let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0) / (VMAS * PAGE) * (VMAS * PAGE);
    if len == 0 {
        eprintln!("mem-hog: {path} is smaller than {VMAS} pages");
        std::process::exit(1);
    }
    let base = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    assert_ne!(base, libc::MAP_FAILED);
    let chunk = len / VMAS;
    for i in 0..VMAS {
        let prot = if i % 2 == 0 { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_WRITE };
        let p = unsafe {
            libc::mmap(
                (base as usize + i * chunk) as *mut libc::c_void,
                chunk,
                prot,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                f.as_raw_fd(),
                (i * chunk) as i64,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap {path}: {}", std::io::Error::last_os_error());
    }
    println!("mem-hog: reading {} MiB of {path} in {VMAS} VMAs, forking every 256 pages", len >> 20);
    let (mut n, mut sum) = (0usize, 0u64);
    loop {
        for off in (0..len).step_by(PAGE) {
            sum =
                sum.wrapping_add(u64::from(unsafe { std::ptr::read_volatile((base as *const u8).add(off)) }));
            n += 1;
            if n % 256 == 0 {
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    unsafe { libc::_exit(0) };
                }
                if pid > 0 {
                    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                }
            }
        }
        std::hint::black_box(sum);
    }
}
