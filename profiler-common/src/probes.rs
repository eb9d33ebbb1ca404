//! Keys and values of the kprobe/fentry modes' own maps: the call-site stack cache, the
//! `OPS` rows, tasks inside a slowpath, and the holds `--acquisitions` tracks.

use crate::{Holder, LockTarget};

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
