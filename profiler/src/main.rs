//! rmapprof: which files' i_mmap_rwsem is contended, from which kernel paths, for how long.
//!
//! Data path: probes (profiler-ebpf) → shared keys/values (profiler-common) → `collector` →
//! `attribution` (inode → path, stack → symbols) → `report` → `render` (text, JSON, folded,
//! SVG, pprof, OpenMetrics; holders.folded and holders.svg). `serve` is the daemon.

#[macro_use]
mod console;

mod attribution;
mod btf;
mod build_info;
mod cgroup;
mod cli;
mod collector;
mod commands;
mod errors;
mod interval;
mod mode;
mod model;
mod output;
mod preflight;
mod render;
mod report;
mod schema;
mod serve;
mod signals;
mod supervisor;
mod target;
mod tracefs;

use clap::Parser as _;
use std::process::ExitCode;

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
        Some(cli::Sub::Diff { ref before, ref after, ref output }) => {
            commands::diff::run(before, after, output)
        }
        Some(cli::Sub::Model { ref reports, ref cpus, handoff_ns }) => {
            commands::model::run(reports, cpus, handoff_ns)
        }
        Some(cli::Sub::Serve(args)) => rt.block_on(serve::run(args)),
        Some(cli::Sub::DistAssets { ref dir }) => commands::dist_assets::run(dir),
        // `rmapprof --`: a COMMAND was meant and none given (clap takes it as no COMMAND).
        None if cli.command.is_empty() && std::env::args_os().last().is_some_and(|a| a == "--") => {
            say!("rmapprof: `--` without a COMMAND after it: give the command to profile, or leave `--` out to profile system-wide (see rmapprof --help)");
            return ExitCode::from(2);
        }
        None => rt.block_on(commands::profile::run(cli)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line: the error and its causes, "outer: inner".
            say!("rmapprof: {e:#}");
            ExitCode::from(errors::exit_status(&e))
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
