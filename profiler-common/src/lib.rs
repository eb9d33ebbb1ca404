//! Keys and values that rmapprof's eBPF programs aggregate in maps and its userspace collector
//! reads. `#[repr(C)]`, plain integers only, explicit padding: the kernel hashes the raw bytes of
//! a key, so every byte must be written.
#![cfg_attr(not(test), no_std)]

mod config;
pub mod names;
mod sums;

pub use config::{Config, Offsets};

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

/// Causes under which an event or a stack was dropped; index into the `LOST` array map.
pub mod lost {
    /// The `STACKS` table was full: the event is still counted, under "no stack" (key 0).
    pub const STACK_MAP_FULL: u32 = 0;
    /// `bpf_get_stack` failed (a fault while unwinding): the event is counted under "no stack".
    pub const STACK_FAILED: u32 = 1;
    /// The per-task "waiting since" map was full: the wait was not measured.
    pub const TASK_MAP_FULL: u32 = 2;
    /// The aggregation map was full: the wait was measured but not recorded.
    pub const STATS_MAP_FULL: u32 = 3;
    /// The per-file histogram map was full: the wait is in the totals but not the histogram.
    pub const HIST_MAP_FULL: u32 = 4;
    /// The waiter x holder map was full: the wait is in the totals but not in `holders`.
    pub const HOLDER_MAP_FULL: u32 = 5;
    pub const COUNT: u32 = 6;
    pub const NAMES: [&str; COUNT as usize] = [
        "stack_map_full",
        "stack_failed",
        "task_map_full",
        "stats_map_full",
        "hist_map_full",
        "holder_map_full",
    ];
    /// Not a slot of the map: runs of our programs the kernel itself skipped (the programs'
    /// `recursion_misses`), read by userspace from each program's fdinfo.
    pub const RECURSION_MISSES: &str = "recursion_misses";
}

/// Events left unmeasured by design, not lost; index into the `NOT_MEASURED` array map.
pub mod not_measured {
    /// A lock contended while the task already waited for another (a spinlock inside an rwsem
    /// slowpath): only the outer wait is measured, as perf lock contention does.
    pub const NESTED: u32 = 0;
    pub const COUNT: u32 = 1;
}

/// Where the kernel stacks came from; index into the `UNWIND` array map. In kprobe and fentry
/// modes a stack is unwound once per call site (the return address `down_*` was called from,
/// and how deep in the task's kernel stack that call is) and reused for the site's later
/// acquisitions; the first reuses and then every `--stack-cache-check`-th unwind again and
/// compare. A site caught with two different stacks (a conflict) is split: by the stack
/// words where its paths part, then by a hash of the stack above; a hash row caught again is
/// unwound every time.
pub mod unwind {
    /// Full unwinds (`bpf_get_stack`), every mode.
    pub const UNWINDS: u32 = 0;
    /// Stacks taken from the call-site cache without unwinding.
    pub const CACHE_HITS: u32 = 1;
    /// Reuses that were unwound again to check the cached stack.
    pub const CACHE_CHECKS: u32 = 2;
    /// Checks that found another stack: the row is split from then on (a hash row: unwound
    /// every time).
    pub const CACHE_CONFLICTS: u32 = 3;
    /// Hashes of the stack above a split call site (each instead of an unwind).
    pub const SPLIT_HASHES: u32 = 4;
    /// Call sites that could not be named (no trampoline frame found): unwound in full.
    pub const NO_SITE: u32 = 5;
    pub const COUNT: u32 = 6;
    pub const NAMES: [&str; COUNT as usize] =
        ["unwinds", "cache_hits", "cache_checks", "cache_conflicts", "split_hashes", "no_site"];
}

/// Key of the call-site stack cache: where `down_*` (or an rmap operation) will return to,
/// and the offset of that return address from the base of the task's kernel stack. Two
/// call paths through the same call site at the same depth are caught by the checks; the
/// site is then split by `above` (0 in a site's own row): the stack words where its paths
/// part, one and then a second (even), or, where that is not enough, a hash of the kernel
/// text addresses in the stack above it (odd).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CallSite {
    pub ret: u64,
    pub depth: u64,
    pub above: u64,
}

/// Set in [`CallSite::depth`] (depths are under 16 KiB) for the sites of the rwsem slowpaths.
/// `down_write` may tail-call its slowpath (6.1's does), and the slowpath's return address and
/// depth are then those of the `down_write` call itself, whose stack has no slowpath frame:
/// the two must not share a cache row.
pub const SLOWPATH_SITE: u64 = 1 << 63;

/// Value of the call-site cache: the site's stack key in `STACKS` and how often the site was
/// seen. A stack key of 0 means the row showed more than one stack: in a site's own row
/// (`above` 0) or a row split by a stack word, look up (site, `above`) rows instead; in a row
/// split by a hash, unwind every time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CachedStack {
    pub stack: u64,
    pub seen: u64,
    /// In a split row that is a site's own or split by a word: 8 + the offset from the site's
    /// return address of the stack word where its two paths were seen to part (the return
    /// address of the first frame they do not share), which keys the rows split from it; 0
    /// when it was not found (a hash of the stack above keys them).
    pub split_at: u64,
}

/// What an `OPS` row counts (kprobe/fentry modes). Rows are keyed by lock target and kernel
/// stack; userspace turns the stack into a caller class (fork, mmap, split/merge, teardown).
pub mod op {
    /// i_mmap_rwsem taken for write (`down_write`), contended or not; ns = hold time.
    pub const ACQUIRE_WRITE: u32 = 1;
    /// i_mmap_rwsem taken for read (`down_read`); ns = hold time.
    pub const ACQUIRE_READ: u32 = 2;
    /// `rwsem_down_{write,read}_slowpath` entry to return; ns = spin + sleep. The row also
    /// carries the spinning and `osq_lock` time ([`super::OpStats`]).
    pub const SLOWPATH_WRITE: u32 = 3;
    pub const SLOWPATH_READ: u32 = 4;
    /// `vma_interval_tree_insert` / `_insert_after` on the file's i_mmap tree, outside a write
    /// hold of this task (inside one, the hold's row counts it).
    pub const RMAP_INSERT: u32 = 7;
    /// `vma_interval_tree_remove`.
    pub const RMAP_REMOVE: u32 = 8;
}

/// Key of the `OPS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpKey {
    pub target: LockTarget,
    pub op: u32,
    pub _pad: u32,
    /// Key of the kernel stack in `STACKS`, 0 when none was recorded.
    pub stack: u64,
}

/// A task inside an rwsem slowpath (kprobe/fentry modes), keyed by tid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Slowpath {
    pub sem: u64,
    pub start_ns: u64,
    pub target: LockTarget,
    pub op: u32,
    pub _pad: u32,
    pub stack: u64,
    /// Slept in this slowpath (from lock:contention_end), ns.
    pub sleep_ns: u64,
    /// `osq_lock` entry time while inside it, else 0.
    pub osq_start_ns: u64,
    pub osq_ns: u64,
    /// Who held the lock when the slowpath was entered.
    pub holder: Holder,
    /// The holder's task_struct, to name it when its row is new; 0 when none.
    pub holder_task: u64,
}

/// Key of `HOLDS`: one held i_mmap_rwsem per (task, lock).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HoldKey {
    pub tid: u32,
    pub _pad: u32,
    pub sem: u64,
}

/// Value of `HOLDS`: when the lock was acquired and as which `OPS` row.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Hold {
    pub start_ns: u64,
    pub key: OpKey,
}

/// A slot of `WRITE_HOLDS` (kprobe/fentry modes), indexed by a hash of an rwsem's address. A
/// write hold is exclusive, so one slot per i_mmap_rwsem can carry its hold: found without a
/// hash-table operation by `up_write` and the rmap operations, which run inside the hold.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteHold {
    /// The holder's tid, 0 while the slot is free. Taken by compare-and-exchange, so only the
    /// task that took it writes the rest.
    pub owner: u64,
    /// The i_mmap_rwsem last held in this slot. With `key.target`, kept after the release: the
    /// next hold of the same rwsem only checks that its inode is still that file.
    pub sem: u64,
    /// The `OPS` row of the acquisition (`op::ACQUIRE_WRITE`, the file, the stack).
    pub key: OpKey,
    pub start_ns: u64,
    /// rmap tree operations done inside the hold: added to the `RMAP_*` rows at its end.
    pub inserts: u64,
    pub removes: u64,
    /// Holds of rwsems in this slot kept in `HOLDS` instead (read holds, contended ones). Counts
    /// high (never low) only if a task took the same rwsem twice for read: harmless.
    pub elsewhere: u64,
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

/// How the holder of a contended i_mmap_rwsem is known ([`Holder::state`]).
pub mod holder_state {
    /// The owner field named no task when the wait began (the lock was being handed over).
    pub const UNKNOWN: u32 = 0;
    /// A writer: the task the rwsem's owner field names, with what it was doing
    /// ([`super::holder_hint`]); its stack is not seen.
    pub const WRITER: u32 = 1;
    /// Reader-owned: the owner field keeps only a hint of the last reader; not guessed.
    pub const READERS: u32 = 2;
    /// A hold `--acquisitions` tracks: the holder task and its acquisition stack, exact.
    pub const TRACKED: u32 = 3;
}

/// Bits of [`Holder::hint`]: what the holder task was doing, read off it at wait time.
pub mod holder_hint {
    /// The low 16 bits: the system call it is in, valid with `IN_SYSCALL`.
    pub const SYSCALL_MASK: u32 = 0xffff;
    /// In a 64-bit system call (its saved `ax` is still -ENOSYS); else in a fault or unknown.
    pub const IN_SYSCALL: u32 = 1 << 16;
    /// `PF_EXITING`: tearing down in exit.
    pub const EXITING: u32 = 1 << 17;
    /// `PF_KTHREAD`: a kernel thread (kswapd, kcompactd, kdamond...).
    pub const KTHREAD: u32 = 1 << 18;
}

/// The holder of a contended lock when a wait began.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Holder {
    pub state: u32,
    /// Kernel pid (thread id) and tgid; 0 when not known.
    pub tid: u32,
    pub tgid: u32,
    pub hint: u32,
    /// `TRACKED` holds: the `STACKS` key of the holder's acquisition. `WRITER` and `READERS`
    /// with `--holder-stacks`: the stack of the release that woke the waiter (the writer's
    /// own, or the last reader's), where that release was seen; else 0.
    pub stack: u64,
}

/// Value of the `RELEASES` map, keyed by the woken waiter's tid (`--holder-stacks`): a task
/// released an i_mmap_rwsem and woke the waiter, with this stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Release {
    pub lock: u64,
    /// The releasing task.
    pub tid: u32,
    pub _pad: u32,
    pub stack: u64,
}

/// Set in [`HolderKey::waiter_flags`] on the rows of contended acquisitions (kprobe/fentry
/// modes: a slowpath, spinning or sleeping, timed entry to return); rows without it are the
/// sleeping waits lock:contention_begin/end see (every mode).
pub const HOLDER_SLOWPATH: u32 = 1 << 31;
/// Set in [`HolderKey::waiter_flags`] where the holder named is the waiter itself (0 rows
/// unless something is wrong); the waiter's tid is in the key only with `--by-task`.
pub const HOLDER_SAME_TASK: u32 = 1 << 30;

/// Value of the `HOLDER_WAITS` map: the waits, and the names of the waiter and the holder
/// as the row's first wait saw them (names are taken only when a row is new).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HolderWaits {
    pub stats: WaitStats,
    pub waiter_comm: [u8; 16],
    /// Empty where the holder is not a named task.
    pub holder_comm: [u8; 16],
}

/// Slots per CPU of the `HOLDER_SLOTS` write-back cache in front of `HOLDER_WAITS`.
pub const HOLDER_SLOTS: u32 = 64;

/// A slot of `HOLDER_SLOTS` (per CPU): one `HOLDER_WAITS` row's waits not yet added to the
/// hash map (`value.stats.count` 0: empty), and whether a program is using it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HolderSlot {
    pub key: HolderKey,
    pub value: HolderWaits,
    pub busy: u64,
}

/// Key of the `HOLDER_WAITS` map: one row per file, waiter (direction, stack, and with
/// `--by-task` task) and holder; the value is [`HolderWaits`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HolderKey {
    pub target: LockTarget,
    pub waiter_flags: u32,
    pub waiter_tid: u32,
    pub waiter_tgid: u32,
    pub _pad: u32,
    pub waiter_stack: u64,
    pub holder: Holder,
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
