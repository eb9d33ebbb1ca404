//! Who held each file's i_mmap_rwsem when its waits began: the waiter x holder matrix, the
//! holders' stacks and tasks; the waits per waiting task; mmap_lock waits per process.

use profiler_common::{holder_state, lock_kind, HolderKey, WaitStats, HOLDER_SAME_TASK, HOLDER_SLOWPATH};
use std::{cmp::Reverse, collections::BTreeMap};

use super::{stacks::Stacks, Context};
use crate::{
    attribution::{callers, files::FileId},
    collector::Snapshot,
    report::{FileReport, HolderCell, HolderStack, HolderTask, Holders, TaskWaits, Waits},
};

/// The name of `tid`, or of any task of process `tgid` when `tid` is 0 or unnamed.
fn comm(snap: &Snapshot, tid: u32, tgid: u32) -> Option<String> {
    snap.task_names
        .get(&tid)
        .filter(|_| tid != 0)
        .or_else(|| snap.task_names.get(&tgid))
        .or_else(|| snap.task_names.values().find(|(g, _)| *g == tgid && tgid != 0))
        .map(|(_, c)| c.clone())
}

/// The holder's class and how its stack reads: frames where the stack is known, else what
/// it was doing.
fn holder_of(k: &HolderKey, snap: &Snapshot, stacks: &mut Stacks) -> HolderPath {
    let h = &k.holder;
    // `--holder-stacks`: the stack of the release that woke the waiter, where it is one.
    let released = (h.stack != 0 && h.state != holder_state::TRACKED)
        .then(|| callers::release_path(&stacks.frames(h.stack), h.state == holder_state::READERS))
        .flatten();
    match h.state {
        holder_state::TRACKED => (stacks.class(h.stack), Some(stacks.frames(h.stack)), None),
        holder_state::WRITER if released.is_some() => {
            (callers::classify(released.as_deref().unwrap_or_default()), released, None)
        }
        holder_state::READERS if released.is_some() => {
            (callers::READERS, released, Some("[the last reader to release]".into()))
        }
        holder_state::WRITER => {
            let name = comm(snap, h.tid, h.tgid).unwrap_or_default();
            (callers::of_holder_hint(h.hint, &name), None, Some(callers::holder_doing(h.hint)))
        }
        holder_state::READERS => (callers::READERS, None, Some("[readers]".into())),
        _ => (callers::UNKNOWN, None, Some("[no owner recorded]".into())),
    }
}

fn add_to(w: &mut Waits, s: &WaitStats) {
    w.contentions += s.count;
    w.wait_ns_total += s.total_ns;
    w.wait_ns_max = w.wait_ns_max.max(s.max_ns);
}

/// A holder as its stack reads: class, frames where seen, else what it was doing.
type HolderPath = (&'static str, Option<Vec<String>>, Option<String>);

#[derive(Default)]
struct FileHolders {
    same_task: u64,
    matrix: BTreeMap<(&'static str, &'static str), Waits>,
    stacks: BTreeMap<HolderPath, Waits>,
    tasks: BTreeMap<(u32, u32, &'static str), Waits>,
    waiters: BTreeMap<(u32, u32), Waits>,
}

/// Each reported file's `holders` and `tasks`.
pub(super) fn add_holders(
    files: &mut BTreeMap<FileId, FileReport>,
    snap: &Snapshot,
    stacks: &mut Stacks,
    ctx: &Context,
) {
    let mut by_file: BTreeMap<FileId, FileHolders> = BTreeMap::new();
    // kprobe/fentry modes attribute every contended acquisition (a slowpath, spinning or
    // sleeping); tracepoint mode the sleeping waits, all it sees.
    let slowpaths = ctx.mode.probed();
    for (k, s) in &snap.holder_waits {
        if k.target.kind != lock_kind::I_MMAP_RWSEM || (k.waiter_flags & HOLDER_SLOWPATH != 0) != slowpaths {
            continue;
        }
        let id = FileId { dev: k.target.dev, ino: k.target.ino };
        if !files.contains_key(&id) {
            continue;
        }
        let f = by_file.entry(id).or_default();
        let waiter = stacks.class(k.waiter_stack);
        let (holder, frames, doing) = holder_of(k, snap, stacks);
        if k.waiter_flags & HOLDER_SAME_TASK != 0 {
            f.same_task += s.count;
        }
        add_to(f.matrix.entry((waiter, holder)).or_default(), s);
        add_to(f.stacks.entry((holder, frames, doing)).or_default(), s);
        if k.holder.tid != 0 {
            add_to(f.tasks.entry((k.holder.tgid, k.holder.tid, holder)).or_default(), s);
        }
        // Rows carry the waiting task with `--by-task` only.
        if k.waiter_tid != 0 {
            add_to(f.waiters.entry((k.waiter_tgid, k.waiter_tid)).or_default(), s);
        }
    }
    let source = if ctx.mode.probed() && ctx.acquisitions {
        "tracked holds"
    } else if ctx.probes.iter().any(|p| p.probe == "holder stacks" && p.attached) {
        "owner field, stacks at release"
    } else {
        "owner field"
    };
    for (id, file) in files.iter_mut() {
        let f = by_file.remove(id).unwrap_or_default();
        let order = |c: &str| callers::HOLDER_ALL.iter().position(|x| *x == c);
        let mut matrix: Vec<HolderCell> = f
            .matrix
            .into_iter()
            .map(|((waiter, holder), w)| HolderCell {
                waiter: waiter.into(),
                holder: holder.into(),
                contentions: w.contentions,
                wait_ns_total: w.wait_ns_total,
            })
            .collect();
        matrix.sort_by_key(|c| (order(&c.waiter), order(&c.holder)));
        let mut hstacks: Vec<HolderStack> = f
            .stacks
            .into_iter()
            .map(|((class, frames, doing), w)| HolderStack {
                class: class.into(),
                frames,
                doing,
                contentions: w.contentions,
                wait_ns_total: w.wait_ns_total,
            })
            .collect();
        hstacks.sort_by_key(|s| Reverse(s.wait_ns_total));
        let mut tasks: Vec<HolderTask> = f
            .tasks
            .into_iter()
            .map(|((pid, tid, class), w)| HolderTask {
                comm: comm(snap, tid, pid),
                pid,
                tid,
                class: class.into(),
                contentions: w.contentions,
                wait_ns_total: w.wait_ns_total,
            })
            .collect();
        tasks.sort_by_key(|t| Reverse(t.wait_ns_total));
        file.holders =
            Some(Holders { source: source.into(), same_task: f.same_task, matrix, stacks: hstacks, tasks });
        file.tasks = task_rows(f.waiters, snap);
    }
}

fn task_rows(waits: BTreeMap<(u32, u32), Waits>, snap: &Snapshot) -> Vec<TaskWaits> {
    most_waited(waits.into_iter().map(|((pid, tid), w)| (comm(snap, tid, pid), pid, Some(tid), w)))
}

/// mmap_lock waits per process and program it ran: the kernel keys each process's mmap_lock
/// by its tgid and program run, named after the run's thread group leader.
pub(super) fn mmap_lock_by_process(snap: &Snapshot) -> Vec<TaskWaits> {
    let mut by: BTreeMap<(u32, u64), Waits> = BTreeMap::new();
    for (k, s) in &snap.waits {
        if k.target.kind == lock_kind::MMAP_LOCK {
            add_to(by.entry((k.target.dev, k.target.ino)).or_default(), s);
        }
    }
    most_waited(
        by.into_iter()
            .map(|((pid, run), w)| (snap.process_names.get(&run).map(|(_, c)| c.clone()), pid, None, w)),
    )
}

/// Rows of waits by task or process, the most time waited first.
fn most_waited(rows: impl Iterator<Item = (Option<String>, u32, Option<u32>, Waits)>) -> Vec<TaskWaits> {
    let mut rows: Vec<TaskWaits> = rows
        .map(|(comm, pid, tid, w)| TaskWaits {
            comm,
            pid,
            tid,
            contentions: w.contentions,
            wait_ns_total: w.wait_ns_total,
            wait_ns_max: w.wait_ns_max,
        })
        .collect();
    rows.sort_by_key(|t| Reverse(t.wait_ns_total));
    rows
}
