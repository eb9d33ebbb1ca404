//! rmapprof: which files' i_mmap_rwsem is contended, from which kernel paths, for how long.
//!
//! Data path: probes (profiler-ebpf) → shared keys/values (profiler-common) → `collector` →
//! `attribution` (inode → path, stack → symbols) → `report` → `render` (text, JSON, folded, SVG).

#[macro_use]
mod console;

mod attribution;
mod btf;
mod cli;
mod collector;
mod command;
mod interval;
mod output;
mod preflight;
mod render;
mod report;
mod session;
mod signals;
mod tracefs;

use clap::Parser as _;
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
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            say!("rmapprof: {}", one_line_usage_error(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            say!("rmapprof: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.sub {
        Some(cli::Sub::Diff { ref before, ref after, ref output }) => diff(before, after, output),
        Some(cli::Sub::Model { ref reports, ref cpus, handoff_ns }) => model(reports, cpus, handoff_ns),
        None => rt.block_on(session::run(cli)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line: the error and its causes, "outer: inner".
            say!("rmapprof: {e:#}");
            if let Some(code) = e.downcast_ref::<session::Exit>() {
                return ExitCode::from(code.0);
            }
            ExitCode::from(if e.downcast_ref::<UsageError>().is_some() { 2 } else { 1 })
        }
    }
}

/// clap's several lines (message, the missing arguments' names, usage, tips) in one, as every
/// other error here: the message with the lines that complete it, and where to read more
/// (`rmapprof diff --help` for the subcommand's own arguments).
fn one_line_usage_error(text: &str) -> String {
    let mut lines = text.lines();
    let mut msg = lines.next().unwrap_or("bad arguments").trim_start_matches("error: ").trim_end().to_owned();
    // Indented lines right after the first (the missing arguments: "  <BEFORE>") belong to it.
    for l in lines.by_ref() {
        if l.trim().is_empty() || !l.starts_with(' ') {
            break;
        }
        msg = format!("{msg} {}", l.trim());
    }
    let command = text
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(|u| {
            u.split_whitespace().take_while(|w| !w.starts_with(['[', '<', '-'])).collect::<Vec<_>>().join(" ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "rmapprof".into());
    format!("{msg} (see {command} --help)")
}

fn read_report(p: &std::path::Path) -> anyhow::Result<report::Report> {
    use anyhow::Context;
    let text = std::fs::read_to_string(p).map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not an rmapprof report.json", p.display()))
}

/// `rmapprof model REPORT [AFTER]`: the serialised ceiling per CPU count.
fn model(reports: &[std::path::PathBuf], cpus: &[u32], handoff_ns: f64) -> anyhow::Result<u8> {
    if !(handoff_ns >= 0.0 && handoff_ns.is_finite()) {
        return Err(UsageError(format!("--handoff-ns {handoff_ns}: must be a number of ns >= 0")).into());
    }
    let loaded: Vec<report::Report> =
        reports.iter().map(|p| read_report(p)).collect::<anyhow::Result<_>>()?;
    let names: &[&str] = if loaded.len() == 1 { &["estimate"] } else { &["before", "after"] };
    let runs: Vec<(&str, &report::Report)> = names.iter().copied().zip(&loaded).collect();
    out!("{}", render::model::table(&runs, cpus, handoff_ns)?);
    Ok(0)
}

/// `rmapprof diff BEFORE AFTER`: needs no privileges, only the two report.json files.
fn diff(before: &std::path::Path, after: &std::path::Path, out: &std::path::Path) -> anyhow::Result<u8> {
    let (b, a) = (read_report(before)?, read_report(after)?);
    let table = render::diff::table(&b, &a);
    let dir = output::OutputDir::create(out)?;
    dir.write("diff.txt", table.as_bytes())?;
    // Widths of the before run by default: a path the change removed or cut stays readable.
    use render::diff::{flamegraph, Width};
    dir.write("diff-flamegraph.svg", &flamegraph(&b, &a, Width::Before)?)?;
    dir.write("diff-flamegraph-after.svg", &flamegraph(&b, &a, Width::After)?)?;
    out!("{table}");
    say!(
        "rmapprof: wrote diff.txt diff-flamegraph.svg (width = before) diff-flamegraph-after.svg in {}",
        out.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Missing arguments keep their names, and point at the subcommand's own --help.
    #[test]
    fn usage_errors_in_one_line_keep_the_argument_names() {
        let err =
            |args: &[&str]| one_line_usage_error(&cli::Cli::try_parse_from(args).unwrap_err().to_string());
        assert_eq!(
            err(&["rmapprof", "diff"]),
            "the following required arguments were not provided: <BEFORE> <AFTER> (see rmapprof diff --help)"
        );
        assert_eq!(
            err(&["rmapprof", "diff", "a.json"]),
            "the following required arguments were not provided: <AFTER> (see rmapprof diff --help)"
        );
        let m = err(&["rmapprof", "model"]);
        assert!(m.contains("<REPORT.json>") && m.ends_with("(see rmapprof model --help)"), "{m}");
        let b = err(&["rmapprof", "--bogus"]);
        assert!(
            b.starts_with("unexpected argument '--bogus' found") && b.ends_with("(see rmapprof --help)"),
            "{b}"
        );
        assert!(!b.contains('\n'));
    }
}
