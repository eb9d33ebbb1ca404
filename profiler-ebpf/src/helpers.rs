//! What every program uses: globals as the loader wrote them, fault-safe kernel reads, the
//! task filter, counters, atomic adds and maxima on map values, hash-map rows created on
//! first use.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    maps::{Array, HashMap},
};
use core::intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering::Relaxed};
use profiler_common::{lost, OpKey, OpStats, WaitStats};

use crate::config::CONFIG;
use crate::maps::{LOST, OPS, UNWIND};

/// The error a map insert returns, negated, when a [`BPF_NOEXIST`] insert finds the key
/// already there (errno EEXIST).
pub const EEXIST: i32 = 17;

/// A global as the loader wrote it.
#[inline(always)]
pub fn global<T: Copy>(v: &T) -> T {
    // SAFETY: `v` is a reference, valid for reads. Volatile because globals live in .rodata,
    // which the loader rewrites before load: a plain read would be constant-folded.
    unsafe { core::ptr::read_volatile(v) }
}

/// Whether the task `pid_tgid` (from `bpf_get_current_pid_tgid`) is one rmapprof profiles.
#[inline(always)]
pub fn profiled(pid_tgid: u64) -> bool {
    let filter = global(&CONFIG.filter_tgid);
    filter == 0 || (pid_tgid >> 32) == filter
}

/// Whether the current task is one rmapprof profiles; without a filter, known without a
/// helper call (the acquisition probes run for every rwsem in the kernel).
#[inline(always)]
pub fn profiled_task() -> bool {
    let filter = global(&CONFIG.filter_tgid);
    filter == 0 || (bpf_get_current_pid_tgid() >> 32) == filter
}

/// The current task's id (the kernel's pid).
#[inline(always)]
pub fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// Atomic `*p += v` across CPUs.
///
/// # Safety
///
/// `p` must be valid for reads and writes of an aligned `u64` for the call: a field of a map
/// value or array slot this program looked up.
#[inline(always)]
pub unsafe fn add(p: *mut u64, v: u64) {
    // SAFETY: the caller's guarantee.
    unsafe { atomic_xadd::<u64, u64, { Relaxed }>(p, v) };
}

/// `*p = max(*p, v)`, racily: two CPUs may both store; one larger value can be lost, never a
/// wrong one invented. BPF has no atomic max.
///
/// # Safety
///
/// As [`add`].
#[inline(always)]
pub unsafe fn store_max(p: *mut u64, v: u64) {
    // SAFETY: the caller's guarantee.
    unsafe {
        if v > *p {
            *p = v;
        }
    }
}

/// Atomic `if *p == old { *p = new }` across CPUs; whether it stored. BPF_CMPXCHG: kernel
/// 5.12+, which the verifier accepts whatever ISA version the object was built for.
///
/// # Safety
///
/// As [`add`].
#[inline(always)]
pub unsafe fn compare_exchange(p: *mut u64, old: u64, new: u64) -> bool {
    // SAFETY: the caller's guarantee.
    unsafe { atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(p, old, new) }.1
}

/// Adds one event of `ns` to the row at `s`.
///
/// # Safety
///
/// `s` must be valid for reads and writes of a `WaitStats` for the call: a map value (or a
/// field of one) this program looked up.
#[inline(always)]
pub unsafe fn add_event(s: *mut WaitStats, ns: u64) {
    // SAFETY: the fields of a valid, aligned `WaitStats` (the caller's guarantee).
    unsafe {
        add(&mut (*s).count, 1);
        add(&mut (*s).total_ns, ns);
        store_max(&mut (*s).max_ns, ns);
    }
}

/// `counters[i] += 1`.
#[inline(always)]
pub fn bump(counters: &Array<u64>, i: u32) {
    if let Some(p) = counters.get_ptr_mut(i) {
        // SAFETY: a slot of an array map, which lives as long as the map.
        unsafe { add(p, 1) };
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

/// The `key` row of `map`, created (as `zero`) if new; None when the map is full.
#[inline(always)]
pub fn get_or_insert<K, V>(map: &HashMap<K, V>, key: &K, zero: &V) -> Option<*mut V> {
    get_or_insert_new(map, key, zero).map(|(p, _)| p)
}

/// The `key` row of `map`, created (as `zero`) if new, and whether this call created it;
/// None when the map is full.
#[inline(always)]
pub fn get_or_insert_new<K, V>(map: &HashMap<K, V>, key: &K, zero: &V) -> Option<(*mut V, bool)> {
    if let Some(p) = map.get_ptr_mut(key) {
        return Some((p, false));
    }
    // A racing CPU may have inserted it first (the insert then fails): either way look it up.
    let created = map.insert(key, zero, BPF_NOEXIST as u64).is_ok();
    map.get_ptr_mut(key).map(|p| (p, created))
}

/// Adds one event of `ns` to `map[key]`, creating the row; a full map is counted as lost.
#[inline(always)]
pub fn add_stats<K>(map: &HashMap<K, WaitStats>, key: &K, ns: u64) {
    match get_or_insert(map, key, &WaitStats::default()) {
        // SAFETY: a value of a hash map this program looked up; the kernel frees a deleted
        // element only after the programs that may see it have run (RCU).
        Some(s) => unsafe { add_event(s, ns) },
        None => count_lost(lost::STATS_MAP_FULL),
    }
}

/// The `key` row of `OPS`, created if new; None (counted as lost) when `OPS` is full.
#[inline(always)]
pub fn op_row(key: &OpKey) -> Option<*mut OpStats> {
    let s = get_or_insert(&OPS, key, &OpStats::default());
    if s.is_none() {
        count_lost(lost::STATS_MAP_FULL);
    }
    s
}

/// A `T` at kernel address `addr`, or None where the read faults.
#[inline(always)]
pub fn read<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel copies into its own result and returns an error on a
    // fault, whatever `addr` is.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}
