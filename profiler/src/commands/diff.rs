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
    dir.write("diff.txt", table.as_bytes())?;
    // Widths of the before run by default: a path the change removed or cut stays readable.
    dir.write("diff-flamegraph.svg", &flamegraph(&b, &a, Width::Before)?)?;
    dir.write("diff-flamegraph-after.svg", &flamegraph(&b, &a, Width::After)?)?;
    out!("{table}");
    say!(
        "rmapprof: wrote diff.txt diff-flamegraph.svg (width = before) diff-flamegraph-after.svg in {}",
        out.display()
    );
    Ok(0)
}
