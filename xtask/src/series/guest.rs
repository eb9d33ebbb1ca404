//! A guest's PASS/FAIL/SKIP lines for patches-check, and a boot that is not used: one whose
//! kernel reported something before any user program ran.

use anyhow::Result;
use std::path::Path;

/// Boots a guest whose scripts append PASS/FAIL lines to `results`; takes those lines, and
/// one FAIL line of its own when the guest failed without saying which check did.
pub fn guest_results(
    lines: &mut Vec<String>,
    results: &Path,
    label: &str,
    boot: impl Fn() -> Result<i32>,
) -> Result<()> {
    for n in 1..=BOOTS {
        let _ = std::fs::remove_file(results);
        let code = boot();
        let new: Vec<String> = std::fs::read_to_string(results)
            .unwrap_or_default()
            .lines()
            .filter(|l| ["PASS ", "FAIL ", "SKIP "].iter().any(|p| l.starts_with(p)))
            .map(str::to_owned)
            .collect();
        let _ = std::fs::remove_file(results);
        let any_fail = new.iter().any(|l| l.starts_with("FAIL"));
        lines.extend(new.iter().cloned());
        match code {
            Ok(SPOILED_BOOT) if n < BOOTS => {
                eprintln!("xtask: {label}: a kernel report before any user program ran; booting again");
                continue;
            }
            Ok(0) if !new.is_empty() => {}
            Ok(c) if !any_fail => {
                lines.push(format!("FAIL {label}: guest exited {c} with {} results", new.len()))
            }
            Ok(_) => {}
            Err(e) => lines.push(format!("FAIL {label}: {e:#}")),
        }
        break;
    }
    Ok(())
}

/// A guest script's exit when the kernel reported something before any user program ran
/// (scripts/series/boot-report.sh, which writes its `SKIP boot:` line): that boot is not
/// used, the next one is, up to `BOOTS`.
const SPOILED_BOOT: i32 = 75;
const BOOTS: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::root;
    use std::{cell::Cell, process::Command};

    /// A guest that writes `lines` to `results` and exits `code`, once per boot in turn.
    fn guest(boots: &[(&[&str], i32)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results.txt");
        let n = Cell::new(0);
        let mut lines = Vec::new();
        guest_results(&mut lines, &results, "checks", || {
            let (out, code) = boots[n.get()];
            n.set(n.get() + 1);
            std::fs::write(&results, out.join("\n") + "\n").unwrap();
            Ok(code)
        })
        .unwrap();
        assert_eq!(n.get(), boots.len(), "boots");
        lines
    }

    const SPOILED: (&[&str], i32) =
        (&["SKIP boot: not used, a kernel report came before any user program ran: BUG"], 75);

    #[test]
    fn a_boot_with_a_report_before_any_user_program_is_replaced() {
        let lines = guest(&[SPOILED, (&["PASS stress: ok"], 0)]);
        assert_eq!(lines, [SPOILED.0[0], "PASS stress: ok"]);
    }

    #[test]
    fn three_spoiled_boots_fail() {
        let lines = guest(&[SPOILED, SPOILED, SPOILED]);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[3], "FAIL checks: guest exited 75 with 1 results");
    }

    /// boot-report.sh reads the log up to the first user program only.
    #[test]
    fn boot_report_sees_only_reports_before_init() {
        let dir = tempfile::tempdir().unwrap();
        let dmesg = dir.path().join("dmesg");
        let run = |log: &str| {
            std::fs::write(&dmesg, format!("#!/bin/sh\nprintf '%s' '{log}'\n")).unwrap();
            std::fs::set_permissions(&dmesg, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap());
            let o = Command::new("sh")
                .arg(root().join("scripts/series/boot-report.sh"))
                .arg(dir.path().join("results.txt"))
                .env("PATH", path)
                .output()
                .unwrap();
            (o.status.code(), String::from_utf8(o.stdout).unwrap())
        };
        let bug = "[    0.003700] BUG: KASAN: wild-memory-access in do_raw_spin_lock+0x1/0x2\n";
        let init = "[    0.504027] Run /init as init process\n";
        assert_eq!(run(&format!("[0.0] Linux\n{bug}{init}")), (Some(0), bug.to_owned()));
        let skip = std::fs::read_to_string(dir.path().join("results.txt")).unwrap();
        assert_eq!(
            skip,
            format!("SKIP boot: not used, a kernel report came before any user program ran: {bug}")
        );
        assert_eq!(run(&format!("[0.0] Linux\n{init}{bug}")), (Some(1), String::new()));
        assert_eq!(run(&format!("[0.0] Linux\n{init}")), (Some(1), String::new()));
    }

    /// vmtests-summary.sh names every skip run_vmtests.sh reports, each way it reports one, and
    /// does not pass a log whose own SUMMARY counts more than it read.
    #[test]
    fn vmtests_summary_names_every_skip() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.txt");
        let run = |text: &str, category: &str| {
            std::fs::write(&log, text).unwrap();
            let o = Command::new("sh")
                .arg(root().join("scripts/series/vmtests-summary.sh"))
                .arg(&log)
                .arg(category)
                .output()
                .unwrap();
            assert!(o.status.success(), "{o:?}");
            String::from_utf8(o.stdout).unwrap()
        };
        // The shape of 7.2's run_vmtests.sh -t thp (and -t mlock) without XFS or sudo.
        let log =
            "TAP version 13\n# SKIP ./on-fault-limit\n# running ./khugepaged\n# [PASS]\nok 1 khugepaged\n\
                   # running ./uffd-wp\n# uffd-wp: no write-protect support\n# [SKIP]\nok 2 uffd-wp # SKIP\n\
                   # [SKIP] ./khugepaged all:file\n# running ./split\n# [FAIL]\nnot ok 4 split # exit=1\n\
                   # SUMMARY: PASS=1 SKIP=2 FAIL=1\n1..4\n";
        assert_eq!(
            run(log, "thp"),
            "1 passed, 2 skipped [uffd-wp (uffd-wp: no write-protect support); ./khugepaged all:file \
             (needs an XFS file system to mount; the VM kernel has no XFS)], 1 failed [split # exit=1]"
        );
        assert!(
            run(log, "mlock")
                .contains("3 skipped [./on-fault-limit (runs as nobody through sudo; the VM has no sudo); "),
            "on-fault-limit is mlock's"
        );
        // A skip in a form not known here leaves the counts short of run_vmtests.sh's.
        let unknown =
            "# running ./a\n# [PASS]\nok 1 a\n# something new ./b\n# SUMMARY: PASS=1 SKIP=1 FAIL=0\n";
        let s = run(unknown, "mmap");
        assert_eq!(s, "1 passed, 0 skipped, 0 failed; run_vmtests.sh counted PASS=1 SKIP=1 FAIL=0");
        assert!(!s.ends_with(", 0 failed"), "vmtests-guest.sh passes only what ends in \", 0 failed\"");
    }

    /// The checks that fail on a kernel report read the one pattern file, so none of them can
    /// miss a kind of report another catches.
    #[test]
    fn every_kernel_log_check_reads_kernel_reports_ere() {
        let dir = root().join("scripts/series");
        for s in ["patches-check-guest.sh", "boot-report.sh", "fault-inject-guest.sh", "pressure-guest.sh"] {
            let text = std::fs::read_to_string(dir.join(s)).unwrap();
            assert!(text.contains("kernel-reports.ere"), "{s} does not read kernel-reports.ere");
            assert!(!text.contains("circular locking"), "{s} has a copy of the patterns of its own");
        }
        let re = |line: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "printf '%s\\n' \"$1\" | grep -qE -f {}",
                    dir.join("kernel-reports.ere").display()
                ))
                .arg("sh")
                .arg(line)
                .status()
                .unwrap()
                .success()
        };
        for report in [
            "[ 9.1] rcu: INFO: rcu_preempt self-detected stall on CPU",
            "[ 9.1] kernel BUG at mm/hugetlb.c:7081!",
            "[ 9.1] BUG: Bad rss-counter state mm:0000 type:MM_FILEPAGES val:1",
            "[ 9.1] page dumped because: nonzero mapcount",
            "[ 9.1] WARNING: possible circular locking dependency detected",
        ] {
            assert!(re(report), "not a report: {report}");
        }
        assert!(!re("[ 9.1] Run /init as init process"));
    }
}
