//! A report from a snapshot of the maps, in steps: the sleeping waits (every mode) per lock
//! class, file and call path; the wait histograms; the `OPS` rows as the kernel folded them
//! (kprobe/fentry modes: slowpaths with their spin and osq_lock time, holds with the rmap
//! operations inside them); then each file's rows, call paths and caller classes, in order.
//! A stack is symbolized and classified once however many rows name it ([`Stacks`]).

mod holders;
mod stacks;
#[cfg(test)]
mod tests;

use profiler_common::{lcb_flags, lock_kind, op, ContentionKey, LockTarget, OpKey, WaitStats, HIST_BUCKETS};
use std::{cmp::Reverse, collections::BTreeMap};

use super::{merge_paths, AcquirePath, CallPath, ClassRow, FileReport, LockSummary, Report, Waits};
use stacks::Stacks;

use crate::{
    attribution::{
        callers,
        files::{FileId, FileIndex},
        select::Selected,
        symbols::KernelSymbols,
    },
    collector::Snapshot,
    mode::RunMode,
    schema::ProbeStatus,
};

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

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn lock_name(kind: u32) -> &'static str {
    match kind {
        lock_kind::I_MMAP_RWSEM => "i_mmap_rwsem",
        lock_kind::MMAP_LOCK => "mmap_lock",
        lock_kind::ANON_VMA => "anon_vma",
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

/// `Some(v)` more: a field observed at least once.
fn add(o: &mut Option<u64>, v: u64) {
    *o = Some(o.unwrap_or(0) + v);
}

/// What the steps add up, per lock class, file, call path and caller class.
#[derive(Default)]
struct Tally {
    locks: BTreeMap<u32, (Waits, Vec<u64>)>,
    files: BTreeMap<FileId, FileReport>,
    /// Sleeping waits by (file, stack, direction flags).
    wait_paths: BTreeMap<(FileId, u64, u32), Waits>,
    /// Spinning by (file, stack): the slowpaths' spin, and the osq_lock part of it.
    spin_paths: BTreeMap<(FileId, u64), (Waits, u64)>,
    /// Acquisitions and holds by (file, stack, op).
    acquire_paths: BTreeMap<(FileId, u64, u32), Waits>,
    classes: BTreeMap<(FileId, &'static str), ClassRow>,
}

/// The files the report is about: the `--inode` ones, or every file.
fn wanted(id: FileId, ctx: &Context) -> bool {
    ctx.selected.is_empty() || ctx.selected.iter().any(|s| s.matches(id, ctx.index))
}

/// Sleeping waits (lock:contention_begin/end, every mode): per lock class, and for an
/// i_mmap_rwsem per file, direction and call path.
fn add_waits(t: &mut Tally, waits: &[(ContentionKey, WaitStats)], ctx: &Context) {
    for (key, stats) in waits {
        let ContentionKey { target, flags, stack, .. } = *key;
        t.locks.entry(target.kind).or_default().0.add(stats);
        if target.kind != lock_kind::I_MMAP_RWSEM {
            continue;
        }
        let id = FileId { dev: target.dev, ino: target.ino };
        if !wanted(id, ctx) {
            continue;
        }
        let f = t.files.entry(id).or_default();
        f.contentions += stats.count;
        f.wait_ns_total += stats.total_ns;
        f.wait_ns_max = f.wait_ns_max.max(stats.max_ns);
        match flags {
            lcb_flags::WRITE => f.write.add(stats),
            lcb_flags::READ => f.read.add(stats),
            _ => {}
        }
        t.wait_paths.entry((id, stack, flags)).or_default().add(stats);
    }
}

/// Wait histograms, per lock class and per file already reported.
fn add_hists(t: &mut Tally, snap: &Snapshot) {
    for (target, hist) in &snap.hists {
        let LockTarget { kind, dev, ino } = *target;
        add_hist(&mut t.locks.entry(kind).or_default().1, &hist.buckets);
        if let Some(f) = t.files.get_mut(&FileId { dev, ino }) {
            add_hist(&mut f.wait_hist_log2, &hist.buckets);
        }
    }
}

/// The `OPS` rows (kprobe/fentry modes) as the kernel folded them: a hold row carries the
/// rmap operations done inside its holds, a slowpath row its spin and osq_lock time.
fn add_ops(t: &mut Tally, snap: &Snapshot, stacks: &mut Stacks, ctx: &Context) {
    for (key, row) in &snap.ops {
        let OpKey { target, op, stack, .. } = *key;
        let id = FileId { dev: target.dev, ino: target.ino };
        if target.kind != lock_kind::I_MMAP_RWSEM || !wanted(id, ctx) {
            continue;
        }
        let f = t.files.entry(id).or_default();
        let class = t.classes.entry((id, stacks.class(stack))).or_default();
        let stats = &row.stats;
        match op {
            op::ACQUIRE_WRITE | op::ACQUIRE_READ => {
                add(&mut f.acquisitions, stats.count);
                add(&mut f.hold_ns_total, stats.total_ns);
                add(&mut class.hold_ns, stats.total_ns);
                let which = if op == op::ACQUIRE_WRITE {
                    &mut class.write_acquisitions
                } else {
                    &mut class.read_acquisitions
                };
                add(which, stats.count);
                t.acquire_paths.entry((id, stack, op)).or_default().add(stats);
                if row.rmap_inserts > 0 {
                    add(&mut f.rmap_inserts, row.rmap_inserts);
                    add(&mut class.rmap_inserts, row.rmap_inserts);
                }
                if row.rmap_removes > 0 {
                    add(&mut f.rmap_removes, row.rmap_removes);
                    add(&mut class.rmap_removes, row.rmap_removes);
                }
            }
            op::SLOWPATH_WRITE | op::SLOWPATH_READ => {
                add(&mut f.slowpaths, stats.count);
                add(&mut f.slowpath_ns_total, stats.total_ns);
                add(&mut class.slowpath_ns, stats.total_ns);
                // Each slowpath spun (perhaps 0 ns): one spin event per slowpath.
                add(&mut f.spin_ns_total, row.spin_ns);
                add(&mut class.spin_ns, row.spin_ns);
                let spin = WaitStats { count: stats.count, total_ns: row.spin_ns, max_ns: row.spin_max_ns };
                let path = t.spin_paths.entry((id, stack)).or_default();
                path.0.add(&spin);
                if row.osq_ns > 0 {
                    add(&mut f.osq_ns_total, row.osq_ns);
                    path.1 += row.osq_ns;
                }
            }
            // Outside a write hold the kernel counts each rmap operation in a row of its own.
            op::RMAP_INSERT => {
                add(&mut f.rmap_inserts, stats.count);
                add(&mut class.rmap_inserts, stats.count);
            }
            op::RMAP_REMOVE => {
                add(&mut f.rmap_removes, stats.count);
                add(&mut class.rmap_removes, stats.count);
            }
            _ => {}
        }
    }
}

/// Sleeping waits per caller class, in every mode.
fn add_wait_classes(t: &mut Tally, stacks: &mut Stacks) {
    for ((id, stack, _), w) in &t.wait_paths {
        let row = t.classes.entry((*id, stacks.class(*stack))).or_default();
        row.contentions += w.contentions;
        row.sleep_ns += w.wait_ns_total;
    }
}

/// Selected files with no contention are reported with zeros: "none" is a result.
fn add_selected(t: &mut Tally, ctx: &Context) {
    for s in ctx.selected {
        if !t.files.keys().any(|id| s.matches(*id, ctx.index)) {
            t.files.insert(s.ids[0], FileReport::default());
        }
    }
}

/// The call paths and caller classes into their files.
fn attach_paths(t: Tally, stacks: &mut Stacks, ctx: &Context) -> BTreeMap<FileId, FileReport> {
    let Tally { mut files, wait_paths, spin_paths, acquire_paths, classes, .. } = t;
    let (probed, counted) = (ctx.mode.probed(), ctx.mode.probed() && ctx.acquisitions);
    for ((id, stack), (w, osq_ns)) in spin_paths {
        files.get_mut(&id).unwrap().spin_paths.push(CallPath {
            rw: "spin".into(),
            frames: stacks.frames(stack),
            contentions: w.contentions,
            wait_ns_total: w.wait_ns_total,
            wait_ns_max: w.wait_ns_max,
            osq_ns: Some(osq_ns),
        });
    }
    for ((id, stack, op), w) in acquire_paths {
        files.get_mut(&id).unwrap().acquire_paths.push(AcquirePath {
            rw: if op == op::ACQUIRE_WRITE { "write" } else { "read" }.into(),
            frames: stacks.frames(stack),
            acquisitions: w.contentions,
            hold_ns_total: w.wait_ns_total,
            hold_ns_max: w.wait_ns_max,
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
    for ((id, stack, flags), w) in wait_paths {
        files.get_mut(&id).unwrap().call_paths.push(CallPath {
            rw: rw_name(flags),
            frames: stacks.frames(stack),
            contentions: w.contentions,
            wait_ns_total: w.wait_ns_total,
            wait_ns_max: w.wait_ns_max,
            osq_ns: None,
        });
    }
    files
}

/// Each file named, its paths merged and sorted, what the mode observes 0 rather than null;
/// the files most time lost first (sleep + spin), then most acquisitions.
fn finish_files(files: BTreeMap<FileId, FileReport>, ctx: &Context) -> Vec<FileReport> {
    let (probed, counted) = (ctx.mode.probed(), ctx.mode.probed() && ctx.acquisitions);
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
            for paths in [&mut f.call_paths, &mut f.spin_paths] {
                *paths = merge_paths(std::mem::take(paths));
            }
            f.acquire_paths = merge_paths(std::mem::take(&mut f.acquire_paths));
            // Stable sorts: ties stay in (rw, frames) order, the same in every run.
            f.call_paths.sort_by_key(|p| Reverse(p.wait_ns_total));
            f.spin_paths.sort_by_key(|p| Reverse(p.wait_ns_total));
            f.acquire_paths.sort_by_key(|p| Reverse(p.acquisitions));
            f.by_class.sort_by_key(|r| callers::ALL.iter().position(|c| *c == r.class));
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
    let weight =
        |f: &FileReport| (f.wait_ns_total + f.spin_ns_total.unwrap_or(0), f.acquisitions.unwrap_or(0));
    files.sort_by(|a, b| weight(b).cmp(&weight(a)).then(a.path.cmp(&b.path)));
    files
}

/// The lock classes, always in this order, for comparison.
fn lock_summaries(mut locks: BTreeMap<u32, (Waits, Vec<u64>)>) -> Vec<LockSummary> {
    [lock_kind::I_MMAP_RWSEM, lock_kind::MMAP_LOCK, lock_kind::ANON_VMA, lock_kind::OTHER]
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
        .collect()
}

/// The call sites a recheck caught with a second path, as `function+offset (depth, how)`.
fn conflict_sites(snap: &Snapshot, symbols: &KernelSymbols) -> Vec<String> {
    snap.conflict_sites
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
            format!("{} ({slowpath}depth {depth}, {how})", symbols.name_offset(c.ret))
        })
        .collect()
}

/// Attributes a snapshot: lock classes, then one entry per file with its call paths.
pub fn build(snap: &Snapshot, ctx: &Context) -> Report {
    let mut stacks = Stacks::new(&snap.stacks, ctx.symbols);
    let mut t = Tally::default();
    add_waits(&mut t, &snap.waits, ctx);
    add_hists(&mut t, snap);
    if ctx.mode.probed() {
        add_ops(&mut t, snap, &mut stacks, ctx);
    }
    add_wait_classes(&mut t, &mut stacks);
    add_selected(&mut t, ctx);
    let locks = std::mem::take(&mut t.locks);
    let mut files = attach_paths(t, &mut stacks, ctx);
    holders::add_holders(&mut files, snap, &mut stacks, ctx);
    let files = finish_files(files, ctx);
    Report {
        tool: "rmapprof".into(),
        version: crate::build_info::VERSION.into(),
        schema: crate::schema::REPORT_SCHEMA,
        build: Some(crate::build_info::this()),
        mode: ctx.mode,
        acquisitions_counted: Some(ctx.mode.probed() && ctx.acquisitions),
        kernel: kernel_release(),
        duration_ns: ctx.duration_ns,
        command: ctx.command.clone(),
        pid: ctx.pid,
        cycles: ctx.cycles,
        cpus: std::thread::available_parallelism().ok().map(|n| n.get() as u32),
        selected: ctx.selected.iter().map(|s| s.path.display().to_string()).collect(),
        probes: ctx.probes.clone(),
        lost: snap.lost.clone(),
        recursion_misses: snap.recursion_misses.clone(),
        nested_waits: snap.nested_waits,
        unwind: snap.unwind.clone(),
        unwind_conflict_sites: conflict_sites(snap, ctx.symbols),
        map_rows: snap.map_rows.clone(),
        bpf_cost: snap.cost.clone(),
        locks: lock_summaries(locks),
        mmap_lock_by_process: holders::mmap_lock_by_process(snap),
        files,
    }
}

fn add_hist(into: &mut Vec<u64>, buckets: &[u64]) {
    into.resize(into.len().max(buckets.len()), 0);
    for (a, b) in into.iter_mut().zip(buckets) {
        *a += b;
    }
}
