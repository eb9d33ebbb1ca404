//! The reliability matrix of docs/testing.md, on the running kernel (root): bad input, a full
//! disk, signals at every stage, and nothing left attached or half-written afterwards.

mod common;

use common::*;
use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Ids of the programs with rmapprof's names loaded in the kernel now.
fn ours_loaded() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .flatten()
        // Program names are cut to 15 characters: contention_begi(n).
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("contention_beg") || n == "contention_end"))
        .map(|p| p.id())
        .collect()
}

/// Ids of the programs that `pid` (or any live process) holds a descriptor of: the program
/// itself or a link on it (`prog_id:` in fdinfo).
fn held_by(pid: Option<u32>) -> BTreeSet<u32> {
    let pids: Vec<String> = match pid {
        Some(p) => vec![p.to_string()],
        None => std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
    };
    let mut ids = BTreeSet::new();
    for p in pids.iter().filter(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{p}/fdinfo")) else { continue };
        for fd in fds.flatten() {
            let text = std::fs::read_to_string(fd.path()).unwrap_or_default();
            ids.extend(text.lines().filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse::<u32>().ok()));
        }
    }
    ids
}

/// rmapprof programs loaded since `before` that no live process holds: what the test's own
/// runs left loaded once they ended. Another rmapprof beside the tests (a user's daemon) holds
/// its programs, so it is not counted; one that just exited has programs no process holds
/// until the kernel frees them (after an RCU grace period), and one that starts may load a
/// program between the two reads: so the count is taken again, for up to 3 s, until it is 0.
/// A program the test's runs leaked stays.
fn left_loaded(before: &BTreeSet<u32>) -> usize {
    let t = std::time::Instant::now();
    loop {
        let held = held_by(None);
        let left = ours_loaded().iter().filter(|id| !before.contains(id) && !held.contains(id)).count();
        if left == 0 || t.elapsed() > Duration::from_secs(3) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No temporary output file, and every output there is complete (report.json parses).
fn nothing_half_written(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp-"), "temporary file left: {name}");
    }
    if let Ok(json) = std::fs::read_to_string(dir.join("report.json")) {
        parse_report(&json, &dir.join("report.json"));
        for f in ["report.txt", "stacks.folded", "flamegraph.svg"] {
            assert!(dir.join(f).exists(), "report.json without {f}");
        }
    }
}

#[test]
fn bad_arguments_are_one_line_exit_2() {
    let _g = serial();
    for args in [
        &["-d", "abc"][..],
        &["-d", "0"],
        &["-i", "-1s"],
        &["--interval", "soon"],
        &["--bogus"],
        &["--mode", "magic"],
        &["-p", "notapid"],
        &["--mode", "tracepoint", "--acquisitions"],
    ] {
        let (code, err) = fails(rmapprof().args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("rmapprof: "), "{err}");
    }
    let (code, err) = fails(rmapprof().args(["model", "/nonexistent.json"]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_file_nobody_maps_is_refused_unless_command_may_map_it() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("unmapped.dat");
    std::fs::write(&f, b"x").unwrap();
    let out = dir.path().join("out");
    let (code, err) = fails(rmapprof().args(["-d", "200ms", "--inode", f.to_str().unwrap(), "-o"]).arg(&out));
    assert_eq!(code, 2);
    assert!(err.contains("no process maps") && err.contains("unmapped.dat"), "{err}");
    // With a COMMAND that may map it: accepted, with a one-line note.
    let o = rmapprof()
        .args(["--inode", f.to_str().unwrap(), "-o"])
        .arg(&out)
        .args(["--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("note: no process maps") && err.contains("unmapped.dat"), "{err}");
}

/// A signal while the outputs are being written (slowed by fault injection): the first is
/// only noted and the outputs are whole; a second exits at once and leaves no temporary file.
#[test]
fn a_signal_while_writing() {
    let _g = serial();
    let before = ours_loaded();
    for (signals, want_code) in [(1, 0), (2, 128 + libc::SIGTERM)] {
        let out = tempfile::tempdir().unwrap();
        let mut child = rmapprof()
            .env("RMAPPROF_FAULT_WRITE_DELAY_MS", "400")
            .args(["-d", "300ms", "-o", out.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the first temporary output exists: writing has begun.
        let t = Instant::now();
        let writing = || {
            std::fs::read_dir(out.path())
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        };
        while !writing() {
            assert!(t.elapsed() < Duration::from_secs(20), "never started writing");
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..signals {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(30));
        }
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(want_code), "{signals} signal(s): {st}");
        nothing_half_written(out.path());
        let whole = out.path().join("report.json").exists();
        assert_eq!(whole, signals == 1, "{signals} signal(s): outputs whole after one, absent after two");
        assert_eq!(left_loaded(&before), 0);
    }
}

#[test]
fn a_full_disk_leaves_nothing_half_written() {
    let _g = serial();
    let before = ours_loaded();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    // 8 KiB: room for the writability check, not for the outputs.
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8k", "rmapprof-test"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    struct Umount<'a>(&'a Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _u = Umount(&mnt);
    let o = rmapprof().args(["-d", "300ms", "-o"]).arg(&mnt).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // After the "profiling" line, the error in one line.
    let last = err.trim_end().lines().last().unwrap();
    assert!(last.contains("No space left") && last.contains("nothing written"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&mnt).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(left_loaded(&before), 0);
}

#[test]
fn int_term_and_hup_mid_run_detach_and_write_whole_outputs() {
    let _g = serial();
    let before = ours_loaded();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let run = Running::start(&[]);
        assert!(held_by(Some(run.child.id())).len() >= 2, "attached");
        std::thread::sleep(Duration::from_millis(200));
        let (code, report, out) = run.stop(sig);
        assert_eq!(code, 0, "signal {sig}");
        assert_eq!(report.mode, rmapprof_report::RunMode::Tracepoint);
        nothing_half_written(out.path());
        assert_eq!(left_loaded(&before), 0, "signal {sig}: programs left loaded");
    }
}

#[test]
fn a_signal_during_attach_ends_the_run_cleanly() {
    let _g = serial();
    let before = ours_loaded();
    for delay_ms in [0, 20, 60, 150] {
        let out = tempfile::tempdir().unwrap();
        let mut child =
            rmapprof().arg("-o").arg(out.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let st = child.wait().unwrap();
        // Killed before the handler was installed (130), or stopped by it (0): either way
        // nothing stays attached and nothing is half-written.
        assert!(matches!(st.code(), Some(0) | None), "after {delay_ms} ms: {st}");
        nothing_half_written(out.path());
        assert_eq!(left_loaded(&before), 0, "after {delay_ms} ms");
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    let _g = serial();
    let before = ours_loaded();
    let mut run = Running::start(&[]);
    let t = Instant::now();
    unsafe { libc::kill(run.child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(20));
    let code = run.signal_and_wait(libc::SIGINT);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(code, 128 + libc::SIGINT);
    nothing_half_written(run.out.path());
    assert_eq!(left_loaded(&before), 0);
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or(0)
}

/// The soak: rmapprof with --interval under the contention workload, its RSS sampled each
/// second. 20 s here; `cargo xtask soak --minutes 30` runs this same test for 30 minutes
/// (RMAPPROF_SOAK_SECS). RSS must stay flat, the maps within their capacity, nothing lost to
/// rmapprof's tables.
#[test]
fn soak_rss_flat_maps_bounded_nothing_lost() {
    let _g = serial();
    let secs: u64 = std::env::var("RMAPPROF_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "soak.dat");
    let run = Running::start(&["--interval", "1s"]);
    let pid = run.child.id();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workload = {
        let stop = stop.clone();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&hot.file);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(rmapprof_workloads::mmap_churn(&[fd], 20_000, 8));
            }
        })
    };
    let mut rss = Vec::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(rss_kb(pid));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    workload.join().unwrap();
    let (code, report, _out) = run.stop(libc::SIGINT);
    assert_eq!(code, 0);
    println!("soak {secs} s: RSS kB each second: {rss:?}");
    println!("map rows: {:?}", report.map_rows);
    // After a warm-up (first tables, kallsyms not loaded until the end), no growth beyond
    // allocator noise: the last third's peak within 2 MB of the first third's.
    let third = rss.len() / 3;
    let early = rss[1..third.max(2)].iter().max().unwrap();
    let late = rss[rss.len() - third.max(1)..].iter().max().unwrap();
    assert!(*late <= early + 2048, "RSS grew from {early} kB to {late} kB");
    assert!(!report.map_rows.is_empty(), "map_rows");
    for (name, m) in &report.map_rows {
        assert!(m.rows <= m.max && m.max > 0, "{name}: {m:?}");
    }
    // Nothing lost to rmapprof's own tables. The kernel's skipped runs (a spinlock waited on
    // in an interrupt, or by a helper, while the program runs on that CPU) are counted, and
    // not rmapprof's to prevent.
    let lost: u64 =
        report.lost.iter().filter(|(cause, _)| *cause != "recursion_misses").map(|(_, v)| v).sum();
    assert_eq!(lost, 0, "{:?}", report.lost);
    let churned = file_entry(&report, hot.ino()).expect("the soak file is reported");
    assert!(churned.contentions > 0);
}

/// A full stack table (injected: room for one stack): every wait still counts, those whose
/// stack found no room under the "no stack" class, and lost.stack_map_full says how many. It
/// needs two distinct stacks (mmap's and munmap's contended paths, or another traced lock's);
/// a run where every wait took one path is retried, up to 5 runs.
#[test]
fn a_full_stack_table_is_counted_and_waits_kept() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "collide.dat");
    for attempt in 1..=5 {
        let out = tempfile::tempdir().unwrap();
        let mut child = rmapprof()
            .env("RMAPPROF_FAULT_STACK_MAP_ENTRIES", "1")
            .args(["--inode", hot.path.to_str().unwrap(), "-o", out.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Attached once it says so.
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0 && !line.contains("profiling") {
            line.clear();
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        hot.churn(3);
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        assert!(child.wait().unwrap().success());
        let r = read_report(&out.path().join("report.json"));
        let h = file_entry(&r, hot.ino()).expect("churned file reported");
        let n = h.contentions;
        let paths = &h.call_paths;
        assert_eq!(paths.iter().map(|p| p.contentions).sum::<u64>(), n, "every wait kept");
        let unrecorded: u64 = paths
            .iter()
            .filter(|p| p.frames.iter().any(|f| f == "[stack not recorded]"))
            .map(|p| p.contentions)
            .sum();
        assert_eq!(r.map_rows["STACKS"].rows, 1, "{:?}", r.map_rows);
        // The one row may go to another lock's stack: then none of this file's stacks fit.
        let full = r.lost["stack_map_full"];
        if full > 0 && unrecorded > 0 {
            assert!(full >= unrecorded);
            return;
        }
        eprintln!("attempt {attempt}: {n} waits, all on the one stored stack; again");
    }
    panic!("5 runs without two distinct contended call paths");
}

/// `--btf FILE`: struct layouts from a BTF file elsewhere (a kernel without
/// /sys/kernel/btf/vmlinux, given its BTF by hand) work as the default does.
#[test]
fn btf_from_a_file() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let btf = dir.path().join("vmlinux.btf");
    std::fs::copy("/sys/kernel/btf/vmlinux", &btf).unwrap();
    let out = dir.path().join("out");
    let o =
        rmapprof().args(["-d", "200ms", "--btf", btf.to_str().unwrap(), "-o"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("report.json").exists());
    // And a file that is not BTF: one line, exit 1.
    std::fs::write(&btf, b"not btf").unwrap();
    let (code, err) = fails(rmapprof().args(["-d", "200ms", "--btf", btf.to_str().unwrap(), "-o"]).arg(&out));
    assert_eq!(code, 1, "{err}");
}
