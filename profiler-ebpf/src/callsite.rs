//! The call-site stack cache: one full kernel unwind per call site of `down_*` (and of the
//! rmap tree operations) instead of one per i_mmap_rwsem acquisition.
//!
//! `--bpf-stats` put the unwind (`bpf_get_stack`) at ~90% of the cost of an acquisition probe,
//! and fork/exec/exit takes the lock from a few dozen sites, over and over. A site is named
//! cheaply ([`SiteOf`]), and its full stack unwound once. To keep that honest, the first
//! reuses and then every `STACK_CACHE_CHECK`-th are unwound again and compared, and a site
//! caught with two paths is unwound every time from then on (`unwind.cache_conflicts`).
//! `STACK_CACHE_CHECK` 0 (`--stack-cache-check 0`) unwinds everything.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_func_ip,
    macros::map,
    maps::HashMap,
    programs::{FEntryContext, ProbeContext},
    EbpfContext,
};
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

/// How a program family names its call site, much more cheaply than a full unwind.
pub trait SiteOf: EbpfContext {
    /// Leading frames of a full unwind that are the BPF program itself. A tracing program's
    /// unwind starts at the helper call's return address in the program, which differs from
    /// one `bpf_get_stack` call in the compiled program to another: kept, it gave one kernel
    /// stack two keys, and every cached site "conflicted" at its first check. A kprobe's
    /// unwind starts at the probed function.
    const BPF_FRAMES: u64;
    fn call_site(&self) -> Option<CallSite>;
}

impl SiteOf for ProbeContext {
    const BPF_FRAMES: u64 = 0;

    /// Where the probed function returns to and how deep that is in the task's kernel stack.
    #[inline(always)]
    fn call_site(&self) -> Option<CallSite> {
        // x86-64: at a function's entry the stack pointer points at the return address.
        let sp = unsafe { (*self.regs).rsp };
        let ret = kernel::read::<u64>(sp)?;
        let base = kernel::task_stack_base();
        (base != 0).then(|| CallSite { ret, depth: sp.wrapping_sub(base) })
    }
}

/// Where the trampoline returns to, past the traced function's address: its fentry site
/// (0, or 4 after an `endbr64` on kernels built with IBT) plus the `call rel32` (5).
const FENTRY_RETURN: [u64; 2] = [5, 4 + 5];

impl SiteOf for FEntryContext {
    const BPF_FRAMES: u64 = 1;
    /// fentry programs get no registers, but their frame sits on the task's kernel stack right
    /// under the trampoline's, and both keep frame pointers (x86-64 BPF JIT: r10 is rbp):
    /// `*r10` is the trampoline's rbp, above which lie the return address into the traced
    /// function and then the one into its caller, the same slot as kprobe mode's
    /// `*regs->sp`. Checked rather than assumed: the first must be the traced function's
    /// fentry site plus the call (else, e.g. a trampoline shared with ftrace, or a program
    /// on a private stack: no site, a full unwind).
    #[inline(always)]
    fn call_site(&self) -> Option<CallSite> {
        let fp: u64;
        // SAFETY: reads a register. The verifier types it as a stack pointer, which a
        // privileged program may hand to bpf_probe_read_kernel as an address.
        unsafe { core::arch::asm!("{} = r10", out(reg) fp) };
        let tramp_fp = kernel::read::<u64>(fp)?;
        let [into_fn, into_caller] = kernel::read::<[u64; 2]>(tramp_fp + 8)?;
        let func = unsafe { bpf_get_func_ip(self.as_ptr()) };
        let past = into_fn.wrapping_sub(func);
        if past != FENTRY_RETURN[0] && past != FENTRY_RETURN[1] {
            return None;
        }
        let base = kernel::task_stack_base();
        (base != 0).then(|| CallSite { ret: into_caller, depth: (tramp_fp + 16).wrapping_sub(base) })
    }
}

/// The current kernel stack's key in `STACKS` (0 when it could not be kept), from the cache
/// when the call site has been seen.
#[inline(always)]
pub fn stack_at_entry<C: SiteOf>(ctx: &C) -> u64 {
    let check = global(&STACK_CACHE_CHECK);
    // One unwind call site below, not one per case: each inlined copy of the unwind and
    // its hash loop costs the verifier (6.1's gave up at three).
    let mut miss = None; // a new site, cached after the unwind
    let mut entry: Option<(*mut CachedStack, u64)> = None; // a reuse being checked
    if let Some(site) = if check != 0 { ctx.call_site() } else { None } {
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
    let key = crate::stack(ctx, scratch::PROBE, C::BPF_FRAMES);
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
