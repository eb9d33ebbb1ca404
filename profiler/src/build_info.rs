//! What this binary was built from (profiler/build.rs): `--version` prints it and report.json
//! carries it, so that a report can be traced to the build that wrote it.

use rmapprof_report::Build;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `git rev-parse --short=12 HEAD`, `-dirty` when tracked files differed, or "unknown".
pub const COMMIT: &str = env!("RMAPPROF_COMMIT");
/// The first 16 hex digits of the embedded eBPF object's SHA-256.
pub const EBPF_OBJECT: &str = env!("RMAPPROF_EBPF_OBJECT");
/// The nightly rustc and the bpf-linker that built the eBPF object.
pub const EBPF_TOOLCHAIN: &str = env!("RMAPPROF_EBPF_TOOLCHAIN");

/// `rmapprof -V`.
pub const SHORT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RMAPPROF_COMMIT"),
    ", eBPF object ",
    env!("RMAPPROF_EBPF_OBJECT"),
    ")"
);

/// `rmapprof --version`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("RMAPPROF_COMMIT"),
    "\neBPF object: sha256 ",
    env!("RMAPPROF_EBPF_OBJECT"),
    "\neBPF toolchain: ",
    env!("RMAPPROF_EBPF_TOOLCHAIN")
);

/// report.json's `build`: this binary's.
pub fn this() -> Build {
    Build { commit: COMMIT.into(), ebpf_object: EBPF_OBJECT.into(), ebpf_toolchain: EBPF_TOOLCHAIN.into() }
}
