//! mm-churn COUNT [-j THREADS]: COUNT × (mmap 8 KiB of anonymous memory, touch it, munmap)
//! split over THREADS threads of this one process: they contend on its own mm's mmap_lock
//! (write-locked by each mmap and munmap), and on no file's i_mmap_rwsem.
fn main() {
    let usage = "mm-churn COUNT [-j THREADS]";
    let a = rmapprof_workloads::parse(usage);
    if !a.rest.is_empty() {
        rmapprof_workloads::die(usage);
    }
    let threads: Vec<_> = (0..a.jobs)
        .map(|t| {
            let n = a.count / a.jobs + u64::from(t < a.count % a.jobs);
            std::thread::spawn(move || {
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
        })
        .collect();
    let ok = threads.into_iter().all(|t| t.join().unwrap_or(false));
    rmapprof_workloads::exit(ok);
}
