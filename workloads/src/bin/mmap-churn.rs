//! mmap-churn FILE|DIR COUNT [-j JOBS]: COUNT × (mmap a file shared, touch, munmap) split over
//! JOBS processes. With FILE, all contend on FILE's i_mmap_rwsem; with DIR, cycle i opens the
//! (i mod n)th regular file of DIR, so the run touches as many distinct i_mmap_rwsems as DIR
//! holds files (the map-capacity stress of `cargo xtask bench --stress`), more than the
//! open-file limit would allow to keep open.
use std::os::fd::AsRawFd;

fn main() {
    let usage = "mmap-churn FILE|DIR COUNT [-j JOBS]";
    let a = rmapprof_workloads::parse(usage);
    let [path] = &a.rest[..] else { rmapprof_workloads::die(usage) };
    let fail = |p: &std::path::Path, e: std::io::Error| -> ! {
        eprintln!("mmap-churn: {}: {e}", p.display());
        std::process::exit(1);
    };
    let path = std::path::Path::new(path);
    if !path.is_dir() {
        let f = std::fs::File::open(path).unwrap_or_else(|e| fail(path, e));
        rmapprof_workloads::exit(rmapprof_workloads::mmap_churn(&[f.as_raw_fd()], a.count, a.jobs));
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .unwrap_or_else(|e| fail(path, e))
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort();
    if files.is_empty() {
        fail(path, std::io::Error::other("no regular files"));
    }
    // The jobs walk the files in step, so they contend on each in turn.
    let ok = rmapprof_workloads::run_parallel(a.count, a.jobs, |_, n| {
        (0..n).all(|i| {
            let p = &files[(i % files.len() as u64) as usize];
            let f = std::fs::File::open(p).unwrap_or_else(|e| fail(p, e));
            rmapprof_workloads::map_touch_unmap(f.as_raw_fd())
        })
    });
    rmapprof_workloads::exit(ok);
}
