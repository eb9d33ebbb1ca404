//! report.json's types: what a report holds, for rmapprof's renderers, `diff` and `model` to
//! read, for its tests and xtask to read reports typed, and for the JSON Schema in
//! docs/report.schema.json (generated from these; a test keeps it current). A field the mode
//! cannot observe is `None` (JSON null), never 0. A crate of its own, light (serde, schemars),
//! so that xtask reads reports without building the profiler and its eBPF object.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The mode a run used: `auto` resolved to what the kernel allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    #[default]
    Tracepoint,
    Kprobe,
    Fentry,
}

impl RunMode {
    pub fn name(self) -> &'static str {
        match self {
            RunMode::Tracepoint => "tracepoint",
            RunMode::Kprobe => "kprobe",
            RunMode::Fentry => "fentry",
        }
    }

    /// The rwsem slowpaths and osq_lock were probed: spinning and slowpaths are observed.
    pub fn probed(self) -> bool {
        self != RunMode::Tracepoint
    }
}

impl std::fmt::Display for RunMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// report.json's `build`: what the rmapprof that wrote it was built from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Build {
    pub commit: String,
    pub ebpf_object: String,
    pub ebpf_toolchain: String,
}

/// The version of this schema, report.json's `schema`: raised when a field changes meaning or
/// goes away, so that `diff` and `model` refuse a report they would misread. Reports written
/// before it existed have none (0) and are read as version 1.
pub const REPORT_SCHEMA: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// [`REPORT_SCHEMA`] of the rmapprof that wrote it; 0 (absent) before versions existed.
    #[serde(default)]
    pub schema: u32,
    /// The build that wrote it (commit, eBPF object); absent from reports of older builds.
    #[serde(default)]
    pub build: Option<Build>,
    pub mode: RunMode,
    /// Every i_mmap_rwsem acquisition was counted (`--acquisitions`, kprobe/fentry modes):
    /// acquisitions, hold times and rmap operations are observed, not null. Reports written
    /// before the option existed lack it and counted them in kprobe/fentry mode.
    #[serde(default)]
    pub acquisitions_counted: Option<bool>,
    /// `uname -r` of the profiled kernel.
    pub kernel: String,
    pub duration_ns: u64,
    pub command: Option<Vec<String>>,
    pub pid: Option<u32>,
    /// Workload cycles (fork+exec+exit, exec, mmap+munmap...) the run covered, when known:
    /// --cycles, or the COUNT of a bundled workload. Per-cycle numbers divide by it.
    pub cycles: Option<u64>,
    /// CPUs online during the run (for `rmapprof model`'s per-CPU rate).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Paths given with --inode; empty means every file.
    pub selected: Vec<String>,
    pub probes: Vec<ProbeStatus>,
    /// Dropped events and stacks, by cause.
    pub lost: BTreeMap<String, u64>,
    /// `lost.recursion_misses` by program: which probe's events the kernel skipped.
    #[serde(default)]
    pub recursion_misses: BTreeMap<String, u64>,
    /// Locks contended while the task already waited for another (a spinlock inside an rwsem
    /// slowpath): by design only the outer wait is measured, as perf lock contention does.
    #[serde(default)]
    pub nested_waits: u64,
    /// Where kernel stacks came from: full unwinds, and in kprobe mode the call-site cache's
    /// hits, re-unwinds that checked a hit, and checks that found another call path.
    #[serde(default)]
    pub unwind: BTreeMap<String, u64>,
    /// The call sites (`function+offset`, and the call's depth in bytes into the task's kernel
    /// stack) that a recheck caught with a second call path.
    #[serde(default)]
    pub unwind_conflict_sites: Vec<String>,
    /// Rows used / capacity of the in-kernel aggregation maps.
    #[serde(default)]
    pub map_rows: BTreeMap<String, MapRows>,
    /// `--bpf-stats`: runs and ns of each of rmapprof's programs (its own cost); else null.
    #[serde(default)]
    pub bpf_cost: Option<Vec<ProgramCost>>,
    /// Contention of every lock class in the same run, for comparison.
    pub locks: Vec<LockSummary>,
    /// mmap_lock waits per process whose mm it is, most waited first.
    #[serde(default)]
    pub mmap_lock_by_process: Vec<TaskWaits>,
    /// i_mmap_rwsem contention per file, most waited first.
    pub files: Vec<FileReport>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct LockSummary {
    /// `i_mmap_rwsem`, `mmap_lock` or `other`.
    pub lock: String,
    pub contentions: u64,
    pub wait_ns_total: u64,
    pub wait_ns_max: u64,
    pub wait_hist_log2: Vec<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Waits {
    pub contentions: u64,
    pub wait_ns_total: u64,
    pub wait_ns_max: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct FileReport {
    /// None when no process mapped the file while rmapprof looked.
    pub path: Option<String>,
    /// Kernel device, `major:minor`.
    pub dev: String,
    pub ino: u64,
    pub contentions: u64,
    pub wait_ns_total: u64,
    pub wait_ns_max: u64,
    /// Waits per log2 ns bucket: index b counts waits in [2^b, 2^(b+1)) ns.
    pub wait_hist_log2: Vec<u64>,
    pub write: Waits,
    pub read: Waits,
    /// Optimistic spinning (osq_lock and owner spinning): not visible to tracepoints.
    pub spin_ns_total: Option<u64>,
    /// Lock acquisitions, contended or not: needs kprobe/fentry mode with --acquisitions.
    pub acquisitions: Option<u64>,
    /// vma_interval_tree insertions/removals: the same.
    pub rmap_inserts: Option<u64>,
    pub rmap_removes: Option<u64>,
    /// Entries into rwsem_down_*_slowpath: contended acquisitions, spinning or sleeping
    /// (the tracepoints count only those that sleep). kprobe/fentry modes.
    #[serde(default)]
    pub slowpaths: Option<u64>,
    /// Time in rwsem_down_*_slowpath (spin + sleep), in osq_lock, and held (acquire→release).
    pub slowpath_ns_total: Option<u64>,
    pub osq_ns_total: Option<u64>,
    pub hold_ns_total: Option<u64>,
    /// The same per caller class (fork, mmap, split/merge, teardown, other).
    pub by_class: Vec<ClassRow>,
    /// Kernel call paths of optimistic spinning (kprobe/fentry modes), most spun first.
    pub spin_paths: Vec<CallPath>,
    /// Kernel call paths that took the lock (kprobe/fentry modes with --acquisitions), most
    /// acquisitions first.
    pub acquire_paths: Vec<AcquirePath>,
    /// Kernel call paths of the waits, most waited first.
    pub call_paths: Vec<CallPath>,
    /// Who held the lock when each wait began; null in reports made before rmapprof saw it.
    #[serde(default)]
    pub holders: Option<Holders>,
    /// The waits per waiting task, most waited first: with `--by-task`, else empty.
    #[serde(default)]
    pub tasks: Vec<TaskWaits>,
}

/// Waits of one task (or process) on one lock.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct TaskWaits {
    /// The task's name as first seen waiting or holding; null when it was never recorded.
    pub comm: Option<String>,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id; null for a process's total.
    pub tid: Option<u32>,
    pub contentions: u64,
    pub wait_ns_total: u64,
    pub wait_ns_max: u64,
}

/// A file's waits by who held the lock when they began.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Holders {
    /// How the holder was known: `owner field` (the rwsem's owner at wait time: the writer
    /// task and its system call; no stack) or `tracked holds` (`--acquisitions`: the holder's
    /// acquisition stack, exact, for the holds it tracks; the rest as `owner field`).
    pub source: String,
    /// Waits for a lock the waiting task itself held: never expected.
    pub same_task: u64,
    /// Waiter class x holder class: waits and ns waited. In kprobe/fentry modes the waits are
    /// the contended acquisitions (`slowpaths`, spinning or sleeping, and their slowpath time);
    /// in tracepoint mode the sleeping waits (`contentions`, `wait_ns_total`).
    pub matrix: Vec<HolderCell>,
    /// The holders' stacks (or what they were doing, where no stack is seen), most ns
    /// waited on first.
    pub stacks: Vec<HolderStack>,
    /// The holder tasks, most ns waited on first.
    pub tasks: Vec<HolderTask>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct HolderCell {
    /// The waiter's caller class.
    pub waiter: String,
    /// The holder's caller class, or `readers` / `unknown`.
    pub holder: String,
    pub contentions: u64,
    pub wait_ns_total: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct HolderStack {
    pub class: String,
    /// Kernel functions, outermost first; null where the holder's stack is not seen.
    pub frames: Option<Vec<String>>,
    /// What the holder was doing, where its stack is not seen: `[syscall munmap]`,
    /// `[exiting]`, `[readers]`...
    pub doing: Option<String>,
    pub contentions: u64,
    pub wait_ns_total: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct HolderTask {
    pub comm: Option<String>,
    pub pid: u32,
    pub tid: u32,
    pub class: String,
    pub contentions: u64,
    pub wait_ns_total: u64,
}

/// One caller class of one file. Probe-only fields are None in tracepoint mode, and the
/// acquisition fields (acquisitions, hold, rmap operations) without --acquisitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ClassRow {
    pub class: String,
    pub write_acquisitions: Option<u64>,
    pub read_acquisitions: Option<u64>,
    pub hold_ns: Option<u64>,
    pub rmap_inserts: Option<u64>,
    pub rmap_removes: Option<u64>,
    pub slowpath_ns: Option<u64>,
    pub spin_ns: Option<u64>,
    /// Sleeping waits seen by lock:contention_begin/end (every mode).
    pub contentions: u64,
    pub sleep_ns: u64,
    /// Everything above divided by the run's cycles, when known.
    pub per_cycle: Option<BTreeMap<String, f64>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct CallPath {
    /// `write`, `read`, or the raw contention flags.
    pub rw: String,
    /// Kernel functions, outermost first.
    pub frames: Vec<String>,
    pub contentions: u64,
    pub wait_ns_total: u64,
    pub wait_ns_max: u64,
    /// Spin paths only: the part of `wait_ns_total` spent queued in osq_lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub osq_ns: Option<u64>,
}

/// A kernel call path that took the lock, contended or not, and how long it held it. Reports
/// before 0.1's rename named these fields `contentions` and `wait_ns_*`: still read.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct AcquirePath {
    /// `write` or `read`.
    pub rw: String,
    /// Kernel functions, outermost first.
    pub frames: Vec<String>,
    #[serde(alias = "contentions")]
    pub acquisitions: u64,
    /// Held from acquisition to release.
    #[serde(alias = "wait_ns_total")]
    pub hold_ns_total: u64,
    #[serde(alias = "wait_ns_max")]
    pub hold_ns_max: u64,
}

/// One probe and whether it attached, for the report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ProbeStatus {
    pub probe: String,
    pub attached: bool,
    pub error: Option<String>,
}

/// rmapprof's own cost, per program, from the kernel's BPF statistics (`--bpf-stats`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ProgramCost {
    pub program: String,
    pub runs: u64,
    pub ns: u64,
    /// Instructions the verifier processed to load it (its share of the attach time).
    #[serde(default)]
    pub verified_insns: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct MapRows {
    pub rows: u32,
    pub max: u32,
}

/// The JSON Schema of report.json.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(Report)
}

impl Waits {
    /// Adds one row's waits (a map value's count, total and maximum).
    pub fn add(&mut self, s: &profiler_common::WaitStats) {
        self.contentions += s.count;
        self.wait_ns_total += s.total_ns;
        self.wait_ns_max = self.wait_ns_max.max(s.max_ns);
    }
}

impl ClassRow {
    /// Every observed count and time of the row, per workload cycle.
    pub fn per_cycle(&self, cycles: u64) -> BTreeMap<String, f64> {
        let c = cycles as f64;
        let mut m = BTreeMap::new();
        let fields = [
            ("write_acquisitions", self.write_acquisitions),
            ("read_acquisitions", self.read_acquisitions),
            ("hold_ns", self.hold_ns),
            ("rmap_inserts", self.rmap_inserts),
            ("rmap_removes", self.rmap_removes),
            ("spin_ns", self.spin_ns),
            ("contentions", Some(self.contentions)),
            ("sleep_ns", Some(self.sleep_ns)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                m.insert(k.to_owned(), v as f64 / c);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/report.schema.json is what these types generate (after a change here, write it
    /// again with `RMAPPROF_WRITE_SCHEMA=1 cargo test -p rmapprof-report`).
    #[test]
    fn the_committed_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report.schema.json");
        let now = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        if std::env::var_os("RMAPPROF_WRITE_SCHEMA").is_some() {
            std::fs::write(&path, &now).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == now,
            "{} is stale: RMAPPROF_WRITE_SCHEMA=1 cargo test -p rmapprof-report",
            path.display()
        );
    }

    /// A report built from nothing, and one with every optional part filled, validate.
    #[test]
    fn reports_validate_against_the_schema() {
        let schema = serde_json::to_value(json_schema()).unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        let mut r = Report { tool: "rmapprof".into(), schema: REPORT_SCHEMA, ..Default::default() };
        assert!(v.is_valid(&serde_json::to_value(&r).unwrap()));
        r.files.push(FileReport {
            path: Some("/lib/libc.so.6".into()),
            acquisitions: Some(3),
            ..Default::default()
        });
        r.build = Some(Build { commit: "0123456789ab".into(), ..Default::default() });
        assert!(v.is_valid(&serde_json::to_value(&r).unwrap()));
        let mut bad = serde_json::to_value(&r).unwrap();
        bad["files"][0]["ino"] = "not a number".into();
        assert!(!v.is_valid(&bad));
    }
}

/// The caller classes report.json names (attribution/callers.rs reads them off the stacks),
/// and the holder columns that are not one task; renderers order rows by them.
pub mod caller_class {
    pub const FORK: &str = "fork";
    pub const MMAP: &str = "mmap";
    pub const SPLIT_MERGE: &str = "split/merge";
    pub const TEARDOWN: &str = "teardown";
    pub const TRUNCATE: &str = "truncate";
    pub const RECLAIM: &str = "reclaim";
    pub const OTHER: &str = "other";
    /// Holders only: a reader-owned rwsem, whose owner field keeps a hint of one reader.
    pub const READERS: &str = "readers";
    /// Holders only: no owner was recorded when the wait began (the lock was being handed over).
    pub const UNKNOWN: &str = "unknown";
    /// The kernel stack was not kept (stack table full, or unwinding failed: see `lost`).
    pub const NO_STACK: &str = "no stack";
    /// What report.rs puts in place of the frames of a stack that was not kept.
    pub const NO_STACK_FRAME: &str = "[stack not recorded]";

    pub const ALL: [&str; 8] = [FORK, MMAP, SPLIT_MERGE, TEARDOWN, TRUNCATE, RECLAIM, OTHER, NO_STACK];

    /// Holder columns, in order: the caller classes, then the holders that are not one task.
    pub const HOLDER_ALL: [&str; 10] =
        [FORK, MMAP, SPLIT_MERGE, TEARDOWN, TRUNCATE, RECLAIM, OTHER, NO_STACK, READERS, UNKNOWN];
}
