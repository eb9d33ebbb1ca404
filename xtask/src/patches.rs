//! patches/: checking the series (`patches-check`) and measuring it (`patches-report`).

use anyhow::{bail, Context, Result};
use std::{path::Path, process::Command};

use crate::{
    host::{root, sh},
    kernel,
    setup::build,
    vm,
};

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

/// checkpatch --strict on every patch, then the stress test and selftests under lockdep and
/// DEBUG_VM on the patched kernel.
pub fn check(cpus: u32, seconds: u32) -> Result<()> {
    build()?;
    let src = kernel::unpacked_source(kernel::OURS)?;
    for p in series()?.iter().filter(|p| !p.to_string_lossy().contains("0000-cover-letter")) {
        sh(Command::new(src.join("scripts/checkpatch.pl")).args(["--strict", "--no-tree", "-q"]).arg(p))?;
        eprintln!("xtask: checkpatch --strict: {} clean", p.file_name().unwrap().to_string_lossy());
    }
    kernel::build_kernel(kernel::OURS, true, true)?;
    let selftests = build_selftests()?;
    let mut cmd = vec!["scripts/patches-check-guest.sh".to_owned(), seconds.to_string()];
    cmd.extend(selftests);
    // 4G: mremap_test moves 2GB regions.
    let code = vm::run(
        &vm::VmOpts {
            kernel: kernel::OURS,
            patched: true,
            debug: true,
            cpus,
            memory: "4G".into(),
            icount: false,
        },
        &cmd,
    )?;
    if code != 0 {
        bail!("patched kernel failed its checks (exit {code})");
    }
    Ok(())
}

/// The mm selftests that exercise fork, mremap, MAP_FIXED and splits, built from the patched
/// tree's tools/testing/selftests/mm against its UAPI headers; paths relative to the repo.
const SELFTESTS: &[&str] =
    &["cow", "mremap_test", "mremap_dontunmap", "map_fixed_noreplace", "madv_populate", "mseal_test"];

fn build_selftests() -> Result<Vec<String>> {
    let src = kernel::source(kernel::OURS, true)?;
    let out = root().join("target/selftests-mm");
    std::fs::create_dir_all(&out)?;
    let hdr = kernel::build_dir(kernel::OURS, true, true);
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
            &vm::VmOpts {
                kernel: kernel::OURS,
                patched,
                debug: false,
                cpus,
                memory: "2G".into(),
                icount: false,
            },
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
        // The serialised ceiling at large CPU counts, before and after (docs/design.md, "The scaling model").
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
    let version = kernel::kernel_version(&kernel::unpacked_source(kernel::OURS)?)?;
    let package = kernel::package_version(kernel::OURS);
    let blurb = blurb
        .replace(
            "@BASE@",
            &format!(
                "Debian linux-source-{} {package} from {} (Linux {version})",
                kernel::OURS,
                kernel::package_suite(kernel::OURS)
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
