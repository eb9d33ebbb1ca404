//! The real systems the host tests check rmapprof against (profiler/tests/serve.rs): Debian's
//! Prometheus, which scrapes `rmapprof serve`, and Go's toolchain, whose `go tool pprof` reads
//! the profiles rmapprof writes. Installed with apt when missing; never started here (each
//! test starts its own Prometheus on a port of its own and stops it).

use anyhow::Result;
use std::process::Command;

use crate::host::{have, sh};

/// Command → Debian package.
const PACKAGES: [(&str, &str); 2] = [("prometheus", "prometheus"), ("go", "golang-go")];

pub fn ensure() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().filter(|(cmd, _)| !have(cmd)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {} for the serve tests (apt)", missing.join(", "));
    sh(Command::new("apt-get").args(["update", "-q"]))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
