//! Writing output files: the files of one run appear whole or not at all (each written to a
//! temporary name and fsynced; renamed into place only when all are written), and under sudo
//! belong to the user who ran sudo. A disk that fills up, or a second Ctrl-C, leaves the
//! previous outputs as they were and no temporary files.
//!
//! rmapprof writes as root into directories other users own, who can plant a symbolic link at
//! any name it would use: a directory is reached component by component (resolve.rs) and then
//! used through its descriptor only. Every file in it is created exclusively under an
//! unpredictable name, never through a link (O_CREAT|O_EXCL|O_NOFOLLOW), chowned by descriptor
//! (fchown), and renamed or removed by renameat/unlinkat on the directory's descriptor.

mod pprof;
mod resolve;

pub use pprof::{now_nanos, PprofFile};

use anyhow::{Context, Result};
use rustix::{
    fs::{self, AtFlags, FileType, Mode, OFlags},
    io::Errno,
};
use std::{
    ffi::CString,
    fs::File,
    io::Write,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use crate::{errors::usage, signals};

pub use resolve::split;

/// The user who ran `sudo rmapprof`, if that is how we run: (uid, gid).
pub fn invoking_user() -> Option<(u32, u32)> {
    if rustix::process::geteuid().as_raw() != 0 {
        return None;
    }
    let uid = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    Some((uid, gid))
}

fn chown(f: &impl AsFd, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::fchown(f, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// A directory rmapprof writes files in, held by descriptor.
pub struct OutputDir {
    /// As the user gave it, for messages.
    path: PathBuf,
    /// O_RDONLY|O_DIRECTORY: every file is created, renamed and removed relative to it.
    fd: OwnedFd,
    owner: Option<(u32, u32)>,
}

impl OutputDir {
    /// `--output DIR`: opened, its last component created if missing (owned by the invoking
    /// user; never its parents, which a mistyped path would have root build), and checked
    /// writable, before profiling starts, so a bad --output fails fast instead of after a long
    /// run.
    pub fn create(path: &Path) -> Result<Self> {
        let owner = invoking_user();
        let fd = create_dir(path, owner).with_context(|| format!("output directory {}", path.display()))?;
        Self::writable(path, fd, owner)
    }

    /// The directory of a `--pprof` FILE: it must exist.
    pub fn existing(path: &Path) -> Result<Self> {
        let fd = resolve::dir(path).and_then(|d| Ok(resolve::reopen(&d)?))?;
        Self::writable(path, fd, invoking_user())
    }

    fn writable(path: &Path, fd: OwnedFd, owner: Option<(u32, u32)>) -> Result<Self> {
        let dir = Self { path: path.to_owned(), fd, owner };
        let (_, probe) = dir
            .create_temp(".rmapprof-probe-")
            .with_context(|| format!("output directory {} is not writable", path.display()))?;
        dir.remove_temp(&probe);
        Ok(dir)
    }

    #[cfg(test)]
    pub fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether `name` here is a directory (not through a link): what no file is renamed onto.
    pub fn is_directory(&self, name: &str) -> bool {
        fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
    }

    /// "NAMES in DIR": the line's part that says what a write wrote.
    pub fn listing<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> String {
        format!("{} in {}", names.into_iter().collect::<Vec<_>>().join(" "), self.path.display())
    }

    /// A new file named `prefix` and 16 random hex digits, created exclusively (a name someone
    /// planted, link or not, is never opened: another name is drawn), mode 0666 less the umask.
    /// Registered with the signal handler, which removes it on a hard exit, until
    /// [`Self::remove_temp`] or a rename.
    fn create_temp(&self, prefix: &str) -> std::io::Result<(File, CString)> {
        for _ in 0..16 {
            let mut r = [0u8; 8];
            rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty())?;
            let name = CString::new(format!("{prefix}{:016x}", u64::from_ne_bytes(r)))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            // Registered before it exists, so a hard exit right after the create removes it.
            signals::add_temp(self.fd.as_fd(), &name);
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match fs::openat(&self.fd, name.as_c_str(), flags, Mode::from_raw_mode(0o666)) {
                Ok(fd) => return Ok((File::from(fd), name)),
                Err(e) => {
                    signals::remove_temp(self.fd.as_fd(), &name);
                    if e != Errno::EXIST {
                        return Err(e.into());
                    }
                }
            }
        }
        Err(Errno::EXIST.into())
    }

    fn remove_temp(&self, name: &CString) {
        let _ = fs::unlinkat(&self.fd, name.as_c_str(), AtFlags::empty());
        signals::remove_temp(self.fd.as_fd(), name);
    }

    /// Writes `name` atomically.
    pub fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        self.write_all(&[(name.to_owned(), data.to_vec())])?;
        Ok(self.path.join(name))
    }

    /// Writes every (name, contents) or none: all to temporary names first, then the renames.
    /// On failure every temporary file is removed.
    pub fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        let mut temps: Vec<CString> = Vec::new();
        let res = (|| -> Result<()> {
            for (name, data) in files {
                let (mut f, t) = self.create_temp(&format!(".{name}.tmp-"))?;
                temps.push(t);
                f.write_all(data).and_then(|_| f.sync_all()).with_context(|| format!("writing {name}"))?;
                chown(&f, self.owner).with_context(|| format!("chown {name}"))?;
                // Fault injection for the tests: time to land a signal mid-write
                // (RMAPPROF_FAULT_WRITE_DELAY_MS=N after each file).
                if let Some(ms) =
                    std::env::var("RMAPPROF_FAULT_WRITE_DELAY_MS").ok().and_then(|v| v.parse().ok())
                {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
            }
            // A rename onto a directory fails: found before the first rename, not after.
            match files.iter().find(|(name, _)| self.is_directory(name)) {
                Some((name, _)) => Err(anyhow::anyhow!("{name} is a directory")),
                None => Ok(()),
            }
        })();
        if let Err(e) = res {
            temps.iter().for_each(|t| self.remove_temp(t));
            return Err(e.context(format!("output directory {}: nothing written", self.path.display())));
        }
        for (i, ((name, _), t)) in files.iter().zip(&temps).enumerate() {
            if let Err(e) = fs::renameat(&self.fd, t.as_c_str(), &self.fd, name.as_str()) {
                temps[i..].iter().for_each(|t| self.remove_temp(t));
                return Err(std::io::Error::from(e)).with_context(|| {
                    format!("output directory {}: renaming into {name}", self.path.display())
                });
            }
            signals::remove_temp(self.fd.as_fd(), t);
        }
        // The renames as durable as the files (a filesystem that cannot sync a directory has
        // still renamed them).
        let _ = fs::fsync(&self.fd);
        Ok(())
    }
}

/// Opens `--output DIR`, making its last component if missing.
fn create_dir(path: &Path, owner: Option<(u32, u32)>) -> Result<OwnedFd> {
    // `/`, `..`: nothing to make.
    let Some((parent, name)) = split(path) else {
        return Ok(resolve::reopen(&resolve::dir(path)?)?);
    };
    let parent = resolve::dir(parent)?;
    let made = match fs::mkdirat(&parent, name, Mode::from_raw_mode(0o777)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(e.into()),
    };
    let fd = resolve::reopen(&resolve::entry(parent.as_fd(), name, path)?)?;
    if made {
        chown(&fd, owner).context("chown")?;
    }
    Ok(fd)
}

/// `--log FILE`, opened to append to (O_APPEND), never through a link at its name: made if
/// missing (then owned by the invoking user), else appended to as it is, and only if it is a
/// regular file with no other name (a hard link planted to another file).
pub fn open_log(path: &Path) -> Result<File> {
    let (dir, name) = split(path).ok_or_else(|| usage(format!("{} is not a file name", path.display())))?;
    let dir = resolve::dir(dir)?;
    let append = OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // Made, or there: tried again when it is removed or made between the two opens.
    for _ in 0..8 {
        match fs::openat(&dir, name, append | OFlags::CREATE | OFlags::EXCL, Mode::from_raw_mode(0o666)) {
            Ok(fd) => {
                chown(&fd, invoking_user()).context("chown")?;
                return Ok(File::from(fd));
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // O_NONBLOCK: a FIFO there fails (ENXIO without a reader, the check below with one)
        // instead of blocking the open.
        let fd = match fs::openat(&dir, name, append | OFlags::NONBLOCK, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(Errno::NXIO) => return Err(usage("not a regular file")),
            Err(Errno::LOOP) => {
                return Err(usage("is a symbolic link; rmapprof appends as root only to the file itself"))
            }
            Err(e) => return Err(e.into()),
        };
        let st = fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(usage("not a regular file"));
        }
        if st.st_nlink > 1 {
            return Err(usage(format!(
                "has {} names (hard links); rmapprof appends as root only to a file with one",
                st.st_nlink
            )));
        }
        fs::fcntl_setfl(&fd, OFlags::APPEND)?;
        return Ok(File::from(fd));
    }
    Err(Errno::NOENT.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let out = OutputDir::create(&d.path().join("a")).unwrap();
        out.write("report.txt", b"hello").unwrap();
        out.write("report.txt", b"again").unwrap();
        assert_eq!(std::fs::read(out.path("report.txt")).unwrap(), b"again");
        let names: Vec<_> =
            std::fs::read_dir(d.path().join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["report.txt"]);
    }

    /// Only the last component is made: a mistyped path is refused (exit 2), not built as root.
    #[test]
    fn parents_are_never_made() {
        let d = tempfile::tempdir().unwrap();
        let e = OutputDir::create(&d.path().join("a/b")).err().unwrap();
        assert_eq!(crate::errors::exit_status(&e), 2, "{e:#}");
        assert!(format!("{e:#}").contains("no such directory"), "{e:#}");
        assert!(OutputDir::existing(&d.path().join("a")).is_err());
        assert!(!d.path().join("a").exists());
    }

    #[test]
    fn unwritable_dir_fails_early() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(OutputDir::create(&file.join("sub")).is_err());
    }
}
