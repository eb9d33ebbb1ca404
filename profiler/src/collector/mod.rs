//! Loads the eBPF programs, attaches them (attach.rs), and reads the maps they aggregate into.

mod attach;
mod bpf_sys;
#[cfg(test)]
mod contract;
mod drain;
mod snapshot;
#[cfg(test)]
mod stack_depth;

pub use drain::MAX_ROWS;
pub use snapshot::Snapshot;

use anyhow::{anyhow, bail, Context, Result};
use attach::{attach_family, program, unload};
use aya::{
    maps::{Array, MapData},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use profiler_common::{
    lost,
    names::{global, holder_cost, map, Family, RELEASE_TRACEPOINT, TRACEPOINTS},
    Offsets,
};
use std::{collections::BTreeMap, os::fd::AsFd as _, path::Path};

use crate::{
    btf,
    mode::{Mode, RunMode},
    schema::{ProbeStatus, ProgramCost},
    tracefs,
};

/// The eBPF object built by build.rs from profiler-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rmapprof-ebpf"));

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
    /// The kernel's text, `_stext`..`_etext` (kprobe/fentry modes split a call site by a hash
    /// of the stack above it, which needs them); None where addresses are hidden.
    pub text_range: Option<(u64, u64)>,
}

pub struct Collector {
    ebpf: Ebpf,
    pub mode: RunMode,
    pub probes: Vec<ProbeStatus>,
    /// Every acquisition is counted (`--acquisitions` in kprobe/fentry mode).
    pub acquisitions: bool,
    /// Holds the kernel's BPF run-time statistics on (BPF_ENABLE_STATS) while open.
    stats: Option<std::os::fd::OwnedFd>,
    /// What [`Collector::drain`] moved out of the kernel's maps.
    totals: drain::Totals,
}

impl Collector {
    /// Loads and attaches the programs of `config.mode`. `auto` tries fentry, then kprobe, then
    /// tracepoints alone, and records why each failed. With `acquisitions` (kprobe/fentry only)
    /// a kernel that allows neither family is an error, not a fallback.
    pub fn start(config: &Config) -> Result<Self> {
        let Config {
            mode,
            btf: btf_path,
            tgid,
            stacks,
            bpf_stats,
            acquisitions,
            holder_stacks,
            by_task,
            text_range,
        } = *config;
        // Before attaching, so every run is counted.
        let stats = if bpf_stats {
            Some(
                aya::sys::enable_stats(aya::sys::Stats::RunTime)
                    .context("--bpf-stats: the kernel refused BPF_ENABLE_STATS")?,
            )
        } else {
            None
        };
        let tracefs = tracefs::ensure_mounted()?;
        let tp = |event, field| tracefs::field_offset(&tracefs, "lock", event, field);
        let offsets = Offsets {
            tp_begin_lock: tp("contention_begin", "lock_addr")?,
            tp_begin_flags: tp("contention_begin", "flags")?,
            tp_end_lock: tp("contention_end", "lock_addr")?,
            tp_waking_pid: if holder_stacks {
                let t = RELEASE_TRACEPOINT;
                tracefs::field_offset(&tracefs, t.category, t.event, "pid")?
            } else {
                0
            },
            ..btf::lock_offsets(btf_path)?
        };
        let on = u64::from;
        let env_set = |var| std::env::var_os(var).is_some();
        // Without the text range (tracepoint mode, or addresses hidden) a split site is never
        // split by a hash of the stack above, only by stack words (callsite.rs).
        let (text_start, text_end) = match mode {
            Mode::Tracepoint => None,
            _ => text_range,
        }
        .unwrap_or((0, 0));
        let run_config = profiler_common::Config {
            filter_tgid: tgid.map_or(0, u64::from),
            max_stack: u64::from(stacks.max_stack),
            acquisitions: on(acquisitions),
            stack_cache_check: stacks.cache_check,
            text_start,
            text_end,
            // Off only to measure what holder attribution costs, against the same build.
            holders: on(!env_set("RMAPPROF_NO_HOLDERS")),
            holder_stacks: on(holder_stacks),
            // Only to measure what holder attribution costs (docs/performance.md).
            measure_holders: on(env_set("RMAPPROF_MEASURE_HOLDERS")),
            by_task: on(by_task),
        };
        let mut loader = EbpfLoader::new();
        loader.override_global(global::CONFIG, &run_config, true);
        loader.override_global(global::OFFSETS, &offsets, true);
        // The LRU maps keep free rows per CPU: sized so that many CPUs do not starve them.
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e).context("reading the possible CPUs")? as u32;
        for lru in [map::PROCESSES, map::PROCESS_NAMES] {
            loader.map_max_entries(lru, lru_rows(cpus));
        }
        // Fault injection for the tests: maps this small fill up
        // (RMAPPROF_FAULT_STACK_MAP_ENTRIES=N, RMAPPROF_FAULT_HOLDER_MAP_ENTRIES=N).
        for (var, name) in [
            ("RMAPPROF_FAULT_STACK_MAP_ENTRIES", map::STACKS),
            ("RMAPPROF_FAULT_HOLDER_MAP_ENTRIES", map::HOLDER_WAITS),
        ] {
            if let Some(n) = std::env::var(var).ok().and_then(|v| v.parse().ok()) {
                loader.map_max_entries(name, n);
            }
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
        Ok(Self { ebpf, mode: used, probes, stats, acquisitions, totals: drain::Totals::default() })
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

    /// `--bpf-stats`: runs and run time of our programs so far (the daemon publishes them).
    pub fn costs(&self) -> Option<Vec<ProgramCost>> {
        self.stats.is_some().then(|| self.program_costs())
    }

    /// The daemon's read: a snapshot of what was measured since the start. Every map
    /// `names::map::READS` marks `Drain` is moved into totals kept here, its idle rows evicted
    /// (drain.rs), so the kernel's maps stay small however long the daemon runs.
    pub fn drain(&mut self) -> Result<Snapshot> {
        let live = self.snapshot(true)?;
        let ebpf = &self.ebpf;
        let fd = |name: &str| -> Result<std::os::fd::BorrowedFd<'_>> {
            match ebpf.map(name) {
                Some(aya::maps::Map::HashMap(m)) => Ok(m.fd().as_fd()),
                _ => bail!("map {name} is not a hash map of the eBPF object"),
            }
        };
        let kernel = drain::Kernel { fd: &fd, delete_stacks: self.mode == RunMode::Tracepoint };
        self.totals.drain(&kernel, &live.stacks)?;
        // The rows in the slots are not drained: they move to `HOLDER_WAITS` when their slot
        // takes another row, and are counted there from then.
        let mut holders = self.totals.holders();
        holders.extend(self.holder_slots()?);
        let (holder_waits, task_names) = snapshot::holder_view(holders);
        Ok(Snapshot {
            waits: self.totals.waits(),
            ops: self.totals.ops(),
            hists: self.totals.hists(),
            holder_waits,
            task_names,
            stacks: self.totals.stacks(),
            cost: self.costs(),
            ..live
        })
    }

    /// Folds the drained totals of the files `keep` (device, inode) does not keep, past
    /// `max_rows` rows (drain.rs).
    pub fn fold_unless(&mut self, max_rows: usize, keep: impl Fn(u32, u64) -> bool) {
        self.totals.fold_unless(max_rows, keep)
    }

    /// Idle rows evicted from each kernel map by the drain, and times files were folded.
    pub fn drained(&self) -> (BTreeMap<String, u64>, u64) {
        (self.totals.drained.clone(), self.totals.folds)
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
