//! Shared by the kernel test binaries: serialisation, a mapped test file, rmapprof running in
//! the background, and report accessors.
#![allow(dead_code)] // each test binary uses its own subset

use rmapprof_report::{FileReport, Report};
use std::{
    fs::File,
    io::{BufRead, BufReader},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    sync::Mutex,
};

mod report_json;
#[allow(unused_imports)] // not every test binary uses both
pub use report_json::{parse_report, read_report};

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub const RMAPPROF: &str = env!("CARGO_BIN_EXE_rmapprof");

/// A bundled workload binary (`cargo xtask test` builds them, release mode, before the tests).
pub fn workload(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release").join(name);
    assert!(p.exists(), "{} missing: `cargo xtask build` builds it", p.display());
    p
}

/// rmapprof as a terminal would start it: SIGINT, SIGTERM and SIGHUP at their defaults (a
/// background shell job inherits SIGINT ignored), and killed if the test process dies, so a
/// failed or interrupted test leaves nothing attached.
pub fn rmapprof() -> Command {
    as_a_terminal_starts(RMAPPROF)
}

/// `program` as [`rmapprof`] starts rmapprof (`unshare` in front of it, say).
pub fn as_a_terminal_starts(program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    c
}

/// A file mapped shared by this process for the whole test, so /proc/self/maps names it.
pub struct MappedFile {
    pub path: PathBuf,
    pub file: File,
    _map: *mut libc::c_void,
}

impl MappedFile {
    pub fn new(dir: &Path, name: &str) -> Self {
        let path = dir.join(name);
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        Self::open(&path)
    }

    /// Maps the file at `path`, opened read-only (on overlayfs: not copied up).
    pub fn open(path: &Path) -> Self {
        let file = File::open(path).unwrap();
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0)
        };
        assert_ne!(map, libc::MAP_FAILED);
        Self { path: std::fs::canonicalize(path).unwrap(), file, _map: map }
    }

    pub fn ino(&self) -> u64 {
        std::fs::metadata(&self.path).unwrap().ino()
    }

    /// The inode number of the open file (its path may be gone).
    pub fn ino_of_fd(&self) -> u64 {
        self.file.metadata().unwrap().ino()
    }

    /// 16 processes × mmap/munmap: far more runnable tasks than the 2 CPUs, so lock holders get
    /// preempted and waiters sleep (what the tracepoints see), round after round.
    pub fn churn(&self, rounds: u32) {
        for _ in 0..rounds {
            assert!(rmapprof_workloads::mmap_churn(&[self.file.as_raw_fd()], 200_000, 16));
        }
    }
}

/// rmapprof running in the background, attached.
pub struct Running {
    pub child: Child,
    pub out: tempfile::TempDir,
}

/// A test that fails must not leave rmapprof attached for the tests after it.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with stderr piped and reads it until a line contains `marker` (rmapprof says
/// it is profiling, or serving); a child that exits first fails the test. Returns the child
/// and the rest of its stderr, which the caller must keep reading.
pub fn spawn_until(cmd: &mut std::process::Command, marker: &str) -> (Child, BufReader<ChildStderr>) {
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (mut line, mut said) = (String::new(), String::new());
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("{cmd:?} exited before saying {marker:?}: {:?}; it said: {said:?}", child.wait());
        }
        said.push_str(&line);
        if line.contains(marker) {
            return (child, err);
        }
    }
}

impl Running {
    /// Starts rmapprof with `args` and waits until it says it is profiling (probes attached).
    pub fn start(args: &[&str]) -> Self {
        let out = tempfile::tempdir().unwrap();
        let (child, mut err) =
            spawn_until(rmapprof().args(args).arg("--output").arg(out.path()), "rmapprof: profiling");
        // Drain the rest of stderr so rmapprof never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Self { child, out }
    }

    /// Sends `sig`, waits, and returns the exit code and report.json (validated, typed).
    pub fn stop(mut self, sig: i32) -> (i32, Report, tempfile::TempDir) {
        let code = self.signal_and_wait(sig);
        let out = std::mem::replace(&mut self.out, tempfile::tempdir().unwrap());
        let report = read_report(&out.path().join("report.json"));
        (code, report, out)
    }

    /// Sends `sig`, waits, returns the exit code (-1 if killed by a signal).
    pub fn signal_and_wait(&mut self, sig: i32) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, sig) };
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

/// Runs `rmapprof -o TMP -- COMMAND...` to its end; it must succeed. Returns report.json and
/// report.txt.
pub fn profile_command<S: AsRef<std::ffi::OsStr>>(command: &[S]) -> (Report, String) {
    profile_command_with(&[], command)
}

/// As [`profile_command`], with rmapprof options.
pub fn profile_command_with<S: AsRef<std::ffi::OsStr>>(options: &[&str], command: &[S]) -> (Report, String) {
    let out = tempfile::tempdir().unwrap();
    let st = rmapprof().args(options).arg("-o").arg(out.path()).arg("--").args(command).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let read = |name| std::fs::read_to_string(out.path().join(name)).unwrap();
    (read_report(&out.path().join("report.json")), read("report.txt"))
}

/// `run` (a profiling run and its churn of `hot`) again, up to four times, until its report
/// has waits on `hot`: a loaded machine can run a few rounds of churn without one sleeping
/// wait. Returns that report and its output directory.
pub fn until_contended(
    hot: &MappedFile,
    run: impl FnMut() -> (Report, tempfile::TempDir),
) -> (Report, tempfile::TempDir) {
    until_each_contended(&[hot.ino()], run)
}

/// As [`until_contended`], until the report has waits on every inode of `inos`.
pub fn until_each_contended(
    inos: &[u64],
    mut run: impl FnMut() -> (Report, tempfile::TempDir),
) -> (Report, tempfile::TempDir) {
    for _ in 0..4 {
        let (r, out) = run();
        let waited = |ino: &u64| file_entry(&r, *ino).is_some_and(|f| f.contentions > 0);
        if inos.iter().all(waited) {
            return (r, out);
        }
    }
    panic!("four runs saw no i_mmap_rwsem wait on some of inodes {inos:?}");
}

/// The report's row of inode `ino`.
pub fn file_entry(report: &Report, ino: u64) -> Option<&FileReport> {
    report.files.iter().find(|f| f.ino == ino)
}

/// The report's summary of `lock` (`i_mmap_rwsem`, `mmap_lock`).
pub fn lock(report: &Report, lock: &str) -> rmapprof_report::LockSummary {
    report.locks.iter().find(|l| l.lock == lock).cloned().unwrap_or_else(|| panic!("no {lock} in {report:?}"))
}

/// The line rmapprof prints as it starts loading the probes, before any error it meets there.
pub const LOADING: &str = "rmapprof: loading the probes";

/// Runs rmapprof expecting failure: returns (exit code, the error line), checks that the error
/// is one line (after the line saying the probes are loading, when it got that far) and no
/// panic.
pub fn fails(cmd: &mut Command) -> (i32, String) {
    let o = cmd.stdout(Stdio::null()).output().unwrap();
    let all = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "expected failure: {all}");
    assert!(!all.contains("panicked") && !all.contains("RUST_BACKTRACE"), "{all}");
    let err = all.strip_prefix(LOADING).map_or(&all[..], |rest| rest.split_once('\n').map_or("", |(_, e)| e));
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {all}");
    (o.status.code().unwrap_or(-1), err.to_owned())
}
