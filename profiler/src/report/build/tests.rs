use super::*;
use profiler_common::OpStats;

/// Three stacks (leaf first, as the kernel records them): 1 and 2 through `dup_mmap` at
/// two offsets (two call sites, one path by name), 3 from `mmap_region`.
fn symbols() -> KernelSymbols {
    KernelSymbols::from_map(
        [(0x1000, "entry_SYSCALL_64"), (0x2000, "dup_mmap"), (0x2800, "mmap_region"), (0x3000, "down_write")]
            .into_iter()
            .map(|(a, n)| (a, n.to_owned()))
            .collect(),
    )
}

fn snapshot() -> Snapshot {
    let mut snap = Snapshot::default();
    snap.stacks.insert(1, vec![0x3010, 0x2010, 0x1010]);
    snap.stacks.insert(2, vec![0x3010, 0x2080, 0x1010]);
    snap.stacks.insert(3, vec![0x3010, 0x2810, 0x1010]);
    snap
}

const FILE: LockTarget = LockTarget { kind: lock_kind::I_MMAP_RWSEM, dev: 1, ino: 42 };

fn stats(count: u64, total_ns: u64, max_ns: u64) -> WaitStats {
    WaitStats { count, total_ns, max_ns }
}

fn wait(target: LockTarget, stack: u64) -> ContentionKey {
    ContentionKey { target, flags: lcb_flags::WRITE, _pad: 0, stack }
}

fn op(op: u32, stack: u64) -> OpKey {
    OpKey { target: FILE, op, _pad: 0, stack }
}

fn build_in(mode: RunMode, acquisitions: bool, snap: &Snapshot) -> Report {
    let (index, symbols) = (FileIndex::default(), symbols());
    let ctx = Context {
        mode,
        acquisitions,
        duration_ns: 1,
        cycles: Some(10),
        command: None,
        pid: None,
        probes: vec![],
        selected: &[],
        index: &index,
        symbols: &symbols,
    };
    build(snap, &ctx)
}

fn frames(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Two stacks through the same functions at different offsets read the same once
/// symbolized: one row each in call, spin and acquire paths.
#[test]
fn one_row_per_symbolized_call_path() {
    let mut snap = snapshot();
    snap.stacks.insert(4, vec![0x3010, 0x1010]);
    snap.waits = vec![
        (wait(FILE, 1), stats(3, 300, 200)),
        (wait(FILE, 2), stats(2, 500, 400)),
        (wait(FILE, 4), stats(1, 100, 100)),
    ];
    let slowpaths = |n, spin_ns, spin_max_ns, osq_ns| OpStats {
        stats: stats(n, 1000, 500),
        spin_ns,
        spin_max_ns,
        osq_ns,
        ..Default::default()
    };
    snap.ops = vec![
        (op(op::ACQUIRE_WRITE, 1), OpStats { stats: stats(10, 1000, 300), ..Default::default() }),
        (op(op::ACQUIRE_WRITE, 2), OpStats { stats: stats(20, 2000, 500), ..Default::default() }),
        (op(op::SLOWPATH_WRITE, 1), slowpaths(1, 70, 70, 30)),
        (op(op::SLOWPATH_WRITE, 2), slowpaths(2, 90, 50, 40)),
    ];
    let r = build_in(RunMode::Fentry, true, &snap);
    let f = &r.files[0];
    let dup = frames(&["entry_SYSCALL_64", "dup_mmap", "down_write"]);
    let path = |rw: &str, frames: &[String], contentions, wait_ns_total, wait_ns_max, osq_ns| CallPath {
        rw: rw.into(),
        frames: frames.to_vec(),
        contentions,
        wait_ns_total,
        wait_ns_max,
        osq_ns,
    };
    assert_eq!(
        f.call_paths,
        [
            path("write", &dup, 5, 800, 400, None),
            path("write", &frames(&["entry_SYSCALL_64", "down_write"]), 1, 100, 100, None)
        ]
    );
    let acquired = AcquirePath {
        rw: "write".into(),
        frames: dup.clone(),
        acquisitions: 30,
        hold_ns_total: 3000,
        hold_ns_max: 500,
    };
    assert_eq!(f.acquire_paths, [acquired]);
    assert_eq!(f.spin_paths, [path("spin", &dup, 3, 160, 70, Some(70))]);
    // The per-file and per-class sums are untouched by the merge.
    assert_eq!((f.contentions, f.wait_ns_total, f.acquisitions), (6, 900, Some(30)));
}

/// A slowpath row carries its spin and osq_lock time: the file's and the class's spin,
/// one spin event per slowpath, and the osq_lock part; no osq_lock time, 0.
#[test]
fn slowpath_rows_carry_their_spin_and_osq_time() {
    let mut snap = snapshot();
    let spun = OpStats {
        stats: stats(4, 4000, 2500),
        spin_ns: 2600,
        spin_max_ns: 1500,
        osq_ns: 900,
        ..Default::default()
    };
    let slept = OpStats { stats: stats(1, 800, 800), ..Default::default() };
    snap.ops = vec![(op(op::SLOWPATH_WRITE, 1), spun), (op(op::SLOWPATH_READ, 3), slept)];
    let r = build_in(RunMode::Kprobe, false, &snap);
    let f = &r.files[0];
    assert_eq!(f.slowpaths, Some(5));
    assert_eq!(f.slowpath_ns_total, Some(4800));
    assert_eq!(f.spin_ns_total, Some(2600));
    assert_eq!(f.osq_ns_total, Some(900));
    let spin = |leaf: &str| f.spin_paths.iter().find(|p| p.frames[1] == leaf).unwrap();
    assert_eq!(
        (spin("dup_mmap").contentions, spin("dup_mmap").wait_ns_total, spin("dup_mmap").wait_ns_max),
        (4, 2600, 1500)
    );
    assert_eq!(spin("dup_mmap").osq_ns, Some(900));
    assert_eq!((spin("mmap_region").contentions, spin("mmap_region").osq_ns), (1, Some(0)));
    let class = |c: &str| f.by_class.iter().find(|r| r.class == c).unwrap();
    assert_eq!((class("fork").spin_ns, class("fork").slowpath_ns), (Some(2600), Some(4000)));
    assert_eq!((class("mmap").spin_ns, class("mmap").slowpath_ns), (Some(0), Some(800)));
    // Without --acquisitions no acquisition field is observed.
    assert_eq!((f.acquisitions, f.rmap_inserts, class("fork").write_acquisitions), (None, None, None));
}

/// The rmap operations a write-hold row counted add up with those the kernel recorded
/// one by one outside a hold, per file and per class.
#[test]
fn rmap_operations_inside_and_outside_holds_add_up() {
    let mut snap = snapshot();
    let held = OpStats { stats: stats(3, 300, 150), rmap_inserts: 3, rmap_removes: 1, ..Default::default() };
    let alone = OpStats { stats: stats(2, 0, 0), ..Default::default() };
    snap.ops = vec![(op(op::ACQUIRE_WRITE, 1), held), (op(op::RMAP_INSERT, 1), alone)];
    let r = build_in(RunMode::Fentry, true, &snap);
    let f = &r.files[0];
    assert_eq!((f.acquisitions, f.hold_ns_total), (Some(3), Some(300)));
    assert_eq!((f.rmap_inserts, f.rmap_removes), (Some(5), Some(1)));
    let fork = f.by_class.iter().find(|r| r.class == "fork").unwrap();
    assert_eq!((fork.write_acquisitions, fork.read_acquisitions), (Some(3), Some(0)));
    assert_eq!((fork.rmap_inserts, fork.rmap_removes, fork.hold_ns), (Some(5), Some(1), Some(300)));
    assert_eq!(fork.per_cycle.as_ref().unwrap()["rmap_inserts"], 0.5);
    // No slowpath row: observed, so 0.
    assert_eq!((f.slowpaths, f.spin_ns_total), (Some(0), Some(0)));
}

/// Tracepoint mode sees sleeping waits only: `OPS` rows are not read, and what the mode
/// cannot observe is None. Every lock class is summed, i_mmap_rwsem's files apart.
#[test]
fn tracepoint_mode_reports_waits_and_lock_classes() {
    let mut snap = snapshot();
    let mmap_lock = LockTarget { kind: lock_kind::MMAP_LOCK, dev: 0, ino: 0 };
    snap.waits = vec![(wait(FILE, 3), stats(2, 600, 400)), (wait(mmap_lock, 0), stats(7, 70, 30))];
    snap.ops = vec![(op(op::ACQUIRE_WRITE, 1), OpStats { stats: stats(3, 3, 1), ..Default::default() })];
    snap.nested_waits = 4;
    let r = build_in(RunMode::Tracepoint, false, &snap);
    assert_eq!(r.acquisitions_counted, Some(false));
    assert_eq!(r.nested_waits, 4);
    let locks: Vec<_> = r.locks.iter().map(|l| (l.lock.as_str(), l.contentions)).collect();
    assert_eq!(locks, [("i_mmap_rwsem", 2), ("mmap_lock", 7), ("anon_vma", 0), ("other", 0)]);
    let f = &r.files[0];
    assert_eq!((f.contentions, f.write.contentions, f.read.contentions), (2, 2, 0));
    assert_eq!((f.acquisitions, f.spin_ns_total, f.slowpaths), (None, None, None));
    assert!(f.acquire_paths.is_empty() && f.spin_paths.is_empty());
    let [mmap] = &f.by_class[..] else { panic!("{:?}", f.by_class) };
    assert_eq!((mmap.class.as_str(), mmap.contentions, mmap.sleep_ns), ("mmap", 2, 600));
    assert_eq!((mmap.spin_ns, mmap.write_acquisitions), (None, None));
    assert_eq!(f.wait_hist_log2.len(), HIST_BUCKETS);
}

/// A stack is symbolized and classified once, however many rows name it; one the
/// snapshot lacks reads as the placeholder frame, class "no stack".
#[test]
fn stacks_are_symbolized_once() {
    let (snap, symbols) = (snapshot(), symbols());
    let mut stacks = Stacks::new(&snap.stacks, &symbols);
    assert_eq!(stacks.class(1), callers::FORK);
    assert_eq!(stacks.frames(2), frames(&["entry_SYSCALL_64", "dup_mmap", "down_write"]));
    assert_eq!(stacks.frames(1), stacks.frames(2));
    assert_eq!(stacks.seen.len(), 2);
    assert_eq!(stacks.frames(99), [callers::NO_STACK_FRAME]);
    assert_eq!(stacks.class(99), callers::NO_STACK);
    assert_eq!(stacks.seen.len(), 3);
}

/// Each wait goes to the holder when it began: a tracked hold by its stack's class, a writer
/// by what it was doing, a reader-owned lock as "readers"; per holder task and per waiter
/// task; a waiter that "held" its own lock is counted apart.
#[test]
fn waits_are_attributed_to_their_holders() {
    use profiler_common::{holder_hint, holder_state, Holder, HolderKey};
    let mut snap = snapshot();
    snap.waits = vec![(wait(FILE, 3), stats(6, 600, 300))];
    // kprobe mode: the contended acquisitions' rows (a sleeping wait's row is not used).
    let key = |holder: Holder, waiter_tid| HolderKey {
        target: FILE,
        waiter_flags: lcb_flags::WRITE | profiler_common::HOLDER_SLOWPATH,
        waiter_tid,
        waiter_tgid: waiter_tid,
        _pad: 0,
        waiter_stack: 3,
        holder,
    };
    let tracked = Holder { state: holder_state::TRACKED, tid: 20, tgid: 20, hint: 0, stack: 1 };
    let exiting =
        Holder { state: holder_state::WRITER, tid: 30, tgid: 30, hint: holder_hint::EXITING, stack: 0 };
    let readers = Holder { state: holder_state::READERS, ..Default::default() };
    snap.holder_waits = vec![
        (key(tracked, 10), stats(2, 200, 150)),
        (key(exiting, 10), stats(1, 300, 300)),
        (key(readers, 11), stats(2, 50, 40)),
        // The kernel marks a holder that is the waiter itself.
        (
            HolderKey {
                waiter_flags: lcb_flags::WRITE
                    | profiler_common::HOLDER_SLOWPATH
                    | profiler_common::HOLDER_SAME_TASK,
                ..key(Holder { tid: 11, tgid: 11, ..exiting }, 11)
            },
            stats(1, 50, 50),
        ),
        (HolderKey { waiter_flags: lcb_flags::WRITE, ..key(tracked, 12) }, stats(9, 900, 900)),
    ];
    snap.task_names.insert(10, (10, "mmapper".into()));
    snap.task_names.insert(30, (30, "exiter".into()));
    let r = build_in(RunMode::Kprobe, true, &snap);
    let h = r.files[0].holders.as_ref().unwrap();
    assert_eq!(h.source, "tracked holds");
    assert_eq!(h.same_task, 1);
    let cells: Vec<_> = h
        .matrix
        .iter()
        .map(|c| (c.waiter.as_str(), c.holder.as_str(), c.contentions, c.wait_ns_total))
        .collect();
    assert_eq!(cells, [("mmap", "fork", 2, 200), ("mmap", "teardown", 2, 350), ("mmap", "readers", 2, 50)]);
    // Widest first; a tracked holder has frames, the others say what they were doing.
    let st = &h.stacks[0];
    assert_eq!(
        (st.class.as_str(), st.frames.is_none(), st.doing.as_deref()),
        ("teardown", true, Some("[exiting]"))
    );
    let fork = h.stacks.iter().find(|s| s.class == "fork").unwrap();
    assert_eq!(fork.frames.as_deref(), Some(&frames(&["entry_SYSCALL_64", "dup_mmap", "down_write"])[..]));
    let exiter = h.tasks.iter().find(|t| t.tid == 30).unwrap();
    assert_eq!(
        (exiter.comm.as_deref(), exiter.class.as_str(), exiter.contentions),
        (Some("exiter"), "teardown", 1)
    );
    let waiters: Vec<_> =
        r.files[0].tasks.iter().map(|t| (t.comm.as_deref(), t.tid, t.contentions)).collect();
    assert_eq!(waiters, [(Some("mmapper"), Some(10), 3), (None, Some(11), 3)]);
}

/// Each process's mmap_lock is its own target, per program it ran (keyed by tgid and program
/// run): reported apart, each run named after its leader as the kernel named it.
#[test]
fn mmap_lock_waits_are_reported_per_process_and_program() {
    let mut snap = snapshot();
    let mm = |tgid, run| LockTarget { kind: lock_kind::MMAP_LOCK, dev: tgid, ino: run };
    snap.waits = vec![
        (wait(mm(5, 1), 0), stats(2, 20, 15)),
        (wait(mm(6, 2), 0), stats(3, 90, 40)),
        (wait(mm(6, 3), 0), stats(1, 50, 50)),
        (wait(mm(7, 4), 0), stats(1, 10, 10)),
    ];
    snap.process_names.insert(1, (5, "five".into()));
    snap.process_names.insert(2, (6, "sh".into()));
    snap.process_names.insert(3, (6, "six".into()));
    // Run 4's name row was evicted (least recently used): unnamed, not guessed.
    // A thread's name is not its process's.
    snap.task_names.insert(61, (6, "worker-1".into()));
    let r = build_in(RunMode::Tracepoint, false, &snap);
    let rows: Vec<_> =
        r.mmap_lock_by_process.iter().map(|t| (t.comm.as_deref(), t.pid, t.contentions)).collect();
    assert_eq!(rows, [(Some("sh"), 6, 3), (Some("six"), 6, 1), (Some("five"), 5, 2), (None, 7, 1)]);
    assert_eq!(r.locks[1].contentions, 7);
}
