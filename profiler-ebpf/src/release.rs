//! `--holder-stacks`: the stack of the task that releases a contended i_mmap_rwsem, taken
//! where it wakes the waiter (sched:sched_waking, every mode).
//!
//! A contended rwsem's release wakes its sleeping waiters from `up_write`/`up_read`
//! (`rwsem_wake`), in the releasing task: when the woken task is waiting for an
//! i_mmap_rwsem, the current task is the one that released it, or one that woke the waiter
//! for another reason (a signal, a waiter giving up its turn), whose stack does not pass
//! through a release: userspace keeps only those that do. The waiter matches the releaser
//! against the holder its wait began with (owner::with_release). Waiters that spin (kprobe/
//! fentry modes) are never woken: their holders' stacks stay unseen without --acquisitions.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use profiler_common::{lock_kind, lost, Release};

use crate::{
    config::{CONFIG, OFFSETS},
    helpers::{count_lost, global, tid},
    maps::{scratch, I_MMAP_WAITING, RELEASES, TASK_WAIT},
    stacks,
};

/// Whether the releases that wake i_mmap_rwsem waiters are unwound.
#[inline(always)]
pub fn on() -> bool {
    global(&CONFIG.holder_stacks) != 0
}

/// An i_mmap_rwsem wait began (`n` = 1) or ended (`n` = -1).
#[inline(always)]
pub fn waiting(n: i64) {
    if let Some(p) = I_MMAP_WAITING.get_ptr_mut(0) {
        // SAFETY: the one slot of an array map, which lives as long as the map.
        unsafe { crate::helpers::add(p, n as u64) };
    }
}

#[tracepoint]
pub fn holder_release(ctx: TracePointContext) -> u32 {
    // Every wakeup in the system comes here: one array read while no i_mmap_rwsem is waited
    // for by a profiled task.
    match I_MMAP_WAITING.get(0) {
        Some(&n) if n != 0 => {}
        _ => return 0,
    }
    // SAFETY: bounds-checked by the helper against the record.
    let Ok(woken) = (unsafe { ctx.read_at::<u32>(global(&OFFSETS.tp_waking_pid) as usize) }) else {
        return 0;
    };
    // SAFETY: another task's row, copied at once: map memory stays valid while this program
    // runs; the row may change under the copy (its wait ending), which at worst makes the lock
    // stale, and the waiter checks it against its own (`take`).
    let Some(lock) = (unsafe { TASK_WAIT.get(&woken) })
        .filter(|w| w.key.target.kind == lock_kind::I_MMAP_RWSEM)
        .map(|w| w.lock)
    else {
        return 0;
    };
    let stack = stacks::stack(&ctx, scratch::TRACEPOINT, 0);
    if stack == 0 {
        return 0;
    }
    if RELEASES.insert(&woken, &Release { lock, tid: tid(), _pad: 0, stack }, 0).is_err() {
        count_lost(lost::TASK_MAP_FULL);
    }
    0
}

/// The release that woke the current task `tid` from its wait for `lock`, taken out of
/// `RELEASES`.
#[inline(always)]
pub fn take(tid: u32, lock: u64) -> Option<Release> {
    // SAFETY: the current task's row, copied before it is removed.
    let r = *unsafe { RELEASES.get(&tid) }?;
    let _ = RELEASES.remove(&tid);
    (r.lock == lock).then_some(r)
}
