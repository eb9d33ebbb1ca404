//! Kernel stacks into `STACKS`: unwound into a per-CPU scratch slot, keyed by a hash of their
//! frames, stored on first sight.

use aya_ebpf::{
    bindings::{BPF_F_SKIP_FIELD_MASK, BPF_NOEXIST},
    helpers::bpf_get_stack,
    EbpfContext,
};
use profiler_common::{lost, stack_key, unwind, KernelStack, STACK_DEPTH};

use crate::{
    config::CONFIG,
    helpers::{count_lost, count_unwind, global, EEXIST},
    maps::{STACKS, STACK_SCRATCH},
};

// `& STACK_DEPTH` below is a bound only because it is all ones.
const _: () = assert!((STACK_DEPTH + 1).is_power_of_two());

/// The current kernel stack's key in `STACKS` (stored there on first sight), or 0 (counted as
/// lost) when it cannot be kept. `slot` is the caller's family's scratch slot
/// ([`crate::maps::scratch`]); `skip` leading frames are left out: see
/// `SiteOf::BPF_FRAMES` in callsite.rs.
#[inline(always)]
pub fn stack<C: EbpfContext>(ctx: &C, slot: u32, skip: u64) -> u64 {
    let Some(buf) = STACK_SCRATCH.get_ptr_mut(slot) else { return 0 };
    // The unwinder stops at the buffer's size; the mask keeps the size provably in bounds.
    let size = (global(&CONFIG.max_stack) & STACK_DEPTH as u64) as u32 * 8;
    count_unwind(unwind::UNWINDS);
    // Kernel stack (flags 0), leaf first; the rest of the buffer is zeroed by the helper.
    // SAFETY: `buf` is this CPU's scratch slot, `size` bytes at most of it.
    let len =
        unsafe { bpf_get_stack(ctx.as_ptr(), buf as *mut _, size, skip & BPF_F_SKIP_FIELD_MASK as u64) };
    if len <= 0 {
        count_lost(lost::STACK_FAILED);
        return 0;
    }
    // SAFETY: the scratch slot, a `KernelStack` the helper just wrote.
    let key = stack_key(unsafe { &(*buf).ips });
    // SAFETY (lookups): `STACKS` rows are only read here, and freed by the kernel only after
    // the programs that may see them have run (RCU).
    if unsafe { STACKS.get(&key) }.is_none() {
        // EEXIST: another CPU stored the same stack first.
        // SAFETY: the scratch slot, as above.
        if let Err(e) = STACKS.insert(&key, unsafe { &*buf }, BPF_NOEXIST as u64) {
            if e != -EEXIST {
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
