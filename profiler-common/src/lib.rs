//! Keys and values that rmapprof's eBPF programs aggregate in maps and its userspace collector
//! reads. `#[repr(C)]`, plain integers only, explicit padding: the kernel hashes the raw bytes of
//! a key, so every byte must be written.
#![cfg_attr(not(test), no_std)]

mod config;
mod counters;
mod holders;
pub mod names;
mod probes;
mod sums;

pub use config::{Config, Offsets};
pub use counters::{lost, not_measured, unwind};
pub use holders::*;
pub use probes::*;
pub use sums::Grows;

/// Which lock a contended address turned out to be.
pub mod lock_kind {
    /// `address_space->i_mmap_rwsem` of a file: `host->i_mapping` points back at it.
    pub const I_MMAP_RWSEM: u32 = 1;
    /// `current->mm->mmap_lock`. The target's `dev` is the tgid of the process whose mm it is
    /// (the waiter's own) and its `ino` the program run ([`crate::Process`]), so each
    /// process's mmap_lock is a target of its own, and so is each program it execs.
    pub const MMAP_LOCK: u32 = 2;
    /// Anything else (other rwsems, mutexes, spinlocks): counted so the file rmap lock can be
    /// compared with the rest of the machine's contention.
    pub const OTHER: u32 = 3;
    /// The `rwsem` of a root `anon_vma` (`anon_vma_lock_write/read` lock the root's): the
    /// other rmap lock fork and exit take, counted apart so a change that moves contention
    /// between the file and the anonymous rmap shows it.
    pub const ANON_VMA: u32 = 4;
}

/// Bits of the `flags` field of `lock:contention_begin` (include/trace/events/lock.h, also
/// spelled out in the tracepoint's print fmt).
pub mod lcb_flags {
    pub const SPIN: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const RT: u32 = 1 << 3;
    pub const PERCPU: u32 = 1 << 4;
    pub const MUTEX: u32 = 1 << 5;
}

/// Frames kept of a kernel stack: the kernel's own limit (PERF_MAX_STACK_DEPTH).
pub const STACK_DEPTH: usize = 127;

/// Value of the `STACKS` map: return addresses, leaf first, zero after the last frame.
///
/// Why not a `BPF_MAP_TYPE_STACK_TRACE`: its bucket is the stack's hash modulo the map size,
/// and a second stack landing in a taken bucket is refused, so with a few hundred distinct
/// stacks in 16384 buckets some are lost on every long run (the birthday bound; the bench
/// saw it). Here the key is a 64-bit hash of the frames ([`stack_key`]) in an ordinary hash
/// map: distinct stacks only collide with probability ~n²/2⁶⁵.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelStack {
    pub ips: [u64; STACK_DEPTH],
}

/// The `STACKS` key of a stack: FNV-1a over all [`STACK_DEPTH`] 64-bit words, the zeroes
/// after the last frame included (`bpf_get_stack` zeroes the rest of the buffer; each step
/// is a bijection, so stacks differing in one frame never collide), never 0. All words, not
/// just the frames: a loop with a fixed trip count is one path for the verifier, where a
/// loop that stops at the stack's length is 127 (6.1's verifier gave up on the programs
/// that have two or three of them, at a million instructions).
#[inline(always)]
pub fn stack_key(ips: &[u64; STACK_DEPTH]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for ip in ips.iter() {
        h = (h ^ ip).wrapping_mul(0x0000_0100_0000_01b3);
    }
    if h == 0 {
        1
    } else {
        h
    }
}

/// Number of log2 buckets in a wait histogram: bucket `b` holds waits of `[2^b, 2^(b+1))` ns,
/// bucket 0 also holds 0 and 1 ns; 2^39 ns is about 9 minutes.
pub const HIST_BUCKETS: usize = 40;

/// What a contended lock is: its kind and, for an i_mmap_rwsem, the file it protects.
/// `dev` is the kernel's `s_dev` (MAJOR << 20 | MINOR), not `stat`'s st_dev encoding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockTarget {
    pub kind: u32,
    pub dev: u32,
    pub ino: u64,
}

/// Key of the `CONTENTION` map: one row per lock target, direction and kernel stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContentionKey {
    pub target: LockTarget,
    /// `lcb_flags::READ` or `lcb_flags::WRITE` for rwsems, the raw flags otherwise.
    pub flags: u32,
    pub _pad: u32,
    /// Key of the kernel stack in `STACKS`, 0 when none was recorded.
    pub stack: u64,
}

/// Value of the `CONTENTION` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

/// Value of the `OPS` map: the row's own events (`stats`), and what happened inside them, added
/// up in the kernel so that each event is one map update:
/// - `ACQUIRE_WRITE` rows (holds): the rmap tree operations done inside those holds, one
///   update at the end of a hold instead of one per operation;
/// - `SLOWPATH_*` rows: how much of the slowpath time was spinning (the rest slept) and queued
///   in `osq_lock`, one update instead of three, made while the lock is already held (the
///   slowpath has returned), where every instruction lengthens the hold others wait on.
///
/// The report reads the rows as they are.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    pub stats: WaitStats,
    pub rmap_inserts: u64,
    pub rmap_removes: u64,
    pub spin_ns: u64,
    pub spin_max_ns: u64,
    pub osq_ns: u64,
}

/// Value of the `WAIT_HIST` map, keyed by `LockTarget`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitHist {
    pub buckets: [u64; HIST_BUCKETS],
}

impl Default for WaitHist {
    fn default() -> Self {
        Self { buckets: [0; HIST_BUCKETS] }
    }
}

/// Value of the per-task `TASK_WAIT` map, keyed by tid: the wait in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskWait {
    pub start_ns: u64,
    pub lock: u64,
    pub key: ContentionKey,
    /// Who held the lock when the wait began (i_mmap_rwsem only).
    pub holder: Holder,
    /// The holder's task_struct, to name it when its row is new; 0 when none.
    pub holder_task: u64,
}

/// A run of a program by a process: the process `tgid` from one exec to the next. Its
/// mmap_lock is the [`LockTarget`] `{ MMAP_LOCK, dev: tgid, ino: run }`, so each program a
/// process runs is a row of its own, and a reused tgid is another run.
///
/// Value of the `PROCESSES` map, keyed by tgid: the process's current run, a number no other
/// run has (a count of runs on the CPU that numbered it << 16 | that CPU; 0 is none), and the
/// start time of its thread group leader, which tells a reused tgid from the process it was.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Process {
    pub run: u64,
    pub start_ns: u64,
}

/// Rows of the `PROCESSES` and `PROCESS_NAMES` LRU maps as compiled; userspace adds
/// [`LRU_FREE_PER_CPU`] per possible CPU at load.
pub const PROCESS_ROWS: u32 = 32768;
/// Free rows an LRU hash map keeps on each CPU's own list before Linux 6.16 (the kernel's
/// `LOCAL_FREE_TARGET`): on 256 CPUs or more the shared list of a 32768-row map starves, and
/// rows still in use are recycled (a process numbered anew, a name lost).
pub const LRU_FREE_PER_CPU: u32 = 128;

/// Value of the `PROCESS_NAMES` map, keyed by run ([`Process`]): the process and its thread
/// group leader's name when the run was first seen waiting.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessName {
    pub tgid: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

/// log2 bucket of a wait in ns, as the eBPF side computes it (no clz instruction in BPF).
#[inline(always)]
pub fn log2_bucket(mut v: u64) -> usize {
    let mut b = 0usize;
    if v >= 1 << 32 {
        v >>= 32;
        b += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        b += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        b += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        b += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        b += 2;
    }
    if v >= 1 << 1 {
        b += 1;
    }
    if b >= HIST_BUCKETS {
        HIST_BUCKETS - 1
    } else {
        b
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, every bit pattern valid, explicit padding.
    unsafe impl aya::Pod for super::LockTarget {}
    unsafe impl aya::Pod for super::ContentionKey {}
    unsafe impl aya::Pod for super::WaitStats {}
    unsafe impl aya::Pod for super::WaitHist {}
    unsafe impl aya::Pod for super::OpKey {}
    unsafe impl aya::Pod for super::OpStats {}
    unsafe impl aya::Pod for super::KernelStack {}
    unsafe impl aya::Pod for super::CallSite {}
    unsafe impl aya::Pod for super::CachedStack {}
    unsafe impl aya::Pod for super::HolderKey {}
    unsafe impl aya::Pod for super::ProcessName {}
    unsafe impl aya::Pod for super::HolderWaits {}
    unsafe impl aya::Pod for super::HolderSlot {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Offsets {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_keys_tell_stacks_apart() {
        let mut a = KernelStack { ips: [0; STACK_DEPTH] };
        a.ips[..3].copy_from_slice(&[0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020, 0xffff_ffff_8100_0030]);
        let k = stack_key(&a.ips);
        assert_ne!(k, 0);
        // A prefix is another stack.
        let mut p = a;
        p.ips[2] = 0;
        assert_ne!(stack_key(&p.ips), k);
        // One frame changed anywhere changes the key.
        for i in 0..3 {
            let mut b = a;
            b.ips[i] ^= 8;
            assert_ne!(stack_key(&b.ips), k, "frame {i}");
        }
        // Two frames swapped too.
        let mut c = a;
        c.ips.swap(0, 1);
        assert_ne!(stack_key(&c.ips), k);
    }

    #[test]
    fn buckets_are_floor_log2() {
        assert_eq!(log2_bucket(0), 0);
        assert_eq!(log2_bucket(1), 0);
        assert_eq!(log2_bucket(2), 1);
        assert_eq!(log2_bucket(3), 1);
        assert_eq!(log2_bucket(1023), 9);
        assert_eq!(log2_bucket(1024), 10);
        assert_eq!(log2_bucket(u64::MAX), HIST_BUCKETS - 1);
        for b in 1..HIST_BUCKETS as u32 {
            assert_eq!(log2_bucket(1u64 << b), b as usize);
            assert_eq!(log2_bucket((1u64 << b) - 1), b as usize - 1);
        }
    }
}
