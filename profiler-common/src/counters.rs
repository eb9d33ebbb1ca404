//! The slots of the counter arrays (`LOST`, `NOT_MEASURED`, `UNWIND`): what each index counts.

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
