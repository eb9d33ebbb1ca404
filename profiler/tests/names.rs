//! Right names and files: mmap_lock rows named after the process and each program it ran,
//! and `--inode` resolved to the inodes the kernel maps (overlayfs, a bare name mapped from
//! several directories, the current directory, a deleted file still mapped). Each test counts
//! only the waits of its own children (rows found by their pid or the test's own files).

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

/// The rows of `mmap_lock_by_process` of process `pid`, as (comm, contentions).
fn mmap_rows(r: &Value, pid: u32) -> Vec<(String, u64)> {
    r["mmap_lock_by_process"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["pid"] == pid)
        .map(|p| (p["comm"].as_str().unwrap_or("<none>").to_owned(), u(p, "contentions")))
        .collect()
}

/// One process, forked and exec'd by this test, whose threads are `worker-1`.. and which
/// execs twice (copies of mm-churn named `stage-one`, `stage-two`, `stage-three`), churning
/// its mmap_lock under each: a row per program it ran, each named after the process's
/// leader as that program named it (never `worker-N`, never this test's thread), adding up
/// to the process's waits.
#[test]
fn mmap_lock_rows_are_named_after_the_process_and_each_program() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let stages = ["stage-one", "stage-two", "stage-three"];
    for s in stages {
        std::fs::copy(workload("mm-churn"), dir.path().join(s)).unwrap();
    }
    let stage = |s: &str| dir.path().join(s).into_os_string();
    let run = Running::start(&[]);
    let mut cmd = Command::new(stage(stages[0]));
    cmd.args(["100000", "-j", "4", "--then"]).arg(stage(stages[1]));
    cmd.args(["100000", "-j", "4", "--then"]).arg(stage(stages[2])).args(["100000", "-j", "4"]);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let (_, r, _) = run.stop(libc::SIGINT);
    let rows = mmap_rows(&r, pid);
    for s in stages {
        let named: Vec<_> = rows.iter().filter(|(c, _)| c == s).collect();
        assert_eq!(named.len(), 1, "one row for {s}: {rows:?}");
        assert!(named[0].1 > 0, "{s}: {rows:?}");
    }
    // Waits the child had before its first exec (as this test's thread, after the fork) are
    // its own row; no row is a thread's name.
    assert!(rows.iter().all(|(c, _)| !c.starts_with("worker-") && c != "<none>"), "{rows:?}");
    assert!(rows.len() <= stages.len() + 1, "{rows:?}");
}
