//! Writing the output directory: the files of one run appear whole or not at all (each written
//! to a temporary name and fsynced; renamed into place only when all are written), and under
//! sudo belong to the user who ran sudo. A disk that fills up, or a second Ctrl-C, leaves the
//! previous outputs as they were and no temporary files.

use anyhow::{Context, Result};
use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// The user who ran `sudo rmapprof`, if that is how we run: (uid, gid).
pub fn invoking_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let uid = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    Some((uid, gid))
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

pub struct OutputDir {
    dir: PathBuf,
    owner: Option<(u32, u32)>,
}

impl OutputDir {
    /// Creates the directory (and checks it is writable) before profiling starts, so a bad
    /// --output fails fast instead of after a long run.
    pub fn create(dir: &Path) -> Result<Self> {
        let owner = invoking_user();
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output directory {}", dir.display()))?;
            chown(dir, owner)?;
        }
        let probe = dir.join(format!(".rmapprof-probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .with_context(|| format!("output directory {} is not writable", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(Self { dir: dir.to_owned(), owner })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[cfg(test)]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `name` atomically.
    pub fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        self.write_all(&[(name.to_owned(), data.to_vec())])?;
        Ok(self.dir.join(name))
    }

    /// Writes every (name, contents) or none: all to temporary names first, then the renames.
    /// On failure every temporary file is removed.
    pub fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        let tmp = |name: &str| self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let mut written: Vec<PathBuf> = Vec::new();
        let res = (|| -> Result<()> {
            for (name, data) in files {
                let t = tmp(name);
                crate::signals::add_temp(&t);
                written.push(t.clone());
                let mut f = std::fs::File::create(&t)?;
                f.write_all(data).and_then(|_| f.sync_all()).with_context(|| format!("writing {name}"))?;
                chown(&t, self.owner)?;
                // Fault injection for the tests: time to land a signal mid-write
                // (RMAPPROF_FAULT_WRITE_DELAY_MS=N after each file).
                if let Some(ms) =
                    std::env::var("RMAPPROF_FAULT_WRITE_DELAY_MS").ok().and_then(|v| v.parse().ok())
                {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            for t in &written {
                let _ = std::fs::remove_file(t);
                crate::signals::remove_temp(t);
            }
            return Err(e.context(format!("output directory {}: nothing written", self.dir.display())));
        }
        for ((name, _), t) in files.iter().zip(&written) {
            std::fs::rename(t, self.dir.join(name)).with_context(|| format!("renaming into {name}"))?;
            crate::signals::remove_temp(t);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let out = OutputDir::create(&d.path().join("a/b")).unwrap();
        out.write("report.txt", b"hello").unwrap();
        out.write("report.txt", b"again").unwrap();
        assert_eq!(std::fs::read(out.path("report.txt")).unwrap(), b"again");
        let names: Vec<_> =
            std::fs::read_dir(d.path().join("a/b")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["report.txt"]);
    }

    #[test]
    fn unwritable_dir_fails_early() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(OutputDir::create(&file.join("sub")).is_err());
    }
}
