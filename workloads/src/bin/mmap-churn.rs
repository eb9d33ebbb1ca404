//! mmap-churn FILE|DIR COUNT [-j JOBS]: COUNT × (mmap a file shared, touch, munmap) split over
//! JOBS processes. With FILE, all contend on FILE's i_mmap_rwsem; with DIR, each cycle takes the
//! next regular file of DIR in turn, so the run touches as many distinct i_mmap_rwsems as DIR
//! holds files (the map-capacity stress of `cargo xtask bench --stress`).
use std::os::fd::{AsRawFd, OwnedFd};

fn main() {
    let usage = "mmap-churn FILE|DIR COUNT [-j JOBS]";
    let a = rmapprof_workloads::parse(usage);
    let [path] = &a.rest[..] else { rmapprof_workloads::die(usage) };
    let fail = |e: std::io::Error| -> ! {
        eprintln!("mmap-churn: {path}: {e}");
        std::process::exit(1);
    };
    let files: Vec<OwnedFd> = if std::path::Path::new(path).is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .unwrap_or_else(|e| fail(e))
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect();
        names.sort();
        names.iter().map(|p| std::fs::File::open(p).unwrap_or_else(|e| fail(e)).into()).collect()
    } else {
        vec![std::fs::File::open(path).unwrap_or_else(|e| fail(e)).into()]
    };
    if files.is_empty() {
        fail(std::io::Error::other("no regular files"));
    }
    let fds: Vec<_> = files.iter().map(|f| f.as_raw_fd()).collect();
    rmapprof_workloads::exit(rmapprof_workloads::mmap_churn(&fds, a.count, a.jobs));
}
