//! Loads the eBPF programs, attaches them (attach.rs), and reads the maps they aggregate into.

mod attach;
#[cfg(test)]
mod stack_depth;

use anyhow::{anyhow, bail, Context, Result};
use attach::{attach_family, program, unload};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use profiler_common::{
    lost,
    names::{global, holder_cost, map, Family, RELEASE_TRACEPOINT, TRACEPOINTS},
    not_measured, unwind, CachedStack, CallSite, ContentionKey, HolderKey, HolderSlot, HolderWaits,
    KernelStack, LockTarget, OpKey, OpStats, ProcessName, WaitHist, WaitStats,
};
use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use crate::{
    attribution::symbols::KernelSymbols,
    btf,
    mode::{Mode, RunMode},
    schema::{MapRows, ProbeStatus, ProgramCost},
    tracefs,
};

/// The eBPF object built by build.rs from profiler-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rmapprof"));

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
    /// Every file whose i_mmap_rwsem the snapshot has a row for.
    pub fn files(&self) -> impl Iterator<Item = crate::attribution::files::FileId> + '_ {
        let waits = self.waits.iter().map(|(k, _)| k.target);
        let ops = self.ops.iter().map(|(k, _)| k.target);
        waits
            .chain(ops)
            .filter(|t| t.kind == profiler_common::lock_kind::I_MMAP_RWSEM)
            .map(|t| crate::attribution::files::FileId { dev: t.dev, ino: t.ino })
    }
}

/// Rows of the `PROCESSES` and `PROCESS_NAMES` LRU maps on a machine with `cpus` possible
/// CPUs: what the eBPF object declares plus every CPU's own free list.
pub fn lru_rows(cpus: u32) -> u32 {
    profiler_common::PROCESS_ROWS + profiler_common::LRU_FREE_PER_CPU * cpus
}

/// How kernel stacks are taken: `--max-stack`, `--stack-cache-check`.
#[derive(Clone, Copy, Debug)]
pub struct StackOptions {
    pub max_stack: u32,
    pub cache_check: u64,
}

/// Why the report's holders have no stacks without `--acquisitions`: named in `probes` (the
/// holder's task and system call are still read from the rwsem's owner field).
fn holder_stacks_unseen() -> ProbeStatus {
    ProbeStatus {
        probe: "holder stacks".into(),
        attached: false,
        error: Some(
            "a holder's stack needs --holder-stacks (taken at its release, every mode) or \
             --acquisitions (kprobe/fentry): its stack at wait time (bpf_get_task_stack) needs a \
             trusted task pointer, which only the bpf_task_from_pid kfunc gives, and aya cannot \
             emit kfunc calls"
                .into(),
        ),
    }
}

/// One row per key: a row's waits may be in `HOLDER_WAITS` and in slots of several CPUs.
fn merged_rows(rows: Vec<(HolderKey, HolderWaits)>) -> Vec<(HolderKey, WaitStats)> {
    let mut merged: std::collections::HashMap<HolderKey, WaitStats> = std::collections::HashMap::new();
    for (k, w) in rows {
        let m = merged.entry(k).or_default();
        m.count += w.stats.count;
        m.total_ns += w.stats.total_ns;
        m.max_ns = m.max_ns.max(w.stats.max_ns);
    }
    merged.into_iter().collect()
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

/// What to load and attach: the run's options that reach the kernel.
pub struct Config<'a> {
    pub mode: Mode,
    /// Kernel BTF to read struct offsets (and fentry targets) from.
    pub btf: &'a Path,
    /// Only this process's tasks; every task when None.
    pub tgid: Option<u32>,
    pub stacks: StackOptions,
    /// Keep the kernel's BPF run-time statistics on (`--bpf-stats`).
    pub bpf_stats: bool,
    /// Attach [`profiler_common::names::ACQUISITION_PROBES`] too (`--acquisitions`).
    pub acquisitions: bool,
    /// Attach [`RELEASE_TRACEPOINT`] (`--holder-stacks`).
    pub holder_stacks: bool,
    /// Keep holder rows per waiting task (`--by-task`).
    pub by_task: bool,
}

pub struct Collector {
    ebpf: Ebpf,
    pub mode: RunMode,
    pub probes: Vec<ProbeStatus>,
    /// Every acquisition is counted (`--acquisitions` in kprobe/fentry mode).
    pub acquisitions: bool,
    /// Holds the kernel's BPF run-time statistics on (BPF_ENABLE_STATS) while open.
    stats: Option<std::os::fd::OwnedFd>,
}

impl Collector {
    /// Loads and attaches the programs of `config.mode`. `auto` tries fentry, then kprobe, then
    /// tracepoints alone, and records why each failed. With `acquisitions` (kprobe/fentry only)
    /// a kernel that allows neither family is an error, not a fallback.
    pub fn start(config: &Config) -> Result<Self> {
        let Config { mode, btf: btf_path, tgid, stacks, bpf_stats, acquisitions, holder_stacks, by_task } =
            *config;
        // Before attaching, so every run is counted.
        let stats = if bpf_stats {
            Some(
                aya::sys::enable_stats(aya::sys::Stats::RunTime)
                    .context("--bpf-stats: the kernel refused BPF_ENABLE_STATS")?,
            )
        } else {
            None
        };
        let offsets = btf::lock_offsets(btf_path)?;
        let tracefs = tracefs::ensure_mounted()?;
        let tp = |event, field| tracefs::field_offset(&tracefs, "lock", event, field);
        let tp_offsets = [
            (global::TP_BEGIN_LOCK, tp("contention_begin", "lock_addr")?),
            (global::TP_BEGIN_FLAGS, tp("contention_begin", "flags")?),
            (global::TP_END_LOCK, tp("contention_end", "lock_addr")?),
        ];
        let filter = tgid.unwrap_or(0);
        let mut loader = EbpfLoader::new();
        for (name, off) in offsets.iter().chain(tp_offsets.iter()) {
            loader.override_global(name, off, true);
        }
        loader.override_global(global::FILTER_TGID, &filter, true);
        let acquisitions_global = acquisitions as u64;
        loader.override_global(global::ACQUISITIONS, &acquisitions_global, true);
        // Only to measure what holder attribution costs, against the same build.
        let holders = u64::from(std::env::var_os("RMAPPROF_NO_HOLDERS").is_none());
        loader.override_global(global::HOLDERS, &holders, true);
        let by_task = u64::from(by_task);
        loader.override_global(global::BY_TASK, &by_task, true);
        let release_stacks = u64::from(holder_stacks);
        loader.override_global(global::HOLDER_STACKS, &release_stacks, true);
        // Only to measure what holder attribution costs (docs/performance.md).
        let measure = u64::from(std::env::var_os("RMAPPROF_MEASURE_HOLDERS").is_some());
        loader.override_global(global::MEASURE_HOLDERS, &measure, true);
        let waking_pid = if holder_stacks {
            tracefs::field_offset(&tracefs, RELEASE_TRACEPOINT.category, RELEASE_TRACEPOINT.event, "pid")?
        } else {
            0
        };
        loader.override_global(global::TP_WAKING_PID, &waking_pid, true);
        let max_stack = stacks.max_stack as u64;
        loader.override_global(global::MAX_STACK, &max_stack, true);
        loader.override_global(global::STACK_CACHE_CHECK, &stacks.cache_check, true);
        // Without it (tracepoint mode, or addresses hidden) a split site is never split by a
        // hash of the stack above, only by stack words (callsite.rs).
        let (text_start, text_end) = match mode {
            Mode::Tracepoint => None,
            _ => KernelSymbols::text_range(),
        }
        .unwrap_or((0, 0));
        loader.override_global(global::TEXT_START, &text_start, true);
        loader.override_global(global::TEXT_END, &text_end, true);
        // The LRU maps keep free rows per CPU: sized so that many CPUs do not starve them.
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e).context("reading the possible CPUs")? as u32;
        for lru in [map::PROCESSES, map::PROCESS_NAMES] {
            loader.map_max_entries(lru, lru_rows(cpus));
        }
        // Fault injection for the tests: a stack table this small fills up
        // (RMAPPROF_FAULT_STACK_MAP_ENTRIES=N).
        if let Some(n) = std::env::var("RMAPPROF_FAULT_STACK_MAP_ENTRIES").ok().and_then(|v| v.parse().ok()) {
            loader.map_max_entries(map::STACKS, n);
        }
        let mut ebpf = loader.load(EBPF_OBJECT).context("loading the eBPF object")?;
        for tp in TRACEPOINTS {
            let p: &mut TracePoint = program(&mut ebpf, tp.program)?.try_into()?;
            p.load().with_context(|| format!("verifier rejected {}", tp.program))?;
        }
        let mut probes = Vec::new();
        let families: &[(Family, RunMode)] = match mode {
            Mode::Auto => &[(Family::Fentry, RunMode::Fentry), (Family::Kprobe, RunMode::Kprobe)],
            Mode::Tracepoint => &[],
            Mode::Kprobe => &[(Family::Kprobe, RunMode::Kprobe)],
            Mode::Fentry => &[(Family::Fentry, RunMode::Fentry)],
        };
        let mut used = RunMode::Tracepoint;
        for &(family, family_mode) in families {
            match attach_family(&mut ebpf, family, btf_path, acquisitions) {
                Ok(statuses) => {
                    probes.extend(statuses);
                    used = family_mode;
                    break;
                }
                Err(e) if mode == Mode::Auto => probes.push(ProbeStatus {
                    probe: format!("{} mode", family_mode.name()),
                    attached: false,
                    error: Some(format!("{e:#}")),
                }),
                Err(e) => {
                    return Err(
                        e.context(format!("--mode {} is not available on this kernel", family_mode.name()))
                    )
                }
            }
        }
        // The tracepoints go in last: the waits they count then begin no earlier than the
        // profiling window, which starts once attaching is done (in auto mode the fentry and
        // kprobe attempts come before).
        let mut tracepoints = Vec::new();
        for tp in TRACEPOINTS {
            let p: &mut TracePoint = program(&mut ebpf, tp.program)?.try_into()?;
            let (category, event) = (tp.category, tp.event);
            p.attach(category, event).with_context(|| format!("attaching {category}:{event}"))?;
            let probe = format!("tracepoint:{category}:{event}");
            tracepoints.push(ProbeStatus { probe, attached: true, error: None });
        }
        probes.splice(0..0, tracepoints);
        if holder_stacks {
            let tp = RELEASE_TRACEPOINT;
            let p: &mut TracePoint = program(&mut ebpf, tp.program)?.try_into()?;
            p.load().with_context(|| format!("verifier rejected {}", tp.program))?;
            p.attach(tp.category, tp.event)
                .with_context(|| format!("attaching {}:{}", tp.category, tp.event))?;
            probes.push(ProbeStatus { probe: "holder stacks".into(), attached: true, error: None });
        } else if !(acquisitions && used != RunMode::Tracepoint) {
            probes.push(holder_stacks_unseen());
        }
        if acquisitions && used == RunMode::Tracepoint {
            let why: Vec<String> =
                probes.iter().filter_map(|p| Some(format!("{}: {}", p.probe, p.error.as_ref()?))).collect();
            bail!(
                "--acquisitions needs kprobe or fentry mode, and this kernel allows neither ({})",
                why.join("; ")
            );
        }
        Ok(Self { ebpf, mode: used, probes, stats, acquisitions })
    }

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
        // Then the rows still in the per-CPU slots (after the hash map: a row moving from a
        // slot to the map meanwhile is missed by this read, never counted twice).
        holder_waits.extend(self.holder_slots()?);
        let process_names: HashMap<&MapData, u64, ProcessName> =
            HashMap::try_from(self.map(map::PROCESS_NAMES)?)?;
        let process_names: BTreeMap<u64, (u32, String)> =
            process_names.iter().filter_map(|r| r.ok()).map(|(i, n)| (i, (n.tgid, comm(&n.comm)))).collect();
        let mut task_names: BTreeMap<u32, (u32, String)> = BTreeMap::new();
        // The holder rows carry their tasks' names, taken when each row was new.
        for (k, w) in &holder_waits {
            for (tid, tgid, name) in
                [(k.waiter_tid, k.waiter_tgid, &w.waiter_comm), (k.holder.tid, k.holder.tgid, &w.holder_comm)]
            {
                if tid != 0 && name[0] != 0 {
                    task_names.entry(tid).or_insert_with(|| (tgid, comm(name)));
                }
            }
        }
        let mut snap = Snapshot {
            waits: waits.iter().filter_map(|r| r.ok()).collect(),
            ops,
            hists: hists.iter().filter_map(|r| r.ok()).collect(),
            holder_waits: merged_rows(holder_waits),
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
            (map::HOLDER_WAITS, snap.holder_waits.len()),
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
            let holder_keys = snap.holder_waits.iter().flat_map(|(k, _)| [k.waiter_stack, k.holder.stack]);
            let keys = snap
                .waits
                .iter()
                .map(|(k, _)| k.stack)
                .chain(snap.ops.iter().map(|(k, _)| k.stack))
                .chain(holder_keys);
            for key in keys {
                if key != 0 && !snap.stacks.contains_key(&key) {
                    if let Ok(st) = stacks.get(&key, 0) {
                        let frames = st.ips.iter().take_while(|&&ip| ip != 0).copied().collect();
                        snap.stacks.insert(key, frames);
                    }
                }
            }
        }
        Ok(snap)
    }

    /// `RMAPPROF_MEASURE_HOLDERS=1`: one line on what holder attribution cost, from the
    /// programs' own clock reads (BPF time: instructions under QEMU's `-icount`).
    fn say_holder_cost(&self) {
        if std::env::var_os("RMAPPROF_MEASURE_HOLDERS").is_none() {
            return;
        }
        let Ok(cost) = self.map(map::HOLDER_COST).and_then(|m| Ok(Array::<&MapData, u64>::try_from(m)?))
        else {
            return;
        };
        let slot = |i| cost.get(&i, 0).unwrap_or(0);
        say!(
            "rmapprof: holder attribution: {} holder reads in {} ns, {} records in {} ns, \
             {} ns of it the clock's own",
            slot(holder_cost::READS),
            slot(holder_cost::READ_NS),
            slot(holder_cost::RECORDS),
            slot(holder_cost::RECORD_NS),
            slot(holder_cost::CLOCK_NS)
        );
    }

    /// The holder rows in the per-CPU slots of `HOLDER_SLOTS`, not yet in `HOLDER_WAITS`.
    fn holder_slots(&self) -> Result<Vec<(HolderKey, HolderWaits)>> {
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

    /// Detaches every probe, then reads the maps one last time.
    pub fn stop(mut self) -> Result<Snapshot> {
        self.say_holder_cost();
        let cost = self.stats.is_some().then(|| self.program_costs());
        // Unloading closes the programs, and their counters with them.
        let recursion_misses = self.recursion_misses();
        for (_, p) in self.ebpf.programs_mut() {
            let _ = unload(p);
        }
        let mut snap = self.snapshot(true)?;
        snap.cost = cost;
        snap.lost.insert(lost::RECURSION_MISSES.to_owned(), recursion_misses.values().sum());
        snap.recursion_misses = recursion_misses;
        Ok(snap)
    }

    /// Each loaded program's `recursion_misses`, where not zero. The kernel counts them
    /// whether or not BPF statistics are on, and shows them in the program's fdinfo (aya's
    /// ProgramInfo does not carry the field).
    fn recursion_misses(&self) -> BTreeMap<String, u64> {
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

    /// `--bpf-stats`: runs and run time of our programs so far (the daemon publishes them).
    pub fn costs(&self) -> Option<Vec<ProgramCost>> {
        self.stats.is_some().then(|| self.program_costs())
    }

    /// An aggregation hash map's descriptor, for the daemon's drain (serve/totals.rs).
    pub fn map_fd(&self, name: &str) -> Result<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self.map(name)? {
            aya::maps::Map::HashMap(m) => Ok(m.fd().as_fd()),
            _ => bail!("map {name} is not a hash map"),
        }
    }

    /// Runs and run time of each loaded program of ours, most expensive first.
    fn program_costs(&self) -> Vec<ProgramCost> {
        let mut v: Vec<ProgramCost> = self
            .ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(ProgramCost {
                    program: name.to_owned(),
                    runs: info.run_count(),
                    ns: info.run_time().as_nanos() as u64,
                    verified_insns: info.verified_instruction_count(),
                })
            })
            .filter(|c| c.runs > 0)
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.ns));
        v
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::names::{ACQUISITION_PROBES, WAIT_PROBES};

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

    /// profiler-common's names are the contract between the two sides: every map, global and
    /// program userspace names is in the eBPF object it embeds, each program in the section of
    /// its kind (which is what the kernel attaches it as).
    #[test]
    fn the_embedded_object_has_every_name_userspace_uses() {
        use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
        let elf = object::File::parse(EBPF_OBJECT).expect("the embedded eBPF object is ELF");
        let section_of = |name: &str| -> Option<String> {
            let index = elf.symbol_by_name(name)?.section_index()?;
            Some(elf.section_by_index(index).ok()?.name().ok()?.to_owned())
        };
        let maps = [map::LOST, map::UNWIND, map::NOT_MEASURED].into_iter().chain(map::AGGREGATION);
        for name in maps {
            assert_eq!(section_of(name).as_deref(), Some("maps"), "map {name}");
        }
        let globals = [
            global::TP_BEGIN_LOCK,
            global::TP_BEGIN_FLAGS,
            global::TP_END_LOCK,
            global::MAX_STACK,
            global::FILTER_TGID,
            global::ACQUISITIONS,
            global::STACK_CACHE_CHECK,
            global::TEXT_START,
            global::TEXT_END,
            global::PT_REGS_SIZE,
            global::HOLDERS,
            global::HOLDER_STACKS,
            global::TP_WAKING_PID,
            global::MEASURE_HOLDERS,
            global::BY_TASK,
        ];
        for name in globals.into_iter().chain(global::OFFSETS.map(|(g, _, _)| g)) {
            assert_eq!(section_of(name).as_deref(), Some(".rodata"), "global {name}");
        }
        for tp in TRACEPOINTS.into_iter().chain([RELEASE_TRACEPOINT]) {
            assert_eq!(section_of(tp.program).as_deref(), Some("tracepoint"), "{}", tp.program);
        }
        assert_eq!(section_of(map::RELEASES).as_deref(), Some("maps"));
        assert_eq!(section_of(map::HOLDER_COST).as_deref(), Some("maps"));
        assert_eq!(section_of(map::HOLDER_SLOTS).as_deref(), Some("maps"));
        for probe in WAIT_PROBES.iter().chain(ACQUISITION_PROBES) {
            for family in [Family::Kprobe, Family::Fentry] {
                let (program, kind) = (probe.program(family), probe.kind(family));
                assert_eq!(section_of(program).as_deref(), Some(kind), "{program} on {}", probe.function);
            }
        }
    }
}
