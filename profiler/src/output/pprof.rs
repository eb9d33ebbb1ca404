//! `--pprof FILE`: the profile written whole at every refresh (serve) or at the end (a run).

use anyhow::{Context as _, Result};
use std::path::PathBuf;

use super::OutputDir;
use crate::{render, report::Report};

/// Now, in the nanoseconds since the epoch pprof's `time_nanos` takes.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// `--pprof FILE`: its directory (which must exist: rmapprof never makes directories for it)
/// checked writable and FILE checked not to be a directory, before profiling starts, as
/// --output is; and the name to write there.
pub struct PprofFile {
    dir: OutputDir,
    name: String,
}

impl PprofFile {
    pub fn new(path: &std::path::Path) -> Result<Self> {
        let what = || format!("--pprof {}", path.display());
        let (dir, name) = super::split(path)
            .and_then(|(d, n)| Some((d, n.to_str()?.to_owned())))
            .ok_or_else(|| crate::errors::usage(format!("{}: not a file name", what())))?;
        let dir = OutputDir::existing(dir).with_context(what)?;
        if dir.is_directory(&name) {
            return Err(crate::errors::usage(format!(
                "{}: is a directory; give the name of a file to write",
                what()
            )));
        }
        Ok(Self { dir, name })
    }

    /// The profile of `report`, written whole (temporary name in FILE's directory, rename).
    pub fn write(&self, report: &Report) -> Result<PathBuf> {
        self.dir.write(&self.name, &render::pprof::profile(report, now_nanos()))
    }
}
