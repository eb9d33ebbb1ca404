//! One read of every map `names::map::READS` marks `Snapshot` or `Drain`: the rows as the
//! kernel aggregated them, the stacks they name, and the counters of what was lost.

use anyhow::Result;
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use profiler_common::{
    lost, names::map, not_measured, unwind, CachedStack, CallSite, ContentionKey, Grows as _, HolderKey,
    HolderSlot, HolderWaits, KernelStack, LockTarget, OpKey, OpStats, ProcessName, WaitHist, WaitStats,
};
use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd as _},
};

use super::Collector;
use crate::schema::{MapRows, ProgramCost};

/// Everything the maps hold at one moment.
#[derive(Default)]
pub struct Snapshot {
    pub waits: Vec<(ContentionKey, WaitStats)>,
    /// kprobe/fentry modes: acquisitions, slowpaths, spin, rmap operations, as the kernel
    /// folded them (`OpStats`).
    pub ops: Vec<(OpKey, OpStats)>,
    pub hists: BTreeMap<LockTarget, WaitHist>,
    /// i_mmap_rwsem waits by waiter and by the holder when they began.
    pub holder_waits: Vec<(HolderKey, WaitStats)>,
    /// tid -> (tgid, comm) of the waiters and holders seen.
    pub task_names: BTreeMap<u32, (u32, String)>,
    /// Program run (the mmap_lock target's `ino`, `Process`) -> (tgid, its leader's comm).
    pub process_names: BTreeMap<u64, (u32, String)>,
    pub lost: BTreeMap<String, u64>,
    /// Nested waits, not measured by design.
    pub nested_waits: u64,
    /// Where the kernel stacks came from: unwinds, call-site cache hits, checks, conflicts.
    pub unwind: BTreeMap<String, u64>,
    /// kprobe/fentry modes: call sites whose cached stack a recheck found wrong (split from
    /// then on, callsite.rs).
    pub conflict_sites: Vec<CallSite>,
    /// Kernel stacks by key, leaf first, as the kernel records them.
    pub stacks: BTreeMap<u64, Vec<u64>>,
    /// Rows in use and capacity of each aggregation map: bounded by construction; a full one
    /// shows up in `lost`.
    pub map_rows: BTreeMap<String, MapRows>,
    /// `--bpf-stats`: what our programs cost (final snapshot only).
    pub cost: Option<Vec<ProgramCost>>,
    /// Runs the kernel skipped, by program, because that program was already running on the
    /// CPU (`recursion_misses`). An fentry program can be preempted on a preemptible kernel
    /// (PREEMPT_LAZY is 7.x's default), and another task's run on that CPU is then dropped by
    /// the trampoline; a kprobe one is dropped while any BPF program runs on the CPU. Their
    /// sum is `lost.recursion_misses`.
    pub recursion_misses: BTreeMap<String, u64>,
}

impl Snapshot {
    /// Every file (device, inode) whose i_mmap_rwsem the snapshot has a row for.
    pub fn files(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let waits = self.waits.iter().map(|(k, _)| k.target);
        let ops = self.ops.iter().map(|(k, _)| k.target);
        waits
            .chain(ops)
            .filter(|t| t.kind == profiler_common::lock_kind::I_MMAP_RWSEM)
            .map(|t| (t.dev, t.ino))
    }
}

/// The `STACKS` keys a row's key names (none is 0).
pub(super) trait NamesStacks {
    fn stacks(&self) -> impl Iterator<Item = u64>;
}

impl NamesStacks for ContentionKey {
    fn stacks(&self) -> impl Iterator<Item = u64> {
        [self.stack].into_iter().filter(|&k| k != 0)
    }
}

impl NamesStacks for OpKey {
    fn stacks(&self) -> impl Iterator<Item = u64> {
        [self.stack].into_iter().filter(|&k| k != 0)
    }
}

/// A waiter's stack and its holder's (acquisition or release).
impl NamesStacks for HolderKey {
    fn stacks(&self) -> impl Iterator<Item = u64> {
        [self.waiter_stack, self.holder.stack].into_iter().filter(|&k| k != 0)
    }
}

/// A histogram row names no stack.
impl NamesStacks for LockTarget {
    fn stacks(&self) -> impl Iterator<Item = u64> {
        std::iter::empty()
    }
}

/// tid -> (tgid, comm).
pub(super) type TaskNames = BTreeMap<u32, (u32, String)>;

/// One row per key (a row's waits may be in `HOLDER_WAITS` and in slots of several CPUs),
/// and the names of the tasks the rows name, taken when each row was new.
pub(super) fn holder_view(rows: Vec<(HolderKey, HolderWaits)>) -> (Vec<(HolderKey, WaitStats)>, TaskNames) {
    let mut merged: std::collections::HashMap<HolderKey, HolderWaits> = std::collections::HashMap::new();
    for (k, w) in rows {
        merged.entry(k).or_default().add(&w);
    }
    let mut names: BTreeMap<u32, (u32, String)> = BTreeMap::new();
    for (k, w) in &merged {
        for (tid, tgid, name) in
            [(k.waiter_tid, k.waiter_tgid, &w.waiter_comm), (k.holder.tid, k.holder.tgid, &w.holder_comm)]
        {
            if tid != 0 && name[0] != 0 {
                names.entry(tid).or_insert_with(|| (tgid, comm(name)));
            }
        }
    }
    (merged.into_iter().map(|(k, w)| (k, w.stats)).collect(), names)
}

/// A task's `comm`, up to its NUL.
fn comm(raw: &[u8; 16]) -> String {
    let n = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..n]).into_owned()
}

/// An array map of counters, by the names of its slots.
fn counters(map: &Array<&MapData, u64>, names: &[&str]) -> BTreeMap<String, u64> {
    names.iter().enumerate().map(|(i, n)| ((*n).to_owned(), map.get(&(i as u32), 0).unwrap_or(0))).collect()
}

/// A numeric `name:\tvalue` line of an fdinfo file.
fn fdinfo_field(fdinfo: &str, name: &str) -> Option<u64> {
    fdinfo.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

impl Collector {
    /// Reads the maps; `with_stacks` also copies the kernel stacks they reference.
    pub fn snapshot(&self, with_stacks: bool) -> Result<Snapshot> {
        let waits: HashMap<&MapData, ContentionKey, WaitStats> =
            HashMap::try_from(self.map(map::CONTENTION)?)?;
        let hists: HashMap<&MapData, LockTarget, WaitHist> = HashMap::try_from(self.map(map::WAIT_HIST)?)?;
        let lost_map: Array<&MapData, u64> = Array::try_from(self.map(map::LOST)?)?;
        let ops: HashMap<&MapData, OpKey, OpStats> = HashMap::try_from(self.map(map::OPS)?)?;
        let ops: Vec<(OpKey, OpStats)> = ops.iter().filter_map(|r| r.ok()).collect();
        let holder_waits: HashMap<&MapData, HolderKey, HolderWaits> =
            HashMap::try_from(self.map(map::HOLDER_WAITS)?)?;
        let mut holder_waits: Vec<(HolderKey, HolderWaits)> =
            holder_waits.iter().filter_map(|r| r.ok()).collect();
        let holder_rows = holder_waits.len();
        // Then the rows still in the per-CPU slots (after the hash map: a row moving from a
        // slot to the map meanwhile is missed by this read, never counted twice).
        holder_waits.extend(self.holder_slots()?);
        let (holder_waits, task_names) = holder_view(holder_waits);
        let process_names: HashMap<&MapData, u64, ProcessName> =
            HashMap::try_from(self.map(map::PROCESS_NAMES)?)?;
        let process_names: BTreeMap<u64, (u32, String)> =
            process_names.iter().filter_map(|r| r.ok()).map(|(i, n)| (i, (n.tgid, comm(&n.comm)))).collect();
        let mut snap = Snapshot {
            waits: waits.iter().filter_map(|r| r.ok()).collect(),
            ops,
            hists: hists.iter().filter_map(|r| r.ok()).collect(),
            holder_waits,
            task_names,
            process_names,
            ..Default::default()
        };
        let stacks: HashMap<&MapData, u64, KernelStack> = HashMap::try_from(self.map(map::STACKS)?)?;
        let stack_rows = stacks.keys().count();
        let sites: HashMap<&MapData, CallSite, CachedStack> = HashMap::try_from(self.map(map::CALL_SITES)?)?;
        let sites: Vec<(CallSite, CachedStack)> = sites.iter().filter_map(|r| r.ok()).collect();
        let site_rows = sites.len();
        for (name, rows) in [
            (map::CONTENTION, snap.waits.len()),
            (map::WAIT_HIST, snap.hists.len()),
            (map::OPS, snap.ops.len()),
            (map::STACKS, stack_rows),
            (map::CALL_SITES, site_rows),
            (map::HOLDER_WAITS, holder_rows),
            (map::PROCESS_NAMES, snap.process_names.len()),
        ] {
            let max = match self.map(name)? {
                aya::maps::Map::HashMap(m)
                | aya::maps::Map::PerCpuHashMap(m)
                | aya::maps::Map::LruHashMap(m) => m.info()?.max_entries(),
                _ => 0,
            };
            snap.map_rows.insert(name.to_owned(), MapRows { rows: rows as u32, max });
        }
        snap.lost = counters(&lost_map, &lost::NAMES);
        snap.recursion_misses = self.recursion_misses();
        snap.lost.insert(lost::RECURSION_MISSES.to_owned(), snap.recursion_misses.values().sum());
        let not_measured: Array<&MapData, u64> = Array::try_from(self.map(map::NOT_MEASURED)?)?;
        snap.nested_waits = not_measured.get(&not_measured::NESTED, 0).unwrap_or(0);
        snap.unwind = counters(&Array::try_from(self.map(map::UNWIND)?)?, &unwind::NAMES);
        if with_stacks {
            snap.conflict_sites = sites.iter().filter(|(_, c)| c.stack == 0).map(|(s, _)| *s).collect();
            let waits = snap.waits.iter().flat_map(|(k, _)| k.stacks());
            let ops = snap.ops.iter().flat_map(|(k, _)| k.stacks());
            let holders = snap.holder_waits.iter().flat_map(|(k, _)| k.stacks());
            let keys: Vec<u64> = waits.chain(ops).chain(holders).collect();
            for key in keys {
                if let std::collections::btree_map::Entry::Vacant(e) = snap.stacks.entry(key) {
                    if let Ok(st) = stacks.get(&key, 0) {
                        e.insert(st.ips.iter().take_while(|&&ip| ip != 0).copied().collect());
                    }
                }
            }
        }
        Ok(snap)
    }

    /// The holder rows in the per-CPU slots of `HOLDER_SLOTS`, not yet in `HOLDER_WAITS`.
    pub(super) fn holder_slots(&self) -> Result<Vec<(HolderKey, HolderWaits)>> {
        let slots: PerCpuArray<&MapData, HolderSlot> = PerCpuArray::try_from(self.map(map::HOLDER_SLOTS)?)?;
        let mut rows = Vec::new();
        for i in 0..profiler_common::HOLDER_SLOTS {
            for slot in slots.get(&i, 0)?.iter() {
                if slot.value.stats.count != 0 {
                    rows.push((slot.key, slot.value));
                }
            }
        }
        Ok(rows)
    }

    /// Each loaded program's `recursion_misses`, where not zero. The kernel counts them
    /// whether or not BPF statistics are on, and shows them in the program's fdinfo (aya's
    /// ProgramInfo does not carry the field).
    pub(super) fn recursion_misses(&self) -> BTreeMap<String, u64> {
        self.ebpf
            .programs()
            .filter_map(|(name, p)| {
                let fd = p.fd().ok()?.as_fd().as_raw_fd();
                let misses = fdinfo_field(
                    &std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?,
                    "recursion_misses",
                )?;
                (misses > 0).then(|| (name.to_owned(), misses))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of a BPF program's fdinfo as the kernel prints them (bpf_prog_show_fdinfo).
    #[test]
    fn fdinfo_fields_are_read_by_name() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nprog_type:\t26\nrun_time_ns:\t0\nrun_cnt:\t12\n\
                      recursion_misses:\t355\nverified_insns:\t1024\n";
        assert_eq!(fdinfo_field(fdinfo, "recursion_misses"), Some(355));
        assert_eq!(fdinfo_field(fdinfo, "run_cnt"), Some(12));
        // A kernel too old to print it, and a name that is only a prefix of another.
        assert_eq!(fdinfo_field("pos:\t0\nrun_cnt:\t1\n", "recursion_misses"), None);
        assert_eq!(fdinfo_field(fdinfo, "run"), None);
    }
}
