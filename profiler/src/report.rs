//! The report: what a run measured, attributed to files and call paths. Every renderer reads
//! this one structure; `report.json` is its serialisation. A field the mode cannot observe is
//! `None` (JSON null), never 0.

use profiler_common::{lcb_flags, lock_kind, op, ContentionKey, LockTarget, OpKey, WaitStats, HIST_BUCKETS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{
    attribution::{
        callers,
        files::{FileId, FileIndex, Selected},
        symbols::KernelSymbols,
    },
    collector::{ProbeStatus, Snapshot},
    mode::RunMode,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub tool: String,
    pub version: String,
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
    /// Kernel call paths that took the lock (kprobe/fentry modes), most acquisitions first;
    /// `contentions` counts acquisitions and `wait_ns_*` is hold time.
    pub acquire_paths: Vec<CallPath>,
    /// Kernel call paths of the waits, most waited first.
    pub call_paths: Vec<CallPath>,
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

pub fn lock_name(kind: u32) -> &'static str {
    match kind {
        lock_kind::I_MMAP_RWSEM => "i_mmap_rwsem",
        lock_kind::MMAP_LOCK => "mmap_lock",
        _ => "other",
    }
}

fn rw_name(flags: u32) -> String {
    match flags {
        lcb_flags::WRITE => "write".into(),
        lcb_flags::READ => "read".into(),
        f => format!("flags={f:#x}"),
    }
}

/// What `build` needs besides the snapshot.
pub struct Context<'a> {
    pub mode: RunMode,
    /// Every acquisition was counted (`--acquisitions`).
    pub acquisitions: bool,
    pub duration_ns: u64,
    pub cycles: Option<u64>,
    pub command: Option<Vec<String>>,
    pub pid: Option<u32>,
    pub probes: Vec<ProbeStatus>,
    pub selected: &'a [Selected],
    pub index: &'a FileIndex,
    pub symbols: &'a KernelSymbols,
}

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Attributes a snapshot: lock classes, then one entry per file with its call paths.
pub fn build(snap: &Snapshot, ctx: &Context) -> Report {
    let mut locks: BTreeMap<u32, (Waits, Vec<u64>)> = BTreeMap::new();
    let mut files: BTreeMap<FileId, FileReport> = BTreeMap::new();
    let mut paths: BTreeMap<(FileId, u64, u32), Waits> = BTreeMap::new();
    let wanted =
        |id: &FileId| ctx.selected.is_empty() || ctx.selected.iter().any(|s| s.matches(*id, ctx.index));

    for (key, stats) in &snap.waits {
        let ContentionKey { target, flags, stack, .. } = *key;
        locks.entry(target.kind).or_default().0.add(stats);
        if target.kind != lock_kind::I_MMAP_RWSEM {
            continue;
        }
        let id = FileId { dev: target.dev, ino: target.ino };
        if !wanted(&id) {
            continue;
        }
        let f = files.entry(id).or_default();
        f.contentions += stats.count;
        f.wait_ns_total += stats.total_ns;
        f.wait_ns_max = f.wait_ns_max.max(stats.max_ns);
        match flags {
            lcb_flags::WRITE => f.write.add(stats),
            lcb_flags::READ => f.read.add(stats),
            _ => {}
        }
        paths.entry((id, stack, flags)).or_default().add(stats);
    }
    for (target, hist) in &snap.hists {
        let LockTarget { kind, dev, ino } = *target;
        let l = locks.entry(kind).or_default();
        add_hist(&mut l.1, &hist.buckets);
        if let Some(f) = files.get_mut(&FileId { dev, ino }) {
            add_hist(&mut f.wait_hist_log2, &hist.buckets);
        }
    }
    let probed = ctx.mode.probed();
    let counted = probed && ctx.acquisitions;
    let frames_of = |stack: u64| -> Vec<String> {
        match snap.stacks.get(&stack) {
            Some(ips) => ctx.symbols.frames(ips),
            None => vec![callers::NO_STACK_FRAME.to_owned()],
        }
    };
    let mut classes: BTreeMap<(FileId, &'static str), ClassRow> = BTreeMap::new();
    let mut spin_paths: BTreeMap<(FileId, u64), (Waits, u64)> = BTreeMap::new();
    let mut acquire_paths: BTreeMap<(FileId, u64, u32), Waits> = BTreeMap::new();
    if probed {
        for (key, stats) in &snap.ops {
            let OpKey { target, op, stack, .. } = *key;
            let id = FileId { dev: target.dev, ino: target.ino };
            if target.kind != lock_kind::I_MMAP_RWSEM || !wanted(&id) {
                continue;
            }
            let f = files.entry(id).or_default();
            let row = classes.entry((id, callers::classify(&frames_of(stack)))).or_default();
            let add = |o: &mut Option<u64>, v: u64| *o = Some(o.unwrap_or(0) + v);
            match op {
                op::ACQUIRE_WRITE | op::ACQUIRE_READ => {
                    add(&mut f.acquisitions, stats.count);
                    add(&mut f.hold_ns_total, stats.total_ns);
                    add(&mut row.hold_ns, stats.total_ns);
                    let which = if op == op::ACQUIRE_WRITE {
                        &mut row.write_acquisitions
                    } else {
                        &mut row.read_acquisitions
                    };
                    add(which, stats.count);
                    acquire_paths.entry((id, stack, op)).or_default().add(stats);
                }
                op::SLOWPATH_WRITE | op::SLOWPATH_READ => {
                    add(&mut f.slowpaths, stats.count);
                    add(&mut f.slowpath_ns_total, stats.total_ns);
                    add(&mut row.slowpath_ns, stats.total_ns);
                }
                op::SPIN => {
                    add(&mut f.spin_ns_total, stats.total_ns);
                    add(&mut row.spin_ns, stats.total_ns);
                    spin_paths.entry((id, stack)).or_default().0.add(stats);
                }
                op::OSQ => {
                    add(&mut f.osq_ns_total, stats.total_ns);
                    spin_paths.entry((id, stack)).or_default().1 += stats.total_ns;
                }
                op::RMAP_INSERT => {
                    add(&mut f.rmap_inserts, stats.count);
                    add(&mut row.rmap_inserts, stats.count);
                }
                op::RMAP_REMOVE => {
                    add(&mut f.rmap_removes, stats.count);
                    add(&mut row.rmap_removes, stats.count);
                }
                _ => {}
            }
        }
    }
    // Sleeping waits per class, in every mode.
    for ((id, stack, _), w) in &paths {
        let row = classes.entry((*id, callers::classify(&frames_of(*stack)))).or_default();
        row.contentions += w.contentions;
        row.sleep_ns += w.wait_ns_total;
    }
    // Selected files with no contention are reported with zeros: "none" is a result.
    for s in ctx.selected {
        if !files.keys().any(|id| s.matches(*id, ctx.index)) {
            files.insert(s.ids[0], FileReport::default());
        }
    }
    for ((id, stack), (w, osq_ns)) in spin_paths {
        files.get_mut(&id).unwrap().spin_paths.push(CallPath {
            rw: "spin".into(),
            frames: frames_of(stack),
            contentions: w.contentions,
            wait_ns_total: w.wait_ns_total,
            wait_ns_max: w.wait_ns_max,
            osq_ns: Some(osq_ns),
        });
    }
    for ((id, stack, op), w) in acquire_paths {
        files.get_mut(&id).unwrap().acquire_paths.push(CallPath {
            rw: if op == op::ACQUIRE_WRITE { "write" } else { "read" }.into(),
            frames: frames_of(stack),
            contentions: w.contentions,
            wait_ns_total: w.wait_ns_total,
            wait_ns_max: w.wait_ns_max,
            osq_ns: None,
        });
    }
    for ((id, class), mut row) in classes {
        if let Some(f) = files.get_mut(&id) {
            row.class = class.into();
            // Observed, so a row with none of them says 0, not null.
            if probed {
                for v in [&mut row.slowpath_ns, &mut row.spin_ns] {
                    v.get_or_insert(0);
                }
            }
            if counted {
                for v in [
                    &mut row.write_acquisitions,
                    &mut row.read_acquisitions,
                    &mut row.hold_ns,
                    &mut row.rmap_inserts,
                    &mut row.rmap_removes,
                ] {
                    v.get_or_insert(0);
                }
            }
            row.per_cycle = ctx.cycles.filter(|c| *c > 0).map(|c| row.per_cycle(c));
            f.by_class.push(row);
        }
    }
    for ((id, stack, flags), w) in paths {
        let frames = frames_of(stack);
        files.get_mut(&id).unwrap().call_paths.push(CallPath {
            rw: rw_name(flags),
            frames,
            contentions: w.contentions,
            wait_ns_total: w.wait_ns_total,
            wait_ns_max: w.wait_ns_max,
            osq_ns: None,
        });
    }
    let mut files: Vec<FileReport> = files
        .into_iter()
        .map(|(id, mut f)| {
            let selected = ctx.selected.iter().find(|s| s.matches(id, ctx.index));
            f.path = selected
                .map(|s| s.path.clone())
                .or_else(|| ctx.index.path(id).map(Into::into))
                .map(|p| p.display().to_string());
            f.dev = id.dev_string();
            f.ino = id.ino;
            f.wait_hist_log2.resize(HIST_BUCKETS, 0);
            for paths in [&mut f.call_paths, &mut f.spin_paths, &mut f.acquire_paths] {
                *paths = merge_paths(std::mem::take(paths));
            }
            // Stable sorts: ties stay in (rw, frames) order, the same in every run.
            f.call_paths.sort_by(|a, b| b.wait_ns_total.cmp(&a.wait_ns_total));
            f.spin_paths.sort_by(|a, b| b.wait_ns_total.cmp(&a.wait_ns_total));
            f.acquire_paths.sort_by(|a, b| b.contentions.cmp(&a.contentions));
            f.by_class.sort_by_key(|r| callers::ALL.iter().position(|c| *c == r.class));
            // Observed, so a file with none of them says 0, not null.
            if probed {
                for v in
                    [&mut f.slowpaths, &mut f.spin_ns_total, &mut f.slowpath_ns_total, &mut f.osq_ns_total]
                {
                    v.get_or_insert(0);
                }
            }
            if counted {
                for v in [&mut f.acquisitions, &mut f.rmap_inserts, &mut f.rmap_removes, &mut f.hold_ns_total]
                {
                    v.get_or_insert(0);
                }
            }
            f
        })
        .collect();
    // Most time lost first (sleep + spin), then most acquisitions.
    let weight =
        |f: &FileReport| (f.wait_ns_total + f.spin_ns_total.unwrap_or(0), f.acquisitions.unwrap_or(0));
    files.sort_by(|a, b| weight(b).cmp(&weight(a)).then(a.path.cmp(&b.path)));

    let locks = [lock_kind::I_MMAP_RWSEM, lock_kind::MMAP_LOCK, lock_kind::OTHER]
        .into_iter()
        .map(|k| {
            let (w, mut hist) = locks.remove(&k).unwrap_or_default();
            hist.resize(HIST_BUCKETS, 0);
            LockSummary {
                lock: lock_name(k).into(),
                contentions: w.contentions,
                wait_ns_total: w.wait_ns_total,
                wait_ns_max: w.wait_ns_max,
                wait_hist_log2: hist,
            }
        })
        .collect();
    Report {
        tool: "rmapprof".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        mode: ctx.mode,
        acquisitions_counted: Some(counted),
        kernel: kernel_release(),
        duration_ns: ctx.duration_ns,
        command: ctx.command.clone(),
        pid: ctx.pid,
        cycles: ctx.cycles,
        cpus: std::thread::available_parallelism().ok().map(|n| n.get() as u32),
        selected: ctx.selected.iter().map(|s| s.path.display().to_string()).collect(),
        probes: ctx.probes.clone(),
        lost: snap.lost.clone(),
        unwind: snap.unwind.clone(),
        unwind_conflict_sites: snap
            .conflict_sites
            .iter()
            .map(|c| {
                // A site's own row was split by the stack word where two paths part, such a
                // row by another word (even keys) or a hash of the stack above (odd keys), and
                // a hash row that conflicted again is unwound every time (callsite.rs).
                let how = match c.above {
                    0 => "split",
                    a if a % 2 == 0 => "split again",
                    _ => "unwound every time",
                };
                let depth = c.depth & !profiler_common::SLOWPATH_SITE;
                let slowpath = if c.depth & profiler_common::SLOWPATH_SITE != 0 { "slowpath, " } else { "" };
                format!("{} ({slowpath}depth {depth}, {how})", ctx.symbols.name_offset(c.ret))
            })
            .collect(),
        map_rows: snap.map_rows.clone(),
        bpf_cost: snap.cost.clone(),
        locks,
        files,
    }
}

/// One row per path as a reader sees it. The kernel keys stacks by return address, so two
/// call sites in one function (or a stack cut at `--max-stack` below them) are two rows whose
/// frames, being function names, read the same: report.txt and report.json would show one call
/// path twice. Rows with the same direction and frames are added up (counts, times, osq time;
/// the largest maximum), in (rw, frames) order.
fn merge_paths(paths: Vec<CallPath>) -> Vec<CallPath> {
    let mut merged: BTreeMap<(String, Vec<String>), CallPath> = BTreeMap::new();
    for p in paths {
        match merged.entry((p.rw.clone(), p.frames.clone())) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(p);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let m = e.get_mut();
                m.contentions = m.contentions.saturating_add(p.contentions);
                m.wait_ns_total = m.wait_ns_total.saturating_add(p.wait_ns_total);
                m.wait_ns_max = m.wait_ns_max.max(p.wait_ns_max);
                m.osq_ns = match (m.osq_ns, p.osq_ns) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
                };
            }
        }
    }
    merged.into_values().collect()
}

fn add_hist(into: &mut Vec<u64>, buckets: &[u64]) {
    into.resize(into.len().max(buckets.len()), 0);
    for (a, b) in into.iter_mut().zip(buckets) {
        *a += b;
    }
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
    d.files.sort_by(|a, b| b.wait_ns_total.cmp(&a.wait_ns_total));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::files::FileIndex;

    /// Two stacks through the same functions at different offsets (two call sites in
    /// `dup_mmap`) read the same once symbolized: one row each in call, spin and acquire paths.
    #[test]
    fn one_row_per_symbolized_call_path() {
        let symbols = KernelSymbols::from_map(
            [(0x1000, "entry_SYSCALL_64"), (0x2000, "dup_mmap"), (0x3000, "down_write")]
                .into_iter()
                .map(|(a, n)| (a, n.to_owned()))
                .collect(),
        );
        let mut snap = Snapshot::default();
        // Leaf first, as the kernel records them.
        snap.stacks.insert(1, vec![0x3010, 0x2010, 0x1010]);
        snap.stacks.insert(2, vec![0x3010, 0x2080, 0x1010]);
        snap.stacks.insert(3, vec![0x3010, 0x1010]);
        let target = LockTarget { kind: lock_kind::I_MMAP_RWSEM, dev: 1, ino: 42 };
        let stats = |count, total_ns, max_ns| WaitStats { count, total_ns, max_ns };
        let wait = |stack| ContentionKey { target, flags: lcb_flags::WRITE, _pad: 0, stack };
        snap.waits =
            vec![(wait(1), stats(3, 300, 200)), (wait(2), stats(2, 500, 400)), (wait(3), stats(1, 100, 100))];
        let op = |op, stack| OpKey { target, op, _pad: 0, stack };
        snap.ops = vec![
            (op(op::ACQUIRE_WRITE, 1), stats(10, 1000, 300)),
            (op(op::ACQUIRE_WRITE, 2), stats(20, 2000, 500)),
            (op(op::SPIN, 1), stats(1, 70, 70)),
            (op(op::SPIN, 2), stats(2, 90, 50)),
            (op(op::OSQ, 1), stats(1, 30, 30)),
            (op(op::OSQ, 2), stats(1, 40, 40)),
        ];
        let index = FileIndex::default();
        let ctx = Context {
            mode: RunMode::Fentry,
            acquisitions: true,
            duration_ns: 1,
            cycles: None,
            command: None,
            pid: None,
            probes: vec![],
            selected: &[],
            index: &index,
            symbols: &symbols,
        };
        let r = build(&snap, &ctx);
        let f = &r.files[0];
        let frames = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let dup = frames(&["entry_SYSCALL_64", "dup_mmap", "down_write"]);
        let path = |rw: &str, frames: &[String], contentions, wait_ns_total, wait_ns_max, osq_ns| CallPath {
            rw: rw.into(),
            frames: frames.to_vec(),
            contentions,
            wait_ns_total,
            wait_ns_max,
            osq_ns,
        };
        assert_eq!(
            f.call_paths,
            [
                path("write", &dup, 5, 800, 400, None),
                path("write", &frames(&["entry_SYSCALL_64", "down_write"]), 1, 100, 100, None)
            ]
        );
        assert_eq!(f.acquire_paths, [path("write", &dup, 30, 3000, 500, None)]);
        assert_eq!(f.spin_paths, [path("spin", &dup, 3, 160, 70, Some(70))]);
        // The per-file and per-class sums are untouched by the merge.
        assert_eq!((f.contentions, f.wait_ns_total, f.acquisitions), (6, 900, Some(30)));
    }
}
