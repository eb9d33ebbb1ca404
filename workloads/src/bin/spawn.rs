//! spawn COUNT [-j JOBS] [--bin-dir DIR]: COUNT × (fork + exec /bin/true + wait), as
//! UnixBench's spawn/execl mix does; each cycle maps and unmaps libc.so.6 and ld.so in a new
//! process. `--bin-dir DIR` execs DIR/true instead.
const USAGE: &str = "spawn COUNT [-j JOBS] [--bin-dir DIR]";

fn main() {
    let a = rmapprof_workloads::parse(USAGE);
    let path = rmapprof_workloads::program(&a, USAGE, "true");
    rmapprof_workloads::exit(rmapprof_workloads::run_parallel(a.count, a.jobs, |_, n| {
        let argv = [path.as_ptr(), std::ptr::null()];
        (0..n).all(|_| rmapprof_workloads::fork_exec_wait(&path, &argv))
    }));
}
