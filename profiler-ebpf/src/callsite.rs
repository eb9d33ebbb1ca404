//! kprobe mode's call-site stack cache: one kernel unwind per call site instead of one per
//! i_mmap_rwsem acquisition.
//!
//! `--bpf-stats` put the unwind (`bpf_get_stack`) at ~90% of the cost of an acquisition probe,
//! and fork/exec/exit takes the lock from a few dozen sites, over and over. At `down_*` entry
//! a kprobe has the registers: `*regs->sp` is the return address into the caller, and
//! `regs->sp - current->stack` how deep the call is. Both together nearly always name one
//! call path; to keep that honest, the first reuses and then every `STACK_CACHE_CHECK`-th are
//! unwound again and compared, and a site caught with two paths is unwound every time from
//! then on (`unwind.cache_conflicts`). fentry programs get no registers, so they always
//! unwind; so does everything when `STACK_CACHE_CHECK` is 0 (`--stack-cache-check 0`).

use aya_ebpf::{bindings::BPF_F_NO_PREALLOC, macros::map, maps::HashMap, programs::ProbeContext};
use profiler_common::{unwind, CachedStack, CallSite};

use crate::{count_unwind, global, kernel, scratch};

/// Re-unwind every Nth reuse of a cached stack to check it; 0 disables the cache.
#[no_mangle]
static STACK_CACHE_CHECK: u64 = 64;
/// Reuses checked unconditionally after a site's first unwind: catches a site whose two
/// paths alternate (fork's and exit's teardown, say) before it has counted much.
const FIRST_CHECKS: u64 = 4;

/// Not preallocated: a workload uses a few hundred sites.
#[map]
static CALL_SITES: HashMap<CallSite, CachedStack> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// The current kernel stack's key in `STACKS` (0 when it could not be kept), from the cache
/// when the call site has been seen.
#[inline(always)]
pub fn stack_at_entry(ctx: &ProbeContext) -> u64 {
    let check = global(&STACK_CACHE_CHECK);
    // One unwind call site below, not one per case: each inlined copy of the unwind and
    // its hash loop costs the verifier (6.1's gave up at three).
    let mut miss = None; // a new site, cached after the unwind
    let mut entry: Option<(*mut CachedStack, u64)> = None; // a reuse being checked
    if let Some(site) = call_site(ctx).filter(|_| check != 0) {
        match CALL_SITES.get_ptr_mut(&site) {
            None => miss = Some(site),
            Some(c) => {
                // Not atomic (fetch-and-add needs the v3 instruction set; the object is built
                // for v1): two CPUs may read the same count, which only moves the next check.
                let seen = unsafe { (*c).seen };
                unsafe { (*c).seen = seen + 1 };
                let cached = unsafe { (*c).stack };
                if cached != 0 && seen > FIRST_CHECKS && seen % check != 0 {
                    count_unwind(unwind::CACHE_HITS);
                    return cached;
                }
                entry = Some((c, cached));
            }
        }
    }
    let key = crate::stack(ctx, scratch::PROBE);
    if key == 0 {
        return 0;
    }
    if let Some(site) = miss {
        // A full table only means this site is not cached.
        let _ = CALL_SITES.insert(&site, &CachedStack { stack: key, seen: 1 }, 0);
    } else if let Some((c, cached)) = entry {
        if cached != 0 {
            count_unwind(unwind::CACHE_CHECKS);
            if key != cached {
                count_unwind(unwind::CACHE_CONFLICTS);
                unsafe { (*c).stack = 0 };
            }
        }
    }
    key
}

/// Where `down_*` returns to and how deep that is in the task's kernel stack; None if the
/// stack cannot be read.
#[inline(always)]
fn call_site(ctx: &ProbeContext) -> Option<CallSite> {
    // x86-64: at a function's entry the stack pointer points at the return address.
    let sp = unsafe { (*ctx.regs).rsp };
    let ret = kernel::read::<u64>(sp)?;
    let base = kernel::task_stack_base();
    (base != 0).then(|| CallSite { ret, depth: sp.wrapping_sub(base) })
}
