//! Resolving an output path as root, one component at a time from directory descriptors.
//!
//! `sudo rmapprof -o ~/out` writes into directories the invoking user owns, and that user can
//! swap any of them for a symbolic link to have root write and chown files elsewhere (a
//! `rmapprof-out` link in the current directory, `~/a` in `~/a/out`). So each component is
//! opened without following a link (O_NOFOLLOW), and a link is followed only when root or the
//! user rmapprof runs as owns it (root's own links, `/var/run`, stay usable; under sudo a
//! user's links are refused, as fs.protected_symlinks refuses them in sticky directories). The
//! link is read from the descriptor that was checked (readlinkat on an O_PATH descriptor), so
//! swapping it after the check changes nothing.

use anyhow::{anyhow, Context, Result};
use rustix::{
    fs::{self, FileType, Mode, OFlags, CWD},
    io::Errno,
};
use std::{
    ffi::OsStr,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

use crate::errors::usage;

/// As the kernel's own limit on links followed in one path lookup.
const MAX_LINKS: u32 = 40;

/// `path`'s directory and last component: `a/b` → (`a`, `b`), `b` → (`.`, `b`); None for a
/// path without a last name (`/`, `..`, `a/..`).
pub fn split(path: &Path) -> Option<(&Path, &OsStr)> {
    let name = path.file_name()?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some((dir, name))
}

/// Opens the existing directory `path` (an O_PATH descriptor: for *at() calls, not for
/// reading). Errors: no such directory, and a link rmapprof does not follow, are usage errors
/// (exit 2); the rest are the system's.
pub fn dir(path: &Path) -> Result<OwnedFd> {
    let mut links = 0;
    walk(CWD, path, path, &mut links)
}

/// Opens `name` in `dir` as a directory by the same rule (O_PATH descriptor).
pub fn entry(dir: BorrowedFd, name: &OsStr, shown: &Path) -> Result<OwnedFd> {
    let mut links = 0;
    step(dir, name, shown, &mut links)
}

/// Opens an O_PATH descriptor for reading and writing entries: `O_RDONLY` on `.` of it.
pub fn reopen(dir: &OwnedFd) -> std::io::Result<OwnedFd> {
    Ok(fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Resolves `path` from `base` (absolute paths from `/`). `shown` is the path as the user gave
/// it, for messages.
fn walk(base: BorrowedFd, path: &Path, shown: &Path, links: &mut u32) -> Result<OwnedFd> {
    let mut cur = fs::openat(
        base,
        if path.has_root() { "/" } else { "." },
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| shown.display().to_string())?;
    let mut so_far = PathBuf::new();
    for c in path.components() {
        so_far.push(c);
        cur = match c {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => continue,
            // The parent of where the links led, as the kernel resolves `..`.
            Component::ParentDir => {
                fs::openat(&cur, "..", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(std::io::Error::from)
                    .with_context(|| so_far.display().to_string())?
            }
            Component::Normal(name) => step(cur.as_fd(), name, &so_far, links)?,
        };
    }
    Ok(cur)
}

/// One component: a directory, or a link rmapprof may follow to one.
fn step(dir: BorrowedFd, name: &OsStr, shown: &Path, links: &mut u32) -> Result<OwnedFd> {
    let fd = match fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(usage(format!("no such directory {}", shown.display()))),
        Err(e) => return Err(std::io::Error::from(e)).with_context(|| shown.display().to_string()),
    };
    let st = fs::fstat(&fd).map_err(std::io::Error::from).with_context(|| shown.display().to_string())?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Ok(fd),
        FileType::Symlink => {
            let me = rustix::process::geteuid().as_raw();
            if st.st_uid != 0 && st.st_uid != me {
                return Err(usage(format!(
                    "{} is a symbolic link owned by uid {}; on the way to its output files rmapprof \
                     follows only {} links: give the directory it points to",
                    shown.display(),
                    st.st_uid,
                    if me == 0 { "root's" } else { "root's and its own user's" },
                )));
            }
            *links += 1;
            if *links > MAX_LINKS {
                return Err(std::io::Error::from(Errno::LOOP)).with_context(|| shown.display().to_string());
            }
            // An empty path reads the link the descriptor itself refers to.
            let target = fs::readlinkat(&fd, "", Vec::new())
                .map_err(std::io::Error::from)
                .with_context(|| shown.display().to_string())?;
            let target = Path::new(OsStr::from_bytes(target.as_bytes()));
            walk(dir, target, shown, links)
        }
        _ => Err(anyhow!(std::io::Error::from(Errno::NOTDIR))).with_context(|| shown.display().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    /// Root's links (the tests run as root) resolve as the kernel resolves them: relative
    /// targets from the link's directory, `..` from where a link led; a loop ends in an error;
    /// another user's link is refused (exit 2).
    #[test]
    fn follows_roots_links_as_the_kernel_does() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path();
        std::fs::create_dir_all(d.join("real/sub")).unwrap();
        symlink("real", d.join("a")).unwrap();
        symlink("a/sub/..", d.join("b")).unwrap();
        symlink("l2", d.join("l1")).unwrap();
        symlink("l1", d.join("l2")).unwrap();
        let ino = |p: &str| fs::fstat(dir(&d.join(p)).unwrap()).unwrap().st_ino;
        let real = |p: &str| std::fs::metadata(d.join(p)).unwrap().ino();
        assert_eq!(ino("a/sub"), real("real/sub"));
        assert_eq!(ino("b"), real("real"));
        assert_eq!(ino("a/sub/../.."), real(""));
        assert!(dir(&d.join("l1")).is_err());
        std::os::unix::fs::lchown(d.join("a"), Some(65534), Some(65534)).unwrap();
        let e = dir(&d.join("a/sub")).unwrap_err();
        assert_eq!(crate::errors::exit_status(&e), 2, "{e:#}");
        assert!(format!("{e:#}").contains("a is a symbolic link owned by uid 65534"), "{e:#}");
        // Its target named directly is fine.
        assert_eq!(ino("real/sub"), real("real/sub"));
    }
}
