//! Who held a contended i_mmap_rwsem: the holder as read when a wait began, the release that
//! woke the waiter, and the waiter x holder rows (`HOLDER_WAITS`) with their per-CPU slots.

use crate::{LockTarget, WaitStats};

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
