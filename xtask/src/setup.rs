//! The eBPF toolchain: nightly's rust-src (for -Z build-std=core on bpfel-unknown-none) and
//! bpf-linker, built from crates.io against the nightly's own libLLVM so no system LLVM is
//! needed. Idempotent: a second run only checks.

use anyhow::{anyhow, bail, Context, Result};
use std::{path::PathBuf, process::Command};

use crate::host::{cargo, sh, stdout};

const BPF_LINKER_VERSION: &str = "0.13.0";

fn nightly_sysroot() -> Option<PathBuf> {
    stdout(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
}

pub fn ensure() -> Result<()> {
    let sysroot = match nightly_sysroot() {
        Some(s) => s,
        None => {
            sh(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
            nightly_sysroot().ok_or_else(|| anyhow!("nightly toolchain still missing after install"))?
        }
    };
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        sh(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    let have = stdout(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if !have.contains(BPF_LINKER_VERSION) {
        install_bpf_linker(&sysroot)?;
    }
    Ok(())
}

/// `cargo install bpf-linker` linked to nightly's `libLLVM-<major>-rust-<version>.so`.
fn install_bpf_linker(sysroot: &std::path::Path) -> Result<()> {
    let lib = sysroot.join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.starts_with("libLLVM-") && n.ends_with(".so"))
        .ok_or_else(|| anyhow!("no libLLVM-*.so in {}: is the nightly toolchain complete?", lib.display()))?;
    let name = llvm.trim_start_matches("lib").trim_end_matches(".so").to_owned(); // LLVM-22-rust-1.97.0-nightly
    let major = name.split('-').nth(1).ok_or_else(|| anyhow!("cannot read LLVM version from {llvm}"))?;
    if major.parse::<u32>().is_err() {
        bail!("cannot read LLVM version from {llvm}");
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against nightly's {llvm} (about a minute)");
    let rustflags = format!("-L {0} -l dylib={name} -C link-arg=-Wl,-rpath,{0}", lib.display());
    sh(Command::new("cargo")
        .env("RUSTFLAGS", rustflags)
        .args(["install", "--locked", "bpf-linker", "--version", BPF_LINKER_VERSION, "--force"])
        .args(["--no-default-features", "--features", &format!("llvm-{major},no-llvm-linking")]))
}

/// rmapprof (with its eBPF object) and the workloads, release builds; the eBPF toolchain first.
pub fn build() -> Result<()> {
    ensure()?;
    sh(cargo().args(["build", "--release", "-p", "rmapprof", "-p", "rmapprof-workloads"]))
}
