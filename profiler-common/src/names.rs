//! The names userspace looks up in the eBPF object: maps, globals, programs, and the kernel
//! functions each probe program is attached to. The eBPF side spells them as the identifiers
//! of its `#[map]` statics, `#[no_mangle]` globals and program functions (an attribute takes
//! no constant); profiler's `contract` test opens the object it embeds and checks that every
//! name here is in it.

/// Maps userspace reads (or resizes, for the tests' fault injection).
pub mod map {
    pub const CONTENTION: &str = "CONTENTION";
    pub const WAIT_HIST: &str = "WAIT_HIST";
    pub const STACKS: &str = "STACKS";
    pub const OPS: &str = "OPS";
    pub const CALL_SITES: &str = "CALL_SITES";
    pub const LOST: &str = "LOST";
    pub const UNWIND: &str = "UNWIND";
    pub const NOT_MEASURED: &str = "NOT_MEASURED";
    /// Waits by file, waiter and holder.
    pub const HOLDER_WAITS: &str = "HOLDER_WAITS";
    /// mmap_lock instance (`Process`) -> the process and its name.
    pub const PROCESS_NAMES: &str = "PROCESS_NAMES";
    /// tgid -> its current program run (`Process`); sized with `PROCESS_NAMES` at load.
    pub const PROCESSES: &str = "PROCESSES";
    /// Per CPU, the holder rows most recently waited on, not yet in `HOLDER_WAITS`.
    pub const HOLDER_SLOTS: &str = "HOLDER_SLOTS";
    /// Woken waiter's tid -> the release that woke it (`--holder-stacks`).
    pub const RELEASES: &str = "RELEASES";
    /// `RMAPPROF_MEASURE_HOLDERS=1`: the time spent attributing holders ([`holder_cost`]).
    pub const HOLDER_COST: &str = "HOLDER_COST";
    /// The aggregation maps whose rows and capacity the report gives (`map_rows`).
    pub const AGGREGATION: [&str; 7] =
        [CONTENTION, WAIT_HIST, OPS, STACKS, CALL_SITES, HOLDER_WAITS, PROCESS_NAMES];

    /// How userspace reads a map.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Read {
        /// Read whole at every snapshot; bounded by construction (arrays, LRU maps, slots).
        Snapshot,
        /// Rows that only grow: a one-shot run reads them, a daemon drains them (moves what
        /// they gained into its totals and evicts idle rows, collector/drain.rs) or they fill.
        Drain,
        /// The programs' own state (waits and holds in progress, scratch space): never read.
        Never,
    }

    /// Every map of the eBPF object, and how it is read: the contract test checks that the
    /// object has no map missing here, and the drain that it drains every `Drain` map.
    pub const READS: [(&str, Read); 23] = [
        (CONTENTION, Read::Drain),
        (WAIT_HIST, Read::Drain),
        (OPS, Read::Drain),
        (HOLDER_WAITS, Read::Drain),
        (STACKS, Read::Drain),
        (CALL_SITES, Read::Snapshot),
        (LOST, Read::Snapshot),
        (UNWIND, Read::Snapshot),
        (NOT_MEASURED, Read::Snapshot),
        (PROCESS_NAMES, Read::Snapshot),
        (HOLDER_SLOTS, Read::Snapshot),
        (HOLDER_COST, Read::Snapshot),
        (PROCESSES, Read::Never),
        (RELEASES, Read::Never),
        ("PROCESS_RUNS", Read::Never),
        ("I_MMAP_WAITING", Read::Never),
        ("TASK_WAIT", Read::Never),
        ("STACK_SCRATCH", Read::Never),
        ("SLOWPATH", Read::Never),
        ("WRITE_HOLDS", Read::Never),
        ("HOLDS", Read::Never),
        ("ABOVE_SCRATCH", Read::Never),
        ("CTX_ADDRESS", Read::Never),
    ];
}

/// Globals userspace writes before load (`EbpfLoader::override_global`), one of each.
pub mod global {
    /// [`crate::Config`]: the run's switches.
    pub const CONFIG: &str = "CONFIG";
    /// [`crate::Offsets`]: the running kernel's layouts.
    pub const OFFSETS: &str = "OFFSETS";
}

/// A tracepoint program and the event it is attached to.
#[derive(Clone, Copy, Debug)]
pub struct Tracepoint {
    pub program: &'static str,
    pub category: &'static str,
    pub event: &'static str,
}

/// The tracepoints attached in every mode, in order: an exec ends the program run its
/// process's mmap_lock waits are counted to (process.rs), then the lock tracepoints, the end
/// before the begin: a wait that began while only the begin was attached would leave its task's
/// row in TASK_WAIT for the whole run (its next waits taken as nested, one measured from the
/// stale start).
pub const TRACEPOINTS: [Tracepoint; 3] = [
    Tracepoint { program: "process_exec", category: "sched", event: "sched_process_exec" },
    Tracepoint { program: "contention_end", category: "lock", event: "contention_end" },
    Tracepoint { program: "contention_begin", category: "lock", event: "contention_begin" },
];

/// `--holder-stacks`: a task waking another. When the woken task waits for an i_mmap_rwsem,
/// the waker is the task that released it, and its stack is taken there.
pub const RELEASE_TRACEPOINT: Tracepoint =
    Tracepoint { program: "holder_release", category: "sched", event: "sched_waking" };

/// The two families of probe programs: each probe exists in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Kprobe,
    Fentry,
}

/// Where in the kernel function a probe runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Entry,
    Return,
}

/// One probe on one kernel function, as a program of each family. A kprobe program may serve
/// several functions; an fentry program is bound to one function at load.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub function: &'static str,
    pub at: At,
    pub kprobe: &'static str,
    pub fentry: &'static str,
}

impl Probe {
    /// The program of `family` for this probe.
    pub fn program(&self, family: Family) -> &'static str {
        match family {
            Family::Kprobe => self.kprobe,
            Family::Fentry => self.fentry,
        }
    }

    /// The program type, as the kernel and the report name it.
    pub fn kind(&self, family: Family) -> &'static str {
        match (family, self.at) {
            (Family::Kprobe, At::Entry) => "kprobe",
            (Family::Kprobe, At::Return) => "kretprobe",
            (Family::Fentry, At::Entry) => "fentry",
            (Family::Fentry, At::Return) => "fexit",
        }
    }
}

const fn entry(function: &'static str, kprobe: &'static str, fentry: &'static str) -> Probe {
    Probe { function, at: At::Entry, kprobe, fentry }
}

const fn exit(function: &'static str, kprobe: &'static str, fentry: &'static str) -> Probe {
    Probe { function, at: At::Return, kprobe, fentry }
}

/// What kprobe/fentry modes always attach, in order: the waits the lock tracepoints cannot
/// see. These functions run only when an rwsem is contended, so they cost little. Each return
/// before its entry: a call entered while only the entry was attached would leave its task's
/// SLOWPATH row behind, and with pid_max in the millions no later call of that tid replaces it.
pub const WAIT_PROBES: &[Probe] = &[
    exit("rwsem_down_write_slowpath", "kr_down_write_slowpath", "fx_down_write_slowpath"),
    entry("rwsem_down_write_slowpath", "kp_down_write_slowpath", "fe_down_write_slowpath"),
    exit("rwsem_down_read_slowpath", "kr_down_read_slowpath", "fx_down_read_slowpath"),
    entry("rwsem_down_read_slowpath", "kp_down_read_slowpath", "fe_down_read_slowpath"),
    exit("osq_lock", "kr_osq_lock", "fx_osq_lock"),
    entry("osq_lock", "kp_osq_lock", "fe_osq_lock"),
];

/// `--acquisitions`: every i_mmap_rwsem acquisition, its hold and the rmap operations inside
/// it. `down_*`/`up_*` run for every rwsem in the kernel, far more often than on an
/// i_mmap_rwsem, so these cost a fork/exec-heavy workload measurably (docs/performance.md).
/// `down_*` have entry probes only: the hold starts there, and a slowpath's return moves the
/// start to when the lock is granted.
pub const ACQUISITION_PROBES: &[Probe] = &[
    // Releases before acquisitions: a hold begun while only `down_*` was attached would never
    // end, and a write hold would keep its slot taken for the whole run.
    entry("up_write", "kp_up", "fe_up_write"),
    entry("up_read", "kp_up", "fe_up_read"),
    entry("down_write", "kp_down_write", "fe_down_write"),
    entry("down_read", "kp_down_read", "fe_down_read"),
    entry("vma_interval_tree_insert", "kp_rmap_insert", "fe_rmap_insert"),
    entry("vma_interval_tree_insert_after", "kp_rmap_insert_after", "fe_rmap_insert_after"),
    entry("vma_interval_tree_remove", "kp_rmap_remove", "fe_rmap_remove"),
];

/// Slots of the `HOLDER_COST` array (`RMAPPROF_MEASURE_HOLDERS=1`).
pub mod holder_cost {
    /// Holders read at wait time (one per contended wait), and the ns it took.
    pub const READS: u32 = 0;
    pub const READ_NS: u32 = 1;
    /// Waits recorded with their holder, and the ns it took.
    pub const RECORDS: u32 = 2;
    pub const RECORD_NS: u32 = 3;
    /// ns of as many empty timed sections as both: the clock reads' own cost, to subtract.
    pub const CLOCK_NS: u32 = 4;
    pub const COUNT: u32 = 5;
}

#[cfg(test)]
mod attach_order {
    use super::*;

    /// Whatever ends a measurement is attached before what starts it, so that nothing starts
    /// that its end cannot see.
    #[test]
    fn ends_are_attached_before_starts() {
        let at = |name: &str| TRACEPOINTS.iter().position(|t| t.program == name).unwrap();
        assert!(at("contention_end") < at("contention_begin"));
        for (i, p) in WAIT_PROBES.iter().enumerate() {
            if p.at == At::Entry {
                let exit = WAIT_PROBES.iter().position(|q| q.function == p.function && q.at == At::Return);
                assert!(exit.is_some_and(|e| e < i), "{}: its return is not attached first", p.function);
            }
        }
        let up = ACQUISITION_PROBES.iter().position(|p| p.function == "up_write").unwrap();
        let down = ACQUISITION_PROBES.iter().position(|p| p.function == "down_write").unwrap();
        assert!(up < down);
    }
}
