//! kprobe and fentry modes: what the lock tracepoints cannot see.
//!
//! - `rwsem_down_{write,read}_slowpath` entry→return: slowpath time per lock; minus the sleep
//!   that lock:contention_end adds to the same task's record = optimistic spinning;
//! - `osq_lock` entry→return inside a slowpath: MCS queue spinning, charged to that rwsem;
//!
//! With `--acquisitions` only (userspace attaches these then; they run for every rwsem in the
//! kernel, see profiler/src/collector.rs):
//! - `down_write`/`down_read` → `up_write`/`up_read` on an i_mmap_rwsem: every acquisition and
//!   its hold time, keyed by kernel stack (the caller class is read off the stack in userspace;
//!   the stack comes from a per-call-site cache, [`crate::callsite`]).
//!   Entry probes only: the hold starts at `down_*` entry, and a slowpath's return moves it to
//!   the moment the lock was really granted. Uncontended, `down_*` is a few instructions, so
//!   the hold is the same to within nanoseconds, without a return probe on every `down_*` of
//!   every rwsem in the kernel (among the most frequent probes rmapprof has: how often,
//!   docs/performance.md).
//!   A write hold lives in its rwsem's slot of an array ([`WRITE_HOLDS`]), which also remembers
//!   which file that rwsem belonged to; other holds in a hash table ([`HOLDS`]);
//! - `vma_interval_tree_insert{,_after}` / `_remove`: rmap tree operations per file, counted
//!   in the write hold they happen in (the lock is held for them) and added to its row at its
//!   end.
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
use profiler_common::{lock_kind, op, Hold, HoldKey, LockTarget, OpKey, OpStats, Slowpath, WriteHold};

use crate::callsite::{stack_at_entry, stack_at_slowpath, SiteOf};
use crate::{add, add_event, compare_exchange, count_lost, get_or_insert, global, kernel, store_max};

/// Whether userspace attached the acquisition probes (`--acquisitions`): without them there
/// is no hold for a slowpath's return to move the start of.
#[no_mangle]
static ACQUISITIONS: u64 = 0;

#[map]
pub static SLOWPATH: HashMap<u32, Slowpath> = HashMap::with_max_entries(16384, 0);
/// Write holds of i_mmap_rwsem, one slot per rwsem address hash ([`WriteHold`]): most holds
/// live here, where `down_write`, the rmap operations inside the hold and `up_write` find them
/// by an array index instead of three to five hash-table operations (each costs far more than
/// an index: docs/performance.md).
/// A slot another task holds (the same rwsem contended, or two held rwsems in one slot) sends
/// the newcomer to `HOLDS`.
#[map]
static WRITE_HOLDS: Array<WriteHold> = Array::with_max_entries(SLOTS, 0);
/// Holds that have no slot: read holds (shared, so not one per rwsem) and the rest. Each
/// slot's `elsewhere` counts the rows here for its rwsems: `up_*`, which runs for every rwsem
/// in the kernel (rmapprof's most frequent probe), looks here only when it is not zero.
#[map]
static HOLDS: HashMap<HoldKey, Hold> = HashMap::with_max_entries(16384, 0);
const SLOTS: u32 = 4096;

/// The slot of `sem`: Fibonacci hashing (rwsem addresses share their low bits).
#[inline(always)]
fn slot(sem: u64) -> u32 {
    const _: () = assert!(SLOTS.is_power_of_two());
    (sem.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as u32
}

/// `sem`'s write-hold slot if this task holds `sem` there.
#[inline(always)]
fn my_write_hold(sem: u64, tid: u32) -> Option<*mut WriteHold> {
    let w = WRITE_HOLDS.get_ptr_mut(slot(sem))?;
    (unsafe { (*w).owner == tid as u64 && (*w).sem == sem }).then_some(w)
}

/// About 2 rows per file a workload maps (its write holds on the map and the unmap stack, with
/// the rmap insert and remove counted inside them): 65536 rows keep ~32k files. Not
/// preallocated, so a short run on a few libraries does not pin 5 MB of kernel memory.
#[map]
static OPS: HashMap<OpKey, OpStats> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

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
    record_hold(key, ns, 0, 0);
}

/// The `key` row, created if new; None (counted as lost) when `OPS` is full.
#[inline(always)]
fn op_row(key: &OpKey) -> Option<*mut OpStats> {
    let s = get_or_insert(&OPS, key, &OpStats::default());
    if s.is_none() {
        count_lost(profiler_common::lost::STATS_MAP_FULL);
    }
    s
}

/// One event of `ns` in the `key` row, with the rmap operations done inside it (a hold).
#[inline(always)]
fn record_hold(key: &OpKey, ns: u64, inserts: u64, removes: u64) {
    let Some(s) = op_row(key) else { return };
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
    } else if let Some(w) = WRITE_HOLDS.get_ptr_mut(slot(sem)) {
        add(unsafe { &mut (*w).elsewhere }, 1);
    }
}

#[inline(always)]
fn slowpath_enter<C: SiteOf>(ctx: &C, sem: u64, op: u32) {
    let Some(target) = wanted_i_mmap(sem) else { return };
    // From the call-site cache, as for down_*: a slowpath is entered from down_*, so its
    // return address says little, but the call's depth and the split words above it tell the
    // paths apart (callsite.rs), and a contended lock is entered from the same few paths again
    // and again; a full unwind is the most a probe costs (docs/performance.md). Taken
    // before the clock starts, as contention_begin does: this is rmapprof's time, not spinning.
    let stack = stack_at_slowpath(ctx);
    let s = Slowpath {
        sem,
        start_ns: unsafe { bpf_ktime_get_ns() },
        target,
        op,
        _pad: 0,
        stack,
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
    if global(&ACQUISITIONS) != 0 {
        if let Some(w) = my_write_hold(s.sem, tid) {
            unsafe { (*w).start_ns = now };
        } else if let Some(h) = HOLDS.get_ptr_mut(&HoldKey { tid, _pad: 0, sem: s.sem }) {
            unsafe { (*h).start_ns = now };
        }
    }
    // One row for the slowpath, its spin and its osq_lock time: this runs inside the hold.
    let Some(row) = op_row(&OpKey { target: s.target, op: s.op, _pad: 0, stack: s.stack }) else { return };
    let total = now.saturating_sub(s.start_ns);
    let spin = total.saturating_sub(s.sleep_ns);
    unsafe {
        add_event(&mut (*row).stats, total);
        add(&mut (*row).spin_ns, spin);
        store_max(&mut (*row).spin_max_ns, spin);
        if s.osq_ns > 0 {
            add(&mut (*row).osq_ns, s.osq_ns);
        }
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
    if !wanted() {
        return;
    }
    let w = if op == op::ACQUIRE_WRITE { WRITE_HOLDS.get_ptr_mut(slot(sem)) } else { None };
    // Which file: the one the slot remembers for this rwsem if its inode still checks (two
    // probe reads), else classified afresh (one read rules out most rwsems, five name a file).
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
        if compare_exchange(unsafe { &mut (*w).owner }, 0, tid as u64) {
            // The slot is this task's until it stores 0 again. All of it is written: another
            // hold may have used it since `target` was read from it.
            let stack = stack_at_entry(ctx);
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
fn release(sem: u64) {
    let Some(w) = WRITE_HOLDS.get_ptr_mut(slot(sem)) else { return };
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
    let Some(h) = (unsafe { HOLDS.get(&key) }) else { return };
    let h = *h;
    if HOLDS.remove(&key).is_ok() {
        add(unsafe { &mut (*w).elsewhere }, u64::MAX); // -1
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
    let tid = tid();
    if let Some(w) = my_write_hold(sem, tid) {
        // Only the holder writes its slot: no atomics needed.
        unsafe {
            if op == op::RMAP_INSERT {
                (*w).inserts += 1;
            } else {
                (*w).removes += 1;
            }
        }
        return;
    }
    if let Some(h) = unsafe { HOLDS.get(&HoldKey { tid, _pad: 0, sem }) } {
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
/// which may be offset but not hashed (`slot`); bpf_get_func_arg() is inlined by the
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
