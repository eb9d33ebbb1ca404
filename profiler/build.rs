//! Builds profiler-ebpf for bpfel-unknown-none with the nightly toolchain (aya-build) and leaves
//! the object in OUT_DIR, where main.rs embeds it. A missing prerequisite is one line that says
//! what to run.
use std::{path::Path, process::Command};

/// What `cmd` printed, trimmed, when it ran and succeeded.
fn stdout_of(cmd: &mut Command) -> Option<String> {
    let o = cmd.output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn missing(what: &str) -> ! {
    println!("cargo::error={what}: run `cargo xtask setup` (installs nightly rust-src and bpf-linker)");
    std::process::exit(1);
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PATH");
    if std::env::var_os("AYA_BUILD_SKIP").is_none() {
        let sysroot =
            stdout_of(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]));
        let Some(sysroot) = sysroot else { missing("no nightly Rust toolchain") };
        if !Path::new(&sysroot).join("lib/rustlib/src/rust/library/core").is_dir() {
            missing("nightly has no rust-src component");
        }
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()))
            .unwrap_or(false);
        if !on_path {
            missing("bpf-linker not found on PATH");
        }
    }
    profile_proto()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiler-ebpf");
    let root = root.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [aya_build::Package { name: "profiler-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Nightly,
    )?;
    build_identity();
    Ok(())
}

/// What `rmapprof --version` and report.json say the binary was built from: the git commit
/// (`-dirty` when tracked files differ from it; "unknown" outside a git checkout, as from a
/// source tarball), the embedded eBPF object's SHA-256 (its first 16 hex digits), and the
/// toolchain that built that object.
fn build_identity() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest.join("..");
    let git = |args: &[&str]| stdout_of(Command::new("git").arg("-C").arg(&repo).args(args));
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            format!("{c}{}", if dirty { "-dirty" } else { "" })
        }
        None => "unknown".to_owned(),
    };
    // Commits, checkouts and edits of the sources the binary is built from change the above.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for f in ["HEAD", "index", "packed-refs", "refs/heads"] {
            println!("cargo:rerun-if-changed={git_dir}/{f}");
        }
    }
    for d in ["src", "../profiler-common/src", "../profiler-ebpf/src"] {
        println!("cargo:rerun-if-changed={}", manifest.join(d).display());
    }
    let object = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("rmapprof-ebpf");
    let ebpf = match std::fs::read(&object) {
        Ok(bytes) => {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(&bytes);
            digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>()
        }
        Err(_) => "none".to_owned(),
    };
    let version_of = |cmd: &mut Command| stdout_of(cmd).unwrap_or_else(|| "unknown".to_owned());
    let rustc = version_of(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]));
    let linker = version_of(Command::new("bpf-linker").arg("--version"));
    println!("cargo:rustc-env=RMAPPROF_COMMIT={commit}");
    println!("cargo:rustc-env=RMAPPROF_EBPF_OBJECT={ebpf}");
    println!("cargo:rustc-env=RMAPPROF_EBPF_TOOLCHAIN={rustc}, {linker}");
}

/// proto/profile.proto (pprof's published format, as google/pprof ships it) to Rust types in
/// OUT_DIR/perftools.profiles.rs, for `render::pprof`. protox parses it, so no protoc.
fn profile_proto() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=proto/profile.proto");
    let fds = protox::compile(["proto/profile.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
