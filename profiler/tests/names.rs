//! Right names and files: mmap_lock rows named after the process and each program it ran,
//! and `--inode` resolved to the inodes the kernel maps (overlayfs, a bare name mapped from
//! several directories, the current directory, a deleted file still mapped). Each test counts
//! only the waits of its own children (rows found by their pid or the test's own files).

mod common;

use common::*;
use rmapprof_report::Report;
use std::process::Command;

/// The rows of `mmap_lock_by_process` of process `pid`, as (comm, contentions).
fn mmap_rows(r: &Report, pid: u32) -> Vec<(String, u64)> {
    r.mmap_lock_by_process
        .iter()
        .filter(|p| p.pid == pid)
        .map(|p| (p.comm.clone().unwrap_or_else(|| "<none>".to_owned()), p.contentions))
        .collect()
}

/// One process, forked and exec'd by this test, whose threads are `worker-1`.. and which
/// execs twice (copies of mm-churn named `stage-one`, `stage-two`, `stage-three`), churning
/// its mmap_lock under each: a row per program it ran, each named after the process's
/// leader as that program named it (never `worker-N`, never this test's thread), adding up
/// to the process's waits.
#[test]
fn mmap_lock_rows_are_named_after_the_process_and_each_program() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let stages = ["stage-one", "stage-two", "stage-three"];
    for s in stages {
        std::fs::copy(workload("mm-churn"), dir.path().join(s)).unwrap();
    }
    let stage = |s: &str| dir.path().join(s).into_os_string();
    let run = Running::start(&[]);
    let mut cmd = Command::new(stage(stages[0]));
    cmd.args(["100000", "-j", "4", "--then"]).arg(stage(stages[1]));
    cmd.args(["100000", "-j", "4", "--then"]).arg(stage(stages[2])).args(["100000", "-j", "4"]);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let (_, r, _) = run.stop(libc::SIGINT);
    let rows = mmap_rows(&r, pid);
    for s in stages {
        let named: Vec<_> = rows.iter().filter(|(c, _)| c == s).collect();
        assert_eq!(named.len(), 1, "one row for {s}: {rows:?}");
        assert!(named[0].1 > 0, "{s}: {rows:?}");
    }
    // Waits the child had before its first exec (as this test's thread, after the fork) are
    // its own row; no row is a thread's name.
    assert!(rows.iter().all(|(c, _)| !c.starts_with("worker-") && c != "<none>"), "{rows:?}");
    assert!(rows.len() <= stages.len() + 1, "{rows:?}");
}

/// An overlayfs mount in a tempdir, unmounted when dropped.
struct Overlay {
    dir: tempfile::TempDir,
}

/// A file name no other process maps: `--inode NAME` selects every mapped file of that name,
/// and another run of these tests (a second checkout's) maps files named as these are.
fn unique(stem: &str) -> String {
    format!("{stem}-{}.dat", std::process::id())
}

fn lower() -> String {
    unique("lower")
}

fn upper() -> String {
    unique("upper")
}

impl Overlay {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["L", "U", "W", "M"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        for f in [lower(), upper()] {
            std::fs::write(dir.path().join("L").join(f), vec![3u8; 8192]).unwrap();
        }
        let p = |d: &str| dir.path().join(d).display().to_string();
        let opts = format!("lowerdir={},upperdir={},workdir={}", p("L"), p("U"), p("W"));
        let st =
            Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts, &p("M")]).status().unwrap();
        assert!(st.success(), "mount -t overlay -o {opts}");
        Self { dir }
    }

    fn path(&self, sub: &str) -> std::path::PathBuf {
        self.dir.path().join(sub)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // Lazily: the test's mappings of its files outlive it.
        let _ = Command::new("umount").arg("-l").arg(self.path("M")).status();
    }
}

/// `--inode MERGED/PATH` on overlayfs selects the inode the kernel maps (the lower file, and
/// the upper one once copied up), not the overlay inode stat shows: both files, churned
/// through their merged paths and kept mapped through them, have waits on the rows those
/// paths select, named by them; and so do their bare names.
#[test]
fn overlay_paths_select_the_inode_the_kernel_maps() {
    let _g = serial();
    let ov = Overlay::mount();
    // Copy-up: writing through the merged path moves the upper file to the upper layer.
    let (lower, upper) = (lower(), upper());
    std::fs::OpenOptions::new().write(true).open(ov.path("M").join(&upper)).unwrap().set_len(8192).unwrap();
    assert!(ov.path("U").join(&upper).exists(), "{upper} copied up");
    assert!(!ov.path("U").join(&lower).exists());
    let merged: Vec<MappedFile> = [&lower, &upper].map(|f| MappedFile::open(&ov.path("M").join(f))).into();
    // By the merged paths, then by the bare names, which find them mapped through them.
    let paths: Vec<String> = merged.iter().map(|m| m.path.display().to_string()).collect();
    for names in [["--inode", &paths[0], "--inode", &paths[1]], ["--inode", &lower, "--inode", &upper]] {
        // A run in which a loaded machine gave some file no wait is run again (four at most).
        for attempt in 1..=4 {
            let run = Running::start(&names);
            for m in &merged {
                m.churn(3);
            }
            let (_, r, _) = run.stop(libc::SIGINT);

            let mut waited = true;
            for path in &paths {
                let f = r.files.iter().find(|f| f.path.as_deref() == Some(path.as_str()));
                let f = f.unwrap_or_else(|| panic!("{names:?}: no row named {path}: {:?}", r.files));
                waited &= f.contentions > 0;
                assert!(waited || attempt < 4, "{names:?}: no waits on the row of {path}: {f:?}");
            }
            if waited {
                break;
            }
        }
    }
}

/// `--inode same.dat` with two files of that name mapped from two directories, both churned:
/// a row each, named by its own path, each with its waits.
#[test]
fn a_bare_name_selects_every_mapped_file_of_that_name() {
    let _g = serial();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let same = unique("same");
    let files = [MappedFile::new(a.path(), &same), MappedFile::new(b.path(), &same)];
    let (r, _) = until_each_contended(&files.each_ref().map(|f| f.ino()), || {
        let run = Running::start(&["--inode", &same]);
        for f in &files {
            f.churn(3);
        }
        let (_, r, out) = run.stop(libc::SIGINT);
        (r, out)
    });
    let rows = r.files;
    for f in &files {
        let row = rows.iter().find(|r| r.ino == f.ino());
        let row = row.unwrap_or_else(|| panic!("{}: {rows:?}", f.path.display()));
        assert_eq!(row.path, Some(f.path.display().to_string()), "{row:?}");
        assert!(row.contentions > 0, "{row:?}");
    }
    // Only files of that name were selected.
    let tail = format!("/{same}");
    assert!(rows.iter().all(|f| f.path.as_deref().is_some_and(|p| p.ends_with(&tail))), "{rows:?}");
}

/// `--inode ''` is refused as empty; `./x.dat` and `x.dat` in the current directory are found
/// when mapped, and refused as mapped by nobody when not (accepted with a COMMAND, which may
/// map them); a deleted file still mapped is found by its bare name and by its former path,
/// and named `PATH (deleted)`, with its waits.
#[test]
fn empty_relative_and_deleted_inode_arguments() {
    let _g = serial();
    let cwd = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let rm = |args: &[&str]| {
        let mut c = rmapprof();
        c.current_dir(cwd.path()).args(["-o", out.path().to_str().unwrap(), "-d", "1"]).args(args);
        c
    };
    let (code, err) = fails(&mut rm(&["--inode", ""]));
    assert_eq!(
        (code, err.trim_end()),
        (2, "rmapprof: --inode '': an empty name; give a file's path or name")
    );

    std::fs::write(cwd.path().join("unmapped.dat"), b"u").unwrap();
    for arg in ["unmapped.dat", "./unmapped.dat"] {
        let (code, err) = fails(&mut rm(&["--inode", arg]));
        assert_eq!(code, 2, "{arg}: {err}");
        let whole = std::fs::canonicalize(cwd.path().join("unmapped.dat")).unwrap();
        assert!(err.contains(&format!("--inode {}: no process maps it", whole.display())), "{arg}: {err}");
        // With a COMMAND it may map it: accepted.
        let o = rm(&["--inode", arg, "--", "true"]).output().unwrap();
        assert!(o.status.success(), "{arg}: {}", String::from_utf8_lossy(&o.stderr));
    }

    let (x, gone_dat) = (unique("x"), unique("gone"));
    let (dot_x, dot_gone) = (format!("./{x}"), format!("./{gone_dat}"));
    let mapped = MappedFile::new(cwd.path(), &x);
    let gone = MappedFile::new(cwd.path(), &gone_dat);
    std::fs::remove_file(&gone.path).unwrap();
    let deleted_name = format!("{} (deleted)", gone.path.display());
    let mapped_name = mapped.path.display().to_string();
    for (arg, file, name) in [
        (dot_x.as_str(), &mapped, &mapped_name),
        (x.as_str(), &mapped, &mapped_name),
        (gone_dat.as_str(), &gone, &deleted_name),
        (dot_gone.as_str(), &gone, &deleted_name),
    ] {
        let (r, _) = until_each_contended(&[file.ino_of_fd()], || {
            let out = tempfile::tempdir().unwrap();
            let (child, mut err) = spawn_until(
                rmapprof().current_dir(cwd.path()).args(["--inode", arg, "-o"]).arg(out.path()),
                "rmapprof: profiling",
            );
            std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            let run = Running { child, out };
            file.churn(3);
            let (_, r, out) = run.stop(libc::SIGINT);
            (r, out)
        });
        let files = r.files;
        let row = files.iter().find(|f| f.ino == file.ino_of_fd());
        let row = row.unwrap_or_else(|| panic!("{arg}: {files:?}"));
        assert_eq!(row.path.as_deref(), Some(name.as_str()), "{arg}: {row:?}");
        assert!(row.contentions > 0, "{arg}: {row:?}");
        assert_eq!(files.len(), 1, "{arg}: {files:?}");
    }
}

/// The LRU maps that number and name processes are sized for this machine's possible CPUs:
/// the declared rows plus the free rows each CPU keeps (a 32768-row map starves on 256 CPUs
/// and more before Linux 6.16, and recycles rows still in use).
#[test]
fn the_process_maps_are_sized_for_every_possible_cpu() {
    let _g = serial();
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let cpus: u64 = possible
        .trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
            None => 1,
        })
        .sum();
    let run = Running::start(&[]);
    let (_, r, _) = run.stop(libc::SIGINT);
    let rows = r.map_rows;
    assert_eq!(rows["PROCESS_NAMES"].max as u64, 32768 + 128 * cpus, "{rows:?}");
}
