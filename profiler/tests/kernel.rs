//! rmapprof against the running kernel: loads the real eBPF programs and checks what they count
//! against a workload whose lock traffic is known. Needs root (CI runs as root).
//!
//! Tests run one at a time (`SERIAL`): they share tracepoints, tracefs and the CPUs that make
//! contention happen.

mod common;

use common::*;
use rmapprof_report::{Report, RunMode};
use std::{os::unix::fs::MetadataExt, path::Path, process::Command, time::Duration};

#[test]
fn churned_file_gets_contention_and_untouched_file_none() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "hot.dat");
    let cold = MappedFile::new(dir.path(), "cold.dat");
    let hot_arg = hot.path.to_str().unwrap();
    let cold_arg = cold.path.to_str().unwrap();
    // Another run when one saw no wait: on a machine loaded by other work, three rounds of
    // churn can pass without a sleeping wait (seen at load 24).
    let (r, out) = until_contended(&hot, || {
        let run = Running::start(&["--inode", hot_arg, "--inode", cold_arg]);
        hot.churn(3);
        let (code, r, out) = run.stop(libc::SIGINT);
        assert_eq!(code, 0);
        (r, out)
    });

    assert_eq!(r.mode, RunMode::Tracepoint);
    assert_eq!(r.kernel, std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim());
    assert!(r.duration_ns > 0);
    let probes = &r.probes;
    for tp in ["tracepoint:lock:contention_begin", "tracepoint:lock:contention_end"] {
        assert!(probes.iter().any(|p| p.probe == tp && p.attached), "{tp}: {probes:?}");
    }
    // auto fell back to tracepoints here (no kprobes, fentry refused) and says why.
    for family in ["fentry mode", "kprobe mode"] {
        let p = probes.iter().find(|p| p.probe == family).expect(family);
        assert!(!p.attached);
        assert!(!p.error.as_deref().unwrap().is_empty());
    }

    let h = file_entry(&r, hot.ino()).expect("churned file reported");
    assert_eq!(h.path.as_deref(), Some(hot_arg));
    let n = h.contentions;
    assert!(n > 0, "no i_mmap_rwsem contention seen on the churned file: {h:?}");
    assert!(h.wait_ns_total >= h.wait_ns_max && h.wait_ns_max > 0);
    assert_eq!(h.wait_hist_log2.iter().sum::<u64>(), n, "histogram counts every wait");
    // mmap and munmap write-lock the rwsem; nothing in this workload read-locks it.
    assert_eq!(h.write.contentions, n);
    let calls: u64 = h.call_paths.iter().map(|p| p.contentions).sum();
    assert_eq!(calls, n, "call paths add up to the file's total");
    let frames: Vec<&str> = h.call_paths.iter().flat_map(|p| &p.frames).map(String::as_str).collect();
    assert!(frames.contains(&"down_write"), "{frames:?}");
    assert!(frames.iter().any(|f| f.contains("munmap") || f.contains("mmap")), "{frames:?}");
    // Only the tracepoints' view: what they cannot see is null, not 0.
    assert!(h.spin_ns_total.is_none() && h.acquisitions.is_none());
    // Every i_mmap_rwsem or mmap_lock wait unwound its stack; no call-site cache here.
    let unwind = &r.unwind;
    assert!(unwind["unwinds"] >= n, "{unwind:?}");
    assert_eq!(unwind["cache_hits"] + unwind["cache_checks"], 0, "{unwind:?}");

    let c = file_entry(&r, cold.ino()).expect("selected file listed even without contention");
    assert_eq!(c.path.as_deref(), Some(cold_arg));
    assert_eq!(c.contentions, 0);
    assert_eq!(c.wait_ns_total, 0);

    assert!(lock(&r, "i_mmap_rwsem").contentions >= n);

    let folded = std::fs::read_to_string(out.path().join("stacks.folded")).unwrap();
    assert!(folded.lines().all(|l| l.starts_with("i_mmap_rwsem hot.dat;write;")), "{folded}");
    let weight: u64 = folded.lines().map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(weight, h.wait_ns_total, "flame graph width is the ns waited");
    let svg = std::fs::read_to_string(out.path().join("flamegraph.svg")).unwrap();
    assert!(svg.contains("hot.dat") && svg.contains("tracepoint mode") && svg.contains("down_write"));
    let txt = std::fs::read_to_string(out.path().join("report.txt")).unwrap();
    assert!(txt.contains(hot_arg) && txt.contains(cold_arg));
}

#[test]
fn pid_filter_counts_only_that_process() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "hot.dat");
    let mut idle = Command::new("sleep").arg("60").spawn().unwrap();
    let mut filtered = Report::default();
    let (everything, _) = until_contended(&hot, || {
        let all = Running::start(&[]);
        let only_idle = Running::start(&["-p", &idle.id().to_string()]);
        hot.churn(3);
        filtered = only_idle.stop(libc::SIGTERM).1;
        let (_, everything, out) = all.stop(libc::SIGTERM);
        (everything, out)
    });
    let _ = idle.kill();
    let _ = idle.wait();

    // The unfiltered run names the file by the path this process maps it at.
    let h = file_entry(&everything, hot.ino()).expect("system-wide run sees the churned file");
    assert!(h.contentions > 0);
    assert_eq!(h.path.as_deref(), hot.path.to_str());
    assert_eq!(filtered.pid, Some(idle.id()));
    assert!(file_entry(&filtered, hot.ino()).is_none(), "the sleeping process never waited on it");
}

#[test]
fn command_runs_and_its_exit_status_passes_through() {
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let st = rmapprof()
        .args(["--output", out.path().to_str().unwrap(), "--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(3), "{}", String::from_utf8_lossy(&st.stderr));
    let r = read_report(&out.path().join("report.json"));
    assert_eq!(r.command.unwrap(), ["sh", "-c", "exit 3"]);
    for f in ["report.txt", "stacks.folded", "flamegraph.svg"] {
        assert!(out.path().join(f).exists(), "{f}");
    }
    // The summary table goes to stdout too.
    assert!(String::from_utf8_lossy(&st.stdout).contains("i_mmap_rwsem contention by file"));
}

#[test]
fn duration_ends_the_run_and_interval_prints_tables() {
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let st = rmapprof()
        .args(["-d", "1300ms", "-i", "400ms", "-o", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert!(t.elapsed() < Duration::from_secs(20));
    let r = read_report(&out.path().join("report.json"));
    assert!(r.duration_ns >= 1_300_000_000);
    // Four interval tables (to 0.4, 0.8, 1.2 s, and the last, partial one to 1.3 s), then the
    // final summary.
    let stdout = String::from_utf8_lossy(&st.stdout);
    assert_eq!(stdout.matches("i_mmap_rwsem contention by file").count(), 5, "{stdout}");
    assert_eq!(stdout.matches(" s .. +").count(), 4, "each stamped: {stdout}");
    assert!(stdout.contains(" (end of run)"), "{stdout}");
}

#[test]
fn under_sudo_command_and_outputs_belong_to_the_invoking_user() {
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("sub");
    let st = rmapprof()
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .args(["-o", dir.to_str().unwrap(), "--", "sh", "-c", "test \"$(id -u):$(id -g)\" = 65534:65534"])
        .output()
        .unwrap();
    assert_eq!(
        st.status.code(),
        Some(0),
        "COMMAND did not run as SUDO_UID: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    for f in ["", "report.txt", "report.json", "stacks.folded", "flamegraph.svg"] {
        let m = std::fs::metadata(dir.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{f}");
    }
}

#[test]
fn mmap_lock_contention_is_told_apart() {
    let _g = serial();
    let run = Running::start(&[]);
    // Threads of one process mapping and unmapping anonymous memory write-lock its mmap_lock.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..20_000 {
                    unsafe {
                        let p = libc::mmap(
                            std::ptr::null_mut(),
                            8192,
                            libc::PROT_READ | libc::PROT_WRITE,
                            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                            -1,
                            0,
                        );
                        assert_ne!(p, libc::MAP_FAILED);
                        *(p as *mut u8) = 1;
                        libc::munmap(p, 8192);
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let (_, r, _) = run.stop(libc::SIGINT);
    let mmap_lock = lock(&r, "mmap_lock");
    assert!(mmap_lock.contentions > 0, "{mmap_lock:?}");
}

/// `--max-stack N` (perf's option): the unwinder stops after N frames, so no call path is
/// longer, the innermost frames are still there, and every wait is still counted.
#[test]
fn max_stack_caps_the_recorded_frames() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "shallow.dat");
    let (r, _) = until_contended(&hot, || {
        let run = Running::start(&["--inode", hot.path.to_str().unwrap(), "--max-stack", "3"]);
        hot.churn(3);
        let (code, r, out) = run.stop(libc::SIGINT);
        assert_eq!(code, 0);
        (r, out)
    });
    let h = file_entry(&r, hot.ino()).expect("churned file reported");
    let paths = &h.call_paths;
    assert_eq!(paths.iter().map(|p| p.contentions).sum::<u64>(), h.contentions);
    let lens: Vec<usize> = paths.iter().map(|p| p.frames.len()).collect();
    assert!(lens.iter().all(|&n| n <= 3), "{paths:?}");
    // The mmap/munmap paths are deeper than 3: the cap, not the stack, ended them.
    assert_eq!(lens.iter().max(), Some(&3), "{paths:?}");
    let frames: Vec<&str> = paths.iter().flat_map(|p| &p.frames).map(String::as_str).collect();
    assert!(frames.contains(&"down_write"), "{frames:?}");
}

/// Runs rmapprof expecting failure: returns (exit code, stderr), checks one line and no panic.
#[test]
fn errors_are_one_line_with_the_right_exit_code() {
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let rm = || {
        let mut c = rmapprof();
        c.args(["-o", o, "-d", "1"]);
        c
    };

    let (code, err) = fails(rm().args(["--inode", "libnosuchlib.so.77"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("libnosuchlib.so.77")
            && err.contains("not mapped by any process")
            && err.contains("/usr/lib"),
        "{err}"
    );
    let (code, err) = fails(rm().args(["--inode", "/tmp"]));
    assert_eq!(code, 2);
    assert!(err.contains("directory"), "{err}");

    let (code, err) = fails(rm().args(["--btf", "/nonexistent/vmlinux"]));
    assert_eq!(code, 1);
    assert!(err.contains("BTF not found"), "{err}");

    // Counting every acquisition needs kprobes or fentry; this kernel has neither, and says so
    // rather than falling back to a run without the counts that were asked for.
    let (code, err) = fails(rm().args(["--acquisitions"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("--acquisitions needs kprobe or fentry mode")
            && err.contains("fentry mode:")
            && err.contains("kprobe mode:"),
        "{err}"
    );

    let (code, err) = fails(rm().args(["--", "/no/such/command"]));
    assert_eq!(code, 127);
    assert!(err.contains("/no/such/command: No such file or directory"), "{err}");

    let (code, err) = fails(rmapprof().args(["-o", "/proc/version/x", "-d", "1"]));
    assert_eq!(code, 1);
    assert!(err.contains("/proc/version/x"), "{err}");

    // Without privileges: as nobody, with no capabilities.
    let (code, err) = fails(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
            .arg(RMAPPROF)
            .args(["-o", "/tmp/x", "-d", "1"]),
    );
    assert_eq!(code, 1);
    assert!(err.contains("needs root") && err.contains("CAP_BPF"), "{err}");
}

/// tracefs unmounted: rmapprof mounts it. In a mount namespace of its own, so that the
/// unmount takes tracefs from no other rmapprof on the machine (a second checkout's tests,
/// running beside these, failed to attach "tracefs not found" when it was the host's).
#[test]
fn tracefs_is_mounted_when_missing() {
    let _g = serial();
    let out = tempfile::tempdir().unwrap();
    let script = r#"
        t=/sys/kernel/tracing
        if [ -d $t/events ]; then umount -l $t || exit 90; fi
        [ -d $t/events ] && exit 91
        [ -d /sys/kernel/debug/tracing/events ] && debugfs_has_it=1
        "$0" "$@" || exit $?
        [ -n "$debugfs_has_it" ] || [ -d $t/events/lock/contention_begin ] || exit 92
    "#;
    let st = as_a_terminal_starts("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script, RMAPPROF])
        .args(["-d", "200ms", "-o", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(st.status.success(), "{:?}: {}", st.status, String::from_utf8_lossy(&st.stderr));
}

/// Whether `dir` is on ext2/3/4, whose inodes rmapprof can name by handle (by_handle.rs).
fn on_ext4(dir: &Path) -> bool {
    let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut fs) }, 0);
    fs.f_type == 0xEF53
}

/// A file that only processes gone before the run ends ever mapped is still named by its path:
/// COMMAND's workers map and unmap it, then exit, so no /proc scan ever sees it mapped.
#[test]
fn a_file_only_exited_processes_mapped_is_named() {
    let _g = serial();
    // Not /tmp: the test needs a filesystem that can open files by inode (the checkout's).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("ünïcode name\nwith a newline.dat");
    std::fs::write(&file, vec![7u8; 8192]).unwrap();
    let ino = std::fs::metadata(&file).unwrap().ino();
    // Sleeping waits on 2 CPUs come when a holder is preempted: some runs have none.
    let f = (0..6)
        .find_map(|_| {
            let churn = [workload("mmap-churn"), file.clone(), "400000".into(), "-j".into(), "16".into()];
            file_entry(&profile_command(&churn).0, ino).cloned()
        })
        .expect("the churned file had waits in one of 6 runs");
    assert!(f.contentions > 0);
    let want = std::fs::canonicalize(&file).unwrap();
    if on_ext4(dir.path()) {
        assert_eq!(f.path.as_deref(), want.to_str(), "{f:?}");
    } else {
        // Elsewhere it may stay unnamed, but is never misnamed.
        assert!(f.path.is_none() || f.path.as_deref() == want.to_str(), "{f:?}");
    }
}

/// fork+exec of /bin/true: every file with waits is named, the exec'd binary included (no live
/// process maps it when rmapprof scans /proc; it was `[dev M:N ino I]` before).
#[test]
fn spawn_names_every_file_it_waited_on() {
    let _g = serial();
    let (r, txt) = profile_command(&[workload("spawn"), "4000".into(), "-j".into(), "8".into()]);
    let truebin = std::fs::canonicalize("/bin/true").unwrap();
    let true_ino = std::fs::metadata(&truebin).unwrap().ino();
    let ext4 = on_ext4(&truebin);
    for f in &r.files {
        if ext4 {
            assert!(f.path.is_some(), "unnamed file: {f:?}");
        }
        if f.ino == true_ino && f.path.is_some() {
            assert_eq!(f.path.as_deref(), truebin.to_str());
        }
    }
    assert!(!txt.contains("[dev "), "{txt}");
}

/// `-p` counts the process's own threads, not its children (README, `-p`): the waits of the
/// workers a shell forks are seen system-wide but not under `-p SHELL`.
#[test]
fn pid_filter_does_not_count_children() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "children.dat");
    // The shell churns only once both runs are profiling: on a loaded machine loading the
    // probes can outlast any fixed sleep, and a -p process gone before profiling began is an
    // error (a fresh clone's run, beside another, hit it).
    let go = dir.path().join("go");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; {} {} 400000 -j 16; true",
        go.display(),
        workload("mmap-churn").display(),
        hot.path.display()
    );
    for _ in 0..6 {
        let _ = std::fs::remove_file(&go);
        let mut shell = Command::new("sh").args(["-c", &script]).spawn().unwrap();
        let all = Running::start(&[]);
        let only_shell = Running::start(&["-p", &shell.id().to_string()]);
        std::fs::write(&go, b"").unwrap();
        assert!(shell.wait().unwrap().success());
        // The -p run ends by itself when the shell exits.
        let (code, filtered, _) = only_shell.stop(0);
        let (_, everything, _) = all.stop(libc::SIGTERM);
        assert_eq!(code, 0);
        assert!(file_entry(&filtered, hot.ino()).is_none(), "a child's waits counted under -p: {filtered:?}");
        if file_entry(&everything, hot.ino()).is_some() {
            return;
        }
    }
    panic!("no run had waits on the churned file: nothing was tested");
}
