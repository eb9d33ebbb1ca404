//! Holder attribution on this machine's kernel (tracepoint mode here: the holder is read from
//! the rwsem's owner field; its stack is seen with --holder-stacks, where its release wakes
//! the waiter, else `probes` says why not), and mmap_lock waits per process.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;

/// The holders workload (a hole puncher, a forker whose children exit, mmap/munmap churners
/// on one file): each wait on the file has a holder cell; the holders named are the
/// workload's own tasks, never the waiter; a writer's class comes from its system call.
#[test]
fn holders_of_a_punched_and_churned_file() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holders.dat");
    std::fs::write(&path, vec![1u8; 65536]).unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    let (r, txt) = profile_command_with(
        &["--by-task"],
        &[
            workload("holders").into_os_string(),
            path.clone().into_os_string(),
            "20000".into(),
            "-j".into(),
            "6".into(),
        ],
    );
    let f = file_entry(&r, ino).expect("the workload's file is reported");
    assert!(f.contentions > 0, "no waits: {f:?}");
    let h = f.holders.as_ref().expect("holders of an i_mmap_rwsem file");
    assert_eq!(h.same_task, 0, "{h:?}");
    let sum: u64 = h.matrix.iter().map(|c| c.contentions).sum();
    assert_eq!(sum, f.contentions, "every wait has a holder cell: {h:?}");
    let classes = ["fork", "mmap", "split/merge", "teardown", "truncate", "readers", "unknown", "other"];
    assert!(h.matrix.iter().all(|c| classes.contains(&c.holder.as_str())), "{h:?}");
    assert!(!h.tasks.is_empty(), "no writer holder named: {h:?}");
    for t in &h.tasks {
        assert_eq!(t.comm.as_deref(), Some("holders"), "{t:?}");
        assert!(["fork", "mmap", "teardown", "split/merge", "other"].contains(&t.class.as_str()), "{t:?}");
    }
    // Waiters are the workload's tasks too, per task (--by-task), in report.txt too.
    assert!(f.tasks.iter().all(|t| t.comm.as_deref() == Some("holders")), "{:?}", f.tasks);
    let by_waiters: u64 = f.tasks.iter().map(|t| t.contentions).sum();
    assert_eq!(by_waiters, f.contentions);
    // Here the holders' stacks are not seen (no --acquisitions), and `probes` says why.
    if r.acquisitions_counted != Some(true) {
        assert!(h.stacks.iter().all(|s| s.frames.is_none() && s.doing.is_some()), "{h:?}");
        let p = r.probes.iter().find(|p| p.probe == "holder stacks").unwrap();
        assert!(!p.attached);
        assert!(p.error.as_deref().unwrap_or("").contains("bpf_task_from_pid"), "{p:?}");
    }
    assert!(txt.contains("holders when the waits began"), "{txt}");
    assert!(txt.contains("i_mmap_rwsem waits by task:"), "{txt}");
}

/// `--holder-stacks` on the holders workload: a holder's stack, taken where its release woke
/// the waiter, reads as the holder's path down to the release (nothing of the wakeup below
/// it); the last reader's is the hole puncher's unmap_mapping_range (a read hold); a writer's
/// is one of the workload's write paths, classed by it. Every wait still has one cell, and
/// holders.folded carries the stacks, weighted by the time waited on them.
#[test]
fn holder_stacks_at_release_are_the_holders_paths() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holders.dat");
    std::fs::write(&path, vec![1u8; 65536]).unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    let out = tempfile::tempdir().unwrap();
    let st = rmapprof()
        .args(["--holder-stacks", "-o"])
        .arg(out.path())
        .arg("--")
        .arg(workload("holders"))
        .arg(&path)
        .args(["20000", "-j", "6"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let r = read_report(&out.path().join("report.json"));
    let p = r.probes.iter().find(|p| p.probe == "holder stacks").unwrap();
    assert!(p.attached, "{p:?}");
    let f = file_entry(&r, ino).expect("the workload's file is reported");
    let h = f.holders.as_ref().expect("holders");
    assert_eq!(h.source, "owner field, stacks at release", "{h:?}");
    assert_eq!(h.same_task, 0, "{h:?}");
    let sum: u64 = h.matrix.iter().map(|c| c.contentions).sum();
    assert_eq!(sum, f.contentions, "every wait has a holder cell: {h:?}");
    let seen: Vec<(&rmapprof_report::HolderStack, &Vec<String>)> =
        h.stacks.iter().filter_map(|s| Some((s, s.frames.as_ref()?))).collect();
    assert!(!seen.is_empty(), "no holder stack taken at a release: {h:?}");
    for (s, frames) in &seen {
        let leaf = frames.last().unwrap().as_str();
        assert!(["up_read", "up_write", "downgrade_write"].contains(&leaf), "{s:?}");
        assert!(!frames.iter().any(|f| f.contains("wake")), "the wakeup is not the holder's path: {s:?}");
        match s.class.as_str() {
            "readers" => {
                assert_eq!(leaf, "up_read", "{s:?}");
                assert_eq!(s.doing.as_deref(), Some("[the last reader to release]"), "{s:?}");
            }
            class => assert!(
                ["fork", "mmap", "teardown", "split/merge", "truncate", "other"].contains(&class),
                "{s:?}"
            ),
        }
    }
    // The hole puncher's read hold is the readers' path the waits are on.
    assert!(
        seen.iter()
            .any(|(s, frames)| s.class == "readers" && frames.iter().any(|f| f == "unmap_mapping_range")),
        "{h:?}"
    );
    // Without --by-task the rows are not kept per waiting task.
    assert!(f.tasks.is_empty(), "{:?}", f.tasks);
    let folded = std::fs::read_to_string(out.path().join("holders.folded")).unwrap();
    // A readers' tower ends `up_read;[the last reader to release]`, a writer's at the release.
    assert!(folded.lines().any(|l| l.contains(";up_read;") || l.contains(";up_write ")), "{folded}");
}

/// Two processes each contending on its own mm's mmap_lock are reported apart, by process,
/// each named after the program it runs. A child's waits between this test's fork and its
/// exec (as this test's thread: a vfork child faults on the test's own mm) are a row of
/// their own, so each pid is looked up by its program's row.
#[test]
fn mmap_lock_waits_are_told_apart_by_process() {
    let _g = serial();
    let run = Running::start(&[]);
    let churn =
        || std::process::Command::new(workload("mm-churn")).args(["200000", "-j", "8"]).spawn().unwrap();
    let (mut a, mut b) = (churn(), churn());
    let (pa, pb) = (a.id(), b.id());
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let (_, r, _) = run.stop(libc::SIGINT);
    let rows = &r.mmap_lock_by_process;
    for pid in [pa, pb] {
        let named: Vec<_> =
            rows.iter().filter(|p| p.pid == pid && p.comm.as_deref() == Some("mm-churn")).collect();
        assert_eq!(named.len(), 1, "{pid}: {rows:?}");
        assert!(named[0].contentions > 0, "{pid}: {rows:?}");
    }
    let total: u64 = rows.iter().map(|p| p.contentions).sum();
    assert_eq!(total, lock(&r, "mmap_lock").contentions);
}

/// Processes sharing one root anon_vma, forking and exiting: its rwsem's waits are the
/// `anon_vma` lock class, apart from i_mmap_rwsem, mmap_lock and the rest.
#[test]
fn anon_vma_waits_are_their_own_lock_class() {
    let _g = serial();
    let (r, txt) = profile_command(&[workload("anon-fork"), "3000".into(), "-j".into(), "16".into()]);
    let locks: Vec<&str> = r.locks.iter().map(|l| l.lock.as_str()).collect();
    assert_eq!(locks, ["i_mmap_rwsem", "mmap_lock", "anon_vma", "other"]);
    let anon = lock(&r, "anon_vma");
    assert!(anon.contentions > 0, "no anon_vma waits: {anon:?}");
    assert!(txt.lines().any(|l| l.starts_with("anon_vma ")), "{txt}");
}
