//! The daemon's totals since it started, and the drain that keeps the kernel's maps small.
//!
//! A one-shot run reads the kernel's maps at its end; a daemon that ran for days would fill
//! them (16 k contention rows, 64 k operation rows, 16 k stacks), and a full map loses events.
//! So at every refresh the daemon reads every aggregation row and adds what it gained since
//! the last read to the totals here (a row's counters only grow while it exists), and it
//! evicts the rows that gained nothing over a whole refresh period: each is read and deleted
//! in one `BPF_MAP_LOOKUP_AND_DELETE_ELEM`, what it gained in between is added too, and the
//! kernel starts the row again from zero at its next event. A busy row is never deleted, so
//! its events cannot land on a deleted copy. The stacks those rows name are copied here first
//! and, in tracepoint mode, only then deleted from the kernel's stack map (a row created later
//! with the same stack key names the same frames: the key is a hash of them). The kernel's
//! maps then hold the rows active in the last period or two, and the totals only grow: every
//! counter the daemon publishes is monotonic.
//!
//! What can still be lost: an event on a row idle for a whole period whose program looked the
//! row up just before the eviction deleted it and adds to the deleted copy after it was read
//! (a window of one syscall, once per idle row; the kernel's counters of lost events do not
//! see it).
//!
//! The totals grow with the distinct (file, call path) pairs ever contended. Over days on a
//! host that maps ever new files (a build farm's fresh binaries) that has no bound, so past
//! [`MAX_ROWS`] rows the files without a `/metrics` series of their own are folded: their rows
//! become one row per lock class, kind and direction, of the file [`FOLDED`] (device 0:0,
//! inode 0), with no stack. The class totals, `[other]` and every promoted file's series stay
//! as they were; the folded files' call paths are gone from the profile (their time stays,
//! under the folded file's root), and a folded file seen again counts from then.

use anyhow::{Context, Result};
use profiler_common::{
    names::map, ContentionKey, KernelStack, LockTarget, OpKey, OpStats, WaitHist, WaitStats,
};
use std::{
    collections::{BTreeMap, HashMap},
    os::fd::{AsRawFd, BorrowedFd},
};

use crate::{
    attribution::FileId,
    collector::{Collector, Snapshot},
};

/// Rows of the totals (contention and operation rows) past which unpromoted files are folded.
pub const MAX_ROWS: usize = 50_000;

/// Where folded files' rows go: no real file is device 0:0, inode 0.
pub const FOLDED: (u32, u64) = (0, 0);

#[derive(Default)]
pub struct Totals {
    waits: HashMap<ContentionKey, WaitStats>,
    ops: HashMap<OpKey, OpStats>,
    hists: BTreeMap<LockTarget, WaitHist>,
    /// Every stack a drained row named, by its key: frames leaf first.
    stacks: BTreeMap<u64, Vec<u64>>,
    /// Each kernel row's value when last read: what it gains after is what is added.
    seen_waits: HashMap<ContentionKey, WaitStats>,
    seen_ops: HashMap<OpKey, OpStats>,
    seen_hists: HashMap<LockTarget, WaitHist>,
    /// Idle rows evicted from each kernel map since the start.
    pub drained: BTreeMap<String, u64>,
    /// Times files were folded for memory (see the module's comment).
    pub folds: u64,
}

fn add_waits(a: &mut WaitStats, b: &WaitStats) {
    // Exhaustive, so that a field added to the map's value is added here too.
    let WaitStats { count, total_ns, max_ns } = *b;
    a.count += count;
    a.total_ns += total_ns;
    a.max_ns = a.max_ns.max(max_ns);
}

fn add_ops(a: &mut OpStats, b: &OpStats) {
    let OpStats { stats, rmap_inserts, rmap_removes, spin_ns, spin_max_ns, osq_ns } = b;
    add_waits(&mut a.stats, stats);
    a.rmap_inserts += rmap_inserts;
    a.rmap_removes += rmap_removes;
    a.spin_ns += spin_ns;
    a.spin_max_ns = a.spin_max_ns.max(*spin_max_ns);
    a.osq_ns += osq_ns;
}

fn add_hist(a: &mut WaitHist, b: &WaitHist) {
    for (x, y) in a.buckets.iter_mut().zip(b.buckets.iter()) {
        *x += y;
    }
}

/// What a kernel row gained since it was `seen` (its counters only grow while it exists);
/// maxima are the row's own, which `add_*` keep the larger of.
fn gained_waits(now: &WaitStats, seen: &WaitStats) -> WaitStats {
    let WaitStats { count, total_ns, max_ns } = *now;
    WaitStats {
        count: count.saturating_sub(seen.count),
        total_ns: total_ns.saturating_sub(seen.total_ns),
        max_ns,
    }
}

fn gained_ops(now: &OpStats, seen: &OpStats) -> OpStats {
    let OpStats { stats, rmap_inserts, rmap_removes, spin_ns, spin_max_ns, osq_ns } = *now;
    OpStats {
        stats: gained_waits(&stats, &seen.stats),
        rmap_inserts: rmap_inserts.saturating_sub(seen.rmap_inserts),
        rmap_removes: rmap_removes.saturating_sub(seen.rmap_removes),
        spin_ns: spin_ns.saturating_sub(seen.spin_ns),
        spin_max_ns,
        osq_ns: osq_ns.saturating_sub(seen.osq_ns),
    }
}

fn gained_hist(now: &WaitHist, seen: &WaitHist) -> WaitHist {
    let mut d = *now;
    for (x, y) in d.buckets.iter_mut().zip(seen.buckets.iter()) {
        *x = x.saturating_sub(*y);
    }
    d
}

/// Reads every row of a kernel hash map, adds what each gained since `seen` into `into`, and
/// evicts the rows that gained nothing since the last read (adding what they gained between
/// that read and their deletion). Returns the rows read, for their stacks, and the number
/// evicted.
fn drain_map<K, V>(
    fd: BorrowedFd<'_>,
    seen: &mut HashMap<K, V>,
    into: &mut impl FnMut(&K, &V),
    gained: impl Fn(&V, &V) -> V,
) -> Result<(Vec<K>, u64)>
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod + PartialEq,
{
    let mut keys = Vec::new();
    let mut evicted = 0;
    for key in keys_of::<K>(fd)? {
        let Some(now) = lookup::<K, V>(fd, &key)? else { continue };
        keys.push(key);
        match seen.get(&key) {
            Some(before) if *before == now => {
                let last =
                    elem::<K, V>(fd, &key, aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_ELEM)
                        .context(
                            "evicting a BPF map row (BPF_MAP_LOOKUP_AND_DELETE_ELEM, Linux 5.14 or later)",
                        )?;
                if let Some(last) = last {
                    into(&key, &gained(&last, before));
                    evicted += 1;
                }
                seen.remove(&key);
            }
            before => {
                let d = match before {
                    Some(b) => gained(&now, b),
                    None => now,
                };
                into(&key, &d);
                seen.insert(key, now);
            }
        }
    }
    Ok((keys, evicted))
}

impl Totals {
    /// Folds the rows of every i_mmap_rwsem file that `keep` does not keep into [`FOLDED`]'s,
    /// once the totals hold more than `max_rows` rows; then forgets the stacks no row names.
    pub fn fold_unless(&mut self, max_rows: usize, keep: impl Fn(FileId) -> bool) {
        if self.waits.len() + self.ops.len() <= max_rows {
            return;
        }
        let fold = |t: &LockTarget| {
            t.kind == profiler_common::lock_kind::I_MMAP_RWSEM && !keep(FileId { dev: t.dev, ino: t.ino })
        };
        let folded = |t: &LockTarget| LockTarget { dev: FOLDED.0, ino: FOLDED.1, ..*t };
        for (k, v) in std::mem::take(&mut self.waits) {
            let k =
                if fold(&k.target) { ContentionKey { target: folded(&k.target), stack: 0, ..k } } else { k };
            add_waits(self.waits.entry(k).or_default(), &v);
        }
        for (k, v) in std::mem::take(&mut self.ops) {
            let k = if fold(&k.target) { OpKey { target: folded(&k.target), stack: 0, ..k } } else { k };
            add_ops(self.ops.entry(k).or_default(), &v);
        }
        for (k, v) in std::mem::take(&mut self.hists) {
            let k = if fold(&k) { folded(&k) } else { k };
            add_hist(self.hists.entry(k).or_default(), &v);
        }
        let named: std::collections::HashSet<u64> =
            self.waits.keys().map(|k| k.stack).chain(self.ops.keys().map(|k| k.stack)).collect();
        self.stacks.retain(|k, _| named.contains(k));
        self.folds += 1;
    }

    /// Moves every aggregation row out of the kernel into the totals, and returns them as one
    /// snapshot: the totals since the start, with `live`'s counters (lost events, map rows,
    /// BPF cost), which the kernel keeps as running totals of its own.
    pub fn drain(&mut self, collector: &Collector, live: Snapshot) -> Result<Snapshot> {
        for (key, frames) in &live.stacks {
            self.stacks.entry(*key).or_insert_with(|| frames.clone());
        }
        let fd = |name| collector.map_fd(name);
        let (waits, ops, hists) = (&mut self.waits, &mut self.ops, &mut self.hists);
        let (wait_keys, n) = drain_map(
            fd(map::CONTENTION)?,
            &mut self.seen_waits,
            &mut |k, v| add_waits(waits.entry(*k).or_default(), v),
            gained_waits,
        )?;
        *self.drained.entry(map::CONTENTION.into()).or_default() += n;
        let (op_keys, n) = drain_map(
            fd(map::OPS)?,
            &mut self.seen_ops,
            &mut |k, v| add_ops(ops.entry(*k).or_default(), v),
            gained_ops,
        )?;
        *self.drained.entry(map::OPS.into()).or_default() += n;
        let (_, n) = drain_map(
            fd(map::WAIT_HIST)?,
            &mut self.seen_hists,
            &mut |k, v| add_hist(hists.entry(*k).or_default(), v),
            gained_hist,
        )?;
        *self.drained.entry(map::WAIT_HIST.into()).or_default() += n;
        // Rows created since `live` was read may name stacks not copied yet: copy them now.
        let stacks = fd(map::STACKS)?;
        let keys = wait_keys.iter().map(|k| k.stack).chain(op_keys.iter().map(|k| k.stack));
        for key in keys.filter(|&k| k != 0).collect::<Vec<_>>() {
            if let std::collections::btree_map::Entry::Vacant(e) = self.stacks.entry(key) {
                if let Some(st) = lookup::<u64, KernelStack>(stacks, &key)? {
                    e.insert(st.ips.iter().take_while(|&&ip| ip != 0).copied().collect());
                }
            }
        }
        // Only stacks copied here are deleted from the kernel, and only in tracepoint mode: in
        // kprobe/fentry modes the call-site cache (callsite.rs) names stacks by key and
        // compares a fresh unwind with the stored one, so they stay (those modes unwind once
        // per call site, so their distinct stacks are few).
        let mut deleted = 0;
        let stack_keys = if collector.mode == crate::mode::RunMode::Tracepoint {
            keys_of::<u64>(stacks)?
        } else {
            Vec::new()
        };
        for key in stack_keys {
            if self.stacks.contains_key(&key) && delete(stacks, &key)? {
                deleted += 1;
            }
        }
        *self.drained.entry(map::STACKS.into()).or_default() += deleted;
        Ok(Snapshot {
            waits: self.waits.iter().map(|(k, v)| (*k, *v)).collect(),
            ops: self.ops.iter().map(|(k, v)| (*k, *v)).collect(),
            hists: self.hists.clone(),
            stacks: self.stacks.clone(),
            ..live
        })
    }
}

/// Every key of a hash map.
fn keys_of<K: aya::Pod>(fd: BorrowedFd<'_>) -> Result<Vec<K>> {
    let mut keys = Vec::new();
    let mut prev: Option<K> = None;
    loop {
        let mut attr = unsafe { std::mem::zeroed::<aya_obj::generated::bpf_attr>() };
        let mut next = std::mem::MaybeUninit::<K>::zeroed();
        // SAFETY: the map-element member of the bpf_attr union, which BPF_MAP_GET_NEXT_KEY
        // reads: `key` points at a K (or is 0 for the first key) and `next_key` at room for
        // one, both alive across the call.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = fd.as_raw_fd() as u32;
            if let Some(p) = &prev {
                u.key = p as *const K as u64;
            }
            u.__bindgen_anon_1.next_key = next.as_mut_ptr() as u64;
        }
        match bpf(aya_obj::generated::bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(()) => {
                // SAFETY: the kernel wrote a whole key.
                let k = unsafe { next.assume_init() };
                keys.push(k);
                prev = Some(k);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
            Err(e) => return Err(e).context("reading a BPF map's keys"),
        }
    }
}

/// One element of a map by key, `None` when absent.
fn lookup<K: aya::Pod, V: aya::Pod>(fd: BorrowedFd<'_>, key: &K) -> Result<Option<V>> {
    elem(fd, key, aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_ELEM).context("reading a BPF map")
}

fn delete<K: aya::Pod>(fd: BorrowedFd<'_>, key: &K) -> Result<bool> {
    let mut attr = unsafe { std::mem::zeroed::<aya_obj::generated::bpf_attr>() };
    // SAFETY: as in keys_of; `key` points at a K alive across the call.
    unsafe {
        let u = &mut attr.__bindgen_anon_2;
        u.map_fd = fd.as_raw_fd() as u32;
        u.key = key as *const K as u64;
    }
    match bpf(aya_obj::generated::bpf_cmd::BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e).context("deleting from a BPF map"),
    }
}

fn elem<K: aya::Pod, V: aya::Pod>(
    fd: BorrowedFd<'_>,
    key: &K,
    cmd: aya_obj::generated::bpf_cmd,
) -> std::io::Result<Option<V>> {
    let mut attr = unsafe { std::mem::zeroed::<aya_obj::generated::bpf_attr>() };
    let mut value = std::mem::MaybeUninit::<V>::zeroed();
    // SAFETY: the map-element member of bpf_attr: `key` points at a K, `value` at room for a
    // V (the map's value size: K and V are the map's own types), both alive across the call.
    unsafe {
        let u = &mut attr.__bindgen_anon_2;
        u.map_fd = fd.as_raw_fd() as u32;
        u.key = key as *const K as u64;
        u.__bindgen_anon_1.value = value.as_mut_ptr() as u64;
    }
    match bpf(cmd, &mut attr) {
        // SAFETY: the kernel wrote a whole value; V is Pod, so any bytes are a valid V.
        Ok(()) => Ok(Some(unsafe { value.assume_init() })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn bpf(cmd: aya_obj::generated::bpf_cmd, attr: &mut aya_obj::generated::bpf_attr) -> std::io::Result<()> {
    // SAFETY: bpf(2) with a zeroed attr of the kernel's layout whose pointers the callers set
    // to live memory of the map's key and value sizes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut aya_obj::generated::bpf_attr,
            std::mem::size_of::<aya_obj::generated::bpf_attr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::lock_kind::I_MMAP_RWSEM;

    fn target(ino: u64) -> LockTarget {
        LockTarget { kind: I_MMAP_RWSEM, dev: 8 << 20, ino }
    }

    /// Past the row limit, unkept files fold into one stackless row per key kind: the class
    /// totals and histograms are unchanged, the kept file keeps its rows and stacks, the
    /// stacks only folded rows named are forgotten.
    #[test]
    fn folding_keeps_totals_and_kept_files() {
        let mut t = Totals::default();
        for ino in 1..=4u64 {
            for stack in [10 * ino, 10 * ino + 1] {
                let k = ContentionKey { target: target(ino), stack, ..Default::default() };
                t.waits.insert(k, WaitStats { count: ino, total_ns: 100 * ino, max_ns: 50 * ino });
                t.stacks.insert(stack, vec![stack]);
            }
            let mut h = WaitHist::default();
            h.buckets[3] = ino;
            t.hists.insert(target(ino), h);
        }
        let sum = |t: &Totals| t.waits.values().fold((0, 0), |(c, n), v| (c + v.count, n + v.total_ns));
        let before = sum(&t);
        t.fold_unless(100, |_| false);
        assert_eq!(t.waits.len(), 8, "under the limit nothing folds");
        t.fold_unless(4, |id| id.ino == 2);
        assert_eq!(sum(&t), before);
        assert_eq!(t.waits.len(), 3, "file 2's two rows and the folded one");
        let folded = t.waits.iter().find(|(k, _)| k.target.ino == 0).unwrap();
        assert_eq!((folded.0.stack, folded.1.count, folded.1.max_ns), (0, 2 * (1 + 3 + 4), 200));
        assert_eq!(t.stacks.keys().copied().collect::<Vec<_>>(), [20, 21]);
        assert_eq!(t.hists.values().map(|h| h.buckets[3]).sum::<u64>(), 1 + 2 + 3 + 4);
        assert_eq!(t.hists.len(), 2);
    }
}
