//! `--acquisitions` (userspace attaches these probes only then; they run for every rwsem in
//! the kernel, see profiler-common's ACQUISITION_PROBES):
//!
//! - `down_write`/`down_read` → `up_write`/`up_read` on an i_mmap_rwsem: every acquisition and
//!   its hold time, keyed by kernel stack (the caller class is read off the stack in userspace;
//!   the stack comes from a per-call-site cache, [`crate::callsite`]).
//!   Entry probes only: the hold starts at `down_*` entry, and a slowpath's return moves it to
//!   the moment the lock was really granted. Uncontended, `down_*` is a few instructions, so
//!   the hold is the same to within nanoseconds, without a return probe on every `down_*` of
//!   every rwsem in the kernel (among the most frequent probes rmapprof has: how often,
//!   docs/performance.md). A write hold lives in its rwsem's slot of an array
//!   ([`WRITE_HOLDS`]), which also remembers which file that rwsem belonged to; other holds in
//!   a hash table ([`HOLDS`]);
//! - `vma_interval_tree_insert{,_after}` / `_remove`: rmap tree operations per file, counted
//!   in the write hold they happen in (the lock is held for them) and added to its row at its
//!   end.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use profiler_common::{lock_kind, lost, op, Hold, HoldKey, OpKey, WriteHold};

use crate::{
    callsite::{stack_at_entry, SiteOf},
    helpers::{add, add_event, compare_exchange, count_lost, op_row, profiled_task, tid},
    kernel,
    maps::{HOLDS, WRITE_HOLDS, WRITE_HOLD_SLOTS},
};

/// The slot of `sem`: Fibonacci hashing (rwsem addresses share their low bits).
#[inline(always)]
fn slot(sem: u64) -> u32 {
    const _: () = assert!(WRITE_HOLD_SLOTS.is_power_of_two());
    (sem.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - WRITE_HOLD_SLOTS.trailing_zeros())) as u32
}

/// `sem`'s write-hold slot if this task holds `sem` there.
#[inline(always)]
pub fn my_write_hold(sem: u64, tid: u32) -> Option<*mut WriteHold> {
    let w = WRITE_HOLDS.get_ptr_mut(slot(sem))?;
    // SAFETY: a slot of an array map, which lives as long as the map; racy reads of another
    // task's slot only decide that it is not ours.
    (unsafe { (*w).owner == tid as u64 && (*w).sem == sem }).then_some(w)
}

#[inline(always)]
fn record_op(key: &OpKey, ns: u64) {
    record_hold(key, ns, 0, 0);
}

/// One event of `ns` in the `key` row, with the rmap operations done inside it (a hold).
#[inline(always)]
fn record_hold(key: &OpKey, ns: u64, inserts: u64, removes: u64) {
    let Some(s) = op_row(key) else { return };
    // SAFETY: an `OPS` value this program looked up (freed only after it runs).
    unsafe {
        add_event(&mut (*s).stats, ns);
        if inserts > 0 {
            add(&mut (*s).rmap_inserts, inserts);
        }
        if removes > 0 {
            add(&mut (*s).rmap_removes, removes);
        }
    }
}

/// The task holds `sem` from now, as the `key` row.
#[inline(always)]
fn hold_from_now(tid: u32, sem: u64, key: OpKey) {
    // SAFETY: a helper call without arguments.
    let hold = Hold { start_ns: unsafe { bpf_ktime_get_ns() }, key };
    if HOLDS.insert(&HoldKey { tid, _pad: 0, sem }, &hold, 0).is_err() {
        count_lost(lost::TASK_MAP_FULL);
    } else if let Some(w) = WRITE_HOLDS.get_ptr_mut(slot(sem)) {
        // SAFETY: a slot of an array map; `elsewhere` is only changed atomically.
        unsafe { add(&mut (*w).elsewhere, 1) };
    }
}

/// `down_*` entered for `sem`: if it is an i_mmap_rwsem, the task holds it from now (a
/// slowpath, if taken, moves the start to when the lock is granted).
#[inline(always)]
pub fn acquired<C: SiteOf>(ctx: &C, sem: u64, op: u32) {
    if !profiled_task() {
        return;
    }
    let w = if op == op::ACQUIRE_WRITE { WRITE_HOLDS.get_ptr_mut(slot(sem)) } else { None };
    // Which file: the one the slot remembers for this rwsem if its inode still checks (two
    // probe reads), else classified afresh (one read rules out most rwsems, five name a file).
    // SAFETY: a slot of an array map; a racy read of another holder's fields is checked
    // against the rwsem itself before it is used.
    let cached = w
        .map(|w| unsafe { ((*w).sem, (*w).key.target) })
        .filter(|(last, file)| *last == sem && kernel::still_file(sem, file));
    let target = match cached {
        Some((_, file)) => file,
        None => {
            let t = kernel::classify_rwsem(sem);
            if t.kind != lock_kind::I_MMAP_RWSEM {
                return;
            }
            t
        }
    };
    let tid = tid();
    if let Some(w) = w {
        // SAFETY: `owner` of a slot of an array map, which lives as long as the map.
        if unsafe { compare_exchange(&mut (*w).owner, 0, tid as u64) } {
            // The slot is this task's until it stores 0 again. All of it is written: another
            // hold may have used it since `target` was read from it.
            let stack = stack_at_entry(ctx);
            // SAFETY: the slot, which only its owner (this task) writes.
            unsafe {
                (*w).sem = sem;
                (*w).key = OpKey { target, op, _pad: 0, stack };
                (*w).inserts = 0;
                (*w).removes = 0;
                (*w).start_ns = bpf_ktime_get_ns();
            }
            return;
        }
    }
    hold_from_now(tid, sem, OpKey { target, op, _pad: 0, stack: stack_at_entry(ctx) });
}

/// `up_*` entered for `sem`. Runs for every rwsem in the kernel, rmapprof's most frequent
/// probe: the slot's `sem` (an array read) rules out nearly all of them before the task id, a
/// helper call, is asked for.
#[inline(always)]
pub fn released(sem: u64) {
    let Some(w) = WRITE_HOLDS.get_ptr_mut(slot(sem)) else { return };
    // SAFETY (slot): a slot of an array map; only its owner writes it, and the owner is us
    // when both checks pass.
    if unsafe { (*w).sem == sem && (*w).owner == tid() as u64 } {
        let now = unsafe { bpf_ktime_get_ns() };
        let h = unsafe { *w };
        unsafe { (*w).owner = 0 }; // copied: free for the next hold
        record_hold(&h.key, now.saturating_sub(h.start_ns), h.inserts, h.removes);
        return;
    }
    if unsafe { (*w).elsewhere } == 0 {
        return; // nobody holds an i_mmap_rwsem at this address outside the slot
    }
    let key = HoldKey { tid: tid(), _pad: 0, sem };
    // SAFETY: this task's own `HOLDS` row.
    let Some(h) = (unsafe { HOLDS.get(&key) }) else { return };
    let h = *h;
    if HOLDS.remove(&key).is_ok() {
        // SAFETY: `elsewhere` of the slot, changed atomically.
        unsafe { add(&mut (*w).elsewhere, u64::MAX) }; // -1
    }
    record_op(&h.key, unsafe { bpf_ktime_get_ns() }.saturating_sub(h.start_ns));
}

/// An rmap tree operation (`op`: `RMAP_INSERT`/`RMAP_REMOVE`) on the tree at `root`. It is
/// done with the file's i_mmap_rwsem held for write by this task, and comes from the same call
/// path as that acquisition: reuse its target and stack instead of classifying the root and
/// unwinding the stack again (an unwind per rmap operation was a large part of rmapprof's
/// cost on fork/exec: docs/performance.md). Only when the lock was taken before rmapprof
/// attached is there no hold to reuse.
#[inline(always)]
pub fn rmap_op<C: SiteOf>(ctx: &C, root: u64, op: u32) {
    if !profiled_task() {
        return;
    }
    let sem = kernel::i_mmap_rwsem_of_root(root);
    let tid = tid();
    if let Some(w) = my_write_hold(sem, tid) {
        // SAFETY: this task's slot; only the holder writes it, so no atomics needed.
        unsafe {
            if op == op::RMAP_INSERT {
                (*w).inserts += 1;
            } else {
                (*w).removes += 1;
            }
        }
        return;
    }
    // SAFETY: this task's own `HOLDS` row.
    if let Some(h) = unsafe { HOLDS.get(&HoldKey { tid, _pad: 0, sem }) } {
        record_op(&OpKey { op, ..h.key }, 0);
        return;
    }
    let target = kernel::classify_i_mmap_root(root);
    if target.kind == lock_kind::I_MMAP_RWSEM {
        record_op(&OpKey { target, op, _pad: 0, stack: stack_at_entry(ctx) }, 0);
    }
}

/// Whether the holds are tracked (`--acquisitions`).
#[inline(always)]
pub fn tracking() -> bool {
    crate::helpers::global(&crate::config::CONFIG.acquisitions) != 0
}

/// The acquisition stack of task `tid`'s write hold of `sem`, if it is tracked: in `sem`'s
/// slot, or (taken while the slot was busy, a contended acquisition) in `HOLDS`.
#[inline(always)]
pub fn tracked_write(tid: u32, sem: u64) -> Option<u64> {
    if let Some(w) = WRITE_HOLDS.get_ptr(slot(sem)) {
        // SAFETY: a slot of an array map; a racy read of another task's slot is checked by
        // its owner and rwsem, and the stack key read is only ever a key (or 0).
        let (owner, s, stack) = unsafe { ((*w).owner, (*w).sem, (*w).key.stack) };
        if owner == tid as u64 && s == sem && stack != 0 {
            return Some(stack);
        }
    }
    tracked_read(tid, sem)
}

/// The acquisition stack of task `tid`'s hold of `sem` kept in `HOLDS` (read holds, and
/// write holds taken while the slot was busy).
#[inline(always)]
pub fn tracked_read(tid: u32, sem: u64) -> Option<u64> {
    // SAFETY: a `HOLDS` value, copied out at once; another task's row may be removed
    // meanwhile (freed after RCU), and a key is all that is read.
    let h = unsafe { HOLDS.get(&HoldKey { tid, _pad: 0, sem }) }?;
    (h.key.stack != 0).then_some(h.key.stack)
}
