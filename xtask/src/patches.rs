//! patches/: checking the series (`patches-check`) and measuring it (`patches-report`).

use anyhow::{bail, Context, Result};
use std::{path::Path, process::Command, time::Instant};

use crate::{build, evidence, root, sh, vm};

/// Cycles and parallel jobs of each workload in the report.
const CYCLES: u32 = 100;

/// patches/*.patch, the cover letter first.
fn series() -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(root().join("patches"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    v.sort();
    Ok(v)
}

/// The parts of `patches-check`, in the order they run (`--only` picks some).
const PARTS: [&str; 5] = ["checkpatch", "layout", "negative", "debug", "pressure"];

/// checkpatch --strict on every patch; exec layout base vs patched; the test-only negative
/// control; stress, selftests and fault injection under lockdep and DEBUG_VM on the patched
/// kernel; lockdep under memory pressure. Every check ends in one PASS/FAIL line, printed
/// together at the end (and in target/patches-check/results.txt); any FAIL fails the command.
pub fn check(
    cpus: u32,
    seconds: u32,
    fault_iterations: u32,
    only: &[String],
    build_only: bool,
) -> Result<()> {
    for o in only {
        if !PARTS.contains(&o.as_str()) {
            bail!("--only: {o} is not one of {}", PARTS.join(", "));
        }
    }
    let want = |p: &str| only.is_empty() || only.iter().any(|o| o == p);
    let t0 = Instant::now();
    build()?;
    let out = evidence::out_dir();
    std::fs::create_dir_all(&out)?;
    // Each guest appends its lines to a file of its own (relative path: the guest's working
    // directory is the repository).
    let results = |part: &str| {
        (format!("target/patches-check/results-{part}.txt"), out.join(format!("results-{part}.txt")))
    };
    let mut lines: Vec<String> = Vec::new();
    let mut times: Vec<(String, u64)> = Vec::new();

    if want("checkpatch") {
        let t = Instant::now();
        let src = vm::unpacked_source(vm::OURS)?;
        for p in series()?.iter().filter(|p| !p.to_string_lossy().contains("0000-cover-letter")) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            match sh(Command::new(src.join("scripts/checkpatch.pl"))
                .args(["--strict", "--no-tree", "-q"])
                .arg(p))
            {
                Ok(()) => lines.push(format!("PASS checkpatch --strict: {name} clean")),
                Err(e) => lines.push(format!("FAIL checkpatch --strict: {name}: {e:#}")),
            }
        }
        times.push(("checkpatch".into(), t.elapsed().as_secs()));
    }

    if want("layout") {
        // Base and patched, non-debug: the same programs, the same script, then a byte diff.
        let t = Instant::now();
        evidence::build_elf_programs()?;
        if build_only {
            vm::build_kernel(vm::OURS, false, false)?;
            vm::build_kernel(vm::OURS, true, false)?;
        }
        for (patched, name) in [(false, "base"), (true, "patched")].into_iter().filter(|_| !build_only) {
            let dir = format!("target/patches-check/layout-{name}");
            let opts = vm::VmOpts {
                kernel: vm::OURS,
                patched,
                debug: false,
                cpus,
                memory: "2G".into(),
                icount: false,
            };
            let code = vm::run(&opts, &["scripts/exec-layout-guest.sh".to_owned(), dir])?;
            if code != 0 {
                lines.push(format!("FAIL exec-layout: scripts/exec-layout-guest.sh exited {code} on {name}"));
            }
        }
        if !build_only {
            lines.extend(evidence::compare_layouts(&out.join("layout-base"), &out.join("layout-patched")));
        }
        times.push(("layout (base + patched boots)".into(), t.elapsed().as_secs()));
    }

    if want("negative") {
        let t = Instant::now();
        match evidence::negative_control_kernel() {
            Ok(_) if build_only => {}
            Ok(image) => {
                let opts = vm::VmOpts {
                    kernel: vm::OURS,
                    patched: true,
                    debug: false,
                    cpus,
                    memory: "2G".into(),
                    icount: false,
                };
                let cmd = [
                    "scripts/negative-control-guest.sh".to_owned(),
                    results("negative").0,
                    seconds.to_string(),
                ];
                guest_results(&mut lines, &results("negative").1, "negative-control", || {
                    vm::run_image(&image, &opts, &cmd)
                })?;
            }
            Err(e) => lines.push(format!("FAIL negative-control: the test-only kernel did not build: {e:#}")),
        }
        times.push(("negative control (build + boot)".into(), t.elapsed().as_secs()));
    }

    if want("debug") {
        let t = Instant::now();
        vm::build_kernel(vm::OURS, true, true)?;
        let selftests = build_selftests()?;
        evidence::build_exec_selftests(&vm::source(vm::OURS, true)?, &vm::build_dir(vm::OURS, true, true))?;
        let mut cmd = vec![
            "scripts/patches-check-guest.sh".to_owned(),
            results("debug").0,
            seconds.to_string(),
            fault_iterations.to_string(),
        ];
        cmd.extend(selftests);
        if build_only {
            return finish(&lines, &times, t0, true);
        }
        // 4G: mremap_test moves 2GB regions.
        let opts = vm::VmOpts {
            kernel: vm::OURS,
            patched: true,
            debug: true,
            cpus,
            memory: "4G".into(),
            icount: false,
        };
        guest_results(&mut lines, &results("debug").1, "debug-kernel checks", || vm::run(&opts, &cmd))?;
        times.push(("debug kernel: stress, selftests, fault injection".into(), t.elapsed().as_secs()));
    }

    if want("pressure") && !build_only {
        let t = Instant::now();
        let opts = vm::VmOpts {
            kernel: vm::OURS,
            patched: true,
            debug: true,
            cpus,
            memory: "512M".into(),
            icount: false,
        };
        let cmd = [
            "scripts/pressure-guest.sh".to_owned(),
            results("pressure").0,
            "target/patches-check/kmsg-pressure.txt".to_owned(),
            seconds.to_string(),
        ];
        guest_results(&mut lines, &results("pressure").1, "lockdep-under-pressure", || vm::run(&opts, &cmd))?;
        times.push(("debug kernel, 512M: lockdep under memory pressure".into(), t.elapsed().as_secs()));
    }

    finish(&lines, &times, t0, build_only)
}

/// Writes and prints the result lines, one per check, and the times; fails on any FAIL.
fn finish(lines: &[String], times: &[(String, u64)], t0: Instant, build_only: bool) -> Result<()> {
    if build_only {
        eprintln!("xtask: patches-check --build-only: built in {} s", t0.elapsed().as_secs());
        return Ok(());
    }
    let failed = lines.iter().filter(|l| !l.starts_with("PASS")).count();
    std::fs::write(evidence::out_dir().join("results.txt"), lines.join("\n") + "\n")?;
    println!("\npatches-check on {} patches/ ({}):", vm::OURS, series_names()?.join(" "));
    for l in lines {
        println!("{l}");
    }
    println!(
        "patches-check: {} checks, {} in {} s ({})",
        lines.len(),
        if failed == 0 { "all passed".to_owned() } else { format!("{failed} FAILED") },
        t0.elapsed().as_secs(),
        times.iter().map(|(p, s)| format!("{p} {s} s")).collect::<Vec<_>>().join(", ")
    );
    if failed > 0 {
        bail!("patches-check: {failed} of {} checks failed", lines.len());
    }
    Ok(())
}

/// The series' patch names, without the cover letter.
fn series_names() -> Result<Vec<String>> {
    Ok(series()?
        .iter()
        .filter(|p| !p.to_string_lossy().contains("0000-cover-letter"))
        .map(|p| p.file_name().unwrap().to_string_lossy().chars().take(4).collect())
        .collect())
}

/// Boots a guest whose scripts append PASS/FAIL lines to `results`; takes those lines, and
/// one FAIL line of its own when the guest failed without saying which check did.
fn guest_results(
    lines: &mut Vec<String>,
    results: &Path,
    label: &str,
    boot: impl FnOnce() -> Result<i32>,
) -> Result<()> {
    let _ = std::fs::remove_file(results);
    let code = boot();
    let new: Vec<String> = std::fs::read_to_string(results)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("PASS ") || l.starts_with("FAIL "))
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_file(results);
    let any_fail = new.iter().any(|l| l.starts_with("FAIL"));
    lines.extend(new.iter().cloned());
    match code {
        Ok(0) if !new.is_empty() => {}
        Ok(c) if !any_fail => {
            lines.push(format!("FAIL {label}: guest exited {c} with {} results", new.len()))
        }
        Ok(_) => {}
        Err(e) => lines.push(format!("FAIL {label}: {e:#}")),
    }
    Ok(())
}

/// The mm selftests that exercise fork, mremap, MAP_FIXED and splits, built from the patched
/// tree's tools/testing/selftests/mm against its UAPI headers; paths relative to the repo.
const SELFTESTS: &[&str] =
    &["cow", "mremap_test", "mremap_dontunmap", "map_fixed_noreplace", "madv_populate", "mseal_test"];

fn build_selftests() -> Result<Vec<String>> {
    let src = vm::source(vm::OURS, true)?;
    let out = root().join("target/selftests-mm");
    std::fs::create_dir_all(&out)?;
    let hdr = vm::build_dir(vm::OURS, true, true);
    sh(Command::new("make").arg("-C").arg(&src).arg(format!("O={}", hdr.display())).args(["-s", "headers"]))?;
    let mut built = Vec::new();
    for t in SELFTESTS {
        let st = Command::new("make")
            .arg("-C")
            .arg(src.join("tools/testing/selftests/mm"))
            .arg(format!("OUTPUT={}", out.display()))
            .arg(format!("KHDR_INCLUDES=-isystem {}/usr/include", hdr.display()))
            .arg(out.join(t))
            .stdout(std::process::Stdio::null())
            .status()?;
        if st.success() {
            built.push(format!("target/selftests-mm/{t}"));
        } else {
            eprintln!("xtask: selftest {t} did not build here; left out");
        }
    }
    eprintln!("xtask: mm selftests to run: {}", built.join(" "));
    Ok(built)
}

/// Base vs patched, same config and vCPUs: each bundled workload under rmapprof, rmapprof diff
/// of the two, and the cover letter's numbers from that output.
pub fn report(cpus: u32, cover_letter_only: bool) -> Result<()> {
    let out = root().join("target/patches-report");
    if cover_letter_only {
        // After `git format-patch` regenerated patches/, put the last measurements back in.
        let summary =
            std::fs::read_to_string(out.join("summary.txt")).context("no earlier patches-report")?;
        return write_cover_letter(&summary);
    }
    build()?;
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    for (patched, name) in [(false, "base"), (true, "patched")] {
        let dir = format!("target/patches-report/{name}");
        let cmd = ["scripts/patches-report-guest.sh".to_owned(), dir, CYCLES.to_string(), cpus.to_string()];
        let code = vm::run(
            &vm::VmOpts { kernel: vm::OURS, patched, debug: false, cpus, memory: "2G".into(), icount: false },
            &cmd,
        )?;
        if code != 0 {
            bail!("workloads failed on the {name} kernel (exit {code})");
        }
    }
    let rmapprof = root().join("target/release/rmapprof");
    let mut summary = String::new();
    let mut models =
        "Scaling model (rmapprof model; upper bounds, TCG hold times, compare ratios):\n".to_owned();
    for w in ["spawn", "execl", "shellscript"] {
        let o = Command::new(&rmapprof)
            .arg("diff")
            .arg(out.join(format!("base/{w}/report.json")))
            .arg(out.join(format!("patched/{w}/report.json")))
            .arg("-o")
            .arg(out.join(format!("diff-{w}")))
            .output()?;
        if !o.status.success() {
            bail!("rmapprof diff {w}: {}", String::from_utf8_lossy(&o.stderr));
        }
        summary += &format!("--- {w} {CYCLES} -j {cpus} ---\n{}\n", String::from_utf8_lossy(&o.stdout));
        // The serialised ceiling at large CPU counts, before and after (README: Scaling model).
        let m = Command::new(&rmapprof)
            .arg("model")
            .arg(out.join(format!("base/{w}/report.json")))
            .arg(out.join(format!("patched/{w}/report.json")))
            .output()?;
        if !m.status.success() {
            bail!("rmapprof model {w}: {}", String::from_utf8_lossy(&m.stderr));
        }
        std::fs::write(out.join(format!("model-{w}.txt")), &m.stdout)?;
        models += &format!("--- {w} ---\n{}\n", String::from_utf8_lossy(&m.stdout));
    }
    summary += &models;
    summary += &throughput(&out, cpus)?;
    std::fs::write(out.join("summary.txt"), &summary)?;
    print!("{summary}");
    write_cover_letter(&summary)?;
    eprintln!("xtask: wrote {} and patches/0000-cover-letter.patch", out.join("summary.txt").display());
    Ok(())
}

/// Workload throughput, cycles per second, unprofiled: the median of three runs per kernel.
fn throughput(out: &Path, cpus: u32) -> Result<String> {
    let read = |k: &str| -> Result<Vec<(String, f64)>> {
        let t = std::fs::read_to_string(out.join(k).join("throughput.txt"))?;
        let mut runs: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for l in t.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let (Some(w), Some(Ok(n)), Some(Ok(ns))) =
                (f.first(), f.get(1).map(|v| v.parse::<f64>()), f.get(2).map(|v| v.parse::<f64>()))
            {
                runs.entry((*w).to_owned()).or_default().push(n / (ns / 1e9));
            }
        }
        Ok(runs
            .into_iter()
            .map(|(w, mut v)| {
                v.sort_by(|a, b| a.total_cmp(b));
                (w, v[v.len() / 2])
            })
            .collect())
    };
    let (b, p) = (read("base")?, read("patched")?);
    let mut s =
        format!("workload throughput, cycles/s, unprofiled, median of 3, {cpus} vCPUs under QEMU TCG\n");
    s += &format!("{:<14} {:>10} {:>10} {:>7}\n", "WORKLOAD", "BASE", "PATCHED", "DELTA");
    for ((w, x), (_, y)) in b.iter().zip(&p) {
        s += &format!("{w:<14} {x:>10.1} {y:>10.1} {:>+6.1}%\n", (y - x) * 100.0 / x);
    }
    Ok(s)
}

/// Regenerates the cover letter with `git format-patch --cover-letter` layout: the blurb from
/// xtask/cover-letter.in, the measured numbers, then the shortlog and diffstat already there.
fn write_cover_letter(numbers: &str) -> Result<()> {
    let path = root().join("patches/0000-cover-letter.patch");
    let old = std::fs::read_to_string(&path).context("patches/0000-cover-letter.patch")?;
    let template = std::fs::read_to_string(root().join("xtask/cover-letter.in"))?;
    let (subject, blurb) =
        template.split_once("\n\n").context("cover-letter.in: subject, blank line, body")?;
    let version = vm::kernel_version(&vm::unpacked_source(vm::OURS)?)?;
    let package = vm::package_version(vm::OURS);
    let blurb = blurb
        .replace(
            "@BASE@",
            &format!(
                "Debian linux-source-{} {package} from {} (Linux {version})",
                vm::OURS,
                vm::package_suite(vm::OURS)
            ),
        )
        .replace("@NUMBERS@", numbers.trim_end());
    // Keep git's header lines and the shortlog/diffstat tail (from git's "AUTHOR (N):" line).
    let header_end = old.find("Subject:").context("cover letter without Subject")?;
    let tail = shortlog_start(&old).map(|i| &old[i..]).unwrap_or("");
    let n = series()?.len() - 1;
    // The subject prefix format-patch was given ("RFC PATCH v2"), kept from the letter there.
    let prefix = old[header_end..]
        .strip_prefix("Subject: [")
        .and_then(|s| s.split_once(" 0/"))
        .map(|(p, _)| p.to_owned())
        .unwrap_or_else(|| "PATCH".into());
    let text = format!(
        "{}Subject: [{prefix} 0/{n}] {}\n\n{}\n\n{}",
        &old[..header_end],
        subject.trim(),
        blurb.trim_end(),
        tail
    );
    std::fs::write(&path, text)?;
    Ok(())
}

/// Where `git format-patch --cover-letter`'s shortlog starts: its "AUTHOR (N):" line.
fn shortlog_start(letter: &str) -> Option<usize> {
    let mut at = 0;
    for line in letter.split_inclusive('\n') {
        let l = line.trim_end();
        if let Some(n) = l.strip_suffix("):").and_then(|h| h.rsplit_once(" (")).map(|(_, n)| n) {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return Some(at);
            }
        }
        at += line.len();
    }
    None
}
