//! The lock tracepoints, attached in every mode.
//!
//! begin: recognise the lock (i_mmap_rwsem of which inode, mmap_lock, other), take the kernel
//!        stack, remember (start, lock, key) per task.
//! end:   add the wait to `CONTENTION[key]` and to the lock target's log2 histogram, and the
//!        sleep to the task's slowpath record if one is timed (kprobe/fentry modes), else
//!        the i_mmap_rwsem wait with its holder (holder_rows.rs).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use profiler_common::{
    lcb_flags, lock_kind, log2_bucket, lost, not_measured, ContentionKey, Holder, HolderKey, TaskWait,
    WaitHist, HIST_BUCKETS,
};

use crate::{
    config::OFFSETS,
    helpers::{add, add_stats, bump, count_lost, get_or_insert, global, profiled},
    holder_rows, kernel,
    maps::{scratch, CONTENTION, NOT_MEASURED, TASK_WAIT, WAIT_HIST},
    owner, release, slowpath, stacks,
};

#[tracepoint]
pub fn contention_begin(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !profiled(pid_tgid) {
        return 0;
    }
    let tid = pid_tgid as u32;
    // SAFETY (record reads): bounds-checked by the helper against the record.
    let Ok(lock) = (unsafe { ctx.read_at::<u64>(global(&OFFSETS.tp_begin_lock) as usize) }) else {
        return 0;
    };
    let flags = unsafe { ctx.read_at::<u32>(global(&OFFSETS.tp_begin_flags) as usize) }.unwrap_or(0);
    // SAFETY: a `TASK_WAIT` row is only written by its own task, which is here.
    if let Some(w) = unsafe { TASK_WAIT.get(&tid) } {
        // Already waiting: the same lock again (a retry inside one slowpath) keeps the first
        // start time; another lock is a nested wait (wait_lock inside an rwsem slowpath).
        if w.lock != lock {
            bump(&NOT_MEASURED, not_measured::NESTED);
        }
        return 0;
    }
    let target = kernel::classify(lock, flags);
    // Who holds it, read before the unwind: as close to the wait's start as can be.
    let (mut holder, mut holder_task) = (Holder::default(), 0);
    // Inside a slowpath (kprobe/fentry modes) the holder was read at its entry, and the row
    // with the holder is the slowpath's.
    if target.kind == lock_kind::I_MMAP_RWSEM && !slowpath::timing(tid, lock) {
        (holder, holder_task) = owner::holder_at_wait(lock);
    }
    // Stacks only for the locks whose call paths are reported: other locks' would fill the
    // table and cost an unwind each.
    let stack = if target.kind == lock_kind::OTHER { 0 } else { stacks::stack(&ctx, scratch::TRACEPOINT, 0) };
    let wait = TaskWait {
        // SAFETY: a helper call without arguments.
        start_ns: unsafe { bpf_ktime_get_ns() },
        lock,
        key: ContentionKey {
            target,
            flags: if flags & lcb_flags::SPIN == 0 && flags & (lcb_flags::READ | lcb_flags::WRITE) != 0 {
                flags & (lcb_flags::READ | lcb_flags::WRITE)
            } else {
                flags
            },
            _pad: 0,
            stack,
        },
        holder,
        holder_task,
    };
    if TASK_WAIT.insert(&tid, &wait, 0).is_err() {
        count_lost(lost::TASK_MAP_FULL);
    } else if target.kind == lock_kind::I_MMAP_RWSEM && release::on() {
        release::waiting(1);
    }
    0
}

#[tracepoint]
pub fn contention_end(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: as in contention_begin.
    let Some(w) = (unsafe { TASK_WAIT.get(&tid) }) else {
        return 0;
    };
    let Ok(lock) = (unsafe { ctx.read_at::<u64>(global(&OFFSETS.tp_end_lock) as usize) }) else {
        return 0;
    };
    if w.lock != lock {
        return 0; // end of a nested wait we did not measure
    }
    let delta = unsafe { bpf_ktime_get_ns() }.saturating_sub(w.start_ns);
    // The wait's row with its holder, built once: the BPF stack is small.
    let mut hk = HolderKey {
        target: w.key.target,
        waiter_flags: w.key.flags,
        waiter_stack: w.key.stack,
        holder: w.holder,
        ..Default::default()
    };
    let holder_task = w.holder_task;
    let _ = TASK_WAIT.remove(&tid);
    record(
        &ContentionKey { target: hk.target, flags: hk.waiter_flags, _pad: 0, stack: hk.waiter_stack },
        delta,
    );
    let i_mmap = hk.target.kind == lock_kind::I_MMAP_RWSEM;
    let release = if i_mmap && release::on() {
        release::waiting(-1);
        release::take(tid, lock)
    } else {
        None
    };
    if let Some(r) = &release {
        owner::with_release(&mut hk.holder, r);
    }
    // A slowpath's sleep is part of the slowpath's row, holder included.
    if !slowpath::slept(tid, lock, delta, release.as_ref()) && i_mmap && owner::holders_on() {
        holder_rows::record(&mut hk, tid, (pid_tgid >> 32) as u32, delta, holder_task);
    }
    0
}

/// One wait of `delta` ns: its row and its target's histogram.
#[inline(always)]
fn record(key: &ContentionKey, delta: u64) {
    add_stats(&CONTENTION, key, delta);
    match get_or_insert(&WAIT_HIST, &key.target, &NEW_HIST) {
        // SAFETY: a `WAIT_HIST` value this program looked up (freed only after it runs), and a
        // bucket of it.
        Some(h) => unsafe {
            let b = log2_bucket(delta);
            if let Some(slot) = (*h).buckets.get_mut(b) {
                add(slot, 1);
            }
        },
        None => count_lost(lost::HIST_MAP_FULL),
    }
}

/// A new histogram row's value, inserted from global data rather than built on the 512-byte
/// stack.
static NEW_HIST: WaitHist = WaitHist { buckets: [0; HIST_BUCKETS] };
