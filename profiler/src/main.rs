//! rmapprof: which files' i_mmap_rwsem is contended, from which kernel paths, for how long.
//!
//! Data path: probes (profiler-ebpf) → shared keys/values (profiler-common) → `collector` →
//! `attribution` (inode → path, stack → symbols) → `report` → `render` (text, JSON, folded, SVG).

mod attribution;
mod btf;
mod cli;
mod collector;
mod output;
mod preflight;
mod render;
mod report;
mod session;
mod tracefs;

use clap::Parser;
use std::process::ExitCode;

/// An error in what the user asked for (exit 2), as opposed to one in running it (exit 1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rmapprof: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(session::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line: the error and its causes, "outer: inner".
            eprintln!("rmapprof: {e:#}");
            if let Some(code) = e.downcast_ref::<session::Exit>() {
                return ExitCode::from(code.0);
            }
            ExitCode::from(if e.downcast_ref::<UsageError>().is_some() { 2 } else { 1 })
        }
    }
}
