//! mem-hog LEAVE_MB: takes all of MemAvailable but LEAVE_MB in anonymous memory and keeps
//! touching it until killed, so that (without swap) the kernel reclaims file pages, mapped
//! ones included, for everything else that runs: `cargo xtask patches-check` runs fork
//! stress beside it to have reclaim's rmap walks meet fork's i_mmap_rwsem under lockdep.
//! Takes the memory in 4 MiB pieces and stops growing at the first refusal.
fn mem_available_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
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
        if mem_available_kb() / 1024 <= leave_mb + 4 {
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
        pieces.push(p.cast());
        taken += 4;
    }
    println!("mem-hog: holding {taken} MiB, MemAvailable now {} MiB", mem_available_kb() / 1024);
    loop {
        for &p in &pieces {
            for off in (0..PIECE).step_by(4096) {
                unsafe { std::ptr::write_volatile(p.add(off), 1) };
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
