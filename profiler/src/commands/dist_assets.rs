//! `rmapprof dist-assets DIR` (hidden; `cargo xtask dist` runs it): the man pages and shell
//! completions, generated from the clap definitions so that they say what this binary takes.

use anyhow::{Context, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;
use std::path::Path;

use crate::cli::Cli;

/// Writes DIR/man1/rmapprof.1, DIR/man1/rmapprof-SUB.1 for each visible subcommand, and
/// DIR/completions/{rmapprof.bash,_rmapprof,rmapprof.fish} and DIR/report.schema.json. DIR must not exist: it is made
/// here, so nothing in it can have been planted by another user.
pub fn run(dir: &Path) -> Result<u8> {
    std::fs::create_dir(dir)
        .with_context(|| format!("cannot create {} (it must not exist)", dir.display()))?;
    let man = dir.join("man1");
    let completions = dir.join("completions");
    std::fs::create_dir(&man)?;
    std::fs::create_dir(&completions)?;
    let mut cmd = Cli::command();
    // One page per command, hidden ones left out: rmapprof.1, rmapprof-diff.1, ...
    clap_mangen::generate_to(cmd.clone(), &man).context("writing the man pages")?;
    let schema = serde_json::to_string_pretty(&crate::schema::json_schema())? + "\n";
    std::fs::write(dir.join("report.schema.json"), schema).context("writing report.schema.json")?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "rmapprof", &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    Ok(0)
}
