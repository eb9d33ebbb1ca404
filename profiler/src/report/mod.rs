//! The report: what a run measured, attributed to files and call paths. Every renderer reads
//! this one structure; `report.json` is its serialisation. A field the mode cannot observe is
//! `None` (JSON null), never 0. `build` makes it from a snapshot of the maps.

mod build;

pub use build::{build, Context};

use profiler_common::WaitStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{collector::ProbeStatus, mode::RunMode};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// The build that wrote it (commit, eBPF object); absent from reports of older builds.
    #[serde(default)]
    pub build: Option<crate::build_info::Build>,
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
    pub map_rows: BTreeMap<String, crate::collector::MapRows>,
    /// `--bpf-stats`: runs and ns of each of rmapprof's programs (its own cost); else null.
    #[serde(default)]
    pub bpf_cost: Option<Vec<crate::collector::ProgramCost>>,
    /// Contention of every lock class in the same run, for comparison.
    pub locks: Vec<LockSummary>,
    /// mmap_lock waits per process whose mm it is, most waited first.
    #[serde(default)]
    pub mmap_lock_by_process: Vec<TaskWaits>,
    /// i_mmap_rwsem contention per file, most waited first.
    pub files: Vec<FileReport>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LockSummary {
    /// `i_mmap_rwsem`, `mmap_lock` or `other`.
    pub lock: String,
    pub contentions: u64,
    pub wait_ns_total: u64,
    pub wait_ns_max: u64,
    pub wait_hist_log2: Vec<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Waits {
    pub contentions: u64,
    pub wait_ns_total: u64,
    pub wait_ns_max: u64,
}

impl Waits {
    fn add(&mut self, s: &WaitStats) {
        self.contentions += s.count;
        self.wait_ns_total += s.total_ns;
        self.wait_ns_max = self.wait_ns_max.max(s.max_ns);
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HolderCell {
    /// The waiter's caller class.
    pub waiter: String,
    /// The holder's caller class, or `readers` / `unknown`.
    pub holder: String,
    pub contentions: u64,
    pub wait_ns_total: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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

impl ClassRow {
    fn per_cycle(&self, cycles: u64) -> BTreeMap<String, f64> {
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

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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

/// A path as a reader sees it: rows with the same key are one path and add up.
trait Path: Sized {
    fn key(&self) -> (String, Vec<String>);
    fn merge(&mut self, other: Self);
}

impl Path for CallPath {
    fn key(&self) -> (String, Vec<String>) {
        (self.rw.clone(), self.frames.clone())
    }

    fn merge(&mut self, p: Self) {
        self.contentions = self.contentions.saturating_add(p.contentions);
        self.wait_ns_total = self.wait_ns_total.saturating_add(p.wait_ns_total);
        self.wait_ns_max = self.wait_ns_max.max(p.wait_ns_max);
        self.osq_ns = match (self.osq_ns, p.osq_ns) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
    }
}

impl Path for AcquirePath {
    fn key(&self) -> (String, Vec<String>) {
        (self.rw.clone(), self.frames.clone())
    }

    fn merge(&mut self, p: Self) {
        self.acquisitions = self.acquisitions.saturating_add(p.acquisitions);
        self.hold_ns_total = self.hold_ns_total.saturating_add(p.hold_ns_total);
        self.hold_ns_max = self.hold_ns_max.max(p.hold_ns_max);
    }
}

/// One row per path as a reader sees it. The kernel keys stacks by return address, so two
/// call sites in one function (or a stack cut at `--max-stack` below them) are two rows whose
/// frames, being function names, read the same: report.txt and report.json would show one call
/// path twice. Rows with the same direction and frames are added up (counts, times, osq time;
/// the largest maximum), in (rw, frames) order.
fn merge_paths<P: Path>(paths: Vec<P>) -> Vec<P> {
    let mut merged: BTreeMap<(String, Vec<String>), P> = BTreeMap::new();
    for p in paths {
        match merged.entry(p.key()) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(p);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(p),
        }
    }
    merged.into_values().collect()
}

/// What happened between two reports of one run (for --interval): counts, totals and wait
/// histograms subtract; maxima stay the run's (the kernel keeps no per-period maximum:
/// `interval::period_max` makes what can be known of it from these and the histogram).
pub fn delta(prev: &Report, cur: &Report) -> Report {
    let mut d = cur.clone();
    d.duration_ns = cur.duration_ns.saturating_sub(prev.duration_ns);
    for f in &mut d.files {
        if let Some(p) = prev.files.iter().find(|p| p.dev == f.dev && p.ino == f.ino) {
            f.contentions = f.contentions.saturating_sub(p.contentions);
            f.wait_ns_total = f.wait_ns_total.saturating_sub(p.wait_ns_total);
            for (w, pw) in [(&mut f.write, &p.write), (&mut f.read, &p.read)] {
                w.contentions = w.contentions.saturating_sub(pw.contentions);
                w.wait_ns_total = w.wait_ns_total.saturating_sub(pw.wait_ns_total);
            }
            sub_hist(&mut f.wait_hist_log2, &p.wait_hist_log2);
        }
    }
    d.files.retain(|f| f.contentions > 0 || cur.selected.iter().any(|s| Some(s) == f.path.as_ref()));
    d.files.sort_by_key(|f| std::cmp::Reverse(f.wait_ns_total));
    for l in &mut d.locks {
        if let Some(p) = prev.locks.iter().find(|p| p.lock == l.lock) {
            l.contentions = l.contentions.saturating_sub(p.contentions);
            l.wait_ns_total = l.wait_ns_total.saturating_sub(p.wait_ns_total);
            sub_hist(&mut l.wait_hist_log2, &p.wait_hist_log2);
        }
    }
    d
}

fn sub_hist(from: &mut [u64], prev: &[u64]) {
    for (a, b) in from.iter_mut().zip(prev) {
        *a = a.saturating_sub(*b);
    }
}
