//! holders FILE COUNT [-j JOBS]: waits on FILE's i_mmap_rwsem whose holders are known, for
//! rmapprof's holder attribution. Each role is a process of its own, COUNT cycles each:
//!
//! - a puncher: punches a hole over all of FILE (fallocate PUNCH_HOLE; truncates it to 0 and
//!   back where the filesystem cannot) and writes its first page back: truncate's
//!   unmap_mapping_range read-holds the lock to zap every VMA;
//! - a forker: keeps 16 separate mappings of FILE and forks a child that exits at once, every
//!   8th cycle: fork's dup_mmap and the child's exit teardown write-hold it 16 times each;
//! - JOBS churners: mmap a page of FILE shared, read it, munmap (mmap and teardown write
//!   holds), as mmap-churn.
//!
//! FILE is made 64 KiB if shorter. Exit 0 when every role finished.
use std::os::fd::AsRawFd;

const PAGE: usize = 4096;
const SIZE: usize = 16 * PAGE;
/// The forker's mappings: one page each, a page apart, so no two merge into one VMA.
const MAPPINGS: usize = 16;

/// Punches the hole, or where the filesystem cannot (EOPNOTSUPP), truncates FILE to nothing
/// and back: the same unmap_mapping_range of every VMA.
fn punch(fd: i32, n: u64) -> bool {
    let page = [1u8; PAGE];
    (0..n).all(|_| unsafe {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let punched = libc::fallocate(fd, mode, 0, SIZE as i64) == 0
            || (libc::ftruncate(fd, 0) == 0 && libc::ftruncate(fd, SIZE as i64) == 0);
        punched && libc::pwrite(fd, page.as_ptr().cast(), PAGE, 0) == PAGE as isize
    })
}

fn fork_and_exit(fd: i32, n: u64) -> bool {
    // SAFETY: new mappings of a reserved range, each of one page of FILE at its own offset.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            2 * MAPPINGS * PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return false;
        }
        for i in 0..MAPPINGS {
            let at = base.cast::<u8>().add(2 * i * PAGE).cast();
            let off = (i % (SIZE / PAGE) * PAGE) as i64;
            let p = libc::mmap(at, PAGE, libc::PROT_READ, libc::MAP_SHARED | libc::MAP_FIXED, fd, off);
            if p == libc::MAP_FAILED {
                return false;
            }
        }
    }
    (0..n.div_ceil(8)).all(|_| unsafe {
        match libc::fork() {
            0 => libc::_exit(0),
            pid if pid > 0 => {
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0) == pid && libc::WIFEXITED(st)
            }
            _ => false,
        }
    })
}

fn main() {
    let usage = "holders FILE COUNT [-j JOBS]";
    let a = rmapprof_workloads::parse(usage);
    let [path] = &a.rest[..] else { rmapprof_workloads::die(usage) };
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap_or_else(|e| {
        eprintln!("holders: {path}: {e}");
        std::process::exit(1)
    });
    if file.metadata().map(|m| m.len()).unwrap_or(0) < SIZE as u64 {
        file.set_len(SIZE as u64).expect("holders: extending FILE");
    }
    let fd = file.as_raw_fd();
    let roles = a.jobs + 2;
    let ok = rmapprof_workloads::run_parallel(a.count * roles, roles, |role, n| match role {
        0 => punch(fd, n),
        1 => fork_and_exit(fd, n),
        _ => (0..n).all(|_| rmapprof_workloads::map_touch_unmap(fd)),
    });
    rmapprof_workloads::exit(ok);
}
