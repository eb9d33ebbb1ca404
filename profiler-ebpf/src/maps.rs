//! The maps the programs share, and what each holds. Names are the contract with userspace
//! (profiler_common::names). The call-site cache's own maps are in callsite.rs.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use profiler_common::{
    lost, names::holder_cost, not_measured, unwind, ContentionKey, Hold, HoldKey, HolderKey, HolderSlot,
    HolderWaits, KernelStack, LockTarget, OpKey, OpStats, Process, ProcessName, Release, Slowpath, TaskWait,
    WaitHist, WaitStats, WriteHold, HOLDER_SLOTS as HOLDER_SLOT_COUNT, PROCESS_ROWS,
};

/// Sleeping waits per lock target, direction and kernel stack (lock:contention_end).
#[map]
pub static CONTENTION: HashMap<ContentionKey, WaitStats> = HashMap::with_max_entries(16384, 0);
/// Log2 wait histogram per lock target.
#[map]
pub static WAIT_HIST: HashMap<LockTarget, WaitHist> = HashMap::with_max_entries(4096, 0);
/// i_mmap_rwsem waits per file, waiter (direction, stack, with `--by-task` task) and the
/// holder when the wait began ([`HolderKey`]), with both tasks' names ([`HolderWaits`]): the
/// waiter x holder matrix, holder stacks and tasks, waits per task. A row per holder task,
/// so a fork-heavy run fills it faster than `CONTENTION`; not preallocated.
#[map]
pub static HOLDER_WAITS: HashMap<HolderKey, HolderWaits> =
    HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);
/// A write-back cache in front of `HOLDER_WAITS`, per CPU, direct-mapped by a hash of the
/// row's key: a wait whose row is in its slot costs an array index and a compare, not a
/// hash-table lookup (most of what holder attribution would cost per wait:
/// docs/performance.md). A slot taken by another row adds its waits to `HOLDER_WAITS` first;
/// userspace adds the slots to what it reads there.
#[map]
pub static HOLDER_SLOTS: PerCpuArray<HolderSlot> = PerCpuArray::with_max_entries(HOLDER_SLOT_COUNT, 0);
/// The current program run ([`Process`]) of each process seen waiting for its mmap_lock, by
/// tgid; least recently used rows go first (a process evicted and seen again is numbered
/// anew: its waits are then two rows of the same name).
#[map]
pub static PROCESSES: LruHashMap<u32, Process> = LruHashMap::with_max_entries(PROCESS_ROWS, 0);
/// The process and name of each program run, by run: kept after the process exits, so that
/// the rows of processes gone are named; least recently used rows go first.
#[map]
pub static PROCESS_NAMES: LruHashMap<u64, ProcessName> = LruHashMap::with_max_entries(PROCESS_ROWS, 0);
/// Program runs numbered on each CPU (process.rs).
#[map]
pub static PROCESS_RUNS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
/// `--holder-stacks`: the release that woke each waiting task, by the waiter's tid; written
/// by the releasing task (release.rs), taken and removed by the waiter at contention_end.
#[map]
pub static RELEASES: HashMap<u32, Release> = HashMap::with_max_entries(16384, 0);
/// `--holder-stacks`: i_mmap_rwsem waits in progress (contention_begin to end), so that
/// `holder_release`, which runs at every wakeup in the system, returns at once while none is.
#[map]
pub static I_MMAP_WAITING: Array<u64> = Array::with_max_entries(1, 0);
/// `RMAPPROF_MEASURE_HOLDERS=1`: what holder attribution costs ([`profiler_common::names::holder_cost`]).
#[map]
pub static HOLDER_COST: Array<u64> = Array::with_max_entries(holder_cost::COUNT, 0);
/// The wait in progress per task (tid), from contention_begin to contention_end.
#[map]
pub static TASK_WAIT: HashMap<u32, TaskWait> = HashMap::with_max_entries(16384, 0);
/// Distinct kernel stacks by [`profiler_common::stack_key`]; grows with the stacks seen (not
/// preallocated: 1 KiB a row).
#[map]
pub static STACKS: HashMap<u64, KernelStack> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);
/// Where `bpf_get_stack` writes (a stack is too big for the 512-byte BPF stack). One slot per
/// program family ([`scratch`]): a tracepoint program can run inside a kprobe/fentry one on
/// the same CPU (a contended spinlock in a map update), never inside another tracepoint one.
/// Caveat: on a fully preemptible kernel an fentry program can be preempted (migration is
/// disabled, preemption is not) and another task's fentry program reuse the slot before the
/// first one stores its stack, the usual caveat of per-CPU scratch buffers. kprobe and
/// tracepoint programs run with preemption off. A stack stored that way is caught and dropped
/// (`stacks::stack`); the one event whose frames were overwritten may still be charged to the
/// other task's stack.
#[map]
pub static STACK_SCRATCH: PerCpuArray<KernelStack> = PerCpuArray::with_max_entries(2, 0);
/// The slots of [`STACK_SCRATCH`].
pub mod scratch {
    pub const TRACEPOINT: u32 = 0;
    pub const PROBE: u32 = 1;
}
/// Events and stacks dropped, by cause ([`profiler_common::lost`]).
#[map]
pub static LOST: Array<u64> = Array::with_max_entries(lost::COUNT, 0);
/// Waits left unmeasured by design ([`profiler_common::not_measured`]).
#[map]
pub static NOT_MEASURED: Array<u64> = Array::with_max_entries(not_measured::COUNT, 0);
/// Where kernel stacks came from ([`profiler_common::unwind`]).
#[map]
pub static UNWIND: Array<u64> = Array::with_max_entries(unwind::COUNT, 0);

/// A task inside an rwsem slowpath (kprobe/fentry modes), by tid.
#[map]
pub static SLOWPATH: HashMap<u32, Slowpath> = HashMap::with_max_entries(16384, 0);
/// Slots of [`WRITE_HOLDS`]: a power of two, indexed by a hash of the rwsem's address.
pub const WRITE_HOLD_SLOTS: u32 = 4096;
/// Write holds of i_mmap_rwsem, one slot per rwsem address hash ([`WriteHold`]): most holds
/// live here, where `down_write`, the rmap operations inside the hold and `up_write` find them
/// by an array index instead of three to five hash-table operations (each costs far more than
/// an index: docs/performance.md). A slot another task holds (the same rwsem contended, or two
/// held rwsems in one slot) sends the newcomer to [`HOLDS`].
#[map]
pub static WRITE_HOLDS: Array<WriteHold> = Array::with_max_entries(WRITE_HOLD_SLOTS, 0);
/// Holds that have no slot: read holds (shared, so not one per rwsem) and the rest. Each
/// slot's `elsewhere` counts the rows here for its rwsems: `up_*`, which runs for every rwsem
/// in the kernel (rmapprof's most frequent probe), looks here only when it is not zero.
#[map]
pub static HOLDS: HashMap<HoldKey, Hold> = HashMap::with_max_entries(16384, 0);
/// Acquisitions, slowpaths and rmap operations per file, operation and kernel stack
/// ([`OpStats`]). About 2 rows per file a workload maps (its write holds on the map and the
/// unmap stack, with the rmap insert and remove counted inside them): 65536 rows keep ~32k
/// files. Not preallocated, so a short run on a few libraries does not pin 5 MB of kernel
/// memory.
#[map]
pub static OPS: HashMap<OpKey, OpStats> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);
