//! The waiter x holder rows (`HOLDER_WAITS`) and the per-CPU write-back cache in front of
//! them (`HOLDER_SLOTS`): one row per file, waiter and holder, a wait at a time.
//!
//! A wait whose row sits in its slot on this CPU is added there: an array index and a key
//! compare. A slot holding another row first adds that row's waits to `HOLDER_WAITS`
//! (emptying the slot before, so that userspace, which reads the hash map and then the
//! slots, may miss those waits for one read but never counts them twice), then takes the new
//! row. A slot in use by another program on this CPU (an fentry program preempted inside it)
//! is left alone: the wait goes to `HOLDER_WAITS` directly.

use aya_ebpf::helpers::bpf_get_current_comm;
use profiler_common::{
    lost, names::holder_cost, HolderKey, HolderWaits, WaitStats, HOLDER_SAME_TASK, HOLDER_SLOTS as SLOTS,
};

use crate::{
    config::CONFIG,
    helpers::{add, compare_exchange, count_lost, get_or_insert_new, global, store_max},
    maps::{HOLDER_SLOTS, HOLDER_WAITS},
    owner,
};

/// A new `HOLDER_WAITS` row's value, inserted from global data rather than built on the
/// 512-byte stack.
static NEW_ROW: HolderWaits = HolderWaits {
    stats: WaitStats { count: 0, total_ns: 0, max_ns: 0 },
    waiter_comm: [0; 16],
    holder_comm: [0; 16],
};

// The slot index is the top bits of a 64-bit hash.
const _: () = assert!(SLOTS.is_power_of_two());

/// One i_mmap_rwsem wait of `delta` ns by the current task `tid` of process `tgid`, with
/// its holder (task_struct `holder_task`). The waiter's task is in the key only with
/// `--by-task`; the names are taken when a row enters a slot, not at every wait.
#[inline(always)]
pub fn record(key: &mut HolderKey, tid: u32, tgid: u32, delta: u64, holder_task: u64) {
    if key.holder.tid == tid && tid != 0 {
        key.waiter_flags |= HOLDER_SAME_TASK;
    }
    if global(&CONFIG.by_task) != 0 {
        (key.waiter_tid, key.waiter_tgid) = (tid, tgid);
    }
    let t0 = owner::timed_start();
    let one = WaitStats { count: 1, total_ns: delta, max_ns: delta };
    // SAFETY: this CPU's slot of a per-CPU array, which lives as long as the map; `busy`
    // keeps another program on this CPU out of it until this one is done.
    unsafe {
        let slot = HOLDER_SLOTS.get_ptr_mut(slot_of(key)).unwrap_or(core::ptr::null_mut());
        if slot.is_null() || !compare_exchange(&mut (*slot).busy, 0, 1) {
            add_to_map(key, &one, None, holder_task);
        } else {
            let s = &mut (*slot).value.stats;
            if s.count != 0 && (*slot).key == *key {
                s.count += 1;
                s.total_ns += delta;
                s.max_ns = s.max_ns.max(delta);
            } else {
                if s.count != 0 {
                    let pending = *s;
                    s.count = 0;
                    add_to_map(&(*slot).key, &pending, Some(&(*slot).value), 0);
                }
                (*slot).key = *key;
                (*slot).value.waiter_comm = bpf_get_current_comm().unwrap_or_default();
                (*slot).value.holder_comm = holder_name(key, holder_task);
                (*slot).value.stats = one;
            }
            (*slot).busy = 0;
        }
    }
    owner::timed_end(t0, holder_cost::RECORDS);
}

/// Adds `stats` to the `HOLDER_WAITS` row of `key`; a new row takes the names of `names`
/// (a slot's), else the current task's and `holder_task`'s.
#[inline(always)]
fn add_to_map(key: &HolderKey, stats: &WaitStats, names: Option<&HolderWaits>, holder_task: u64) {
    let Some((row, created)) = get_or_insert_new(&HOLDER_WAITS, key, &NEW_ROW) else {
        count_lost(lost::HOLDER_MAP_FULL);
        return;
    };
    // SAFETY: a `HOLDER_WAITS` value this program looked up (freed only after it runs); on
    // another CPU a reader may see a new row's names unset.
    unsafe {
        let r = &mut (*row).stats;
        add(&mut r.count, stats.count);
        add(&mut r.total_ns, stats.total_ns);
        store_max(&mut r.max_ns, stats.max_ns);
        if created {
            match names {
                Some(n) => ((*row).waiter_comm, (*row).holder_comm) = (n.waiter_comm, n.holder_comm),
                None => {
                    (*row).waiter_comm = bpf_get_current_comm().unwrap_or_default();
                    (*row).holder_comm = holder_name(key, holder_task);
                }
            }
        }
    }
}

/// The holder's name, where it is a named task.
#[inline(always)]
fn holder_name(key: &HolderKey, holder_task: u64) -> [u8; 16] {
    if holder_task == 0 || key.holder.tid == 0 {
        return [0; 16];
    }
    owner::comm_of(holder_task, key.holder.tid).unwrap_or_default()
}

/// The slot of `key`'s row: a multiplicative hash of its fields.
#[inline(always)]
fn slot_of(key: &HolderKey) -> u32 {
    let mut h = key.target.ino ^ ((key.target.dev as u64) << 32);
    for v in [
        key.waiter_stack,
        key.holder.stack,
        ((key.holder.tid as u64) << 32) | key.holder.hint as u64,
        ((key.waiter_flags as u64) << 32) | key.holder.state as u64,
        ((key.waiter_tid as u64) << 32) | key.waiter_tgid as u64,
    ] {
        h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    (h >> (64 - SLOTS.trailing_zeros())) as u32
}
