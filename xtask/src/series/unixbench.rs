//! scripts/unixbench-compare.sh, tested against a stand-in for byte-unixbench's `Run` that
//! prints the real one's report format (its `logResults` and `logIndexCat` lines) with
//! scores known in advance. Seconds, whatever the machine's load: the stand-in does no work.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::host::root;

/// The stand-in: `Run -c COPIES TEST...` prints UnixBench's report; the k-th run (from 0) at
/// a copy count scores BASE x COPIES x $FAKE_UB_SCALE x (1 + k/100).
const STAND_IN: &str = include_str!("../../tests/data/unixbench-run-stand-in.sh");

fn stand_in(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let ub = dir.join("UnixBench");
    std::fs::create_dir_all(&ub).unwrap();
    std::fs::write(ub.join("Run"), STAND_IN).unwrap();
    std::fs::set_permissions(ub.join("Run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    ub
}

fn script(args: &[&Path], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(root().join("scripts/unixbench-compare.sh"));
    c.args(args).env("UB_NPROC", "4").env_remove("RMAPPROF");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Without rmapprof: 1, nproc/2 and nproc copies (UB_NPROC=4: 1, 2, 4), 5 runs each, mean and
/// standard deviation of the stand-in's scores; compare shows the change between two runs.
#[test]
fn unixbench_runs_are_summarized_and_compared() {
    let dir = std::env::temp_dir().join(format!("xtask-unixbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ub = stand_in(&dir);
    let (base, patched) = (dir.join("base"), dir.join("patched"));
    let o = script(&[Path::new("run"), &ub, &base], &[("RMAPPROF", "none")]);
    assert!(o.status.success(), "{}", text(&o));
    let runs = std::fs::read_dir(base.join("runs")).unwrap().count();
    assert_eq!(runs, 15, "3 copy counts x 5 runs");
    let table = std::fs::read_to_string(base.join("unixbench.txt")).unwrap();
    // 1000 x copies x (1.00 .. 1.04): mean x 1.02, standard deviation x 0.0158.
    for row in [
        "execl          1       1020.0       15.8 lps       5",
        "execl          2       2040.0       31.6 lps       5",
        "execl          4       4080.0       63.2 lps       5",
        "shell1         1       3060.0       47.4 lpm       5",
        "shell8         4       1632.0       25.3 lpm       5",
        "spawn          2       4080.0       63.2 lps       5",
    ] {
        assert!(table.lines().any(|l| l == row), "no row {row:?} in\n{table}");
    }
    assert_eq!(table.lines().count(), 1 + 4 * 3, "{table}");
    let info = std::fs::read_to_string(base.join("info.txt")).unwrap();
    assert!(info.contains("rmapprof: skipped (RMAPPROF=none)"), "{info}");
    assert!(info.contains("copy counts from 4: 1 2 4"), "{info}");

    // A second kernel twice as fast; compare says so, test by test.
    let _ = std::fs::remove_file(ub.join("count.1"));
    for c in [1, 2, 4] {
        let _ = std::fs::remove_file(ub.join(format!("count.{c}")));
    }
    let o = script(
        &[Path::new("run"), &ub, &patched, Path::new("3")],
        &[("RMAPPROF", "none"), ("FAKE_UB_SCALE", "2")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = script(&[Path::new("compare"), &base, &patched], &[]);
    let cmp = text(&o);
    assert!(o.status.success(), "{cmp}");
    // Three runs at scale 2: 2000 x (1.00, 1.01, 1.02), mean 2020.0.
    assert!(
        cmp.lines().any(|l| l == "execl          1       1020.0     15.8       2020.0     20.0   +98.0%"),
        "{cmp}"
    );
    assert_eq!(cmp.lines().filter(|l| l.ends_with('%')).count(), 12, "{cmp}");

    // An existing directory is not written into; a directory without Run is not UnixBench.
    let o = script(&[Path::new("run"), &ub, &base], &[("RMAPPROF", "none")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).starts_with("unixbench-compare: ") && text(&o).lines().count() == 1, "{}", text(&o));
    let o = script(&[Path::new("run"), &dir, &dir.join("x")], &[("RMAPPROF", "none")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no executable Run"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With rmapprof, where this runs as root and a build of it exists: one report per copy
/// count, and compare runs `rmapprof diff` on each pair. Skipped (said on stderr) otherwise.
#[test]
fn unixbench_runs_under_rmapprof_when_root() {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    let rmapprof = ["release", "debug"]
        .iter()
        .map(|p| root().join("target").join(p).join("rmapprof"))
        .find(|p| p.exists());
    let (true, Some(rmapprof)) = (root_user, rmapprof) else {
        eprintln!("unixbench_runs_under_rmapprof_when_root: skipped (not root, or no target/*/rmapprof)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("xtask-unixbench-rp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ub = stand_in(&dir);
    let rp = rmapprof.to_str().unwrap();
    for name in ["base", "patched"] {
        let o = script(
            &[Path::new("run"), &ub, &dir.join(name), Path::new("1")],
            &[("RMAPPROF", rp), ("UB_NPROC", "1")],
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(dir.join(name).join("rmapprof-c1/report.json").exists(), "{}", text(&o));
        assert_eq!(std::fs::read_dir(dir.join(name).join("runs")).unwrap().count(), 1);
    }
    let o = Command::new(root().join("scripts/unixbench-compare.sh"))
        .arg("compare")
        .arg(dir.join("base"))
        .arg(dir.join("patched"))
        .arg(dir.join("diff"))
        .env("RMAPPROF", rp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("diff/diff-c1/diff.txt").exists(), "{}", text(&o));
    assert!(text(&o).contains("--- rmapprof diff, c1 ---"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
