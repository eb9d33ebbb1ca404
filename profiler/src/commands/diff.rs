//! `rmapprof diff BEFORE AFTER`: needs no privileges, only the two report.json files.

use anyhow::Result;
use std::path::Path;

use crate::{
    output,
    render::diff::{flamegraph, table, Width},
};

pub fn run(before: &Path, after: &Path, out: &Path) -> Result<u8> {
    let (b, a) = (super::read_report(before)?, super::read_report(after)?);
    let table = table(&b, &a);
    let dir = output::OutputDir::create(out)?;
    // Widths of the before run by default: a path the change removed or cut stays readable.
    let files = [
        ("diff.txt".to_owned(), table.as_bytes().to_vec()),
        ("diff-flamegraph.svg".to_owned(), flamegraph(&b, &a, Width::Before)?),
        ("diff-flamegraph-after.svg".to_owned(), flamegraph(&b, &a, Width::After)?),
    ];
    dir.write_all(&files)?;
    out!("{table}");
    say!(
        "rmapprof: wrote {} (flame graph widths: before, then after)",
        dir.listing(files.iter().map(|(name, _)| name.as_str()))
    );
    Ok(0)
}
