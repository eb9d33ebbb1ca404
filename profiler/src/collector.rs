//! Loads the eBPF programs, attaches them, and reads the maps they aggregate into.

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap, MapData, StackTraceMap},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use profiler_common::{lost, ContentionKey, LockTarget, WaitHist, WaitStats};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

use crate::{btf, tracefs};

/// The eBPF object built by build.rs from profiler-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rmapprof"));

/// How rmapprof observes the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// fentry/fexit if the kernel allows, else kprobe, else tracepoint.
    Auto,
    /// lock:contention_begin/end: sleeping waits only; optimistic spinning is invisible.
    Tracepoint,
    /// kprobes/kretprobes on the rwsem slowpaths and osq_lock.
    Kprobe,
    /// fentry/fexit on the same functions.
    Fentry,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Tracepoint => "tracepoint",
            Mode::Kprobe => "kprobe",
            Mode::Fentry => "fentry",
        }
    }
}

/// One probe and whether it attached, for the report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeStatus {
    pub probe: String,
    pub attached: bool,
    pub error: Option<String>,
}

/// Everything the maps hold at one moment.
#[derive(Default)]
pub struct Snapshot {
    pub waits: Vec<(ContentionKey, WaitStats)>,
    pub hists: BTreeMap<LockTarget, WaitHist>,
    pub lost: BTreeMap<String, u64>,
    /// Kernel stacks by id, leaf first, as the kernel records them.
    pub stacks: BTreeMap<i32, Vec<u64>>,
}

pub struct Collector {
    ebpf: Ebpf,
    pub mode: Mode,
    pub probes: Vec<ProbeStatus>,
}

const TRACEPOINTS: [(&str, &str); 2] =
    [("contention_begin", "contention_begin"), ("contention_end", "contention_end")];

impl Collector {
    /// Loads and attaches the programs of `mode`; `tgid` restricts them to one process.
    pub fn start(mode: Mode, btf_path: &Path, tgid: Option<u32>) -> Result<Self> {
        let mode = match mode {
            Mode::Auto | Mode::Tracepoint => Mode::Tracepoint,
            m => return Err(anyhow!("--mode {} is not available yet; use --mode tracepoint", m.name())),
        };
        let offsets = btf::lock_offsets(btf_path)?;
        let tracefs = tracefs::ensure_mounted()?;
        let tp = |event, field| tracefs::field_offset(&tracefs, "lock", event, field);
        let tp_offsets = [
            ("TP_BEGIN_LOCK", tp("contention_begin", "lock_addr")?),
            ("TP_BEGIN_FLAGS", tp("contention_begin", "flags")?),
            ("TP_END_LOCK", tp("contention_end", "lock_addr")?),
        ];
        let filter = tgid.unwrap_or(0);
        let mut loader = EbpfLoader::new();
        for (name, off) in offsets.iter().chain(tp_offsets.iter()) {
            loader.override_global(name, off, true);
        }
        loader.override_global("FILTER_TGID", &filter, true);
        let mut ebpf = loader.load(EBPF_OBJECT).context("loading the eBPF object")?;
        let mut probes = Vec::new();
        for (prog, event) in TRACEPOINTS {
            let p: &mut TracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| anyhow!("program {prog} missing from the eBPF object"))?
                .try_into()?;
            p.load().with_context(|| format!("verifier rejected {prog}"))?;
            p.attach("lock", event).with_context(|| format!("attaching lock:{event}"))?;
            probes.push(ProbeStatus {
                probe: format!("tracepoint:lock:{event}"),
                attached: true,
                error: None,
            });
        }
        Ok(Self { ebpf, mode, probes })
    }

    /// Reads the maps; `with_stacks` also copies the kernel stacks they reference.
    pub fn snapshot(&self, with_stacks: bool) -> Result<Snapshot> {
        let waits: HashMap<&MapData, ContentionKey, WaitStats> = HashMap::try_from(self.map("CONTENTION")?)?;
        let hists: HashMap<&MapData, LockTarget, WaitHist> = HashMap::try_from(self.map("WAIT_HIST")?)?;
        let lost_map: Array<&MapData, u64> = Array::try_from(self.map("LOST")?)?;
        let mut snap = Snapshot {
            waits: waits.iter().filter_map(|r| r.ok()).collect(),
            hists: hists.iter().filter_map(|r| r.ok()).collect(),
            ..Default::default()
        };
        for (i, name) in lost::NAMES.iter().enumerate() {
            snap.lost.insert((*name).to_owned(), lost_map.get(&(i as u32), 0).unwrap_or(0));
        }
        if with_stacks {
            let stacks: StackTraceMap<&MapData> = StackTraceMap::try_from(self.map("STACKS")?)?;
            for (key, _) in &snap.waits {
                if key.stack_id >= 0 && !snap.stacks.contains_key(&key.stack_id) {
                    if let Ok(st) = stacks.get(&(key.stack_id as u32), 0) {
                        let ips = st.frames().iter().map(|f| f.ip).collect();
                        snap.stacks.insert(key.stack_id, ips);
                    }
                }
            }
        }
        Ok(snap)
    }

    /// Detaches every probe, then reads the maps one last time.
    pub fn stop(mut self) -> Result<Snapshot> {
        for (prog, _) in TRACEPOINTS {
            if let Some(p) = self.ebpf.program_mut(prog) {
                let p: &mut TracePoint = p.try_into()?;
                let _ = p.unload();
            }
        }
        self.snapshot(true)
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }
}
