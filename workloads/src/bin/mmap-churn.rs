//! mmap-churn FILE COUNT [-j JOBS]: COUNT × (mmap FILE shared, touch, munmap) split over JOBS
//! processes, all contending on FILE's i_mmap_rwsem.
use std::os::fd::AsRawFd;

fn main() {
    let usage = "mmap-churn FILE COUNT [-j JOBS]";
    let a = rmapprof_workloads::parse(usage);
    let [file] = &a.rest[..] else { rmapprof_workloads::die(usage) };
    let f = std::fs::File::open(file).unwrap_or_else(|e| {
        eprintln!("mmap-churn: {file}: {e}");
        std::process::exit(1);
    });
    rmapprof_workloads::exit(rmapprof_workloads::mmap_churn(f.as_raw_fd(), a.count, a.jobs));
}
