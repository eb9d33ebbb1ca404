//! `cargo xtask many-cpus`: rmapprof on a guest shaped like the machines that contend. Our 7.2
//! kernel boots under QEMU with N vCPUs (TCG: slow, but it boots) and pid_max 4194304; every
//! mode profiles the bundled workloads at one job per vCPU (scripts/many-cpus-guest.sh). Each
//! run must exit 0 and lose nothing to a map's capacity; the summary gives per run the fullest
//! map, what the maps held in kernel memory (fdinfo's memlock) and the largest pid seen.

use anyhow::{bail, Context, Result};
use std::path::Path;

use crate::{host::root, vm};

/// Where the guest writes, relative to the repository.
const OUT: &str = "target/many-cpus";
const MODES: [&str; 5] = ["tracepoint", "kprobe", "fentry", "kprobe-acq", "fentry-acq"];
const WORKLOADS: [&str; 4] = ["spawn", "execl", "shellscript", "mmap-churn"];

pub fn run(cpus: u32, cycles: u64, modes: &[String]) -> Result<()> {
    let modes: Vec<&str> = match modes.is_empty() {
        true => MODES.to_vec(),
        false => modes.iter().map(String::as_str).collect(),
    };
    if let Some(m) = modes.iter().find(|m| !MODES.contains(m)) {
        bail!("--modes: {m} is not one of {}", MODES.join(", "));
    }
    crate::setup::build()?;
    let out = root().join(OUT);
    let _ = std::fs::remove_dir_all(&out);
    let opts = vm::VmOpts {
        kernel: crate::kernel::OURS,
        patched: false,
        debug: false,
        cpus,
        memory: "4G".into(),
        icount: false,
    };
    let code = vm::run(
        &opts,
        &["scripts/many-cpus-guest.sh".into(), OUT.into(), cycles.to_string(), modes.join(" ")],
    )?;
    if code != 0 {
        bail!("scripts/many-cpus-guest.sh exited {code}");
    }
    let (text, failed) = summary(&out, &modes)?;
    std::fs::write(out.join("summary.txt"), &text)?;
    print!("{text}");
    if failed {
        bail!("a run failed or lost events to a map's capacity: {OUT}/summary.txt");
    }
    Ok(())
}

/// The table, and whether any run failed or lost something to capacity.
fn summary(out: &Path, modes: &[&str]) -> Result<(String, bool)> {
    let guest = std::fs::read_to_string(out.join("guest.txt")).context("the guest wrote no guest.txt")?;
    let run_line = |l: &str| l.contains(": rmapprof exited") || l.contains(" idle: maps held ");
    let mut text = guest.lines().take_while(|l| !run_line(l)).collect::<Vec<_>>().join("\n");
    // Each mode loaded and attached, system-wide, before its workloads.
    for l in guest.lines().filter(|l| l.contains(" idle: maps held ")) {
        let (mode, bytes) = l.split_once(" idle: maps held ").unwrap_or_default();
        let mb = bytes.trim_end_matches(" bytes").parse::<f64>().unwrap_or(0.0) / 1e6;
        text += &format!("\n{mode} loaded, idle: its maps hold {mb:.1} MB (fdinfo memlock)");
    }
    text += &format!(
        "\n{:<12} {:<12} {:>4} {:>9} {:>10} {:<34} {:>9} {:>8}\n",
        "MODE", "WORKLOAD", "EXIT", "CAPACITY", "LOST", "FULLEST MAP", "MAPS MB", "MAX PID"
    );
    let mut failed = false;
    for &mode in modes {
        for w in WORKLOADS {
            let exit = guest
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{mode} {w}: rmapprof exited "))?.split(',').next())
                .unwrap_or("?")
                .to_owned();
            let row = Row::read(&out.join(mode), w);
            failed |= exit != "0" || row.as_ref().map_or(true, |r| r.capacity > 0);
            let read = |f: &str| {
                std::fs::read_to_string(out.join(mode).join(format!("{w}.{f}"))).unwrap_or_default()
            };
            let mb = read("memlock").trim().parse::<f64>().unwrap_or(0.0) / 1e6;
            let pid = read("pids").trim().to_owned();
            match row {
                Some(r) => {
                    text += &format!(
                        "{mode:<12} {w:<12} {exit:>4} {:>9} {:>10} {:<34} {mb:>9.1} {pid:>8}\n",
                        r.capacity, r.lost, r.fullest
                    )
                }
                None => text += &format!("{mode:<12} {w:<12} {exit:>4} (no report.json)\n"),
            }
        }
    }
    text += &format!(
        "CAPACITY: events lost to a full map (lost.*_map_full); LOST: all of lost; {}\n",
        if failed { "FAIL" } else { "PASS: every run exited 0 and lost nothing to capacity" }
    );
    Ok((text, failed))
}

struct Row {
    capacity: u64,
    lost: u64,
    /// "NAME rows/max" of the map with the largest share of its capacity used.
    fullest: String,
}

impl Row {
    fn read(dir: &Path, workload: &str) -> Option<Row> {
        let text = std::fs::read_to_string(dir.join(workload).join("report.json")).ok()?;
        let r: rmapprof_report::Report = serde_json::from_str(&text).ok()?;
        let capacity = r.lost.iter().filter(|(k, _)| k.ends_with("_map_full")).map(|(_, v)| v).sum();
        let all = r.lost.values().sum();
        let fullest = r
            .map_rows
            .iter()
            .max_by(|a, b| {
                (u64::from(a.1.rows) * u64::from(b.1.max)).cmp(&(u64::from(b.1.rows) * u64::from(a.1.max)))
            })
            .map_or_else(|| "-".to_owned(), |(n, m)| format!("{n} {}/{}", m.rows, m.max));
        Some(Row { capacity, lost: all, fullest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that lost events to a full map fails the summary; the fullest map is the one with
    /// the largest share used, not the most rows.
    #[test]
    fn a_full_map_fails_and_the_fullest_map_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-many-cpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut guest = "kernel: 7.2.13\ncpus: 64 online, 0-63 possible\n".to_owned();
        for mode in MODES {
            for w in WORKLOADS {
                let run = dir.join(mode).join(w);
                std::fs::create_dir_all(&run).unwrap();
                let full = if mode == "kprobe" && w == "execl" { 3 } else { 0 };
                let rows = |rows, max| rmapprof_report::MapRows { rows, max };
                let report = rmapprof_report::Report {
                    lost: [("stack_map_full".into(), full), ("stack_failed".into(), 2)].into(),
                    map_rows: [("STATS".into(), rows(900, 16384)), ("HOLDS".into(), rows(60, 64))].into(),
                    ..Default::default()
                };
                std::fs::write(run.join("report.json"), serde_json::to_string(&report).unwrap()).unwrap();
                std::fs::write(dir.join(mode).join(format!("{w}.memlock")), "25000000\n").unwrap();
                std::fs::write(dir.join(mode).join(format!("{w}.pids")), "4194301\n").unwrap();
                guest +=
                    &format!("{mode} {w}: rmapprof exited 0, maps held 25000000 bytes, pids up to 4194301\n");
            }
        }
        std::fs::write(dir.join("guest.txt"), guest).unwrap();
        let (text, failed) = summary(&dir, &MODES).unwrap();
        assert!(failed, "{text}");
        assert!(text.contains("HOLDS 60/64"), "{text}");
        let kprobe_execl = text.lines().find(|l| l.starts_with("kprobe       execl")).unwrap();
        assert!(kprobe_execl.contains("    3          5 "), "{kprobe_execl}");
        assert!(text.contains("25.0  4194301"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
