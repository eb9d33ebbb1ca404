//! Attaching and detaching the programs: the lock tracepoints, and one probe family
//! (kprobe or fentry) from profiler-common's probe tables.

use anyhow::{anyhow, Context, Result};
use aya::{programs::Program, Btf, Ebpf};
use profiler_common::names::{Family, ACQUISITION_PROBES, WAIT_PROBES};
use std::path::Path;

use crate::schema::ProbeStatus;

pub(super) fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Program> {
    ebpf.program_mut(name).ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))
}

pub(super) fn unload(p: &mut Program) -> Result<(), aya::programs::ProgramError> {
    match p {
        Program::TracePoint(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        _ => Ok(()),
    }
}

/// Attaches one probe family. The first probe failing means the family is unusable here (no
/// kprobes, fentry refused) and is an error; a later one failing (function missing, renamed or
/// inlined on this kernel) is recorded and skipped.
pub(super) fn attach_family(
    ebpf: &mut Ebpf,
    family: Family,
    btf_path: &Path,
    acquisitions: bool,
) -> Result<Vec<ProbeStatus>> {
    let btf = match family {
        Family::Fentry => {
            Some(Btf::parse_file(btf_path, aya::Endianness::default()).context("reading BTF for fentry")?)
        }
        Family::Kprobe => None,
    };
    let mut statuses = Vec::new();
    let mut loaded = std::collections::HashSet::new();
    // Fault injection for the tests: probe a name this kernel lacks instead of FUNC, as if it
    // had been renamed or inlined (RMAPPROF_FAULT_MISSING_PROBE=FUNC).
    let missing = std::env::var("RMAPPROF_FAULT_MISSING_PROBE").ok();
    let extra = if acquisitions { ACQUISITION_PROBES } else { &[] };
    for (i, probe) in WAIT_PROBES.iter().chain(extra).enumerate() {
        let func = probe.function;
        let renamed;
        let func = if missing.as_deref() == Some(func) {
            renamed = format!("{func}_renamed_by_rmapprof_test");
            renamed.as_str()
        } else {
            func
        };
        let (prog, kind) = (probe.program(family), probe.kind(family));
        let res: Result<()> = (|| {
            let p = program(ebpf, prog)?;
            match p {
                Program::KProbe(p) => {
                    if loaded.insert(prog) {
                        p.load()?;
                    }
                    p.attach(func, 0)?;
                }
                Program::FEntry(p) => {
                    p.load(func, btf.as_ref().unwrap())?;
                    p.attach()?;
                }
                Program::FExit(p) => {
                    p.load(func, btf.as_ref().unwrap())?;
                    p.attach()?;
                }
                _ => return Err(anyhow!("{prog} is not a {kind} program")),
            }
            Ok(())
        })();
        let probe = format!("{kind}:{func}");
        match res {
            Ok(()) => statuses.push(ProbeStatus { probe, attached: true, error: None }),
            Err(e) if i == 0 => {
                // Leave nothing of this family behind before the caller falls back.
                for (_, p) in ebpf.programs_mut() {
                    if !matches!(p, Program::TracePoint(_)) {
                        let _ = unload(p);
                    }
                }
                return Err(e.context(probe));
            }
            Err(e) => statuses.push(ProbeStatus { probe, attached: false, error: Some(format!("{e:#}")) }),
        }
    }
    Ok(statuses)
}
