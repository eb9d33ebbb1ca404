//! Who holds a contended i_mmap_rwsem when a wait begins (lock:contention_begin, every mode).
//!
//! The rwsem's `owner` field names the writer task (the low bits are flags); a reader-owned
//! rwsem keeps only a hint of its last reader there, so it is reported as "readers", not
//! guessed. Of a writer, what can be read without its stack: pid, tgid, and what it is doing
//! (the system call its saved user registers say it is in, exiting, kernel thread), from
//! which userspace names a caller class. Its stack at wait time: the kernel's
//! `bpf_get_task_stack` needs a trusted task pointer, which only a kfunc
//! (`bpf_task_from_pid`) gives a tracing program, and aya cannot emit kfunc calls. Instead,
//! with `--acquisitions` the holds themselves are tracked (acquisitions.rs), so the holder's
//! acquisition stack is known exactly; with `--holder-stacks` the holder's stack is taken
//! when it releases the lock and wakes the waiter (release.rs).
//!
//! All of this runs only when a wait begins (a contended lock): nothing per acquisition, and
//! as few kernel reads as the answer needs (each costs a helper call).

use aya_ebpf::helpers::bpf_ktime_get_ns;
use profiler_common::{holder_hint, holder_state, names::holder_cost, Holder, Release};

use crate::{
    acquisitions,
    config::{CONFIG, OFFSETS},
    helpers::{add, global, read},
    kernel::THREAD_SIZE,
    maps::{HOLDER_COST, SLOWPATH, TASK_WAIT},
};

/// kernel/locking/rwsem.c: bit 0 of `owner` says reader-owned, bit 1 non-spinnable; a
/// task_struct is aligned far beyond the flag bits.
const RWSEM_READER_OWNED: u64 = 1;
const RWSEM_OWNER_FLAGS: u64 = 7;
/// `count`'s readers are counted from bit 8 (RWSEM_READER_SHIFT); bits 0-7 are flags.
const RWSEM_READER_SHIFT: u64 = 8;
/// include/linux/sched.h.
const PF_EXITING: u32 = 0x0000_0004;
const PF_KTHREAD: u32 = 0x0020_0000;
/// x86-64's `__USER_CS`: the code segment of 64-bit user mode, saved in the registers at the
/// top of a task's kernel stack.
const USER_CS: u64 = 0x33;
/// The entry code stores -ENOSYS in the saved `ax` before a system call runs; it stays there
/// until the call returns.
const ENOSYS: u64 = (-38i64) as u64;

/// The name of `task`, still the task `tid` (its row is named after the wait, and the holder
/// may have exited since: a task_struct is freed only a grace period after its task is
/// reaped, and a reused one has another pid).
#[inline(always)]
pub fn comm_of(task: u64, tid: u32) -> Option<[u8; 16]> {
    let comm = read::<[u8; 16]>(task + global(&OFFSETS.task_comm))?;
    (ids(task).0 == tid).then_some(comm)
}

/// The start of a section of holder work timed into `HOLDER_COST` when measuring holder
/// attribution's cost (0 when not); [`timed_end`] ends it. Not a closure: the BPF target
/// would outline it, and a call's frame adds to the 512-byte stack.
#[inline(always)]
pub fn timed_start() -> u64 {
    if global(&CONFIG.measure_holders) == 0 {
        return 0;
    }
    // SAFETY: a helper call without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// Ends the section [`timed_start`] began at `t0`: slot `count` counts it, the next slot
/// adds its ns; the clock reads' own cost is measured beside it, to subtract.
#[inline(always)]
pub fn timed_end(t0: u64, count: u32) {
    if global(&CONFIG.measure_holders) == 0 {
        return;
    }
    // SAFETY (clock reads): helper calls without arguments.
    let t1 = unsafe { bpf_ktime_get_ns() };
    let t2 = unsafe { bpf_ktime_get_ns() };
    for (slot, v) in [(count, 1), (count + 1, t1 - t0), (holder_cost::CLOCK_NS, t2 - t1)] {
        if let Some(p) = HOLDER_COST.get_ptr_mut(slot) {
            // SAFETY: a slot of an array map, which lives as long as the map.
            unsafe { add(p, v) };
        }
    }
}

/// The holder of the i_mmap_rwsem at `sem` now, and its task_struct (0 when none is named).
#[inline(always)]
pub fn at_wait(sem: u64) -> (Holder, u64) {
    let mut h = Holder::default();
    if global(&OFFSETS.rwsem_owner) == 0 && global(&OFFSETS.task_pid) == 0 {
        return (h, 0); // offsets not set
    }
    let Some(owner) = read::<u64>(sem + global(&OFFSETS.rwsem_owner)) else { return (h, 0) };
    let task = owner & !RWSEM_OWNER_FLAGS;
    if owner & RWSEM_READER_OWNED != 0 {
        // The owner field keeps the last reader after the readers are gone: only readers
        // counted in `count` hold it now (none: the lock is being handed over).
        let readers = read::<u64>(sem + global(&OFFSETS.rwsem_count)).unwrap_or(0) >> RWSEM_READER_SHIFT;
        if readers == 0 {
            return (h, 0);
        }
        h.state = holder_state::READERS;
        // With the holds tracked, one reader whose hold is known is no guess: the count
        // says it is alone, the hint names it, and its hold is in HOLDS.
        if acquisitions::tracking() && task != 0 {
            let (tid, tgid) = ids(task);
            // The hint may name a reader that left and now waits again, even the waiter
            // itself: its HOLDS row is then an acquisition not yet granted.
            if readers == 1 && tid != 0 && !waiting(tid) {
                if let Some(stack) = acquisitions::tracked_read(tid, sem) {
                    return (describe(task, tid, tgid, holder_state::TRACKED, stack), task);
                }
            }
        }
        return (h, 0);
    }
    if task == 0 {
        return (h, 0);
    }
    let (tid, tgid) = ids(task);
    let tracked = if acquisitions::tracking() { acquisitions::tracked_write(tid, sem) } else { None };
    h = match tracked {
        Some(stack) => describe(task, tid, tgid, holder_state::TRACKED, stack),
        None => describe(task, tid, tgid, holder_state::WRITER, 0),
    };
    (h, task)
}

/// `h` with the stack of `release` where the release was the holder's: the writer named
/// when the wait began released it, or (reader-owned) one of the readers did, the last. A
/// release by another task (a writer that took the lock in between) leaves the stack unseen.
#[inline(always)]
pub fn with_release(h: &mut Holder, release: &Release) {
    let by_holder = match h.state {
        holder_state::WRITER => h.tid == release.tid,
        holder_state::READERS => true,
        _ => false,
    };
    if by_holder {
        h.stack = release.stack;
    }
}

/// `task`'s pid and tgid: one read where they are adjacent, as in every kernel's
/// task_struct so far.
#[inline(always)]
fn ids(task: u64) -> (u32, u32) {
    let (pid, tgid) = (global(&OFFSETS.task_pid), global(&OFFSETS.task_tgid));
    if tgid == pid + 4 {
        let both = read::<u64>(task + pid).unwrap_or(0);
        return (both as u32, (both >> 32) as u32);
    }
    (read::<u32>(task + pid).unwrap_or(0), read::<u32>(task + tgid).unwrap_or(0))
}

/// Whether task `tid` is waiting for a lock itself (the current task is: it is in
/// contention_begin), or in an rwsem slowpath.
#[inline(always)]
fn waiting(tid: u32) -> bool {
    if tid == crate::helpers::tid() {
        return true;
    }
    // SAFETY: lookups whose values are not used.
    unsafe { TASK_WAIT.get(&tid).is_some() || SLOWPATH.get(&tid).is_some() }
}

/// The holder `task` (pid `tid` of process `tgid`) and what it is doing.
#[inline(always)]
fn describe(task: u64, tid: u32, tgid: u32, state: u32, stack: u64) -> Holder {
    Holder { state, tid, tgid, hint: hint(task), stack }
}

/// What `task` is doing: exiting, a kernel thread, or the 64-bit system call it is in.
#[inline(always)]
fn hint(task: u64) -> u32 {
    let mut hint = 0;
    let (flags, stack) = flags_and_stack(task);
    if flags & PF_EXITING != 0 {
        hint |= holder_hint::EXITING;
    }
    if flags & PF_KTHREAD != 0 {
        return hint | holder_hint::KTHREAD;
    }
    let Some(stack) = stack else { return hint };
    // The user registers sit at the top of the stack, below 16 bytes of padding on kernels
    // with FRED: the one whose saved code segment is user mode's is them. `ax`, `orig_ax` and
    // `cs` of both places lie in one window of REGS_WINDOW words, read at once.
    let (ax, orig_ax, cs) =
        (global(&OFFSETS.pt_regs_ax), global(&OFFSETS.pt_regs_orig_ax), global(&OFFSETS.pt_regs_cs));
    let low = ax.min(orig_ax).min(cs);
    let high = ax.max(orig_ax).max(cs) + 8 + FRED_PAD;
    if high - low > REGS_WINDOW as u64 * 8 {
        return hint;
    }
    let top = (stack + THREAD_SIZE).wrapping_sub(global(&OFFSETS.pt_regs_size) + FRED_PAD);
    let Some(window) = read::<[u64; REGS_WINDOW]>(top + low) else { return hint };
    let word = |regs: u64, field: u64| window.get(((regs + field - low) / 8) as usize).copied();
    for regs in [FRED_PAD, 0] {
        if word(regs, cs).unwrap_or(0) & 0xffff != USER_CS {
            continue;
        }
        if word(regs, ax) == Some(ENOSYS) {
            let nr = word(regs, orig_ax).unwrap_or(u64::MAX);
            if nr <= holder_hint::SYSCALL_MASK as u64 {
                hint |= holder_hint::IN_SYSCALL | nr as u32;
            }
        }
        break;
    }
    hint
}

/// `task`'s flags and kernel stack: one read where they lie within 16 bytes (`stack`, then
/// `usage`, then `flags`, at the head of every kernel's task_struct so far).
#[inline(always)]
fn flags_and_stack(task: u64) -> (u32, Option<u64>) {
    let (stack, flags) = (global(&OFFSETS.task_stack), global(&OFFSETS.task_flags));
    if flags >= stack + 8 && flags + 4 <= stack + 16 {
        let Some(both) = read::<[u64; 2]>(task + stack) else { return (0, None) };
        let f = if flags - stack == 8 { both[1] as u32 } else { (both[1] >> 32) as u32 };
        return (f, Some(both[0]));
    }
    (read::<u32>(task + flags).unwrap_or(0), read::<u64>(task + stack))
}

/// FRED kernels leave 16 bytes above the user registers at the top of the stack.
const FRED_PAD: u64 = 16;
/// Words of the saved registers read at once: x86-64's `ax`..`cs` (8 words) and the padding.
const REGS_WINDOW: usize = 10;

/// Whether holder attribution is on (it is but to measure its cost).
#[inline(always)]
pub fn holders_on() -> bool {
    global(&CONFIG.holders) != 0
}

/// The holder of the i_mmap_rwsem `sem` the current task is about to wait for, and its
/// task_struct (0 when none is named); the default (unknown) when holder attribution is off.
#[inline(always)]
pub fn holder_at_wait(sem: u64) -> (Holder, u64) {
    if !holders_on() {
        return (Holder::default(), 0);
    }
    let t0 = timed_start();
    let held = at_wait(sem);
    timed_end(t0, holder_cost::READS);
    held
}
