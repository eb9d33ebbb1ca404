//! kprobe and fentry modes: what the lock tracepoints cannot see of a contended rwsem.
//!
//! - `rwsem_down_{write,read}_slowpath` entry→return: slowpath time per lock; minus the sleep
//!   that lock:contention_end adds to the same task's record = optimistic spinning;
//! - `osq_lock` entry→return inside a slowpath: MCS queue spinning, charged to that rwsem.
//!
//! One `OPS` row per slowpath carries both ([`profiler_common::OpStats`]).

use aya_ebpf::helpers::bpf_ktime_get_ns;
use profiler_common::{
    lcb_flags, lock_kind, lost, op, HoldKey, HolderKey, LockTarget, OpKey, Release, Slowpath, HOLDER_SLOWPATH,
};

use crate::{
    acquisitions::my_write_hold,
    callsite::{stack_at_slowpath, SiteOf},
    config::CONFIG,
    helpers::{add, add_event, count_lost, global, op_row, profiled_task, store_max, tid},
    holder_rows, kernel,
    maps::{HOLDS, SLOWPATH},
    owner,
};

/// The file whose i_mmap_rwsem `sem` is, if it is one and this task is profiled.
#[inline(always)]
fn wanted_i_mmap(sem: u64) -> Option<LockTarget> {
    if !profiled_task() {
        return None;
    }
    let target = kernel::classify_rwsem(sem);
    (target.kind == lock_kind::I_MMAP_RWSEM).then_some(target)
}

/// `rwsem_down_*_slowpath` entered for `sem`, as operation `op` (`SLOWPATH_WRITE`/`_READ`).
#[inline(always)]
pub fn enter<C: SiteOf>(ctx: &C, sem: u64, op: u32) {
    let Some(target) = wanted_i_mmap(sem) else { return };
    // From the call-site cache, as for down_*: a slowpath is entered from down_*, so its
    // return address says little, but the call's depth and the split words above it tell the
    // paths apart (callsite.rs), and a contended lock is entered from the same few paths again
    // and again; a full unwind is the most a probe costs (docs/performance.md). Taken
    // before the clock starts, as contention_begin does: this is rmapprof's time, not spinning.
    let stack = stack_at_slowpath(ctx);
    // Who holds it: every contended acquisition is attributed, spinning or sleeping (the
    // tracepoints see only those that sleep).
    let (holder, holder_task) = owner::holder_at_wait(sem);
    let s = Slowpath {
        sem,
        // SAFETY: a helper call without arguments.
        start_ns: unsafe { bpf_ktime_get_ns() },
        target,
        op,
        _pad: 0,
        stack,
        holder,
        holder_task,
        ..Default::default()
    };
    if SLOWPATH.insert(&tid(), &s, 0).is_err() {
        count_lost(lost::TASK_MAP_FULL);
    }
}

/// The slowpath returned: the lock is granted.
#[inline(always)]
pub fn exit() {
    let tid = tid();
    // SAFETY (SLOWPATH): a task's row is written only by that task (its probes and its
    // contention_end), which is here.
    let Some(s) = (unsafe { SLOWPATH.get(&tid) }) else { return };
    let s = *s;
    let _ = SLOWPATH.remove(&tid);
    let now = unsafe { bpf_ktime_get_ns() };
    // The lock is granted now: the hold `down_*` started at its entry begins here.
    if global(&CONFIG.acquisitions) != 0 {
        if let Some(w) = my_write_hold(s.sem, tid) {
            // SAFETY: this task's slot (it owns it until it stores 0 in `owner`).
            unsafe { (*w).start_ns = now };
        } else if let Some(h) = HOLDS.get_ptr_mut(&HoldKey { tid, _pad: 0, sem: s.sem }) {
            // SAFETY: this task's own `HOLDS` row.
            unsafe { (*h).start_ns = now };
        }
    }
    // One row for the slowpath, its spin and its osq_lock time: this runs inside the hold.
    let Some(row) = op_row(&OpKey { target: s.target, op: s.op, _pad: 0, stack: s.stack }) else { return };
    let total = now.saturating_sub(s.start_ns);
    let spin = total.saturating_sub(s.sleep_ns);
    // SAFETY: an `OPS` value this program looked up (freed only after it runs).
    unsafe {
        add_event(&mut (*row).stats, total);
        add(&mut (*row).spin_ns, spin);
        store_max(&mut (*row).spin_max_ns, spin);
        if s.osq_ns > 0 {
            add(&mut (*row).osq_ns, s.osq_ns);
        }
    }
    if owner::holders_on() {
        let rw = if s.op == op::SLOWPATH_WRITE { lcb_flags::WRITE } else { lcb_flags::READ };
        let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
        let mut key = HolderKey {
            target: s.target,
            waiter_flags: rw | HOLDER_SLOWPATH,
            waiter_stack: s.stack,
            holder: s.holder,
            ..Default::default()
        };
        holder_rows::record(&mut key, tid, (pid_tgid >> 32) as u32, total, s.holder_task);
    }
}

/// Whether task `tid` is in a slowpath timed for `lock` (called by lock:contention_begin).
#[inline(always)]
pub fn timing(tid: u32, lock: u64) -> bool {
    // SAFETY: the current task's own row, read only.
    unsafe { SLOWPATH.get(&tid) }.is_some_and(|s| s.sem == lock)
}

/// Called by lock:contention_end: the sleep part of a slowpath being timed, and the release
/// that ended it (`--holder-stacks`). Whether a slowpath is timed for `lock`.
#[inline(always)]
pub fn slept(tid: u32, lock: u64, ns: u64, release: Option<&Release>) -> bool {
    let Some(s) = SLOWPATH.get_ptr_mut(&tid) else { return false };
    // SAFETY: the current task's own row.
    unsafe {
        if (*s).sem != lock {
            return false;
        }
        (*s).sleep_ns += ns;
        if let Some(r) = release {
            owner::with_release(&mut (*s).holder, r);
        }
    }
    true
}

/// `osq_lock` entered inside a slowpath.
#[inline(always)]
pub fn osq_enter() {
    if let Some(s) = SLOWPATH.get_ptr_mut(&tid()) {
        // SAFETY: the current task's own row.
        unsafe { (*s).osq_start_ns = bpf_ktime_get_ns() };
    }
}

/// `osq_lock` returned.
#[inline(always)]
pub fn osq_exit() {
    if let Some(s) = SLOWPATH.get_ptr_mut(&tid()) {
        // SAFETY: the current task's own row.
        unsafe {
            if (*s).osq_start_ns != 0 {
                (*s).osq_ns += bpf_ktime_get_ns().saturating_sub((*s).osq_start_ns);
                (*s).osq_start_ns = 0;
            }
        }
    }
}
