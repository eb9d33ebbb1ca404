//! `rmapprof model REPORT [AFTER]`: the serialised ceiling per CPU count.

use anyhow::Result;
use std::path::PathBuf;

use crate::{errors::UsageError, render, report::Report};

pub fn run(reports: &[PathBuf], cpus: &[u32], handoff_ns: f64) -> Result<u8> {
    if !(handoff_ns >= 0.0 && handoff_ns.is_finite()) {
        return Err(UsageError(format!("--handoff-ns {handoff_ns}: must be a number of ns >= 0")).into());
    }
    let loaded: Vec<Report> = reports.iter().map(|p| super::read_report(p)).collect::<Result<_>>()?;
    let names: &[&str] = if loaded.len() == 1 { &["estimate"] } else { &["before", "after"] };
    let runs: Vec<(&str, &Report)> = names.iter().copied().zip(&loaded).collect();
    out!("{}", render::model::table(&runs, cpus, handoff_ns)?);
    Ok(0)
}
