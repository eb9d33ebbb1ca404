//! `--bin-dir DIR`: spawn and shellscript exec DIR's programs, and shellscript's pipeline finds
//! its tools in DIR (what the glibc comparison runs: copies linked against another loader).
use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0)
}

#[test]
fn spawn_and_shellscript_exec_the_programs_of_bin_dir() {
    let dir = std::env::temp_dir().join(format!("workloads-bin-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let l = log.display();
    script(&dir, "true", &format!("echo true >> {l}"));
    // sh is the real shell; the pipeline's tools are DIR's, found through PATH.
    std::os::unix::fs::symlink("/bin/sh", dir.join("sh")).unwrap();
    for tool in ["tr", "sort", "wc"] {
        script(&dir, tool, &format!("echo {tool} >> {l}; /bin/cat > /dev/null"));
    }

    let st = Command::new(env!("CARGO_BIN_EXE_spawn"))
        .args(["5", "-j", "2", "--bin-dir"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(lines(&log), 5, "spawn ran DIR/true 5 times");

    std::fs::remove_file(&log).unwrap();
    let st =
        Command::new(env!("CARGO_BIN_EXE_shellscript")).args(["4", "--bin-dir"]).arg(&dir).status().unwrap();
    assert!(st.success());
    assert_eq!(lines(&log), 12, "each of 4 pipelines ran DIR's tr, sort and wc");

    // Anything else after COUNT is a usage error, exit 2.
    let o = Command::new(env!("CARGO_BIN_EXE_spawn")).args(["1", "--bin-dir"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage: spawn COUNT"));
    std::fs::remove_dir_all(&dir).unwrap();
}
