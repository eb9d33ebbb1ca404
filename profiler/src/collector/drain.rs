//! The daemon's totals since it started, and the drain that keeps the kernel's maps small.
//!
//! A one-shot run reads the kernel's maps at its end; a daemon that ran for days would fill
//! them (16 k contention rows, 64 k operation rows, 16 k holder rows, 16 k stacks), and a full
//! map loses events. So at every refresh the daemon drains every map `names::map::READS` marks
//! `Drain`: it reads every row and adds what the row gained since the last read to the totals
//! here (a row's counters only grow while it exists), and it evicts the rows that gained
//! nothing over a whole refresh period: each is read and deleted in one
//! `BPF_MAP_LOOKUP_AND_DELETE_ELEM`, what it gained in between is added too, and the kernel
//! starts the row again from zero at its next event. A busy row is never deleted, so its
//! events cannot land on a deleted copy. The stacks those rows name (waiters', holders' and
//! holders' releases') are copied here first and, in tracepoint mode, only then deleted from
//! the kernel's stack map (a row created later with the same stack key names the same frames:
//! the key is a hash of them). The kernel's maps then hold the rows active in the last period
//! or two, and the totals only grow: every counter the daemon publishes is monotonic.
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
//! inode 0), with no stack and no task. The class totals, `[other]` and every promoted file's
//! series stay as they were; the folded files' call paths and holders are gone from the
//! profile (their time stays, under the folded file's root), and a folded file seen again
//! counts from then.

use anyhow::{Context as _, Result};
use profiler_common::{
    lock_kind::I_MMAP_RWSEM,
    names::map::{self, Read},
    ContentionKey, Grows, Holder, HolderKey, HolderWaits, KernelStack, LockTarget, OpKey, OpStats, WaitHist,
    WaitStats,
};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::Hash,
    os::fd::BorrowedFd,
};

use super::{
    bpf_sys::{delete, elem, keys_of, lookup},
    snapshot::NamesStacks,
};

/// Rows of the totals past which unpromoted files are folded.
pub const MAX_ROWS: usize = 50_000;

/// Where folded files' rows go: no real file is device 0:0, inode 0.
const FOLDED: (u32, u64) = (0, 0);

/// The totals of one drained map, and each kernel row's value when last read: what a row
/// gains after is what is added.
struct Drained<K, V> {
    total: HashMap<K, V>,
    seen: HashMap<K, V>,
}

impl<K, V> Default for Drained<K, V> {
    fn default() -> Self {
        Self { total: HashMap::new(), seen: HashMap::new() }
    }
}

impl<K: aya::Pod + Eq + Hash + NamesStacks, V: Grows + aya::Pod + PartialEq + Default> Drained<K, V> {
    /// Reads every row of the kernel's map, adds what each gained since it was last read, and
    /// evicts the rows that gained nothing since then (adding what they gained between that
    /// read and their deletion). Returns the stacks the rows read name, and the number
    /// evicted.
    fn drain(&mut self, fd: BorrowedFd<'_>) -> Result<(Vec<u64>, u64)> {
        let mut stacks = Vec::new();
        let mut evicted = 0;
        for key in keys_of::<K>(fd)? {
            let Some(now) = lookup::<K, V>(fd, &key)? else { continue };
            stacks.extend(key.stacks());
            match self.seen.get(&key) {
                Some(before) if *before == now => {
                    let last =
                        elem::<K, V>(fd, &key, aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_ELEM)
                            .context(
                            "evicting a BPF map row (BPF_MAP_LOOKUP_AND_DELETE_ELEM, Linux 5.14 or later)",
                        )?;
                    if let Some(last) = last {
                        self.total.entry(key).or_default().add(&last.since(before));
                        evicted += 1;
                    }
                    self.seen.remove(&key);
                }
                before => {
                    let gained = before.map_or(now, |b| now.since(b));
                    self.total.entry(key).or_default().add(&gained);
                    self.seen.insert(key, now);
                }
            }
        }
        Ok((stacks, evicted))
    }

    /// Re-keys every row `fold` gives a new key for, adding rows that meet.
    fn fold(&mut self, fold: impl Fn(&K) -> Option<K>) {
        for (k, v) in std::mem::take(&mut self.total) {
            self.total.entry(fold(&k).unwrap_or(k)).or_default().add(&v);
        }
    }

    fn rows(&self) -> Vec<(K, V)> {
        self.total.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// What the daemon measured since it started (see the module's comment).
#[derive(Default)]
pub struct Totals {
    waits: Drained<ContentionKey, WaitStats>,
    ops: Drained<OpKey, OpStats>,
    hists: Drained<LockTarget, WaitHist>,
    holders: Drained<HolderKey, HolderWaits>,
    /// Every stack a drained row named, by its key: frames leaf first.
    stacks: BTreeMap<u64, Vec<u64>>,
    /// Idle rows evicted from each kernel map since the start.
    pub drained: BTreeMap<String, u64>,
    /// Times files were folded for memory (see the module's comment).
    pub folds: u64,
}

/// The drain's view of the kernel: a drained map's descriptor by name, and whether stacks may
/// be deleted from the kernel (tracepoint mode).
pub struct Kernel<'a> {
    pub fd: &'a dyn Fn(&str) -> Result<BorrowedFd<'a>>,
    pub delete_stacks: bool,
}

impl Totals {
    /// Moves what every drained map gained into the totals. `known_stacks` are the frames a
    /// snapshot just copied; stacks of rows created since are copied here.
    pub fn drain(&mut self, kernel: &Kernel, known_stacks: &BTreeMap<u64, Vec<u64>>) -> Result<()> {
        for (key, frames) in known_stacks {
            self.stacks.entry(*key).or_insert_with(|| frames.clone());
        }
        let fd = kernel.fd;
        let mut named = Vec::new();
        // Every map the contract marks `Drain`, the stacks last (they are what the others name).
        for (name, _) in map::READS.iter().filter(|(_, r)| *r == Read::Drain) {
            let (stacks, n) = match *name {
                map::CONTENTION => self.waits.drain(fd(name)?)?,
                map::OPS => self.ops.drain(fd(name)?)?,
                map::WAIT_HIST => self.hists.drain(fd(name)?)?,
                map::HOLDER_WAITS => self.holders.drain(fd(name)?)?,
                map::STACKS => continue,
                other => anyhow::bail!("no drain for the map {other}, which names::map::READS marks Drain"),
            };
            named.extend(stacks);
            *self.drained.entry((*name).to_owned()).or_default() += n;
        }
        let stacks = fd(map::STACKS)?;
        for key in named {
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
        if kernel.delete_stacks {
            for key in keys_of::<u64>(stacks)? {
                if self.stacks.contains_key(&key) && delete(stacks, &key)? {
                    deleted += 1;
                }
            }
        }
        *self.drained.entry(map::STACKS.to_owned()).or_default() += deleted;
        Ok(())
    }

    pub fn waits(&self) -> Vec<(ContentionKey, WaitStats)> {
        self.waits.rows()
    }

    pub fn ops(&self) -> Vec<(OpKey, OpStats)> {
        self.ops.rows()
    }

    pub fn hists(&self) -> BTreeMap<LockTarget, WaitHist> {
        self.hists.total.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn holders(&self) -> Vec<(HolderKey, HolderWaits)> {
        self.holders.rows()
    }

    pub fn stacks(&self) -> BTreeMap<u64, Vec<u64>> {
        self.stacks.clone()
    }

    /// Folds the rows of every i_mmap_rwsem file (`dev`, `ino`) that `keep` does not keep into
    /// [`FOLDED`]'s, once the totals hold more than `max_rows` rows; then forgets the stacks
    /// no row names.
    pub fn fold_unless(&mut self, max_rows: usize, keep: impl Fn(u32, u64) -> bool) {
        let rows = self.waits.total.len() + self.ops.total.len() + self.holders.total.len();
        if rows <= max_rows {
            return;
        }
        let fold = |t: &LockTarget| {
            (t.kind == I_MMAP_RWSEM && !keep(t.dev, t.ino)).then_some(LockTarget {
                dev: FOLDED.0,
                ino: FOLDED.1,
                ..*t
            })
        };
        self.waits.fold(|k| Some(ContentionKey { target: fold(&k.target)?, stack: 0, ..*k }));
        self.ops.fold(|k| Some(OpKey { target: fold(&k.target)?, stack: 0, ..*k }));
        self.hists.fold(fold);
        // A folded holder row keeps what is known of the holder (its state), not who it was.
        self.holders.fold(|k| {
            Some(HolderKey {
                target: fold(&k.target)?,
                waiter_stack: 0,
                waiter_tid: 0,
                waiter_tgid: 0,
                holder: Holder { state: k.holder.state, ..Default::default() },
                ..*k
            })
        });
        // Only the kernel's rows are compared with what was last read: the folded totals are
        // keyed anew, the kernel's rows are not.
        let waits = self.waits.total.keys().flat_map(NamesStacks::stacks);
        let ops = self.ops.total.keys().flat_map(NamesStacks::stacks);
        let holders = self.holders.total.keys().flat_map(NamesStacks::stacks);
        let named: HashSet<u64> = waits.chain(ops).chain(holders).collect();
        self.stacks.retain(|k, _| named.contains(k));
        self.folds += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::holder_state;

    fn target(ino: u64) -> LockTarget {
        LockTarget { kind: I_MMAP_RWSEM, dev: 8 << 20, ino }
    }

    /// Past the row limit, unkept files fold into one stackless row per key kind: the class
    /// totals and histograms are unchanged, the kept file keeps its rows and stacks (its
    /// holders' included), the stacks only folded rows named are forgotten.
    #[test]
    fn folding_keeps_totals_and_kept_files() {
        let mut t = Totals::default();
        for ino in 1..=4u64 {
            for stack in [10 * ino, 10 * ino + 1] {
                let k = ContentionKey { target: target(ino), stack, ..Default::default() };
                t.waits.total.insert(k, WaitStats { count: ino, total_ns: 100 * ino, max_ns: 50 * ino });
                t.stacks.insert(stack, vec![stack]);
            }
            let mut h = WaitHist::default();
            h.buckets[3] = ino;
            t.hists.total.insert(target(ino), h);
            let holder = Holder {
                state: holder_state::WRITER,
                tid: 100 + ino as u32,
                stack: 1000 + ino,
                ..Default::default()
            };
            let k = HolderKey { target: target(ino), waiter_stack: 10 * ino, holder, ..Default::default() };
            t.holders.total.insert(
                k,
                HolderWaits { stats: WaitStats { count: ino, total_ns: 1, max_ns: 1 }, ..Default::default() },
            );
            t.stacks.insert(1000 + ino, vec![1000 + ino]);
        }
        let sum = |t: &Totals| t.waits.total.values().fold((0, 0), |(c, n), v| (c + v.count, n + v.total_ns));
        let before = sum(&t);
        t.fold_unless(100, |_, _| false);
        assert_eq!(t.waits.total.len(), 8, "under the limit nothing folds");
        t.fold_unless(4, |_, ino| ino == 2);
        assert_eq!(sum(&t), before);
        assert_eq!(t.waits.total.len(), 3, "file 2's two rows and the folded one");
        let folded = t.waits.total.iter().find(|(k, _)| k.target.ino == 0).unwrap();
        assert_eq!((folded.0.stack, folded.1.count, folded.1.max_ns), (0, 2 * (1 + 3 + 4), 200));
        assert_eq!(t.stacks.keys().copied().collect::<Vec<_>>(), [20, 21, 1002]);
        assert_eq!(t.hists.total.values().map(|h| h.buckets[3]).sum::<u64>(), 1 + 2 + 3 + 4);
        assert_eq!(t.hists.total.len(), 2);
        assert_eq!(t.holders.total.len(), 2, "file 2's holder row and the folded one");
        let h = t.holders.total.iter().find(|(k, _)| k.target.ino == 0).unwrap();
        assert_eq!((h.0.holder.tid, h.0.holder.state, h.1.stats.count), (0, holder_state::WRITER, 1 + 3 + 4));
    }
}
