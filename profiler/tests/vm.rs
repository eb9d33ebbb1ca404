//! Tests for our 7.2 kernel and Debian's 6.1, where kprobes and fentry work: `cargo xtask test-vm` builds
//! the kernel, boots it under QEMU and runs these inside (they are #[ignore]d on the host,
//! whose kernel has no kprobes and refuses fentry). Counts here are exact: the kernel's work
//! for these workloads is deterministic.

#[path = "common/report_json.rs"]
mod report_json;

use report_json::read_report;
use rmapprof_report::{ClassRow, Holders, Report, RunMode};
use std::{os::unix::fs::MetadataExt, path::PathBuf, process::Command};

const RMAPPROF: &str = env!("CARGO_BIN_EXE_rmapprof");

fn workload(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release").join(name);
    assert!(p.exists(), "{} missing: cargo xtask test-vm builds it", p.display());
    p
}

/// Runs rmapprof with `args`, returns report.json.
fn profile(args: &[&str]) -> Report {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(RMAPPROF).args(["-o", out.path().to_str().unwrap()]).args(args).output().unwrap();
    assert!(o.status.success(), "rmapprof {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    read_report(&out.path().join("report.json"))
}

#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn every_mode_loads_and_attaches() {
    for (mode, acquisitions) in
        [("fentry", false), ("fentry", true), ("kprobe", false), ("kprobe", true), ("tracepoint", false)]
    {
        let mut args = vec!["--mode", mode, "-d", "300ms"];
        if acquisitions {
            args.push("--acquisitions");
        }
        let r = profile(&args);
        assert_eq!(r.mode.name(), mode);
        assert_eq!(r.acquisitions_counted, Some(acquisitions));
        let all = &r.probes;
        // Without --acquisitions the holders' stacks are not seen, and `probes` says why.
        let holder_stacks = all.iter().find(|p| p.probe == "holder stacks");
        assert_eq!(holder_stacks.is_some(), !acquisitions, "{mode}: {all:?}");
        assert!(holder_stacks.is_none_or(|p| !p.attached && p.error.is_some()));
        let probes: Vec<_> = all.iter().filter(|p| p.probe != "holder stacks").collect();
        let missing: Vec<_> = probes.iter().filter(|p| !p.attached).collect();
        assert!(missing.is_empty(), "{mode}: {missing:?}");
        // 3 tracepoints (the lock's begin and end, and sched_process_exec, which ends a
        // process's program run); 6 probes: entry and return of the 2 slowpaths and osq_lock;
        // with --acquisitions 7 more: entry of down_{write,read}, up_{write,read} and the 3
        // rmap tree functions.
        let want = match (mode, acquisitions) {
            ("tracepoint", _) => 3,
            (_, false) => 9,
            (_, true) => 16,
        };
        assert_eq!(probes.len(), want, "{mode}: {probes:?}");
        let down_write = probes.iter().any(|p| p.probe.ends_with(":down_write"));
        assert_eq!(down_write, acquisitions, "{mode}: {probes:?}");
    }
    // auto prefers fentry.
    assert_eq!(profile(&["-d", "300ms"]).mode, RunMode::Fentry);
}

/// Without --acquisitions, kprobe/fentry modes probe only the slowpaths and osq_lock: two
/// processes mapping and unmapping one file contend on its i_mmap_rwsem (mostly spinning, which
/// the tracepoints miss), and that shows as slowpath and spin time on that file, while what
/// needs every acquisition stays null.
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn waits_alone_see_spinning() {
    for mode in ["fentry", "kprobe"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("churn.dat");
        std::fs::write(&path, vec![1u8; 8192]).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let r = profile(&[
            "--mode",
            mode,
            "--inode",
            path.to_str().unwrap(),
            "--",
            workload("mmap-churn").to_str().unwrap(),
            path.to_str().unwrap(),
            "20000",
            "-j",
            "2",
        ]);
        assert_eq!(r.acquisitions_counted, Some(false));
        let f = r.files.iter().find(|f| f.ino == ino).expect("file reported");
        let slowpaths = f.slowpaths.expect("slowpaths observed in kprobe/fentry mode");
        assert!(slowpaths > 0, "{mode}: no slowpath on a contended file: {f:?}");
        let slowpath_ns = f.slowpath_ns_total.expect("slowpath_ns_total observed in kprobe/fentry mode");
        assert!(slowpath_ns > 0, "{mode}: {f:?}");
        let spin_ns = f.spin_ns_total.expect("spin_ns_total observed in kprobe/fentry mode");
        assert!(spin_ns > 0, "{mode}: {f:?}");
        assert!(slowpath_ns >= spin_ns, "{mode}: spin is part of the slowpath: {f:?}");
        assert!(!f.spin_paths.is_empty(), "{mode}: {f:?}");
        let frames: Vec<&str> = f.spin_paths.iter().flat_map(|p| &p.frames).map(String::as_str).collect();
        assert!(frames.iter().any(|f| f.contains("mmap")), "{mode}: {frames:?}");
        // A contended acquisition's stack comes from the call-site cache, as an
        // acquisition's does, once its site has been seen and checked (4 times).
        let unwind = &r.unwind;
        if slowpaths >= 50 {
            assert!(unwind["cache_hits"] > 0, "{mode}: {unwind:?}");
        }
        for (k, v) in [
            ("acquisitions", f.acquisitions),
            ("hold_ns_total", f.hold_ns_total),
            ("rmap_inserts", f.rmap_inserts),
            ("rmap_removes", f.rmap_removes),
        ] {
            assert!(v.is_none(), "{mode}: {k} not observed without --acquisitions: {f:?}");
        }
        assert!(f.acquire_paths.is_empty(), "{mode}: {f:?}");
    }
}

/// P processes × M (mmap + munmap) of one file: exactly P×M rmap inserts and removes on its
/// inode, and 2·P×M write acquisitions (vma_link_file, unlink_file_vma_batch).
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn rmap_operations_are_exact() {
    let (p, m) = (4u64, 500u64);
    for mode in ["fentry", "kprobe"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("churn.dat");
        std::fs::write(&path, vec![1u8; 8192]).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let count = (p * m).to_string();
        let r = profile(&[
            "--mode",
            mode,
            "--acquisitions",
            "--inode",
            path.to_str().unwrap(),
            "--",
            workload("mmap-churn").to_str().unwrap(),
            path.to_str().unwrap(),
            &count,
            "-j",
            &p.to_string(),
        ]);
        assert_eq!(r.cycles, Some(p * m), "cycles");
        let f = r.files.iter().find(|f| f.ino == ino).expect("file reported");
        // Exact, unless the kernel skipped runs of our programs (a preempted fentry program on
        // a PREEMPT_LAZY kernel): then short by no more than the misses it reports.
        let skipped = r.lost["recursion_misses"];
        let skipped_by = &r.recursion_misses;
        let exact = |row: &dyn std::fmt::Debug, field: &str, got: Option<u64>, want: u64| {
            let got = got.unwrap_or_else(|| panic!("{field} missing in {row:?}"));
            let why = format!("{mode}: {field} {got} of {want}, {skipped} skipped ({skipped_by:?}): {row:?}");
            assert!(got <= want && want - got <= skipped, "{why}");
        };
        exact(f, "rmap_inserts", f.rmap_inserts, p * m);
        exact(f, "rmap_removes", f.rmap_removes, p * m);
        exact(f, "acquisitions", f.acquisitions, 2 * p * m);
        if mode == "kprobe" {
            // Kprobe programs run with preemption off: nothing of ours nests on the CPU.
            assert_eq!(f.acquisitions, Some(2 * p * m), "{mode}: {f:?}");
        }
        // Holds start at down_write entry (or when a slowpath grants the lock) and end at
        // up_write: an insert or a remove each, microseconds even under TCG.
        let mean_hold = f.hold_ns_total.expect("hold_ns_total observed with --acquisitions") / (2 * p * m);
        assert!((1..10_000_000).contains(&mean_hold), "{mode}: mean hold {mean_hold} ns: {f:?}");
        let class = |c: &str| f.by_class.iter().find(|r| r.class == c);
        let mmap = class("mmap").expect("mmap row");
        exact(mmap, "write_acquisitions", mmap.write_acquisitions, p * m);
        let teardown = class("teardown").expect("teardown row");
        exact(teardown, "write_acquisitions", teardown.write_acquisitions, p * m);
        // Both modes unwind once per call site: the loop's two sites (map, unmap) at one
        // depth each, so nearly all of its 2·P×M acquisitions reuse a stack. The unwinds and
        // conflicts also cover the processes' start and exit (exec, ld.so mapping
        // libraries), which this does not bound.
        let unwind = &r.unwind;
        assert!(unwind["cache_hits"] >= 2 * p * m * 9 / 10, "{mode}: {unwind:?}");
    }
}

/// The call-site stack cache names the same call paths with the same counts as unwinding
/// every acquisition, on fork+exec+exit, the workload with the most call sites: in kprobe
/// mode (return address at `regs->sp`) and fentry mode (read through the trampoline's
/// frame).
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn call_site_cache_changes_no_call_path() {
    for mode in ["kprobe", "fentry"] {
        call_site_cache_changes_no_call_path_in(mode);
    }
}

fn call_site_cache_changes_no_call_path_in(mode: &str) {
    let spawn = workload("spawn");
    let paths = |check: &str| {
        let r = profile(&[
            "--mode",
            mode,
            "--acquisitions",
            "--stack-cache-check",
            check,
            "--inode",
            "libc.so.6",
            "--",
            spawn.to_str().unwrap(),
            "50",
        ]);
        // By symbol names: one named path can be several stacks (other offsets in a frame).
        let mut by_names = std::collections::BTreeMap::new();
        for p in &r.files[0].acquire_paths {
            *by_names.entry((p.rw.clone(), p.frames.clone())).or_insert(0) += p.acquisitions;
        }
        (by_names, r.unwind)
    };
    let (cached, unwind) = paths("64");
    let (unwound, every) = paths("0");
    // The cache saves unwinds (how many, per kernel and mode: docs/performance.md).
    assert!(unwind["cache_hits"] > 0 && unwind["unwinds"] < every["unwinds"], "{mode}: {unwind:?} {every:?}");
    assert!(cached.len() >= 4, "{mode}: {cached:?}");
    assert_eq!(cached, unwound, "{mode}");
}

/// fork + exec + exit of a dynamically linked binary takes libc's lock the same number of times
/// per cycle, run after run.
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn spawn_acquisitions_per_cycle_are_stable() {
    let spawn = workload("spawn");
    let per_cycle = || {
        let r = profile(&["--acquisitions", "--inode", "libc.so.6", "--", spawn.to_str().unwrap(), "50"]);
        let f = &r.files[0];
        assert!(f.path.as_deref().unwrap().ends_with("libc.so.6"), "{f:?}");
        let rows = &f.by_class;
        let write_per_cycle = |c: &ClassRow| {
            c.per_cycle.as_ref().expect("per_cycle: the cycles are known")["write_acquisitions"]
        };
        let fork = rows.iter().find(|c| c.class == "fork").expect("fork row");
        assert!(write_per_cycle(fork) >= 1.0, "fork takes libc's lock: {fork:?}");
        rows.iter().map(write_per_cycle).sum::<f64>()
    };
    let (a, b) = (per_cycle(), per_cycle());
    assert!(a >= 10.0, "libc write acquisitions per spawn cycle: {a}");
    assert!((a - b).abs() <= 1.0, "{a} vs {b}");
}

/// A probed function missing on this kernel (renamed or inlined; injected here by probing a
/// name the kernel lacks): that probe is skipped and named with its error, the rest attach
/// and keep counting.
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn a_missing_function_skips_only_its_probe() {
    for mode in ["fentry", "kprobe"] {
        let out = tempfile::tempdir().unwrap();
        let o = Command::new(RMAPPROF)
            .env("RMAPPROF_FAULT_MISSING_PROBE", "osq_lock")
            .args(["--mode", mode, "--acquisitions", "-o", out.path().to_str().unwrap(), "--"])
            .arg(workload("spawn"))
            .args(["20", "-j", "2"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{mode}: {}", String::from_utf8_lossy(&o.stderr));
        let r = read_report(&out.path().join("report.json"));
        assert_eq!(r.mode.name(), mode);
        let failed: Vec<_> = r.probes.iter().filter(|p| !p.attached).collect();
        assert_eq!(failed.len(), 2, "{mode}: entry and return of osq_lock: {failed:?}");
        assert!(failed
            .iter()
            .all(|p| p.probe.contains("osq_lock_renamed_by_rmapprof_test") && p.error.is_some()));
        let libc = r.files.iter().find(|f| f.path.as_deref().is_some_and(|p| p.ends_with("/libc.so.6")));
        let acquisitions = libc.expect("libc reported").acquisitions.expect("acquisitions observed");
        assert!(acquisitions > 0, "{mode}: the other probes count");
    }
}

/// More distinct files than the aggregation map has rows for: the overflow is counted under
/// lost.stats_map_full, never silent, and the map stays at its capacity.
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn full_maps_are_counted_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Two OPS rows each (the write holds on the map and on the unmap stack; the rmap operations
    // are counted inside them): more than its 65536.
    let files = 36_000u64;
    for i in 0..files {
        std::fs::write(dir.path().join(format!("{i:05}")), [0u8; 4096]).unwrap();
    }
    let count = files.to_string();
    let r = profile(&[
        "--mode",
        "fentry",
        "--acquisitions",
        "--",
        workload("mmap-churn").to_str().unwrap(),
        dir.path().to_str().unwrap(),
        &count,
    ]);
    let ops = r.map_rows["OPS"];
    assert_eq!(ops.rows, ops.max, "{ops:?}");
    assert!(r.lost["stats_map_full"] > 0, "{:?}", r.lost);
}

/// Runs rmapprof with `args` writing to `target/vm-reports/<kernel release>/<name>` (the
/// repository is shared with the VM, so a reader finds the reports there), returns
/// report.json.
fn profile_kept(name: &str, args: &[&str]) -> Report {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/vm-reports")
        .join(release.trim())
        .join(name);
    // rmapprof makes only the last directory of --output.
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let o = Command::new(RMAPPROF).args(["-o", out.to_str().unwrap()]).args(args).output().unwrap();
    assert!(o.status.success(), "rmapprof {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    read_report(&out.join("report.json"))
}

/// A matrix with the classes only read holds have (truncate, reclaim) read as `readers`: what
/// a run without --acquisitions calls them (it does not name a reader), so two runs compare.
fn read_as_readers(holders: &Holders) -> Vec<(String, String, u64)> {
    let mut cells: Vec<(String, String, u64)> = vec![];
    for c in &holders.matrix {
        let holder = match c.holder.as_str() {
            "truncate" | "reclaim" => "readers",
            h => h,
        };
        let (waiter, n) = (c.waiter.clone(), c.contentions);
        match cells.iter_mut().find(|(w, h, _)| *w == waiter && h == holder) {
            Some(cell) => cell.2 += n,
            None => cells.push((waiter, holder.to_owned(), n)),
        }
    }
    cells
}

/// The (waiter, holder) cell with the most waits.
fn dominant(cells: &[(String, String, u64)]) -> (String, String) {
    let (w, h, _) = cells.iter().max_by_key(|c| c.2).unwrap();
    (w.clone(), h.clone())
}

fn has_cell(cells: &[(String, String, u64)], (waiter, holder): &(String, String)) -> bool {
    cells.iter().any(|(w, h, _)| w == waiter && h == holder)
}

/// The holders workload (a puncher, a forker whose children exit at once, mmap/munmap
/// churners, all on one file): every wait on the file is attributed to a holder of a class
/// the workload has, a task of the workload other than the waiter; with --acquisitions the
/// holders' stacks are known and the dominant waiter x holder pair agrees with the run
/// without.
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn holders_workload_names_its_holders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holders.dat");
    std::fs::write(&path, vec![1u8; 65536]).unwrap();
    let file = path.to_str().unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    let holders_bin = workload("holders");
    let mut seen = vec![];
    for acquisitions in [false, true] {
        let mut args = vec!["--mode", "fentry", "--inode", file];
        if acquisitions {
            args.push("--acquisitions");
        }
        args.extend(["--", holders_bin.to_str().unwrap(), file, "400", "-j", "2"]);
        let name = if acquisitions { "holders-acquisitions" } else { "holders" };
        let r = profile_kept(name, &args);
        let f = r.files.iter().find(|f| f.ino == ino).expect("file reported");
        let slowpaths = f.slowpaths.expect("slowpaths observed in fentry mode");
        assert!(slowpaths > 0, "{name}: no contended acquisition: {f:?}");
        let h = f.holders.as_ref().expect("holders of an i_mmap_rwsem file");
        assert_eq!(h.same_task, 0, "{name}: a task waited for itself: {h:?}");
        let allowed = [
            "fork",
            "mmap",
            "split/merge",
            "teardown",
            "truncate",
            "readers",
            "unknown",
            "other",
            "no stack",
        ];
        let cells = &h.matrix;
        assert!(cells.iter().all(|c| allowed.contains(&c.holder.as_str())), "{name}: {h:?}");
        let known = ["fork", "mmap", "teardown", "truncate", "readers"];
        assert!(cells.iter().any(|c| known.contains(&c.holder.as_str())), "{name}: {h:?}");
        // Every named holder is one of the workload's processes.
        for t in &h.tasks {
            assert_eq!(t.comm.as_deref(), Some("holders"), "{name}: {t:?}");
        }
        // fentry mode: every contended acquisition (slowpath) has its holder.
        let sum: u64 = cells.iter().map(|c| c.contentions).sum();
        assert_eq!(sum, slowpaths, "{name}: every contended acquisition has a holder cell");
        let stacks = &h.stacks;
        if acquisitions {
            assert_eq!(h.source, "tracked holds");
            // A named holder's hold is tracked: its stack is known.
            let named = !h.tasks.is_empty();
            assert!(!named || stacks.iter().any(|s| s.frames.is_some()), "{name}: no holder stack: {h:?}");
        } else {
            assert_eq!(h.source, "owner field");
            assert!(stacks.iter().all(|s| s.frames.is_none()), "{name}: {h:?}");
        }
        seen.push(read_as_readers(h));
    }
    // The two runs agree on the dominant pair: each one's is in the other's matrix.
    let (a, b) = (dominant(&seen[0]), dominant(&seen[1]));
    assert!(has_cell(&seen[1], &a) && has_cell(&seen[0], &b), "{a:?} vs {b:?}: {seen:?}");
}

/// spawn's libc.so.6: the holders of its contended acquisitions (under QEMU they spin rather
/// than sleep), plain, with --acquisitions and with --holder-stacks (the reports are kept
/// under target/vm-reports for the record); never the waiter itself. A holder stack taken at
/// a release (only where the waiter slept) ends at the release, nothing of the wakeup below.
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn spawn_libc_holders_are_other_tasks() {
    let spawn = workload("spawn");
    for (name, option) in [
        ("spawn", None),
        ("spawn-acquisitions", Some("--acquisitions")),
        ("spawn-holder-stacks", Some("--holder-stacks")),
    ] {
        let mut args = vec!["--mode", "fentry", "--inode", "libc.so.6"];
        args.extend(option);
        args.extend(["--", spawn.to_str().unwrap(), "200", "-j", "2"]);
        let r = profile_kept(name, &args);
        let libc = &r.files[0];
        let h = libc.holders.as_ref().unwrap_or_else(|| panic!("{name}: {libc:?}"));
        assert_eq!(h.same_task, 0, "{name}: {h:?}");
        let sum: u64 = h.matrix.iter().map(|c| c.contentions).sum();
        assert_eq!(sum, libc.slowpaths.expect("slowpaths observed in fentry mode"), "{name}: {h:?}");
        if option == Some("--holder-stacks") {
            assert_eq!(h.source, "owner field, stacks at release", "{h:?}");
            for st in &h.stacks {
                let Some(frames) = &st.frames else { continue };
                let leaf = frames.last().map(String::as_str).unwrap_or_default();
                assert!(["up_read", "up_write", "downgrade_write"].contains(&leaf), "{st:?}");
                assert!(!frames.iter().any(|f| f.contains("wake")), "{st:?}");
            }
        }
    }
}

/// `rmapprof serve` in kprobe mode (exact on every kernel: fentry runs can be skipped on
/// PREEMPT_LAZY ones) with --acquisitions, draining the maps every 100 ms while
/// mmap-churn runs: the daemon's report and its last scrape count exactly the acquisitions
/// and rmap operations the workload made (as `rmap_operations_are_exact` does for a run), so
/// draining the operation rows loses nothing; and with 36 000 files churned, which overflow a
/// run's OPS map (`full_maps_are_counted_as_lost`), the daemon loses nothing and folds.
#[test]
#[ignore = "needs kprobes/fentry: run in our kernel with cargo xtask test-vm"]
fn serve_drains_operation_rows_exactly() {
    use std::io::{BufRead, BufReader};
    // The guest's loopback, for the daemon's HTTP endpoint.
    let _ = Command::new("ip").args(["link", "set", "lo", "up"]).status();
    let serve = |out: &std::path::Path, port: u16| {
        let mut child = Command::new(RMAPPROF)
            .args(["serve", "--mode", "kprobe", "--acquisitions", "--refresh", "100ms", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--output")
            .arg(out)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("rmapprof: serving") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "serve exited: {:?}", child.wait());
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        child
    };
    let stop = |mut child: std::process::Child, out: &std::path::Path| -> Report {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert_eq!(child.wait().unwrap().code(), Some(0));
        read_report(&out.join("report.json"))
    };
    let (p, m) = (4u64, 500u64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serve-churn.dat");
    std::fs::write(&path, vec![1u8; 8192]).unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    // Mapped here for the whole test (before the daemon starts, so not counted), so /proc
    // names it at the daemon's first scan: the path is its series' label.
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: a new read-only mapping of an open file, never read through.
    let map = unsafe {
        use std::os::fd::AsRawFd;
        libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0)
    };
    assert_ne!(map, libc::MAP_FAILED);
    let out = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = serve(out.path(), port);
    let st = Command::new(workload("mmap-churn"))
        .arg(&path)
        .args([(p * m).to_string(), "-j".into(), p.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(std::time::Duration::from_millis(600)); // a scrape reads the maps again
    let metrics =
        ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call().unwrap().into_string().unwrap();
    let r = stop(child, out.path());
    assert_eq!(r.mode, RunMode::Kprobe);
    let f = r.files.iter().find(|f| f.ino == ino).expect("file reported");
    assert_eq!(f.acquisitions, Some(2 * p * m), "{f:?}");
    assert_eq!(f.rmap_inserts, Some(p * m), "{f:?}");
    assert_eq!(f.rmap_removes, Some(p * m), "{f:?}");
    // By the inode label: the path label is the file's path only when a process mapping it
    // was seen, and the churners map it for moments at a time.
    let inode = format!("inode=\"{}:{ino}\"", f.dev);
    let scraped = metrics
        .lines()
        .filter(|l| l.starts_with("rmapprof_file_acquisitions_total{") && l.contains(&inode))
        .find_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok());
    assert_eq!(scraped, Some(2 * p * m), "{metrics}");
    assert!(
        metrics.contains("rmapprof_file_slowpaths_total{")
            && metrics.contains("rmapprof_file_spin_seconds_total{")
    );
    assert!(metrics.contains("rmapprof_bpf_seconds_total{program="), "{metrics}");

    // 36 000 files: two OPS rows each, more than the map holds in all. Under TCG the churn
    // can outrun the drain; then what did not fit is counted in lost.stats_map_full: every
    // acquisition is either in the daemon's totals (folded files included) or counted lost.
    let many = tempfile::tempdir().unwrap();
    let files = 36_000u64;
    for i in 0..files {
        std::fs::write(many.path().join(format!("{i:05}")), [0u8; 4096]).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let child = serve(out.path(), port);
    let st = Command::new(workload("mmap-churn")).arg(many.path()).arg(files.to_string()).status().unwrap();
    assert!(st.success());
    let r = stop(child, out.path());
    let counted: u64 = r.files.iter().map(|f| f.acquisitions.unwrap_or(0)).sum();
    let lost = r.lost["stats_map_full"];
    assert!(counted + lost >= 2 * files, "{counted} counted, {lost} lost: {:?}", r.lost);
    let ops = r.map_rows["OPS"];
    assert!(lost > 0 || ops.rows < ops.max, "{ops:?}");
    // Past 50 000 rows the files without a series were folded into device 0:0, inode 0.
    let folded = r.files.iter().find(|f| f.dev == "0:0" && f.ino == 0);
    assert!(
        folded.is_some_and(|f| f.acquisitions.expect("acquisitions observed with --acquisitions") > 0),
        "no folded files"
    );
}
