//! `cargo xtask bench --stress`: where rmapprof starts losing events. mmap-churn over ever
//! more distinct files (each adds aggregation-map rows: capacity) and over one file with ever
//! more jobs (event rate), under the most detailed mode this kernel attaches.

use anyhow::{Context, Result};
use std::{process::Command, time::Instant};

use crate::{
    host::{root, sh},
    tools::{lost_of, read_report, rmapprof_events, start, stop, Kind, Tool},
};

/// Where loss starts, under the most detailed rmapprof mode this kernel attaches: mmap-churn
/// over 1 to 65536 distinct files (every file adds map rows: capacity), then over one file with
/// 1 to 16 jobs (event rate). Files live in the temp dir: tmpfs or disk, never 9p.
pub fn run(tools: &[Tool], jobs: u64) -> Result<(String, serde_json::Value)> {
    let tool = tools.iter().rev().find(|t| t.kind == Kind::Rmapprof).context("no rmapprof mode attaches")?;
    let churn = root().join("target/release/mmap-churn");
    let dir = std::env::temp_dir().join("rmapprof-stress");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let page = vec![0u8; 4096];
    let mut rows = Vec::new();
    let mut plan: Vec<(u64, u64)> =
        [1u64, 256, 1024, 4096, 16384, 65536].iter().map(|f| (*f, jobs)).collect();
    plan.extend([1u64, 2, 4, 8, 16].iter().map(|j| (1, *j)));
    let mut text = format!(
        "\nstress: {} under mmap-churn (mmap+touch+munmap), files x jobs\n{:>6} {:>5} {:>8} {:>10} {:>10} {:>7}  LOST\n",
        tool.name, "FILES", "JOBS", "CYCLES", "EVENTS", "EVENTS/S", "ROWS"
    );
    for (files, jobs) in plan {
        // One directory per file count (mmap-churn takes every file in it), links to one pool.
        let sub = dir.join(format!("set-{files}"));
        if !sub.exists() {
            std::fs::create_dir_all(&sub)?;
            for i in 0..files {
                let f = dir.join(format!("{i:05}"));
                if !f.exists() {
                    std::fs::write(&f, &page)?;
                }
                std::fs::hard_link(&f, sub.join(format!("{i:05}")))?;
            }
        }
        let cycles = (files * 4).max(20_000);
        eprintln!("xtask: stress: {files} files, {jobs} jobs, {cycles} cycles");
        let (child, _, _) = start(tool)?;
        let t = Instant::now();
        sh(Command::new(&churn).arg(&sub).arg(cycles.to_string()).args(["-j", &jobs.to_string()]))?;
        let secs = t.elapsed().as_secs_f64();
        stop(child, tool.kind)?;
        let report = read_report(tool.report_dir()?)?;
        let (events, _) = rmapprof_events(tool.report_dir()?)?;
        let lost = lost_of(&report);
        let nrows = report.files.len();
        let lost_s = if lost.is_empty() {
            "0".to_owned()
        } else {
            lost.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        };
        text += &format!(
            "{files:>6} {jobs:>5} {cycles:>8} {events:>10} {:>10.0} {nrows:>7}  {lost_s}\n",
            events as f64 / secs
        );
        rows.push(serde_json::json!({
            "files": files, "jobs": jobs, "cycles": cycles, "secs": secs, "events": events,
            "events_per_s": events as f64 / secs, "file_rows": nrows, "lost": lost,
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let onset = rows.iter().find(|r| r["lost"].as_object().is_some_and(|l| !l.is_empty()));
    text += &match onset {
        Some(r) => format!("loss starts at {} files x {} jobs\n", r["files"], r["jobs"]),
        None => "no loss at any step\n".into(),
    };
    Ok((text, serde_json::json!({ "tool": tool.name, "rows": rows })))
}
