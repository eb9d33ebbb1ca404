//! `rmapprof diff BEFORE.json AFTER.json`: what changed between two runs (say, a base and a
//! patched kernel), per file and caller class, in 80 columns of plain text for a mailing list,
//! and differential flame graphs (inferno).
//!
//! Two runs are compared on what both measured: write acquisitions when both counted them
//! (`--acquisitions`), else the sleeping waits that every mode sees; per cycle when both know
//! their cycles, else totals. Never a per-cycle value beside a total.

use anyhow::{Context, Result};
use inferno::{differential, flamegraph};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
};

use super::{clip, fit, fit_ns, fmt_count_f, folded::frame, sci, Keep};
use crate::report::{ClassRow, FileReport, Report};

/// How files are matched: by path (inode numbers differ between kernels' root filesystems),
/// except a path that names more than one file in either report (one path in two mount
/// namespaces: a container's libc.so.6 and the host's), whose files are told apart, and named,
/// by device and inode.
struct Keys {
    ambiguous: BTreeSet<String>,
}

impl Keys {
    fn of(before: &Report, after: &Report) -> Self {
        let mut ambiguous = BTreeSet::new();
        for r in [before, after] {
            let mut seen = BTreeSet::new();
            for p in r.files.iter().filter_map(|f| f.path.as_ref()) {
                if !seen.insert(p) {
                    ambiguous.insert(p.clone());
                }
            }
        }
        Keys { ambiguous }
    }

    fn key(&self, f: &FileReport) -> String {
        match &f.path {
            Some(p) if self.ambiguous.contains(p) => format!("{p} [dev {} ino {}]", f.dev, f.ino),
            p => crate::render::file_label(p.as_deref(), &f.dev, f.ino),
        }
    }
}

fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Every acquisition was counted. Reports written before `acquisitions_counted` existed lack
/// it and counted them in kprobe/fentry mode.
fn counted(r: &Report) -> bool {
    r.acquisitions_counted.unwrap_or(r.mode.probed())
}

/// What two reports have in common, and so what is compared.
struct Basis {
    /// Both counted every acquisition: write acquisitions and acquire paths. Else sleeping
    /// waits and their call paths, which every mode sees (lock:contention_begin/end).
    acquisitions: bool,
    /// Both know their cycles (before, after): per cycle; else totals.
    cycles: Option<(u64, u64)>,
    /// One line saying what is compared and why, when the runs saw different things.
    note: Option<String>,
}

impl Basis {
    fn of(before: &Report, after: &Report) -> Self {
        let acquisitions = counted(before) && counted(after);
        let (cb, ca) = (before.cycles.filter(|c| *c > 0), after.cycles.filter(|c| *c > 0));
        let cycles = cb.zip(ca);
        let mut why = vec![];
        if before.mode != after.mode || counted(before) != counted(after) {
            why.push("modes differ");
        }
        match (cb, ca) {
            (Some(_), None) => why.push("only before has cycles"),
            (None, Some(_)) => why.push("only after has cycles"),
            _ => {}
        }
        let mut basis = Basis { acquisitions, cycles, note: None };
        if !why.is_empty() {
            basis.note = Some(format!("compared: {}, {} ({})", basis.what(), basis.unit(), why.join("; ")));
        }
        basis
    }

    fn what(&self) -> &'static str {
        if self.acquisitions {
            "write acquisitions"
        } else {
            "waits and wait time"
        }
    }

    fn unit(&self) -> &'static str {
        if self.cycles.is_some() {
            "per cycle"
        } else {
            "totals"
        }
    }

    /// `v` of the before (`after == false`) or after run, on this basis.
    fn value(&self, v: u64, after: bool) -> f64 {
        match self.cycles {
            Some((b, a)) => v as f64 / if after { a } else { b } as f64,
            None => v as f64,
        }
    }

    /// A count in a 9-column cell: two decimals per cycle, whole numbers as totals.
    fn count(&self, v: Option<f64>) -> String {
        match v {
            None => "-".into(),
            Some(v) if self.cycles.is_some() => fit(fmt_count_f(v), v, 9),
            Some(v) => fit(format!("{v:.0}"), v, 9),
        }
    }
}

/// A time in a 9-column cell.
fn ns(v: Option<f64>) -> String {
    v.map(|v| fit_ns(v, 9)).unwrap_or_else(|| "-".into())
}

/// The change from `a` to `b` in a 7-column cell: a percentage, or past +99999% a factor
/// (`x4.6e18`).
fn delta(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => {
            let pct = format!("{:+.0}%", (b - a) * 100.0 / a);
            if pct.len() <= 7 {
                pct
            } else {
                format!("x{}", sci(b / a, 6))
            }
        }
        (Some(_), Some(b)) if b > 0.0 => "new".into(),
        (Some(_), Some(_)) => "0%".into(),
        _ => "-".into(),
    }
}

/// `before: fentry mode with --acquisitions, Linux 6.12.117`.
fn run_line(label: &str, r: &Report) -> String {
    let acq = if counted(r) && r.mode.probed() { " with --acquisitions" } else { "" };
    clip(&format!("{label} {} mode{acq}, Linux {}", r.mode, r.kernel), 80, Keep::Head)
}

type Pair<'a> = (Option<&'a FileReport>, Option<&'a FileReport>);

/// One row per caller class of each file, and the file's `all` row: `field` of the class
/// (None: not observed) on the basis; a file or class one run lacks had none of it there.
fn class_table(
    s: &mut String,
    basis: &Basis,
    files: &BTreeMap<String, Pair>,
    field: impl Fn(&ClassRow) -> Option<u64>,
    cell: impl Fn(Option<f64>) -> String,
) {
    let _ = writeln!(s, "{:<26} {:<12} {:>9} {:>9} {:>7}", "FILE", "CALLER", "BEFORE", "AFTER", "DELTA");
    let mut any = false;
    for (path, (b, a)) in files {
        let mut classes: Vec<&str> =
            b.iter().chain(a.iter()).flat_map(|f| f.by_class.iter().map(|c| c.class.as_str())).collect();
        classes.sort_by_key(|c| (crate::schema::caller_class::ALL.iter().position(|x| x == c), *c));
        classes.dedup();
        let value = |f: Option<&FileReport>, c: &str, after: bool| -> Option<f64> {
            let row = f.and_then(|f| f.by_class.iter().find(|x| x.class == c));
            match row {
                Some(row) => field(row).map(|v| basis.value(v, after)),
                None => Some(0.0),
            }
        };
        let file = clip(name(path), 26, Keep::Head);
        let (mut tb, mut ta) = (Some(0.0), Some(0.0));
        let mut rows = 0;
        for c in &classes {
            let (vb, va) = (value(*b, c, false), value(*a, c, true));
            tb = tb.zip(vb).map(|(t, v)| t + v);
            ta = ta.zip(va).map(|(t, v)| t + v);
            // A class with none of it in either run (it only took the lock) is no row here.
            if vb.unwrap_or(0.0) == 0.0 && va.unwrap_or(0.0) == 0.0 {
                continue;
            }
            rows += 1;
            let class = clip(c, 12, Keep::Head);
            let _ =
                writeln!(s, "{file:<26} {class:<12} {:>9} {:>9} {:>7}", cell(vb), cell(va), delta(vb, va));
        }
        any |= rows > 0;
        if rows > 0 {
            let _ =
                writeln!(s, "{file:<26} {:<12} {:>9} {:>9} {:>7}", "all", cell(tb), cell(ta), delta(tb, ta));
        }
    }
    if !any {
        let _ = writeln!(s, "  (none in either run)");
    }
}

/// The delta tables: write acquisitions or waits, then wait time, per file and caller class;
/// spin per file when both runs saw it.
pub fn table(before: &Report, after: &Report) -> String {
    let basis = Basis::of(before, after);
    let mut s = String::new();
    if let Some(note) = &basis.note {
        let _ = writeln!(s, "{note}");
    }
    let _ = writeln!(s, "{}", run_line("before:", before));
    let _ = writeln!(s, "{}", run_line("after: ", after));
    let unit = match basis.cycles {
        Some((a, b)) => {
            let n = |c: u64| fit(c.to_string(), c as f64, 10);
            format!(" per cycle ({} and {} cycles)", n(a), n(b))
        }
        None => ", totals".into(),
    };
    let files: BTreeMap<String, Pair> = {
        let keys = Keys::of(before, after);
        let mut m: BTreeMap<String, Pair> = BTreeMap::new();
        before.files.iter().for_each(|f| m.entry(keys.key(f)).or_default().0 = Some(f));
        after.files.iter().for_each(|f| m.entry(keys.key(f)).or_default().1 = Some(f));
        m
    };
    if basis.acquisitions {
        let _ = writeln!(s, "\ni_mmap_rwsem write acquisitions{unit}");
        class_table(&mut s, &basis, &files, |c| c.write_acquisitions, |v| basis.count(v));
    } else {
        let _ = writeln!(s, "\ni_mmap_rwsem waits{unit}");
        class_table(&mut s, &basis, &files, |c| Some(c.contentions), |v| basis.count(v));
    }
    // Sleeping waits: every mode sees them.
    let _ = writeln!(s, "\ni_mmap_rwsem wait time{unit}");
    class_table(&mut s, &basis, &files, |c| Some(c.sleep_ns), ns);
    let spun = |r: &Report| r.files.iter().any(|f| f.spin_ns_total.is_some());
    if spun(before) && spun(after) {
        let _ = writeln!(s, "\ni_mmap_rwsem optimistic spinning{unit}");
        let _ = writeln!(s, "{:<26} {:<12} {:>9} {:>9} {:>7}", "FILE", "", "BEFORE", "AFTER", "DELTA");
        for (path, (b, a)) in &files {
            let spin = |f: Option<&FileReport>, after| {
                Some(basis.value(f.and_then(|f| f.spin_ns_total).unwrap_or(0), after))
            };
            let (vb, va) = (spin(*b, false), spin(*a, true));
            if vb == Some(0.0) && va == Some(0.0) {
                continue;
            }
            let file = clip(name(path), 26, Keep::Head);
            let _ = writeln!(s, "{file:<26} {:<12} {:>9} {:>9} {:>7}", "spin", ns(vb), ns(va), delta(vb, va));
        }
    }
    holders::table(&mut s, &basis, &files, &unit);
    s
}

/// A run's paths on the basis, as folded stacks for inferno's differential: acquisitions by
/// acquire path, or ns waited by wait path; per 1000 cycles when per cycle.
fn folded_paths(r: &Report, keys: &Keys, basis: &Basis, after: bool) -> String {
    let mut out = String::new();
    for f in &r.files {
        let root = frame(&format!("i_mmap_rwsem {}", name(&keys.key(f))));
        // (direction, frames, weight) of each path on the basis.
        let paths: Vec<(&str, &[String], u64)> = if basis.acquisitions {
            f.acquire_paths.iter().map(|p| (p.rw.as_str(), &p.frames[..], p.acquisitions)).collect()
        } else {
            f.call_paths.iter().map(|p| (p.rw.as_str(), &p.frames[..], p.wait_ns_total)).collect()
        };
        for (rw, frames, weight) in paths {
            // `as` saturates: an absurd total in a hand-edited report draws, not wraps.
            let n = (basis.value(weight, after) * if basis.cycles.is_some() { 1000.0 } else { 1.0 }).round()
                as u64;
            if n > 0 {
                let frames: Vec<String> = frames.iter().map(|x| frame(x)).collect();
                let _ = writeln!(out, "{root};{};{} {n}", frame(rw), frames.join(";"));
            }
        }
    }
    out
}

/// Acquisitions by call path, per 1000 cycles when cycles are known, as folded stacks.
#[cfg(test)]
fn folded_acquisitions(r: &Report) -> String {
    let basis = Basis { acquisitions: true, cycles: r.cycles.filter(|c| *c > 0).map(|c| (c, c)), note: None };
    folded_paths(r, &Keys::of(r, r), &basis, false)
}

/// Which run's values a differential flame graph's widths are.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Width {
    /// The default view: a path a change removed or cut stays wide enough to read.
    Before,
    /// A path a change added or grew is wide.
    After,
}

/// Differential flame graph: the shapes of one run, coloured by the change from before to
/// after (red = more after, blue = fewer), whichever run gives the widths.
pub fn flamegraph(before: &Report, after: &Report, width: Width) -> Result<Vec<u8>> {
    let (basis, keys) = (Basis::of(before, after), Keys::of(before, after));
    let (b, a) = (folded_paths(before, &keys, &basis, false), folded_paths(after, &keys, &basis, true));
    // inferno draws the second input's widths, coloured by second - first. For the before
    // widths give it the runs swapped and negate the differences: the colours still mean
    // after - before.
    let (first, second) = match width {
        Width::After => (&b, &a),
        Width::Before => (&a, &b),
    };
    let mut diff = Vec::new();
    differential::from_readers(
        differential::Options::default(),
        first.as_bytes(),
        second.as_bytes(),
        &mut diff,
    )
    .context("differential folding")?;
    let mut opts = flamegraph::Options::default();
    let (what, count) =
        if basis.acquisitions { ("acquisitions", "acquisitions") } else { ("waits", "ns waited") };
    let which = if width == Width::Before { "before" } else { "after" };
    opts.title = format!("i_mmap_rwsem {what}: before -> after, width = {which}");
    let per = if basis.cycles.is_some() { " per 1000 cycles" } else { "" };
    opts.subtitle = Some(format!(
        "Linux {} -> {}; width = {count}{per} {which}; red = more after, blue = fewer",
        super::escape(&before.kernel),
        super::escape(&after.kernel)
    ));
    opts.count_name = if basis.acquisitions { "acquisitions" } else { "ns" }.into();
    opts.negate_differentials = width == Width::Before;
    let text = String::from_utf8_lossy(&diff).into_owned();
    // Nothing to draw at this width (no paths in that run): inferno refuses an empty graph.
    if second.trim().is_empty() {
        let why = match (text.trim().is_empty(), width) {
            (true, _) => format!("no {what} were recorded"),
            (false, Width::Before) => format!("no {what} were recorded before: see the after-width graph"),
            (false, Width::After) => format!("no {what} were recorded after: see the before-width graph"),
        };
        return Ok(super::folded::empty_svg(&opts.title, &why).into_bytes());
    }
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut opts, text.lines(), &mut svg).context("drawing differential flame graph")?;
    Ok(svg)
}

mod holders;
#[cfg(test)]
mod tests;
