//! Debian packages fetched, not installed: a source package's .deb (linux-source, glibc-source)
//! from the machine's suites, or from another suite through an apt sources list, package lists
//! and cache of our own under `<cache>/apt-SUITE` (the machine's apt configuration and suites
//! are not touched; the archive keyring checks the suite's signature).

use anyhow::{Context, Result};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::host::{cache_dir, sh};

/// `apt-get` with `suite`'s private sources list, lists and cache (None: the machine's own).
fn apt_get(suite: Option<&str>) -> Result<Command> {
    let mut c = Command::new("apt-get");
    c.arg("-q");
    if let Some(suite) = suite {
        let apt = cache_dir().join(format!("apt-{suite}"));
        for d in [apt.join("lists/partial"), apt.join("cache/archives/partial")] {
            std::fs::create_dir_all(&d)?;
        }
        let list = apt.join("sources.list");
        std::fs::write(
            &list,
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian {suite} main\n"
            ),
        )?;
        c.arg(format!("-oDir::Etc::sourcelist={}", list.display()))
            .arg("-oDir::Etc::sourceparts=-")
            .arg(format!("-oDir::State::Lists={}", apt.join("lists").display()))
            .arg(format!("-oDir::Cache={}", apt.join("cache").display()));
    }
    // Our directories are root's: apt's _apt user could not write them.
    c.arg("-oAPT::Sandbox::User=root");
    Ok(c)
}

/// Downloads `pkg` from `suite` (None: the machine's suites) and unpacks it with dpkg -x into
/// `into` (replaced); returns the package's version. The .deb is not kept.
pub fn fetch(pkg: &str, suite: Option<&str>, into: &Path) -> Result<String> {
    eprintln!("xtask: fetching {pkg} from Debian {}", suite.unwrap_or("(the machine's suites)"));
    sh(apt_get(suite)?.arg("update"))?;
    let debs = into.parent().context("no parent directory")?.to_owned();
    std::fs::create_dir_all(&debs)?;
    let prefix = format!("{pkg}_");
    let old_debs = || -> Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                    && p.extension().is_some_and(|e| e == "deb")
            })
            .collect())
    };
    for d in old_debs()? {
        std::fs::remove_file(d)?;
    }
    sh(apt_get(suite)?.args(["download", pkg]).current_dir(&debs))?;
    let deb = old_debs()?
        .into_iter()
        .next()
        .with_context(|| format!("apt-get download {pkg} left no .deb in {}", debs.display()))?;
    if into.exists() {
        std::fs::remove_dir_all(into)?;
    }
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into))?;
    let version = Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version").output()?;
    std::fs::remove_file(&deb)?;
    Ok(String::from_utf8_lossy(&version.stdout).trim().to_owned())
}
