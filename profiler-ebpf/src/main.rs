//! rmapprof's eBPF side, tracepoint mode: `lock:contention_begin` / `lock:contention_end`.
//!
//! begin: recognise the lock (i_mmap_rwsem of which inode, mmap_lock, other), take the kernel
//!        stack, remember (start, lock, key) per task.
//! end:   add the wait to `CONTENTION[key]` and to the lock target's log2 histogram.
//! Nothing goes to userspace per event; userspace reads the maps when it reports.
#![no_std]
#![no_main]
// The BPF target has no AtomicU64::fetch_add; the intrinsic lowers to BPF_ATOMIC_ADD (XADD).
#![allow(internal_features)]
#![feature(core_intrinsics)]
// r10 (the frame pointer) for fentry mode's call site: see callsite.rs.
#![feature(asm_experimental_arch)]

mod callsite;
mod kernel;
mod probes;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_F_SKIP_FIELD_MASK, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_get_stack, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::TracePointContext,
    EbpfContext,
};
use core::intrinsics::{atomic_xadd, AtomicOrdering::Relaxed};
use profiler_common::{
    lcb_flags, lock_kind, log2_bucket, lost, not_measured, stack_key, unwind, ContentionKey, KernelStack,
    LockTarget, TaskWait, WaitHist, WaitStats, STACK_DEPTH,
};

/// Offsets of `lock_addr` and `flags` in the tracepoint records, from tracefs' format files.
#[no_mangle]
static TP_BEGIN_LOCK: u64 = 8;
#[no_mangle]
static TP_BEGIN_FLAGS: u64 = 16;
#[no_mangle]
static TP_END_LOCK: u64 = 8;
/// Kernel frames to unwind per stack, 1..=STACK_DEPTH (`--max-stack`).
#[no_mangle]
static MAX_STACK: u64 = STACK_DEPTH as u64;
/// Only this process's tasks (tgid), or every task when 0.
#[no_mangle]
pub static FILTER_TGID: u32 = 0;

#[map]
static CONTENTION: HashMap<ContentionKey, WaitStats> = HashMap::with_max_entries(16384, 0);
#[map]
static WAIT_HIST: HashMap<LockTarget, WaitHist> = HashMap::with_max_entries(4096, 0);
#[map]
static TASK_WAIT: HashMap<u32, TaskWait> = HashMap::with_max_entries(16384, 0);
/// Distinct kernel stacks by [`stack_key`]; grows with the stacks seen (not preallocated:
/// 1 KiB a row).
#[map]
static STACKS: HashMap<u64, KernelStack> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);
/// Where `bpf_get_stack` writes (a stack is too big for the 512-byte BPF stack). One slot per
/// program family: a tracepoint program can run inside a kprobe/fentry one on the same CPU
/// (a contended spinlock in a map update), never inside another tracepoint one. Caveat:
/// on a fully preemptible kernel an fentry program can be preempted (migration is disabled,
/// preemption is not) and another task's fentry program reuse the slot before the first one
/// stores its stack, the usual caveat of per-CPU scratch buffers. kprobe and tracepoint
/// programs run with preemption off. A stack stored that way is caught and dropped
/// ([`stack`]); the one event whose frames were overwritten may still be charged to the
/// other task's stack.
#[map]
static STACK_SCRATCH: PerCpuArray<KernelStack> = PerCpuArray::with_max_entries(2, 0);
pub mod scratch {
    pub const TRACEPOINT: u32 = 0;
    pub const PROBE: u32 = 1;
}
#[map]
static LOST: Array<u64> = Array::with_max_entries(lost::COUNT, 0);
/// Waits left unmeasured by design (see [`profiler_common::not_measured`]).
#[map]
static NOT_MEASURED: Array<u64> = Array::with_max_entries(not_measured::COUNT, 0);
/// Where kernel stacks came from (see [`profiler_common::unwind`]).
#[map]
static UNWIND: Array<u64> = Array::with_max_entries(unwind::COUNT, 0);

#[inline(always)]
pub fn global<T: Copy>(v: &T) -> T {
    // Globals live in .rodata, which the loader rewrites before load; a plain read would be
    // constant-folded by the compiler.
    unsafe { core::ptr::read_volatile(v) }
}

/// Atomic `*p += v` across CPUs.
#[inline(always)]
pub fn add(p: *mut u64, v: u64) {
    unsafe { atomic_xadd::<u64, u64, { Relaxed }>(p, v) };
}

/// `counters[i] += 1`.
#[inline(always)]
fn bump(counters: &Array<u64>, i: u32) {
    if let Some(p) = counters.get_ptr_mut(i) {
        add(p, 1);
    }
}

#[inline(always)]
pub fn count_lost(cause: u32) {
    bump(&LOST, cause);
}

#[inline(always)]
pub fn count_unwind(what: u32) {
    bump(&UNWIND, what);
}

/// The current kernel stack's key in `STACKS` (stored there on first sight), or 0 (counted as
/// lost) when it cannot be kept. `skip` leading frames are left out: see
/// [`callsite::SiteOf::BPF_FRAMES`].
#[inline(always)]
pub fn stack<C: EbpfContext>(ctx: &C, slot: u32, skip: u64) -> u64 {
    let Some(buf) = STACK_SCRATCH.get_ptr_mut(slot) else { return 0 };
    // The unwinder stops at the buffer's size; the mask keeps the size provably in bounds.
    let size = (global(&MAX_STACK) & STACK_DEPTH as u64) as u32 * 8;
    count_unwind(unwind::UNWINDS);
    // Kernel stack (flags 0), leaf first; the rest of the buffer is zeroed by the helper.
    let len =
        unsafe { bpf_get_stack(ctx.as_ptr(), buf as *mut _, size, skip & BPF_F_SKIP_FIELD_MASK as u64) };
    if len <= 0 {
        count_lost(lost::STACK_FAILED);
        return 0;
    }
    let key = stack_key(unsafe { &(*buf).ips });
    if unsafe { STACKS.get(&key) }.is_none() {
        // -EEXIST: another CPU stored the same stack first.
        if let Err(e) = STACKS.insert(&key, unsafe { &*buf }, BPF_NOEXIST as u64) {
            if e != -17 {
                count_lost(lost::STACK_MAP_FULL);
                return 0;
            }
        }
        // First sight only: check that what was stored is the stack the key names (the slot
        // can be reused under a preempted fentry program, see STACK_SCRATCH); if not, drop it.
        if let Some(stored) = unsafe { STACKS.get(&key) } {
            if stack_key(&stored.ips) != key {
                let _ = STACKS.remove(&key);
                count_lost(lost::STACK_FAILED);
                return 0;
            }
        }
    }
    key
}

/// The stack [`stack`] last unwound into `slot` (until the next unwind on this CPU).
#[inline(always)]
pub fn last_unwound(slot: u32) -> Option<*const KernelStack> {
    STACK_SCRATCH.get_ptr(slot)
}

/// The stack stored under `key`.
#[inline(always)]
pub fn stored_stack(key: u64) -> Option<*const KernelStack> {
    STACKS.get_ptr(&key)
}

// `& STACK_DEPTH` above is a bound only because it is all ones.
const _: () = assert!((STACK_DEPTH + 1).is_power_of_two());

#[tracepoint]
pub fn contention_begin(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let filter = global(&FILTER_TGID);
    if filter != 0 && (pid_tgid >> 32) as u32 != filter {
        return 0;
    }
    let tid = pid_tgid as u32;
    let Ok(lock) = (unsafe { ctx.read_at::<u64>(global(&TP_BEGIN_LOCK) as usize) }) else {
        return 0;
    };
    let flags = unsafe { ctx.read_at::<u32>(global(&TP_BEGIN_FLAGS) as usize) }.unwrap_or(0);
    if let Some(w) = unsafe { TASK_WAIT.get(&tid) } {
        // Already waiting: the same lock again (a retry inside one slowpath) keeps the first
        // start time; another lock is a nested wait (wait_lock inside an rwsem slowpath).
        if w.lock != lock {
            bump(&NOT_MEASURED, not_measured::NESTED);
        }
        return 0;
    }
    let target = kernel::classify(lock, flags);
    // Stacks only for the locks whose call paths are reported: other locks' would fill the
    // table and cost an unwind each.
    let stack = if target.kind == lock_kind::OTHER { 0 } else { stack(&ctx, scratch::TRACEPOINT, 0) };
    let wait = TaskWait {
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
    };
    if TASK_WAIT.insert(&tid, &wait, 0).is_err() {
        count_lost(lost::TASK_MAP_FULL);
    }
    0
}

#[tracepoint]
pub fn contention_end(ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(w) = (unsafe { TASK_WAIT.get(&tid) }) else {
        return 0;
    };
    let Ok(lock) = (unsafe { ctx.read_at::<u64>(global(&TP_END_LOCK) as usize) }) else {
        return 0;
    };
    if w.lock != lock {
        return 0; // end of a nested wait we did not measure
    }
    let delta = unsafe { bpf_ktime_get_ns() }.saturating_sub(w.start_ns);
    let key = w.key;
    let _ = TASK_WAIT.remove(&tid);
    record(&key, delta);
    probes::slowpath_slept(tid, lock, delta);
    0
}

/// Adds one event of `ns` to `map[key]`, creating the row; a full map is counted as lost.
#[inline(always)]
pub fn add_stats<K>(map: &HashMap<K, WaitStats>, key: &K, ns: u64) {
    match get_or_insert(map, key, &WaitStats::default()) {
        Some(s) => add_event(s, ns),
        None => count_lost(lost::STATS_MAP_FULL),
    }
}

/// Adds one event of `ns` to the row at `s`.
#[inline(always)]
pub fn add_event(s: *mut WaitStats, ns: u64) {
    unsafe {
        add(&mut (*s).count, 1);
        add(&mut (*s).total_ns, ns);
        store_max(&mut (*s).max_ns, ns);
    }
}

/// `*p = max(*p, v)`, racily: two CPUs may both store; one larger value can be lost, never a
/// wrong one invented. BPF has no atomic max.
#[inline(always)]
pub fn store_max(p: *mut u64, v: u64) {
    unsafe {
        if v > *p {
            *p = v;
        }
    }
}

/// Atomic `if *p == old { *p = new }` across CPUs; whether it stored. BPF_CMPXCHG: kernel
/// 5.12+, which the verifier accepts whatever ISA version the object was built for.
#[inline(always)]
pub fn compare_exchange(p: *mut u64, old: u64, new: u64) -> bool {
    unsafe { core::intrinsics::atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(p, old, new) }.1
}

#[inline(always)]
fn record(key: &ContentionKey, delta: u64) {
    add_stats(&CONTENTION, key, delta);
    match get_or_insert(&WAIT_HIST, &key.target, &WaitHist::default()) {
        Some(h) => unsafe {
            let b = log2_bucket(delta);
            if let Some(slot) = (*h).buckets.get_mut(b) {
                add(slot, 1);
            }
        },
        None => count_lost(lost::HIST_MAP_FULL),
    }
}

#[inline(always)]
pub fn get_or_insert<K, V>(map: &HashMap<K, V>, key: &K, zero: &V) -> Option<*mut V> {
    if let Some(p) = map.get_ptr_mut(key) {
        return Some(p);
    }
    // BPF_NOEXIST: a racing CPU may have inserted it first; either way look it up again.
    let _ = map.insert(key, zero, 1);
    map.get_ptr_mut(key)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
