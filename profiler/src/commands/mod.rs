//! rmapprof's subcommands, one module each: `profile` (no subcommand: a profiling run),
//! `diff` and `model` (saved reports).

pub mod diff;
pub mod model;
pub mod profile;

use anyhow::{Context, Result};
use std::path::Path;

use crate::{errors::UsageError, report::Report};

/// A saved report.json. One that is not (another tool's JSON, a report of an older rmapprof
/// whose fields were renamed) is a one-line error naming the file and the first field that
/// does not fit.
fn read_report(p: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(p).map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not an rmapprof report.json", p.display()))
}
