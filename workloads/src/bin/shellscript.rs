//! shellscript COUNT [-j JOBS] [--bin-dir DIR]: COUNT × `sh -c` running a small pipeline, as
//! UnixBench's shellscript test does (many short-lived dynamically linked processes).
//! `--bin-dir DIR` runs DIR/sh with PATH=DIR, so the pipeline's tools come from DIR too.
const USAGE: &str = "shellscript COUNT [-j JOBS] [--bin-dir DIR]";

fn main() {
    let a = rmapprof_workloads::parse(USAGE);
    let sh = rmapprof_workloads::program(&a, USAGE, "sh");
    let script = c"echo a b c | tr a-z A-Z | sort | wc -c > /dev/null";
    rmapprof_workloads::exit(rmapprof_workloads::run_parallel(a.count, a.jobs, |_, n| {
        let argv = [sh.as_ptr(), c"-c".as_ptr(), script.as_ptr(), std::ptr::null()];
        (0..n).all(|_| rmapprof_workloads::fork_exec_wait(&sh, &argv))
    }));
}
