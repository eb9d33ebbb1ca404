//! `rmapprof diff BEFORE.json AFTER.json`: what changed between two runs (say, a base and a
//! patched kernel), per file and caller class, in 80 columns of plain text for a mailing list,
//! and a differential flame graph of the acquisitions (inferno).

use anyhow::{Context, Result};
use inferno::{differential, flamegraph};
use std::{collections::BTreeMap, fmt::Write};

use super::{clip, escape, fmt_ns, folded::frame, Keep};
use crate::report::{FileReport, Report};

/// Files are matched by path (inode numbers differ between kernels' root filesystems).
fn key(f: &FileReport) -> String {
    f.path.clone().unwrap_or_else(|| format!("dev {} ino {}", f.dev, f.ino))
}

fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Per cycle if the run knows its cycles, else the total; None if the mode cannot see it.
fn norm(r: &Report, v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64 / r.cycles.filter(|c| *c > 0).unwrap_or(1) as f64)
}

fn cell(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

fn delta(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:+.0}%", (b - a) * 100.0 / a),
        (Some(_), Some(b)) if b > 0.0 => "new".into(),
        (Some(_), Some(_)) => "0%".into(),
        _ => "-".into(),
    }
}

/// The delta table: write acquisitions, spin and sleep per file and caller class.
pub fn table(before: &Report, after: &Report) -> String {
    let mut s = String::new();
    let unit = match (before.cycles, after.cycles) {
        (Some(a), Some(b)) => format!("per cycle ({a} and {b} cycles)"),
        _ => "totals (cycles unknown)".into(),
    };
    let _ = writeln!(s, "i_mmap_rwsem write acquisitions {unit}");
    let _ = writeln!(s, "before: {} mode, Linux {}", escape(&before.mode), escape(&before.kernel));
    let _ = writeln!(s, "after:  {} mode, Linux {}\n", escape(&after.mode), escape(&after.kernel));
    let _ = writeln!(s, "{:<26} {:<12} {:>9} {:>9} {:>7}", "FILE", "CALLER", "BEFORE", "AFTER", "DELTA");
    let files: BTreeMap<String, (Option<&FileReport>, Option<&FileReport>)> = {
        let mut m: BTreeMap<String, (Option<&FileReport>, Option<&FileReport>)> = BTreeMap::new();
        before.files.iter().for_each(|f| m.entry(key(f)).or_default().0 = Some(f));
        after.files.iter().for_each(|f| m.entry(key(f)).or_default().1 = Some(f));
        m
    };
    let mut spin_sleep = String::new();
    for (path, (b, a)) in &files {
        let class_row = |f: Option<&FileReport>, r: &Report, c: &str| {
            f.and_then(|f| f.by_class.iter().find(|x| x.class == c))
                .and_then(|x| norm(r, x.write_acquisitions))
        };
        let mut classes: Vec<&str> =
            b.iter().chain(a.iter()).flat_map(|f| f.by_class.iter().map(|c| c.class.as_str())).collect();
        classes.sort_by_key(|c| crate::attribution::callers::ALL.iter().position(|x| x == c));
        classes.dedup();
        let (mut tb, mut ta) = (None::<f64>, None::<f64>);
        for c in &classes {
            let (vb, va) = (class_row(*b, before, c), class_row(*a, after, c));
            tb = Some(tb.unwrap_or(0.0) + vb.unwrap_or(0.0)).filter(|_| vb.is_some() || tb.is_some());
            ta = Some(ta.unwrap_or(0.0) + va.unwrap_or(0.0)).filter(|_| va.is_some() || ta.is_some());
            let _ = writeln!(
                s,
                "{:<26} {:<12} {:>9} {:>9} {:>7}",
                clip(name(path), 26, Keep::Head),
                c,
                cell(vb),
                cell(va),
                delta(vb, va)
            );
        }
        if !classes.is_empty() {
            let _ = writeln!(
                s,
                "{:<26} {:<12} {:>9} {:>9} {:>7}",
                clip(name(path), 26, Keep::Head),
                "all",
                cell(tb),
                cell(ta),
                delta(tb, ta)
            );
        }
        let spin = |f: Option<&FileReport>, r: &Report| f.and_then(|f| norm(r, f.spin_ns_total));
        let sleep = |f: Option<&FileReport>, r: &Report| f.and_then(|f| norm(r, Some(f.wait_ns_total)));
        let ns = |v: Option<f64>| v.map(|v| fmt_ns(v.round() as u64)).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            spin_sleep,
            "{:<26} {:>12} {:>12} {:>12} {:>12}",
            clip(name(path), 26, Keep::Head),
            ns(spin(*b, before)),
            ns(spin(*a, after)),
            ns(sleep(*b, before)),
            ns(sleep(*a, after))
        );
    }
    let _ = writeln!(s, "\ni_mmap_rwsem wait {unit}");
    let _ = writeln!(
        s,
        "{:<26} {:>12} {:>12} {:>12} {:>12}",
        "FILE", "SPIN BEFORE", "SPIN AFTER", "SLEEP BEFORE", "SLEEP AFTER"
    );
    s.push_str(&spin_sleep);
    s
}

/// Acquisitions by call path, per 1000 cycles when cycles are known, as folded stacks.
pub fn folded_acquisitions(r: &Report) -> String {
    let scale = |n: u64| match r.cycles.filter(|c| *c > 0) {
        Some(c) => (n as f64 * 1000.0 / c as f64).round() as u64,
        None => n,
    };
    let mut out = String::new();
    for f in &r.files {
        let root = frame(&format!("i_mmap_rwsem {}", name(&key(f))));
        for p in &f.acquire_paths {
            let n = scale(p.contentions);
            if n > 0 {
                let frames: Vec<String> = p.frames.iter().map(|x| frame(x)).collect();
                let _ = writeln!(out, "{root};{};{} {n}", p.rw, frames.join(";"));
            }
        }
    }
    out
}

/// Differential flame graph: the AFTER shapes, coloured by change from BEFORE (blue = fewer).
pub fn flamegraph(before: &Report, after: &Report) -> Result<Vec<u8>> {
    let (b, a) = (folded_acquisitions(before), folded_acquisitions(after));
    let mut diff = Vec::new();
    differential::from_readers(differential::Options::default(), b.as_bytes(), a.as_bytes(), &mut diff)
        .context("differential folding")?;
    let mut opts = flamegraph::Options::default();
    opts.title = "i_mmap_rwsem acquisitions: before -> after".into();
    opts.subtitle = Some(format!(
        "Linux {} -> {}; width = acquisitions per 1000 cycles (after); blue = fewer",
        before.kernel, after.kernel
    ));
    opts.count_name = "acquisitions".into();
    let mut svg = Vec::new();
    let text = String::from_utf8_lossy(&diff).into_owned();
    if text.trim().is_empty() {
        return Ok(super::folded::empty_svg(&opts.title).into_bytes());
    }
    flamegraph::from_lines(&mut opts, text.lines(), &mut svg).context("drawing differential flame graph")?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ClassRow;

    fn run(kernel: &str, fork: u64, mmap: u64) -> Report {
        let mut r = crate::render::text::tests::sample();
        r.kernel = kernel.into();
        r.mode = "fentry".into();
        r.cycles = Some(100);
        let row =
            |c: &str, n| ClassRow { class: c.into(), write_acquisitions: Some(n), ..Default::default() };
        r.files[0].by_class = vec![row("fork", fork), row("mmap", mmap)];
        r.files[0].spin_ns_total = Some(10_000);
        r.files[0].acquire_paths = vec![crate::report::CallPath {
            rw: "write".into(),
            frames: vec!["kernel_clone".into(), "copy_process".into(), "down_write".into()],
            contentions: fork,
            ..Default::default()
        }];
        r
    }

    #[test]
    fn delta_table_per_class_and_file() {
        let t = table(&run("6.12.117", 510, 404), &run("6.12.117-patched", 100, 404));
        let row = |c: &str| -> Vec<String> {
            t.lines()
                .find(|l| l.split_whitespace().nth(1) == Some(c))
                .unwrap()
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        assert_eq!(row("fork"), ["libc.so.6", "fork", "5.10", "1.00", "-80%"]);
        assert_eq!(row("mmap"), ["libc.so.6", "mmap", "4.04", "4.04", "+0%"]);
        assert_eq!(row("all"), ["libc.so.6", "all", "9.14", "5.04", "-45%"]);
        assert!(t.contains("per cycle (100 and 100 cycles)"));
        assert!(t.lines().all(|l| l.len() <= 80), "{t}");
    }

    #[test]
    fn differential_flame_graph() {
        let (b, a) = (run("a", 510, 404), run("b", 100, 404));
        assert_eq!(
            folded_acquisitions(&b),
            "i_mmap_rwsem libc.so.6;write;kernel_clone;copy_process;down_write 5100\n"
        );
        let svg = String::from_utf8(flamegraph(&b, &a).unwrap()).unwrap();
        assert!(svg.contains("copy_process") && svg.contains("before -&gt; after"), "{}", &svg[..400]);
    }

    /// A non-ASCII basename longer than the column was cut inside a character (a panic).
    #[test]
    fn long_non_ascii_names_are_cut_by_characters() {
        let (mut b, mut a) = (run("a", 510, 404), run("b", 100, 404));
        let name = "ä".repeat(40);
        b.files[0].path = Some(format!("/tmp/{name}"));
        a.files[0].path = b.files[0].path.clone();
        let t = table(&b, &a);
        let row = t.lines().find(|l| l.contains(" fork ")).unwrap();
        assert!(row.starts_with(&format!("{}~ fork", "ä".repeat(25))), "{t}");
        // Columns stay aligned: the row is as many characters wide as an ASCII one.
        let ascii = table(&run("a", 510, 404), &run("b", 100, 404));
        let width = |t: &str| t.lines().find(|l| l.contains(" fork ")).unwrap().chars().count();
        assert_eq!(width(&t), width(&ascii));
    }

    /// A newline in a file name stays inside its row, escaped.
    #[test]
    fn control_characters_in_names_are_escaped() {
        let (mut b, mut a) = (run("a", 510, 404), run("b", 100, 404));
        b.files[0].path = Some("/tmp/a\nb\tc".into());
        a.files[0].path = b.files[0].path.clone();
        let t = table(&b, &a);
        assert!(t.lines().any(|l| l.starts_with("a\\nb\\tc ") && l.contains(" fork ")), "{t}");
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
    }
}
