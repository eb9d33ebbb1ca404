//! The report: what a run measured, attributed to files and call paths. Every renderer reads
//! this one structure; `report.json` is its serialisation. A field the mode cannot observe is
//! `None` (JSON null), never 0. `build` makes it from a snapshot of the maps.

mod build;

pub use build::{build, Context};

use std::{collections::BTreeMap, time::Instant};

use crate::{
    attribution::{files::FileIndex, select::Selected, symbols::KernelSymbols},
    collector::Snapshot,
    mode::RunMode,
};

pub use crate::schema::*;

/// The profiling window of a run or a daemon (when it opened, what was attached) and what the
/// user asked: what its reports are made of besides a snapshot and the files. Every report,
/// the one-shot run's, `--interval`'s and the daemon's, is made here.
pub struct Window<'a> {
    pub mode: RunMode,
    pub acquisitions: bool,
    pub probes: Vec<ProbeStatus>,
    pub started: Instant,
    pub cycles: Option<u64>,
    pub command: Option<Vec<String>>,
    pub pid: Option<u32>,
    pub selected: &'a [Selected],
}

impl Window<'_> {
    /// The report of a snapshot taken at `at`: its duration is the time profiled until then.
    pub fn report(&self, snap: &Snapshot, index: &FileIndex, symbols: &KernelSymbols, at: Instant) -> Report {
        build(
            snap,
            &Context {
                mode: self.mode,
                acquisitions: self.acquisitions,
                duration_ns: at.saturating_duration_since(self.started).as_nanos() as u64,
                cycles: self.cycles,
                command: self.command.clone(),
                pid: self.pid,
                probes: self.probes.clone(),
                selected: self.selected,
                index,
                symbols,
            },
        )
    }
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

/// What happened between two reports of one run (`--interval`'s tables, the daemon's delta
/// profiles): counts, totals, wait histograms and each call path's waits subtract; maxima stay
/// the run's (the kernel keeps no per-period maximum: `interval::period_max` makes what can be
/// known of it from these and the histogram).
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
            for c in &mut f.call_paths {
                if let Some(pc) = p.call_paths.iter().find(|pc| pc.rw == c.rw && pc.frames == c.frames) {
                    c.contentions = c.contentions.saturating_sub(pc.contentions);
                    c.wait_ns_total = c.wait_ns_total.saturating_sub(pc.wait_ns_total);
                    c.osq_ns = c.osq_ns.map(|n| n.saturating_sub(pc.osq_ns.unwrap_or(0)));
                }
            }
            f.call_paths.retain(|c| c.contentions > 0 || c.wait_ns_total > 0);
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
