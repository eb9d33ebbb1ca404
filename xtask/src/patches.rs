//! patches/: checking the series (`patches-check`) and measuring it (`patches-report`).

use anyhow::{bail, Context, Result};
use std::{path::Path, process::Command};

use crate::{
    host::{root, sh},
    kernel, letter,
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
/// of the two (exact write acquisitions per cycle by file and caller), instructions per cycle
/// under QEMU's instruction-count clock, then the cover letter and its addresses.
pub fn report(cpus: u32, cover_letter_only: bool) -> Result<()> {
    let me = letter::Identity::from_git_config()?;
    let patches = kernel::series(kernel::OURS)?;
    letter::check_authorship(&patches, &me)?;
    let out = root().join("target/patches-report");
    if !cover_letter_only {
        build()?;
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        measure(&out, cpus)?;
    }
    // After `git format-patch` regenerated patches/, `--cover-letter-only` puts the last
    // measurements back in.
    let read =
        |f: &str| std::fs::read_to_string(out.join(f)).with_context(|| format!("no {f}: run patches-report"));
    let correctness = std::fs::read_to_string(root().join(CHECK_SUMMARY))
        .with_context(|| format!("no {CHECK_SUMMARY}: run `cargo xtask patches-check` first"))?;
    letter::write_cover_letter(&[
        ("ACQUISITIONS", read("acquisitions.txt")?),
        ("INSTRUCTIONS", read("instructions.txt")?),
        ("CORRECTNESS", correctness),
    ])?;
    letter::address(&patches, &root().join("patches/0000-cover-letter.patch"), &me)?;
    eprintln!("xtask: wrote patches/0000-cover-letter.patch and the To:/Cc: of every patch");
    Ok(())
}

/// Where patches-check leaves one line per check, for the cover letter.
pub const CHECK_SUMMARY: &str = "target/patches-check/summary.txt";

/// Runs the workloads on both kernels, writing acquisitions.txt and instructions.txt in `out`.
fn measure(out: &Path, cpus: u32) -> Result<()> {
    for (patched, name) in [(false, "base"), (true, "patched")] {
        let dir = format!("target/patches-report/{name}");
        let cmd =
            ["scripts/patches-report-guest.sh".to_owned(), dir.clone(), CYCLES.to_string(), cpus.to_string()];
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
    let mut acquisitions = String::new();
    for w in WORKLOADS {
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
        // The acquisition table only: wait times under TCG are not evidence for a post.
        let diff = String::from_utf8_lossy(&o.stdout);
        acquisitions += &format!("--- {w} {CYCLES} -j {cpus} ---\n{}\n\n", acquisition_table(&diff));
        // The serialised ceiling at large CPU counts, before and after (docs/design.md), for the
        // reader of target/patches-report; not for the letter (TCG hold times).
        let m = Command::new(&rmapprof)
            .arg("model")
            .arg(out.join(format!("base/{w}/report.json")))
            .arg(out.join(format!("patched/{w}/report.json")))
            .output()?;
        if m.status.success() {
            std::fs::write(out.join(format!("model-{w}.txt")), &m.stdout)?;
        }
    }
    std::fs::write(out.join("acquisitions.txt"), &acquisitions)?;
    let instructions = INSTRUCTIONS_NOT_MEASURED.to_owned();
    std::fs::write(out.join("instructions.txt"), &instructions)?;
    print!("{acquisitions}{instructions}");
    Ok(())
}

/// The header and acquisition table of `rmapprof diff`'s output: up to the blank line that
/// ends the table under its "write acquisitions" heading.
fn acquisition_table(diff: &str) -> String {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in diff.lines() {
        if line.contains("write acquisitions per cycle") {
            in_table = true;
        } else if in_table && line.trim().is_empty() {
            break;
        }
        out.push(line);
    }
    out.join("\n").trim_end().to_owned()
}

/// The workloads of the report: UnixBench's spawn, execl and shellscript shapes.
const WORKLOADS: [&str; 3] = ["spawn", "execl", "shellscript"];
/// What the letter says of instruction counts until they are measured. Timing the workloads
/// on QEMU's instruction-count clock (a 1-vCPU guest timing each workload) does not count
/// instructions: with `sleep=off` the clock jumps over every idle stretch, and the guest idles
/// on each 9p read of a binary or library (50 spawn cycles read 7.3 to 81 G "instructions"
/// in five runs on the 7.2 base kernel).
const INSTRUCTIONS_NOT_MEASURED: &str = "\
  Not yet measured. QEMU's instruction-count clock also advances over
  idle time (file reads from the host), so it gave no instruction count
  we would stand behind. A count from a TCG instruction-counting plugin
  (base vs patched, one vCPU) is the next step.";
