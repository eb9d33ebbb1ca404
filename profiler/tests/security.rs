//! rmapprof runs as root and writes into directories other users own (`sudo rmapprof -o ~/out`,
//! the default `./rmapprof-out`). Such a user can plant a symbolic link at any name rmapprof
//! could use, or at the directory itself: neither may make root write, chown or create a file
//! elsewhere. The runs are `sudo` runs as nobody (SUDO_UID/SUDO_GID), so the chown path is
//! taken, and the planting ones run rmapprof as pid 1 of a pid namespace of its own
//! (`unshare --pid --fork`), so every name it could derive from its pid is known beforehand.

mod common;

use common::*;
use std::{
    collections::BTreeSet,
    ffi::{OsStr, OsString},
    io::Read,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const NOBODY: u32 = 65534;

/// Every file rmapprof and its daemon write in an output directory, in any mode.
const OUTPUTS: [&str; 11] = [
    "report.json",
    "report.txt",
    "stacks.folded",
    "flamegraph.svg",
    "holders.folded",
    "holders.svg",
    "stacks-spin.folded",
    "flamegraph-spin.svg",
    "stacks-sleep.folded",
    "flamegraph-sleep.svg",
    "profile.pb.gz",
];

/// Root-owned 0600 files in a directory of root's: what the planted links point at.
struct Victims {
    dir: tempfile::TempDir,
}

impl Victims {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let v = Self { dir };
        for name in OUTPUTS.iter().chain(&["probe", "pprof", "log"]) {
            let p = v.path(name);
            std::fs::write(&p, format!("root's {name}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        v
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Every file as made, and nothing added.
    fn untouched(&self, what: &str) {
        let names: BTreeSet<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let want: BTreeSet<String> =
            OUTPUTS.iter().chain(&["probe", "pprof", "log"]).map(|s| s.to_string()).collect();
        assert_eq!(names, want, "{what}: files added to the victims' directory");
        for name in &want {
            let m = std::fs::symlink_metadata(self.path(name)).unwrap();
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o600), "{what}: {name} owner or mode");
            let text = std::fs::read_to_string(self.path(name)).unwrap();
            assert_eq!(text, format!("root's {name}\n"), "{what}: {name} written");
        }
        let d = std::fs::metadata(self.dir.path()).unwrap();
        assert_eq!((d.uid(), d.gid()), (0, 0), "{what}: victims' directory chowned");
    }
}

/// A directory of nobody's, as the invoking user's own.
fn users_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(d.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A link `dir/name` → `target`, planted by nobody.
fn plant(dir: &Path, name: &str, target: &Path) {
    let link = dir.join(name);
    std::os::unix::fs::symlink(target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// Links at every temporary name pid 1 could use in `dir`: each output's, the pprof file's, and
/// the writability probe's.
fn plant_everywhere(dir: &Path, pprof: &str, v: &Victims) {
    for name in OUTPUTS {
        plant(dir, &format!(".{name}.tmp-1"), &v.path(name));
    }
    plant(dir, &format!(".{pprof}.tmp-1"), &v.path("pprof"));
    plant(dir, ".rmapprof-probe-1", &v.path("probe"));
}

/// rmapprof under `sudo` as nobody, as a terminal starts it (signals at their defaults,
/// killed with the test).
fn as_sudo(program: &str) -> Command {
    let mut c = as_a_terminal_starts(program);
    c.env("SUDO_UID", NOBODY.to_string()).env("SUDO_GID", NOBODY.to_string());
    c
}

/// rmapprof as pid 1 of a new pid namespace (killed if unshare is).
fn as_pid_1() -> Command {
    let mut c = as_sudo("unshare");
    c.args(["--pid", "--fork", "--kill-child", RMAPPROF]);
    c
}

/// The files and links in `dir`: (regular files, links).
fn entries(dir: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut files, mut links) = (BTreeSet::new(), BTreeSet::new());
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        let t = e.file_type().unwrap();
        assert!(t.is_file() || t.is_symlink(), "{name}: neither a file nor a link");
        if t.is_symlink() { &mut links } else { &mut files }.insert(name);
    }
    (files, links)
}

/// Each of `names` in `dir` a regular file of nobody's.
fn owned_by_nobody(dir: &Path, names: &BTreeSet<String>) {
    for name in names {
        let m = std::fs::symlink_metadata(dir.join(name)).unwrap();
        assert!(m.is_file(), "{name}");
        assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY), "{name} not the invoking user's");
    }
}

/// "rmapprof: wrote NAMES in DIR[ and FILE]" of `stderr`: (names, DIR, FILE).
fn wrote(stderr: &str) -> (BTreeSet<String>, String, Option<String>) {
    let line = stderr.lines().find_map(|l| l.strip_prefix("rmapprof: wrote ")).expect(stderr);
    let (names, rest) = line.split_once(" in ").expect(line);
    let (dir, file) = match rest.split_once(" and ") {
        Some((d, f)) => (d.to_owned(), Some(f.to_owned())),
        None => (rest.to_owned(), None),
    };
    (names.split(' ').map(str::to_owned).collect(), dir, file)
}

#[test]
fn links_planted_at_every_name_are_not_followed() {
    let _g = serial();
    let v = Victims::new();
    let user = users_dir();
    let out = user.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    plant_everywhere(&out, "run.pb.gz", &v);
    let pprof = out.join("run.pb.gz");
    let o = as_pid_1().args(["-d", "200ms", "-o"]).arg(&out).arg("--pprof").arg(&pprof).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    v.untouched("a run");
    let (files, links) = entries(&out);
    owned_by_nobody(&out, &files);
    assert!(files.contains("report.json") && files.contains("run.pb.gz"), "{files:?}");
    assert_eq!(links.len(), OUTPUTS.len() + 2, "the planted links stay as they were: {links:?}");
    assert!(
        files.iter().all(|f| !f.contains(".tmp-") && !f.contains("probe")),
        "temporaries left: {files:?}"
    );

    // The daemon: --output, --pprof at every refresh and at the end, --log.
    let out = user.path().join("daemon");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    plant_everywhere(&out, "daemon.pb.gz", &v);
    let log = out.join("rmapprof.log");
    let mut unshare = as_pid_1()
        .args(["serve", "--listen", "127.0.0.1:0", "--refresh", "100ms", "-o"])
        .arg(&out)
        .arg("--pprof")
        .arg(out.join("daemon.pb.gz"))
        .arg("--log")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logged = |what: &str| std::fs::read_to_string(&log).is_ok_and(|l| l.contains(what));
    let t = Instant::now();
    while !logged("rmapprof: serving") {
        assert!(t.elapsed() < Duration::from_secs(60), "the daemon never served: {:?}", unshare.try_wait());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A few refreshes, each writing --pprof.
    std::thread::sleep(Duration::from_millis(500));
    // The daemon is unshare's child, pid 1 inside; from out here, its own pid.
    let children = format!("/proc/{0}/task/{0}/children", unshare.id());
    let daemon: i32 = std::fs::read_to_string(children).unwrap().trim().parse().unwrap();
    // SAFETY: kill(2) of a pid read just now, the daemon's (unshare waits for it).
    unsafe { libc::kill(daemon, libc::SIGTERM) };
    let st = unshare.wait().unwrap();
    let mut err = String::new();
    unshare.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(st.success(), "{st}: {err}{text}");
    v.untouched("the daemon");
    let (files, _) = entries(&out);
    owned_by_nobody(&out, &files);
    assert!(files.contains("rmapprof.log") && files.contains("daemon.pb.gz"), "{files:?}");
    // Its line says what it wrote: every file in the directory, the holders' too.
    let (names, dir, file) = wrote(&text);
    let mut written = files.clone();
    written.remove("rmapprof.log");
    written.remove("daemon.pb.gz");
    assert_eq!(names, written, "{text}");
    assert!(names.contains("holders.svg") && names.contains("profile.pb.gz"), "{text}");
    assert_eq!(
        (dir, file),
        (out.display().to_string(), Some(out.join("daemon.pb.gz").display().to_string()))
    );
}

/// Arguments of mixed kinds, as one list.
fn args(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

/// Runs `c` expecting a refusal: exit 2, one line on stderr (so before the line saying the
/// probes are loading), saying `says`. A run that goes on instead (the daemon serving) is
/// killed after 20 s and fails the test.
fn refused(c: &mut Command, what: &str, says: &str) {
    let mut child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(st.code(), Some(2), "{what}: {st}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line, before profiling: {err}");
    assert!(err.starts_with("rmapprof: ") && err.contains(says), "{what}: {err}");
}

/// A link at the output directory, or on the way to it, owned by another user: refused in one
/// line before anything is loaded, whatever option names it. A link root owns is root's own
/// directory: followed.
#[test]
fn links_at_output_directories_are_refused_unless_roots() {
    let _g = serial();
    let v = Victims::new();
    let user = users_dir();
    plant(user.path(), "rmapprof-out", v.dir.path());
    plant(user.path(), "rmapprof.log", &v.path("log"));
    let link = user.path().join("rmapprof-out");
    let elsewhere = tempfile::tempdir().unwrap();
    let serve: [&dyn AsRef<OsStr>; 3] = [&"serve", &"--listen", &"127.0.0.1:0"];
    let cases = [
        ("the default ./rmapprof-out", args(&[&"-d", &"1s"])),
        ("-o LINK", args(&[&"-d", &"1s", &"-o", &link])),
        ("-o LINK/sub", args(&[&"-d", &"1s", &"-o", &link.join("sub")])),
        (
            "--pprof LINK/FILE",
            args(&[&"-d", &"1s", &"-o", &elsewhere.path(), &"--pprof", &link.join("p.pb.gz")]),
        ),
        ("serve --output LINK", [args(&serve), args(&[&"-o", &link])].concat()),
        ("serve --pprof LINK/FILE", [args(&serve), args(&[&"--pprof", &link.join("p.pb.gz")])].concat()),
        ("serve --log LINK", [args(&serve), args(&[&"--log", &"rmapprof.log"])].concat()),
    ];
    for (what, args) in cases {
        refused(as_sudo(RMAPPROF).current_dir(user.path()).args(args), what, "symbolic link");
        v.untouched(what);
    }

    // A link of root's (root's own directory, as /var/run is): followed.
    let root_dir = tempfile::tempdir().unwrap();
    let real = root_dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, root_dir.path().join("link")).unwrap();
    let o = as_sudo(RMAPPROF).args(["-d", "100ms", "-o"]).arg(root_dir.path().join("link")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(real.join("report.json").is_file());
}

/// A path rmapprof would have to make directories for (it makes only the last component of
/// --output), or a directory given as --pprof FILE: refused in one line, exit 2, before
/// anything is loaded, and nothing made.
#[test]
fn bad_output_paths_are_refused_before_profiling() {
    let _g = serial();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let missing = t.path().join("no-such-dir");
    let serve: [&dyn AsRef<OsStr>; 3] = [&"serve", &"--listen", &"127.0.0.1:0"];
    let run: [&dyn AsRef<OsStr>; 4] = [&"-d", &"2s", &"-o", &out];
    let cases = [
        (
            "--pprof MISSING/FILE",
            [args(&run), args(&[&"--pprof", &missing.join("x.pb.gz")])].concat(),
            "no such directory",
        ),
        ("-o MISSING/DIR", args(&[&"-d", &"2s", &"-o", &missing.join("out")]), "no such directory"),
        ("--pprof DIR", [args(&run), args(&[&"--pprof", &t.path()])].concat(), "is a directory"),
        (
            "serve --pprof MISSING/FILE",
            [args(&serve), args(&[&"--pprof", &missing.join("x.pb.gz")])].concat(),
            "no such directory",
        ),
        (
            "serve --log MISSING/FILE",
            [args(&serve), args(&[&"--log", &missing.join("x.log")])].concat(),
            "no such directory",
        ),
        (
            "serve -o MISSING/DIR",
            [args(&serve), args(&[&"-o", &missing.join("out")])].concat(),
            "no such directory",
        ),
        ("serve --pprof DIR", [args(&serve), args(&[&"--pprof", &t.path()])].concat(), "is a directory"),
    ];
    for (what, args, says) in cases {
        refused(rmapprof().args(args), what, says);
        assert!(!missing.exists(), "{what}: made {}", missing.display());
    }
}

/// The run's "wrote" line lists every file it wrote, --pprof's too.
#[test]
fn the_wrote_line_lists_every_file_written() {
    let _g = serial();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let pprof = t.path().join("run.pb.gz");
    let o = rmapprof().args(["-d", "200ms", "-o"]).arg(&out).arg("--pprof").arg(&pprof).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let (names, dir, file) = wrote(&err);
    assert_eq!(names, entries(&out).0, "{err}");
    assert_eq!((dir, file), (out.display().to_string(), Some(pprof.display().to_string())), "{err}");
    assert!(pprof.is_file());
}
