//! anon-fork COUNT [-j JOBS]: JOBS processes, forked from one that has 16 MiB of anonymous
//! memory touched in 256 VMAs (every other 32 KiB read-only, so none merge), each COUNT/JOBS
//! × (fork a child that exits at once, wait). They all share its root anon_vma, whose rwsem
//! every fork (anon_vma_fork) and exit (unlink_anon_vmas) write-locks, once per VMA:
//! contention on the anon_vma lock, not on any file's i_mmap_rwsem.
const SIZE: usize = 16 << 20;
const CHUNK: usize = 32 << 10;

fn main() {
    let usage = "anon-fork COUNT [-j JOBS]";
    let a = rmapprof_workloads::parse(usage);
    if !a.rest.is_empty() {
        rmapprof_workloads::die(usage);
    }
    // SAFETY: a new private anonymous mapping, touched page by page within its length.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            rmapprof_workloads::exit(false);
        }
        for i in (0..SIZE).step_by(4096) {
            std::ptr::write_volatile(p.cast::<u8>().add(i), 1);
        }
        for c in (CHUNK..SIZE).step_by(2 * CHUNK) {
            libc::mprotect(p.cast::<u8>().add(c).cast(), CHUNK, libc::PROT_READ);
        }
    }
    let ok = rmapprof_workloads::run_parallel(a.count, a.jobs, |_, n| {
        (0..n).all(|_| unsafe {
            match libc::fork() {
                0 => libc::_exit(0),
                pid if pid > 0 => {
                    let mut st = 0;
                    libc::waitpid(pid, &mut st, 0) == pid
                }
                _ => false,
            }
        })
    });
    rmapprof_workloads::exit(ok);
}
