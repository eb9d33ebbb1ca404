//! kprobe and fentry modes: what the lock tracepoints cannot see.
//!
//! - `rwsem_down_{write,read}_slowpath` entry→return: slowpath time per lock; minus the sleep
//!   that lock:contention_end adds to the same task's record = optimistic spinning;
//! - `osq_lock` entry→return inside a slowpath: MCS queue spinning, charged to that rwsem;
//! - `down_write`/`down_read` → `up_write`/`up_read` on an i_mmap_rwsem: every acquisition and
//!   its hold time, keyed by kernel stack (the caller class is read off the stack in userspace;
//!   the stack comes from a per-call-site cache, [`crate::callsite`]).
//!   Entry probes only: the hold starts at `down_*` entry, and a slowpath's return moves it to
//!   the moment the lock was really granted. Uncontended, `down_*` is a few instructions, so
//!   the hold is the same to within nanoseconds, without a return probe on every `down_*` of
//!   every rwsem in the kernel (the most frequent probe rmapprof has, ~270 per fork+exec+exit);
//! - `vma_interval_tree_insert{,_after}` / `_remove`: rmap tree operations per file.
//!
//! Each probe exists as a kprobe (kretprobe) and as an fentry (fexit) calling the same logic;
//! userspace attaches one family. Return probes only where a duration ends there: the
//! slowpaths and osq_lock.

use aya_ebpf::bindings::BPF_F_NO_PREALLOC;
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_func_arg, bpf_ktime_get_ns},
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::{Array, HashMap},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use profiler_common::{lock_kind, op, Hold, HoldKey, LockTarget, OpKey, Slowpath, WaitStats};

use crate::callsite::{stack_at_entry, SiteOf};
use crate::{add, add_stats, count_lost, global, kernel, scratch};

#[map]
pub static SLOWPATH: HashMap<u32, Slowpath> = HashMap::with_max_entries(16384, 0);
#[map]
static HOLDS: HashMap<HoldKey, Hold> = HashMap::with_max_entries(16384, 0);
/// How many `HOLDS` rows there are per hash of the lock address: a counting filter in front of
/// `HOLDS` for `up_*`, which runs for every rwsem in the kernel (~390 times per fork+exec+exit)
/// and almost never for a held i_mmap_rwsem. An array slot is read without a helper call or a
/// hash-table walk; a zero slot means "no hold to end". A slot counts high (never low) only
/// if a task took the same rwsem twice for read: harmless, the lookup then just runs.
#[map]
static HELD: Array<u64> = Array::with_max_entries(HELD_SLOTS, 0);
const HELD_SLOTS: u32 = 4096;

/// `HELD`'s slot for `sem`: Fibonacci hashing (rwsem addresses share their low bits).
#[inline(always)]
fn held_slot(sem: u64) -> Option<*mut u64> {
    const _: () = assert!(HELD_SLOTS.is_power_of_two());
    let i = (sem.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - HELD_SLOTS.trailing_zeros())) as u32;
    HELD.get_ptr_mut(i)
}
/// About 4 rows per file a workload maps (rmap insert, remove, write acquisition, on the map
/// and unmap stacks): 65536 rows keep ~16k files (`cargo xtask bench --stress`). Not
/// preallocated, so a short run on a few libraries does not pin 6 MB of kernel memory.
#[map]
static OPS: HashMap<OpKey, WaitStats> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

#[inline(always)]
fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

#[inline(always)]
fn wanted() -> bool {
    let filter = global(&crate::FILTER_TGID);
    filter == 0 || (bpf_get_current_pid_tgid() >> 32) as u32 == filter
}

#[inline(always)]
fn record_op(key: &OpKey, ns: u64) {
    add_stats(&OPS, key, ns);
}

// ---- slowpaths and osq_lock

/// The file whose i_mmap_rwsem `sem` is, if it is one and this task is profiled.
#[inline(always)]
fn wanted_i_mmap(sem: u64) -> Option<LockTarget> {
    if !wanted() {
        return None;
    }
    let target = kernel::classify_rwsem(sem);
    (target.kind == lock_kind::I_MMAP_RWSEM).then_some(target)
}

/// The task holds `sem` from now, as the `key` row.
#[inline(always)]
fn hold_from_now(tid: u32, sem: u64, key: OpKey) {
    let hold = Hold { start_ns: unsafe { bpf_ktime_get_ns() }, key };
    if HOLDS.insert(&HoldKey { tid, _pad: 0, sem }, &hold, 0).is_err() {
        count_lost(profiler_common::lost::TASK_MAP_FULL);
    } else if let Some(n) = held_slot(sem) {
        add(n, 1);
    }
}

#[inline(always)]
fn slowpath_enter<C: SiteOf>(ctx: &C, sem: u64, op: u32) {
    let Some(target) = wanted_i_mmap(sem) else { return };
    let s = Slowpath {
        sem,
        start_ns: unsafe { bpf_ktime_get_ns() },
        target,
        op,
        _pad: 0,
        // Unwound every time: a slowpath is always entered from down_*, so its call site
        // says nothing; and slowpaths are the rare, contended case.
        stack: crate::stack(ctx, scratch::PROBE, C::BPF_FRAMES),
        ..Default::default()
    };
    if SLOWPATH.insert(&tid(), &s, 0).is_err() {
        count_lost(profiler_common::lost::TASK_MAP_FULL);
    }
}

#[inline(always)]
fn slowpath_exit() {
    let tid = tid();
    let Some(s) = (unsafe { SLOWPATH.get(&tid) }) else { return };
    let s = *s;
    let _ = SLOWPATH.remove(&tid);
    let now = unsafe { bpf_ktime_get_ns() };
    // The lock is granted now: the hold `down_*` started at its entry begins here.
    if let Some(h) = HOLDS.get_ptr_mut(&HoldKey { tid, _pad: 0, sem: s.sem }) {
        unsafe { (*h).start_ns = now };
    }
    let total = now.saturating_sub(s.start_ns);
    let key = |op| OpKey { target: s.target, op, _pad: 0, stack: s.stack };
    record_op(&key(s.op), total);
    record_op(&key(op::SPIN), total.saturating_sub(s.sleep_ns));
    if s.osq_ns > 0 {
        record_op(&key(op::OSQ), s.osq_ns);
    }
}

/// Called by lock:contention_end: the sleep part of a slowpath we are timing.
#[inline(always)]
pub fn slowpath_slept(tid: u32, lock: u64, ns: u64) {
    if let Some(s) = SLOWPATH.get_ptr_mut(&tid) {
        unsafe {
            if (*s).sem == lock {
                (*s).sleep_ns += ns;
            }
        }
    }
}

#[inline(always)]
fn osq_enter() {
    if let Some(s) = SLOWPATH.get_ptr_mut(&tid()) {
        unsafe { (*s).osq_start_ns = bpf_ktime_get_ns() };
    }
}

#[inline(always)]
fn osq_exit() {
    if let Some(s) = SLOWPATH.get_ptr_mut(&tid()) {
        unsafe {
            if (*s).osq_start_ns != 0 {
                (*s).osq_ns += bpf_ktime_get_ns().saturating_sub((*s).osq_start_ns);
                (*s).osq_start_ns = 0;
            }
        }
    }
}

// ---- acquisitions and hold times

/// `down_*` entered for `sem`: if it is an i_mmap_rwsem, the task holds it from now (a
/// slowpath, if taken, moves the start to when the lock is granted).
#[inline(always)]
fn acquired<C: SiteOf>(ctx: &C, sem: u64, op: u32) {
    let Some(target) = wanted_i_mmap(sem) else { return };
    hold_from_now(tid(), sem, OpKey { target, op, _pad: 0, stack: stack_at_entry(ctx) });
}

#[inline(always)]
fn release(sem: u64) {
    let Some(n) = held_slot(sem) else { return };
    if unsafe { *n } == 0 {
        return; // nobody holds an i_mmap_rwsem at this address
    }
    let key = HoldKey { tid: tid(), _pad: 0, sem };
    let Some(h) = (unsafe { HOLDS.get(&key) }) else { return };
    let h = *h;
    if HOLDS.remove(&key).is_ok() {
        add(n, u64::MAX); // -1
    }
    record_op(&h.key, unsafe { bpf_ktime_get_ns() }.saturating_sub(h.start_ns));
}

// ---- rmap tree operations

/// An insert or remove is done with the file's i_mmap_rwsem held for write by this task, and
/// comes from the same call path as that acquisition: reuse its target and stack instead of
/// classifying the root and unwinding the stack again (`--bpf-stats` showed the unwind of
/// each rmap operation as a third of rmapprof's cost on fork/exec). Only when the lock was
/// taken before rmapprof attached is there no hold to reuse.
#[inline(always)]
fn rmap_op<C: SiteOf>(ctx: &C, root: u64, op: u32) {
    if !wanted() {
        return;
    }
    let sem = kernel::i_mmap_rwsem_of_root(root);
    if let Some(h) = unsafe { HOLDS.get(&HoldKey { tid: tid(), _pad: 0, sem }) } {
        record_op(&OpKey { op, ..h.key }, 0);
        return;
    }
    let target = kernel::classify_i_mmap_root(root);
    if target.kind == lock_kind::I_MMAP_RWSEM {
        record_op(&OpKey { target, op, _pad: 0, stack: stack_at_entry(ctx) }, 0);
    }
}

// ---- kprobe family

#[kprobe]
pub fn kp_down_write_slowpath(ctx: ProbeContext) -> u32 {
    slowpath_enter(&ctx, ctx.arg::<u64>(0).unwrap_or(0), op::SLOWPATH_WRITE);
    0
}
#[kretprobe]
pub fn kr_down_write_slowpath(_ctx: RetProbeContext) -> u32 {
    slowpath_exit();
    0
}
#[kprobe]
pub fn kp_down_read_slowpath(ctx: ProbeContext) -> u32 {
    slowpath_enter(&ctx, ctx.arg::<u64>(0).unwrap_or(0), op::SLOWPATH_READ);
    0
}
#[kretprobe]
pub fn kr_down_read_slowpath(_ctx: RetProbeContext) -> u32 {
    slowpath_exit();
    0
}
#[kprobe]
pub fn kp_osq_lock(_ctx: ProbeContext) -> u32 {
    osq_enter();
    0
}
#[kretprobe]
pub fn kr_osq_lock(_ctx: RetProbeContext) -> u32 {
    osq_exit();
    0
}
#[kprobe]
pub fn kp_down_write(ctx: ProbeContext) -> u32 {
    acquired(&ctx, ctx.arg::<u64>(0).unwrap_or(0), op::ACQUIRE_WRITE);
    0
}
#[kprobe]
pub fn kp_down_read(ctx: ProbeContext) -> u32 {
    acquired(&ctx, ctx.arg::<u64>(0).unwrap_or(0), op::ACQUIRE_READ);
    0
}
#[kprobe]
pub fn kp_up(ctx: ProbeContext) -> u32 {
    release(ctx.arg::<u64>(0).unwrap_or(0));
    0
}
#[kprobe]
pub fn kp_rmap_insert(ctx: ProbeContext) -> u32 {
    rmap_op(&ctx, ctx.arg::<u64>(1).unwrap_or(0), op::RMAP_INSERT);
    0
}
#[kprobe]
pub fn kp_rmap_insert_after(ctx: ProbeContext) -> u32 {
    rmap_op(&ctx, ctx.arg::<u64>(2).unwrap_or(0), op::RMAP_INSERT);
    0
}
#[kprobe]
pub fn kp_rmap_remove(ctx: ProbeContext) -> u32 {
    rmap_op(&ctx, ctx.arg::<u64>(1).unwrap_or(0), op::RMAP_REMOVE);
    0
}

// ---- fentry family (same logic; userspace names the target function at load)

/// Argument `n` as a plain number. `ctx.arg()` hands the verifier a typed kernel pointer,
/// which may be offset but not hashed (`held_slot`); bpf_get_func_arg() is inlined by the
/// verifier into the same load, typed as a scalar.
#[inline(always)]
fn arg(ctx: &FEntryContext, n: u32) -> u64 {
    let mut v = 0;
    unsafe { bpf_get_func_arg(ctx.as_ptr(), n, &mut v) };
    v
}

#[fentry]
pub fn fe_down_write_slowpath(ctx: FEntryContext) -> u32 {
    slowpath_enter(&ctx, arg(&ctx, 0), op::SLOWPATH_WRITE);
    0
}
#[fexit]
pub fn fx_down_write_slowpath(_ctx: FExitContext) -> u32 {
    slowpath_exit();
    0
}
#[fentry]
pub fn fe_down_read_slowpath(ctx: FEntryContext) -> u32 {
    slowpath_enter(&ctx, arg(&ctx, 0), op::SLOWPATH_READ);
    0
}
#[fexit]
pub fn fx_down_read_slowpath(_ctx: FExitContext) -> u32 {
    slowpath_exit();
    0
}
#[fentry]
pub fn fe_osq_lock(_ctx: FEntryContext) -> u32 {
    osq_enter();
    0
}
#[fexit]
pub fn fx_osq_lock(_ctx: FExitContext) -> u32 {
    osq_exit();
    0
}
#[fentry]
pub fn fe_down_write(ctx: FEntryContext) -> u32 {
    acquired(&ctx, arg(&ctx, 0), op::ACQUIRE_WRITE);
    0
}
#[fentry]
pub fn fe_down_read(ctx: FEntryContext) -> u32 {
    acquired(&ctx, arg(&ctx, 0), op::ACQUIRE_READ);
    0
}
#[fentry]
pub fn fe_up_write(ctx: FEntryContext) -> u32 {
    release(arg(&ctx, 0));
    0
}
#[fentry]
pub fn fe_up_read(ctx: FEntryContext) -> u32 {
    release(arg(&ctx, 0));
    0
}
#[fentry]
pub fn fe_rmap_insert(ctx: FEntryContext) -> u32 {
    rmap_op(&ctx, arg(&ctx, 1), op::RMAP_INSERT);
    0
}
#[fentry]
pub fn fe_rmap_insert_after(ctx: FEntryContext) -> u32 {
    rmap_op(&ctx, arg(&ctx, 2), op::RMAP_INSERT);
    0
}
#[fentry]
pub fn fe_rmap_remove(ctx: FEntryContext) -> u32 {
    rmap_op(&ctx, arg(&ctx, 1), op::RMAP_REMOVE);
    0
}
