//! What `cargo xtask dist` built (cargo xtask test builds it first): the static binary runs
//! where there is no library at all, the man pages render, the completions load, and the
//! Debian package installs what it should, the unit not enabled. Needs root (chroot, mounts).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dist() -> PathBuf {
    root().join("target/dist")
}

/// The one file of target/dist whose name starts with `prefix` and ends with `suffix`.
fn artifact(prefix: &str, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dist())
        .unwrap_or_else(|e| {
            panic!("{}: {e}: run `cargo xtask dist` (cargo xtask test does)", dist().display())
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect();
    assert_eq!(found.len(), 1, "{prefix}*{suffix} in {}: {found:?}", dist().display());
    found.into_iter().next().unwrap()
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The tarball unpacked into a fresh directory; returns its top directory.
fn unpacked(into: &Path) -> PathBuf {
    let tarball = artifact("rmapprof-", "-x86_64-linux.tar.gz");
    run(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(into));
    let name = tarball.file_name().unwrap().to_string_lossy().trim_end_matches(".tar.gz").to_owned();
    into.join(name)
}

#[test]
fn the_tarball_holds_the_binary_pages_completions_unit_and_licences() {
    let tmp = tempfile::tempdir().unwrap();
    let top = unpacked(tmp.path());
    for f in [
        "rmapprof",
        "man/man1/rmapprof.1",
        "man/man1/rmapprof-diff.1",
        "man/man1/rmapprof-model.1",
        "man/man1/rmapprof-serve.1",
        "completions/rmapprof.bash",
        "completions/_rmapprof",
        "completions/rmapprof.fish",
        "systemd/rmapprof.service",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "LICENSE-GPL2",
        "LICENSE-LGPL-2.1",
        "NOTICE",
        "THIRD-PARTY",
        "README.md",
        "unixbench-compare.sh",
        "report.schema.json",
    ] {
        assert!(top.join(f).is_file(), "the tarball has no {f}");
    }
    assert!(!top.join("man/man1/rmapprof-dist-assets.1").exists(), "a page for the hidden subcommand");
    let notice = std::fs::read_to_string(top.join("NOTICE")).unwrap();
    for says in ["GPL-2.0 OR MIT", "Lesser General Public License", "apt-get source glibc="] {
        assert!(notice.contains(says), "NOTICE does not say {says:?}:\n{notice}");
    }
    let third = std::fs::read_to_string(top.join("THIRD-PARTY")).unwrap();
    assert!(third.lines().any(|l| l.starts_with("aya ")), "{third}");
    assert!(!third.contains("proptest"), "a dev-dependency is listed:\n{third}");
}

/// The binary in a chroot holding nothing but itself, /proc, /sys (recursively: tracefs and
/// BTF are under it) and /dev: `--version`, then a one-second tracepoint profile.
#[test]
fn the_static_binary_runs_in_a_chroot_with_no_library() {
    let tmp = tempfile::tempdir().unwrap();
    let top = unpacked(tmp.path());
    let chroot = tmp.path().join("chroot");
    for d in ["proc", "sys", "dev", "out"] {
        std::fs::create_dir_all(chroot.join(d)).unwrap();
    }
    std::fs::copy(top.join("rmapprof"), chroot.join("rmapprof")).unwrap();
    let script = r#"set -e
        mount --rbind /proc "$1/proc"
        mount --rbind /sys "$1/sys"
        mount --rbind /dev "$1/dev"
        chroot "$1" /rmapprof --version
        chroot "$1" /rmapprof --mode tracepoint --duration 1s -o /out/run > /dev/null"#;
    // A private mount namespace: the mounts go when it ends.
    let out = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&chroot));
    assert!(out.starts_with("rmapprof "), "{out}");
    assert!(out.contains("commit: ") && out.contains("eBPF object: sha256 "), "{out}");
    let report = std::fs::read_to_string(chroot.join("out/run/report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["mode"], "tracepoint", "{report}");
    let commit = out.lines().find_map(|l| l.strip_prefix("commit: ")).unwrap();
    assert_eq!(report["build"]["commit"], commit, "report.json's build is the binary's");
}

#[test]
fn every_man_page_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let top = unpacked(tmp.path());
    for e in std::fs::read_dir(top.join("man/man1")).unwrap() {
        let page = e.unwrap().path();
        let name = page.file_stem().unwrap().to_string_lossy().into_owned();
        let text = run(Command::new("man").arg("-l").arg(&page).env("MANWIDTH", "80").env("MANPAGER", "cat"));
        assert!(text.contains("NAME") && text.contains(&name) && text.contains("OPTIONS"), "{name}:\n{text}");
    }
}

/// Sourced in bash, the completion completes an option and a subcommand.
#[test]
fn the_bash_completions_load_and_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let top = unpacked(tmp.path());
    let script = r#"source "$1"
        complete -p rmapprof
        COMP_WORDS=(rmapprof --acq); COMP_CWORD=1; COMP_LINE="rmapprof --acq"; COMP_POINT=${#COMP_LINE}
        _rmapprof rmapprof --acq rmapprof
        echo "options: ${COMPREPLY[*]}"
        COMP_WORDS=(rmapprof se); COMP_CWORD=1; COMP_LINE="rmapprof se"; COMP_POINT=${#COMP_LINE}
        _rmapprof rmapprof se rmapprof
        echo "subcommands: ${COMPREPLY[*]}""#;
    let out = run(Command::new("bash")
        .args(["--norc", "-c", script, "bash"])
        .arg(top.join("completions/rmapprof.bash")));
    assert!(out.contains("-F _rmapprof rmapprof"), "{out}");
    assert!(out.contains("options: --acquisitions"), "{out}");
    assert!(out.contains("subcommands: serve"), "{out}");
}

/// dpkg installs the package into a scratch root: the binary in /usr/bin, the pages, the
/// completions, the unit naming /usr/bin/rmapprof and not enabled, the licences.
#[test]
fn the_deb_installs_into_a_scratch_root() {
    let deb = artifact("rmapprof_", "_amd64.deb");
    let fields =
        run(Command::new("dpkg-deb").args(["-f"]).arg(&deb).args(["Package", "Architecture", "Depends"]));
    assert!(fields.contains("Package: rmapprof") && fields.contains("Architecture: amd64"), "{fields}");
    assert!(!fields.contains("Depends"), "a static binary depends on nothing: {fields}");
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--log=/dev/null", "--force-script-chrootless", "--install"])
        .arg(&deb));
    let listed = run(Command::new("dpkg").arg(format!("--root={}", r.display())).args(["-L", "rmapprof"]));
    for f in [
        "/usr/bin/rmapprof",
        "/usr/share/man/man1/rmapprof.1.gz",
        "/usr/share/man/man1/rmapprof-serve.1.gz",
        "/usr/share/bash-completion/completions/rmapprof",
        "/usr/share/zsh/vendor-completions/_rmapprof",
        "/usr/share/fish/vendor_completions.d/rmapprof.fish",
        "/usr/lib/systemd/system/rmapprof.service",
        "/usr/share/doc/rmapprof/copyright",
        "/usr/share/doc/rmapprof/LICENSE-LGPL-2.1",
        "/usr/share/rmapprof/unixbench-compare.sh",
        "/usr/share/doc/rmapprof/report.schema.json",
    ] {
        assert!(listed.lines().any(|l| l == f), "the package has no {f}:\n{listed}");
        assert!(r.join(&f[1..]).is_file(), "{f} was not installed");
    }
    let unit = std::fs::read_to_string(r.join("usr/lib/systemd/system/rmapprof.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/rmapprof serve "), "{unit}");
    assert!(!r.join("etc/systemd/system/multi-user.target.wants").exists(), "the unit was enabled");
    let v = run(Command::new(r.join("usr/bin/rmapprof")).arg("-V"));
    assert!(v.starts_with("rmapprof "), "{v}");
}

/// The tarball's unixbench-compare.sh runs the static binary beside it (against a stand-in for
/// UnixBench's Run), with nothing on PATH named rmapprof, and info.txt names that build.
#[test]
fn the_unixbench_script_runs_the_binary_beside_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let top = unpacked(tmp.path());
    let ub = tmp.path().join("UnixBench");
    std::fs::create_dir(&ub).unwrap();
    std::fs::write(ub.join("Run"), include_str!("data/unixbench-run-stand-in.sh")).unwrap();
    std::fs::set_permissions(ub.join("Run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmp.path().join("base");
    run(Command::new(top.join("unixbench-compare.sh"))
        .arg("run")
        .arg(&ub)
        .arg(&out)
        .arg("1")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("UB_NPROC", "1")
        .env_remove("RMAPPROF"));
    let info = std::fs::read_to_string(out.join("info.txt")).unwrap();
    let beside = top.join("rmapprof");
    assert!(info.contains(&format!("rmapprof: {} --inode", beside.display())), "{info}");
    assert!(info.contains("rmapprof build: rmapprof ") && info.contains("(commit "), "{info}");
    assert!(out.join("rmapprof-c1/report.json").is_file());
}
