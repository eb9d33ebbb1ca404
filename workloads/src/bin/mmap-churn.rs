//! mmap-churn FILE COUNT [-j JOBS]: COUNT × (mmap FILE shared, touch, munmap) split over JOBS
//! processes. Each cycle takes FILE's i_mmap_rwsem for write twice (vma_link_file on mmap,
//! unlink_file_vma on munmap), so parallel jobs contend on exactly that inode.
use std::os::fd::AsRawFd;

fn main() {
    let a = rmapprof_workloads::parse("mmap-churn FILE COUNT [-j JOBS]");
    let [file] = &a.rest[..] else { rmapprof_workloads::die("mmap-churn FILE COUNT [-j JOBS]") };
    let f = std::fs::File::open(file).unwrap_or_else(|e| {
        eprintln!("mmap-churn: {file}: {e}");
        std::process::exit(1);
    });
    let len = 4096;
    rmapprof_workloads::run_parallel(a.count, a.jobs, |_, n| {
        (0..n).all(|_| unsafe {
            let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
            if p == libc::MAP_FAILED {
                return false;
            }
            std::ptr::read_volatile(p as *const u8);
            libc::munmap(p, len) == 0
        })
    });
}
