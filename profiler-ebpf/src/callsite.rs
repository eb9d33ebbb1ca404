//! The call-site stack cache: one full kernel unwind per call site of `down_*` (and of the
//! rmap tree operations) instead of one per i_mmap_rwsem acquisition.
//!
//! The unwind (`bpf_get_stack`) is most of what an acquisition probe costs
//! (docs/performance.md), and fork/exec/exit takes the lock from a few dozen sites, over and
//! over. A site is named cheaply ([`SiteOf`]), and its full stack unwound once. To keep that
//! honest, the first reuses and then every `STACK_CACHE_CHECK`-th are unwound again and
//! compared, and a site caught with two paths (`unwind.cache_conflicts`) is split: its rows
//! are keyed by the site and the stack word where those two paths part ([`parting`]: one
//! probe read tells them apart); a row of those caught with two paths too, by a second such
//! word; a row of those, by the site and a hash of the kernel text addresses in the stack
//! above it ([`above`]). Every row is checked the same way; a hash row caught again is
//! unwound every time from then on.
//! `STACK_CACHE_CHECK` 0 (`--stack-cache-check 0`) unwinds everything.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_get_func_ip,
        generated::{bpf_get_func_arg_cnt, bpf_probe_read_kernel},
    },
    macros::map,
    maps::{HashMap, PerCpuArray},
    programs::{FEntryContext, ProbeContext},
    EbpfContext,
};
use profiler_common::{unwind, CachedStack, CallSite, SLOWPATH_SITE};

use crate::{
    config::{CONFIG, OFFSETS},
    helpers::{count_unwind, global, read},
    kernel,
    maps::scratch,
    stacks,
};

/// Reuses checked unconditionally after a site's first unwind: catches a site whose two
/// paths alternate (fork's and exit's teardown, say) before it has counted much.
const FIRST_CHECKS: u64 = 4;

/// Not preallocated: a workload uses a few hundred sites.
#[map]
static CALL_SITES: HashMap<CallSite, CachedStack> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// How much of the stack above a split site [`above`] hashes.
const ABOVE_WORDS: usize = 256;
const _: () = assert!(ABOVE_WORDS.is_power_of_two()); // for the mask below
/// Where it is read to (too big for the BPF stack), twice the window: the read's size is
/// bounded for the verifier by a mask, `& (2 * window - 8)`, because 6.1's loses a `min`
/// across a register spill. Same caveat as `STACK_SCRATCH`: a
/// preempted fentry program may find another task's words here, so hashes the wrong stack;
/// the row it then finds (or makes) is checked like any other.
#[map]
static ABOVE_SCRATCH: PerCpuArray<[u64; 2 * ABOVE_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// How deep `sp` is in the task's kernel stack, in bytes from its base. A task's stack is
/// allocated aligned to its size (vmalloc'ed with `THREAD_ALIGN`, or a page block), so this
/// is `sp` less the base without reading `current->stack`. With a bigger stack (KASAN) the
/// depth is taken modulo 16 KiB: still the same for the same call, which is all a key needs.
#[inline(always)]
fn depth_of(sp: u64) -> u64 {
    const _: () = assert!(kernel::THREAD_SIZE.is_power_of_two());
    sp & (kernel::THREAD_SIZE - 1)
}

/// The stack above `sp` (`depth` into the stack), up to `ABOVE_WORDS` words and up to the user
/// registers at the top, read into `ABOVE_SCRATCH`; and how many bytes that is.
#[inline(always)]
fn window(sp: u64, depth: u64) -> Option<(*mut [u64; 2 * ABOVE_WORDS], u32)> {
    let top = kernel::THREAD_SIZE.saturating_sub(global(&OFFSETS.pt_regs_size));
    if depth >= top {
        return None;
    }
    let bytes = (top - depth).min((ABOVE_WORDS * 8) as u64) as u32 & (2 * ABOVE_WORDS as u32 * 8 - 8);
    let buf = ABOVE_SCRATCH.get_ptr_mut(0)?;
    if bytes == 0 || unsafe { bpf_probe_read_kernel(buf as *mut _, bytes, sp as *const _) } != 0 {
        return None;
    }
    Some((buf, bytes))
}

/// [`above`] as a global BPF function (0: no hash): the verifier checks it once, not on
/// every path through every program that inlines [`stack_at_entry`] (its loop is 128 rounds).
#[no_mangle]
#[inline(never)]
pub extern "C" fn rmapprof_above(sp: u64, depth: u64) -> u64 {
    above(sp, depth).unwrap_or(0)
}

/// A hash of the kernel text addresses in the `ABOVE_WORDS` words of stack above `sp` (the
/// call site's return address), up to the top of the stack. The return addresses of the
/// frames above the site are among them, so two paths through one site at one depth almost
/// always hash differently; words left in a frame's unused slots may add variants of one path,
/// each unwound once and then cached. Not a proof of the path: the rows are checked too.
#[inline(always)]
fn above(sp: u64, depth: u64) -> Option<u64> {
    let (lo, hi) = (global(&CONFIG.text_start), global(&CONFIG.text_end));
    if lo == 0 {
        return None;
    }
    count_unwind(unwind::SPLIT_HASHES);
    let (buf, bytes) = window(sp, depth)?;
    // Two words a round: half the loop's compare-and-branch, the most of its cost after the
    // read. An odd last word is left out: the one just below pt_regs, the entry code's return
    // address, the same for every system call.
    let pairs = (bytes / 16) as usize;
    let span = hi.wrapping_sub(lo);
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..ABOVE_WORDS / 2 {
        if i >= pairs {
            break;
        }
        let [a, b] = unsafe { [(*buf)[2 * i], (*buf)[2 * i + 1]] };
        // One unsigned compare per word: `lo <= w < hi`.
        if a.wrapping_sub(lo) < span {
            h = (h ^ a).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
        }
        if b.wrapping_sub(lo) < span {
            h = (h ^ b).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
        }
    }
    Some(h | 1) // never 0, the site's own row
}

/// Where the stack just unwound parts from the `cached` one of the same call site at `sp`:
/// 8 + the offset above `sp` of the return address of the first frame they do not share, or 0.
/// Both paths run the same functions below that frame, so on either that return address
/// lies at the same offset: one probe read there tells them apart, where [`above`] hashes
/// a kilobyte or two. The highest copy of the address in the window is taken: a lower one
/// may be a stale word left by an earlier call. Runs once per site, at its first conflict.
/// A global BPF function, checked once by the verifier (see [`rmapprof_above`]).
#[no_mangle]
#[inline(never)]
pub extern "C" fn rmapprof_parting(sp: u64, cached: u64) -> u64 {
    parting(sp, cached)
}

#[inline(always)]
fn parting(sp: u64, cached: u64) -> u64 {
    let (Some(new), Some(old)) = (stacks::last_unwound(scratch::PROBE), stacks::stored_stack(cached)) else {
        return 0;
    };
    let mut first = 0;
    for i in 0..profiler_common::STACK_DEPTH {
        let (a, b) = unsafe { ((*new).ips[i], (*old).ips[i]) };
        if a != b {
            first = a;
            break;
        }
    }
    let Some((buf, bytes)) = (if first != 0 { window(sp, depth_of(sp)) } else { None }) else {
        return 0;
    };
    let words = (bytes / 8) as usize;
    let mut at = 0;
    for i in 0..ABOVE_WORDS {
        if i >= words {
            break;
        }
        if unsafe { (*buf)[i] } == first {
            at = (i as u64 + 1) * 8;
        }
    }
    at
}

/// How a program family names its call site, much more cheaply than a full unwind.
pub trait SiteOf: EbpfContext {
    /// Leading frames of a full unwind that are the BPF program itself. A tracing program's
    /// unwind starts at the helper call's return address in the program, which differs from
    /// one `bpf_get_stack` call in the compiled program to another: kept, it gave one kernel
    /// stack two keys, and every cached site "conflicted" at its first check. A kprobe's
    /// unwind starts at the probed function.
    const BPF_FRAMES: u64;
    /// The site, and the stack address its return address sits at.
    fn call_site(&self) -> Option<(CallSite, u64)>;
}

impl SiteOf for ProbeContext {
    const BPF_FRAMES: u64 = 0;

    /// Where the probed function returns to and how deep that is in the task's kernel stack.
    #[inline(always)]
    fn call_site(&self) -> Option<(CallSite, u64)> {
        // x86-64: at a function's entry the stack pointer points at the return address.
        let sp = unsafe { (*self.regs).rsp };
        let ret = read::<u64>(sp)?;
        Some((CallSite { ret, depth: depth_of(sp), above: 0 }, sp))
    }
}

/// Where the trampoline returns to, past the traced function's address: its fentry site
/// (0, or 4 after an `endbr64` on kernels built with IBT) plus the `call rel32` (5).
const FENTRY_RETURN: [u64; 2] = [5, 4 + 5];

impl SiteOf for FEntryContext {
    const BPF_FRAMES: u64 = 1;
    /// fentry programs get no registers, but their context is the traced function's argument
    /// registers as the trampoline saved them in its frame on the task's kernel stack. Above
    /// them: a return-value slot when an fexit program shares the trampoline, the saved rbp,
    /// then the trampoline's return address. The traced function's fentry site calls the
    /// trampoline (that return address is into the function; the one into its caller comes
    /// next) or, on newer kernels (7.2) when the trampoline calls the function itself for
    /// fexit, jumps to it (the return address is the one into the caller). Either way the
    /// caller's is the same slot as kprobe mode's `*regs->sp`. Found from the context, not
    /// from r10: since 6.13 a program with a big stack runs on a per-CPU private stack and r10
    /// points there. Checked rather than assumed: the fentry site's return address, or a
    /// kernel text address in the jump case (else no site: a full unwind, `no_site`).
    #[inline(always)]
    fn call_site(&self) -> Option<(CallSite, u64)> {
        let ctx = address_of(self.as_ptr())?;
        // SAFETY: both helpers are inlined reads of the trampoline's frame through the context.
        let (nregs, func) = unsafe { (bpf_get_func_arg_cnt(self.as_ptr()), bpf_get_func_ip(self.as_ptr())) };
        if !(0..=MAX_ARG_REGS).contains(&nregs) {
            return None;
        }
        let above_regs = ctx + nregs as u64 * 8;
        let w = read::<[u64; 4]>(above_regs)?;
        let into_fn = |v: u64| {
            let past = v.wrapping_sub(func);
            past == FENTRY_RETURN[0] || past == FENTRY_RETURN[1]
        };
        // Called: [rbp, into fn, into caller] or [return value, rbp, into fn, into caller];
        // jumped to (always with a return-value slot): [return value, rbp, into caller].
        let at = if into_fn(w[1]) {
            2
        } else if into_fn(w[2]) {
            3
        } else if w[2].wrapping_sub(global(&CONFIG.text_start))
            < global(&CONFIG.text_end).wrapping_sub(global(&CONFIG.text_start))
        {
            2
        } else {
            return None;
        };
        let sp = above_regs + at as u64 * 8;
        Some((CallSite { ret: w[at], depth: depth_of(sp), above: 0 }, sp))
    }
}

/// The argument registers a trampoline saves on x86-64 (more arguments are on the stack).
const MAX_ARG_REGS: i64 = 6;

/// One per CPU: where [`address_of`] turns the context pointer into a plain number.
#[map]
static CTX_ADDRESS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The context pointer as a number: the verifier forbids masking a context pointer (as
/// [`depth_of`] does) or passing it to a global function as a scalar, but a value read back
/// from a map is a plain number. Storing a kernel pointer in a map needs `CAP_PERFMON`, which
/// loading tracing programs needs anyway.
#[inline(always)]
fn address_of(ctx: *mut core::ffi::c_void) -> Option<u64> {
    let slot = CTX_ADDRESS.get_ptr_mut(0)?;
    // SAFETY: `slot` is this CPU's element of a one-element array, valid for the program's
    // run; volatile so that the compiler does not forward the store to the load.
    unsafe {
        core::ptr::write_volatile(slot, ctx as u64);
        Some(core::ptr::read_volatile(slot))
    }
}

/// The current kernel stack's key in `STACKS` (0 when it could not be kept), from the cache
/// when the call site has been seen.
#[inline(always)]
pub fn stack_at_entry<C: SiteOf>(ctx: &C) -> u64 {
    stack_at(ctx, 0)
}

/// The same at the entry of an rwsem slowpath: its sites are cached apart
/// ([`SLOWPATH_SITE`]).
#[inline(always)]
pub fn stack_at_slowpath<C: SiteOf>(ctx: &C) -> u64 {
    stack_at(ctx, SLOWPATH_SITE)
}

#[inline(always)]
fn stack_at<C: SiteOf>(ctx: &C, tag: u64) -> u64 {
    let check = global(&CONFIG.stack_cache_check);
    // One unwind call site below, not one per case: each inlined copy of the unwind and
    // its hash loop costs the verifier (6.1's gave up at three).
    let mut miss = None; // a new site, cached after the unwind
    let mut entry: Option<(*mut CachedStack, u64)> = None; // a reuse being checked
    let mut word_sp = 0; // when that reuse is of a row not split by a hash: where the site is
    let named = if check != 0 { ctx.call_site() } else { None };
    if check != 0 && named.is_none() {
        count_unwind(unwind::NO_SITE);
    }
    if let Some((mut site, sp)) = named {
        let depth = site.depth;
        site.depth |= tag;
        let mut row = CALL_SITES.get_ptr_mut(&site);
        let mut cacheable = true;
        if let Some(c) = row {
            if unsafe { (*c).stack } == 0 {
                // More than one path through this site at this depth: key by the stack word
                // where two of them parted (even keys); where that row has seen two paths
                // too, or no such word was found, by a hash of the stack above (odd keys).
                // Two levels of words: a row split by a word may be split by a second one.
                let mut hash = true;
                let mut c = c;
                for _ in 0..2 {
                    let at = unsafe { (*c).split_at };
                    let Some(w) = (if at != 0 { read::<u64>(sp + at - 8) } else { None }) else {
                        break;
                    };
                    site.above = ((site.above.rotate_left(17) ^ w) & !1).max(2); // even, never 0
                    row = CALL_SITES.get_ptr_mut(&site);
                    match row {
                        Some(next) if unsafe { (*next).stack } == 0 => c = next,
                        _ => {
                            hash = false;
                            break;
                        }
                    }
                }
                if hash {
                    match Some(rmapprof_above(sp, depth)).filter(|&h| h != 0) {
                        Some(h) => {
                            site.above = h;
                            row = CALL_SITES.get_ptr_mut(&site);
                        }
                        None => (row, cacheable) = (None, false), // no hash: unwind, cache nothing
                    }
                }
            }
        }
        match row {
            None if !cacheable => {}
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
                if site.above % 2 == 0 {
                    word_sp = sp;
                }
            }
        }
    }
    let key = stacks::stack(ctx, scratch::PROBE, C::BPF_FRAMES);
    if key == 0 {
        return 0;
    }
    if let Some(site) = miss {
        // A full table only means this site is not cached.
        let _ = CALL_SITES.insert(&site, &CachedStack { stack: key, seen: 1, split_at: 0 }, 0);
    } else if let Some((c, cached)) = entry {
        if cached != 0 {
            count_unwind(unwind::CACHE_CHECKS);
            if key != cached {
                count_unwind(unwind::CACHE_CONFLICTS);
                // A site's own row is split from now on, by the word where the two paths part,
                // and such a row by another word; a row of those by a hash of the stack above;
                // a row of those, unwound always.
                if word_sp != 0 {
                    unsafe { (*c).split_at = rmapprof_parting(word_sp, cached) };
                }
                unsafe { (*c).stack = 0 };
            }
        }
    }
    key
}
