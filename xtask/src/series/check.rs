//! `patches-check`: the series checked (checkpatch, the vma tests, exec layout, the negative
//! control, the debug kernel, memory pressure, the glibc change).

use anyhow::{bail, Context, Result};
use std::{process::Command, time::Instant};

use super::{evidence, guest::guest_results, mm_checks};
use crate::{
    host::{root, sh},
    kernel,
    setup::build,
    vm,
};

/// Every part's latest lines for the series in patches/ now, what the letter quotes.
const CHECK_SUMMARY: &str = "target/patches-check/results.txt";

/// Each part's lines of its latest run, after a hash of the series' diffs they are for
/// (`part-PART.txt`): committed, so that the letter's evidence outlives the machine it ran on.
const PART_DIR: &str = "patches/checks";

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
const PARTS: [&str; 7] = ["checkpatch", "vma-tests", "layout", "negative", "debug", "pressure", "glibc"];

/// checkpatch --strict on every patch; exec layout base vs patched; the test-only negative
/// control; stress, selftests and fault injection under lockdep and DEBUG_VM on the patched
/// kernel; lockdep under memory pressure. Every check ends in one PASS/FAIL line, printed
/// together at the end (and in target/patches-check/results.txt); any FAIL fails the command.
pub fn check(
    cpus: u32,
    seconds: u32,
    fault_iterations: u32,
    vmtests_seconds: u32,
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
    // Where each part's lines start in `lines`.
    let mut parts: Vec<(&str, usize)> = Vec::new();

    if want("checkpatch") {
        parts.push(("checkpatch", lines.len()));
        let t = Instant::now();
        let src = kernel::unpacked_source(kernel::OURS)?;
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

    if want("vma-tests") {
        parts.push(("vma-tests", lines.len()));
        let t = Instant::now();
        lines.push(vma_tests(build_only)?);
        times.push(("vma-tests".into(), t.elapsed().as_secs()));
    }

    if want("layout") {
        parts.push(("layout", lines.len()));
        // Base and patched, non-debug: the same programs, the same script, then a byte diff.
        let t = Instant::now();
        evidence::build_elf_programs()?;
        if build_only {
            kernel::build_kernel(kernel::OURS, false, false)?;
            kernel::build_kernel(kernel::OURS, true, false)?;
        }
        for (patched, name) in [(false, "base"), (true, "patched")].into_iter().filter(|_| !build_only) {
            let dir = format!("target/patches-check/layout-{name}");
            let code = vm::run_image(
                &pinned_image(patched, false)?,
                &vm::VmOpts::ours(patched, cpus),
                &["scripts/series/exec-layout-guest.sh".to_owned(), dir],
            )?;
            if code != 0 {
                lines.push(format!(
                    "FAIL exec-layout: scripts/series/exec-layout-guest.sh exited {code} on {name}"
                ));
            }
        }
        if !build_only {
            lines.extend(evidence::compare_layouts(&out.join("layout-base"), &out.join("layout-patched")));
        }
        times.push(("layout (base + patched boots)".into(), t.elapsed().as_secs()));
    }

    if want("negative") {
        parts.push(("negative", lines.len()));
        let t = Instant::now();
        match evidence::negative_control_kernel() {
            Ok(_) if build_only => {}
            Ok(image) => {
                let opts = vm::VmOpts {
                    kernel: kernel::OURS,
                    patched: true,
                    debug: false,
                    cpus,
                    memory: "2G".into(),
                    icount: false,
                };
                let cmd = [
                    "scripts/series/negative-control-guest.sh".to_owned(),
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

    // The debug kernel the debug part booted, booted again by the pressure part.
    let mut debug_image = None;
    if want("debug") {
        parts.push(("debug", lines.len()));
        let t = Instant::now();
        let image = pinned_image(true, true)?;
        let selftests = build_selftests()?;
        evidence::build_exec_selftests(
            &kernel::source(kernel::OURS, true)?,
            &kernel::build_dir(kernel::OURS, true, true),
        )?;
        let mm_checks = mm_checks::build()?;
        let mut cmd = vec![
            "scripts/series/patches-check-guest.sh".to_owned(),
            results("debug").0,
            seconds.to_string(),
            fault_iterations.to_string(),
            mm_checks.strip_prefix(root())?.display().to_string(),
        ];
        cmd.extend([selftests, VMTESTS_BUDGET.to_string(), vmtests_seconds.to_string()]);
        cmd.extend(VMTESTS.iter().map(|c| c.to_string()));
        if build_only {
            return finish(&lines, &parts, &times, t0, true);
        }
        // 4G: mremap_test moves 2GB regions.
        let opts = vm::VmOpts {
            kernel: kernel::OURS,
            patched: true,
            debug: true,
            cpus,
            memory: "4G".into(),
            icount: false,
        };
        guest_results(&mut lines, &results("debug").1, "debug-kernel checks", || {
            vm::run_image(&image, &opts, &cmd)
        })?;
        debug_image = Some(image);
        times.push(("debug kernel: stress, selftests, fault injection".into(), t.elapsed().as_secs()));
    }

    if want("pressure") && !build_only {
        parts.push(("pressure", lines.len()));
        let t = Instant::now();
        let opts = vm::VmOpts {
            kernel: kernel::OURS,
            patched: true,
            debug: true,
            cpus,
            memory: "512M".into(),
            icount: false,
        };
        let cmd = [
            "scripts/series/pressure-guest.sh".to_owned(),
            results("pressure").0,
            "target/patches-check/kmsg-pressure.txt".to_owned(),
            seconds.to_string(),
        ];
        let image = match debug_image.take() {
            Some(image) => image,
            None => pinned_image(true, true)?,
        };
        guest_results(&mut lines, &results("pressure").1, "lockdep-under-pressure", || {
            vm::run_image(&image, &opts, &cmd)
        })?;
        times.push(("debug kernel, 512M: lockdep under memory pressure".into(), t.elapsed().as_secs()));
    }

    if want("glibc") {
        parts.push(("glibc", lines.len()));
        let t = Instant::now();
        super::glibc::check(&mut lines, cpus, build_only)?;
        times.push(("glibc (two builds, elf tests, two boots)".into(), t.elapsed().as_secs()));
    }

    finish(&lines, &parts, &times, t0, build_only)
}

/// Our kernel as a part boots it: built (or found current) once, then copied to
/// target/patches-check, so that vm/*.config or the series edited while patches-check runs
/// changes no later boot of the run.
fn pinned_image(patched: bool, debug: bool) -> Result<std::path::PathBuf> {
    let built = kernel::build_kernel(kernel::OURS, patched, debug)?;
    let name =
        format!("bzImage-{}{}", if patched { "patched" } else { "base" }, if debug { "-debug" } else { "" });
    let pinned = evidence::out_dir().join(name);
    std::fs::copy(&built, &pinned).with_context(|| format!("copying {}", built.display()))?;
    Ok(pinned)
}

/// The userspace VMA tests of the patched tree (tools/testing/vma: mm/vma.c built with stubs,
/// link_file_vma_batch_*() among what they test), built and run on this machine: one line.
fn vma_tests(build_only: bool) -> Result<String> {
    let dir = kernel::source(kernel::OURS, true)?.join("tools/testing/vma");
    let jobs = crate::host::make_jobs();
    if let Err(e) = sh(Command::new("make").arg("-C").arg(&dir).args(["-s", "-j", &jobs])) {
        return Ok(format!("FAIL vma-tests: tools/testing/vma did not build: {e:#}"));
    }
    if build_only {
        return Ok("PASS vma-tests: built".into());
    }
    let o = Command::new(dir.join("vma")).current_dir(&dir).output()?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    let last = text.lines().rfind(|l| l.contains("tests run")).unwrap_or("no summary line").trim().to_owned();
    let failed: Vec<&str> = text.lines().filter(|l| l.contains("FAILED")).collect();
    Ok(if o.status.success() && failed.is_empty() {
        format!("PASS vma-tests: tools/testing/vma: {last}")
    } else {
        format!("FAIL vma-tests: tools/testing/vma: {last} {}", failed.join("; "))
    })
}

/// Writes and prints the result lines, one per check, and the times; fails on any FAIL of
/// this run. Each part's lines are kept (target/patches-check/part-PART.txt, with the series
/// they are for), and results.txt, what the letter quotes, is every part's latest lines for
/// the series in patches/ now: a part run again with `--only` replaces its own lines only.
fn finish(
    lines: &[String],
    parts: &[(&str, usize)],
    times: &[(String, u64)],
    t0: Instant,
    build_only: bool,
) -> Result<()> {
    if build_only {
        eprintln!("xtask: patches-check --build-only: built in {} s", t0.elapsed().as_secs());
        return Ok(());
    }
    // SKIP: what was not run, and why (the VM cannot, or the time budget was spent).
    let failed = lines.iter().filter(|l| !l.starts_with("PASS ") && !l.starts_with("SKIP ")).count();
    let dir = root().join(PART_DIR);
    std::fs::create_dir_all(&dir)?;
    let stamp = stamp()?;
    for (i, (part, start)) in parts.iter().enumerate() {
        let end = parts.get(i + 1).map_or(lines.len(), |p| p.1);
        let text: Vec<String> =
            std::iter::once(stamp.clone()).chain(lines[*start..end].iter().cloned()).collect();
        std::fs::write(dir.join(format!("part-{part}.txt")), text.join("\n") + "\n")?;
    }
    let (all, of) = summary()?;
    let earlier: Vec<&str> = of.into_iter().filter(|p| !parts.iter().any(|(q, _)| q == p)).collect();
    std::fs::write(root().join(CHECK_SUMMARY), all.join("\n") + "\n")?;
    println!("\npatches-check on {} patches/ ({}):", kernel::OURS, series_names()?.join(" "));
    for l in lines {
        println!("{l}");
    }
    println!(
        "patches-check: {} checks, {} in {} s ({}); results.txt: {} lines{}",
        lines.len(),
        if failed == 0 { "all passed".to_owned() } else { format!("{failed} FAILED") },
        t0.elapsed().as_secs(),
        times.iter().map(|(p, s)| format!("{p} {s} s")).collect::<Vec<_>>().join(", "),
        all.len(),
        if earlier.is_empty() {
            String::new()
        } else {
            format!(", with those of {} from earlier runs of this series", earlier.join(", "))
        }
    );
    if failed > 0 {
        bail!("patches-check: {failed} of {} checks failed", lines.len());
    }
    Ok(())
}

fn stamp() -> Result<String> {
    Ok(format!("series {}", kernel::series_stamp(kernel::OURS)?))
}

/// The lines of every part whose latest run was on the series in patches/ now, in the order
/// of `PARTS`, and those parts.
pub fn summary() -> Result<(Vec<String>, Vec<&'static str>)> {
    let stamp = stamp()?;
    let (mut all, mut of) = (Vec::new(), Vec::new());
    for part in PARTS {
        let text = std::fs::read_to_string(root().join(PART_DIR).join(format!("part-{part}.txt")))
            .unwrap_or_default();
        let mut l = text.lines();
        if l.next() == Some(stamp.as_str()) {
            all.extend(l.map(str::to_owned));
            of.push(part);
        }
    }
    Ok((all, of))
}

/// The series' patch names, without the cover letter.
fn series_names() -> Result<Vec<String>> {
    Ok(series()?
        .iter()
        .filter(|p| !p.to_string_lossy().contains("0000-cover-letter"))
        .map(|p| p.file_name().unwrap().to_string_lossy().chars().take(4).collect())
        .collect())
}

/// The mm selftests, all of them, built from the patched tree's tools/testing/selftests/mm
/// against its UAPI headers into target/selftests-mm with the scripts run_vmtests.sh runs
/// (`make -k`: a test that does not build here is named, and run_vmtests.sh skips it). Returns
/// that directory, relative to the repository.
fn build_selftests() -> Result<String> {
    let src = kernel::source(kernel::OURS, true)?;
    let tests = src.join("tools/testing/selftests/mm");
    let out = root().join("target/selftests-mm");
    std::fs::create_dir_all(&out)?;
    let hdr = kernel::build_dir(kernel::OURS, true, true);
    sh(Command::new("make").arg("-C").arg(&src).arg(format!("O={}", hdr.display())).args(["-s", "headers"]))?;
    let jobs = crate::host::make_jobs();
    let built = Command::new("make")
        .arg("-C")
        .arg(&tests)
        .args(["-k", "-j", &jobs])
        .arg(format!("OUTPUT={}", out.display()))
        .arg(format!("KHDR_INCLUDES=-isystem {}/usr/include", hdr.display()))
        .stdout(std::process::Stdio::null())
        .status()?;
    for e in std::fs::read_dir(&tests)?.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "sh") {
            std::fs::copy(&p, out.join(e.file_name()))?;
        }
    }
    if !built.success() {
        eprintln!("xtask: some mm selftests did not build here (make -k above); run_vmtests.sh skips them");
    }
    Ok("target/selftests-mm".into())
}

/// run_vmtests.sh's categories patches-check runs on the debug kernel, in this order (the
/// paths the series changes first); each within [`VMTESTS_BUDGET`] seconds, all within
/// `--vmtests-seconds`. Those the VM cannot run are listed by scripts/series/vmtests-guest.sh.
const VMTESTS: &[&str] = &[
    "mmap",
    "mremap",
    "madv_guard",
    "vma_merge",
    "userfaultfd",
    "hugetlb",
    "cow",
    "rmap",
    "mlock",
    "madv_populate",
    "process_madv",
    "process_mrelease",
    "mkdirty",
    "mdwe",
    "pagemap",
    "soft_dirty",
    "pfnmap",
    "memfd_secret",
    "gup_test",
    "pkey",
    "compaction",
    "ksm",
    "thp",
];
/// Seconds for one category on the debug kernel under TCG (KASAN, lockdep, the maple tree
/// checked on every store: tens of times slower than a normal kernel on hardware); hugetlb
/// with its cgroup tests is the longest (docs/bench/2026-12-07-patches-check-debug.md).
const VMTESTS_BUDGET: u32 = 900;
