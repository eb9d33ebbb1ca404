//! Builds profiler-ebpf for bpfel-unknown-none with the nightly toolchain (aya-build) and leaves
//! the object in OUT_DIR, where main.rs embeds it. A missing prerequisite is one line that says
//! what to run.
use std::{path::Path, process::Command};

fn missing(what: &str) -> ! {
    println!("cargo::error={what}: run `cargo xtask setup` (installs nightly rust-src and bpf-linker)");
    std::process::exit(1);
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PATH");
    if std::env::var_os("AYA_BUILD_SKIP").is_none() {
        let sysroot = Command::new("rustup")
            .args(["run", "nightly", "rustc", "--print", "sysroot"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
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
    )
}

/// proto/profile.proto (pprof's published format, as google/pprof ships it) to Rust types in
/// OUT_DIR/perftools.profiles.rs, for `render::pprof`. protox parses it, so no protoc.
fn profile_proto() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=proto/profile.proto");
    let fds = protox::compile(["proto/profile.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
