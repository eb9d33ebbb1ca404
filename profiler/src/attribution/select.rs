//! `--inode ARG` → the files it selects, each with every identity the kernel may give it.

use anyhow::{anyhow, bail, Result};
use std::{
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::{
    files::{FileIndex, LIBRARY_DIRS},
    overlay, FileId,
};

/// A file named on the command line with `--inode`.
#[derive(Clone, Debug)]
pub struct Selected {
    pub path: PathBuf,
    /// Every identity the kernel may use for it (stat's and the mappings' dev can differ).
    pub ids: Vec<FileId>,
    /// Some process maps it now. A file nobody maps yet is still accepted (COMMAND may map
    /// it); rmapprof says so in one line.
    pub mapped: bool,
}

impl Selected {
    /// Whether the kernel's `id` is this file: one of its identities, or its inode number on a
    /// dev no mapping shows (the overlayfs/btrfs case of `FileIndex::path`).
    pub fn matches(&self, id: FileId, index: &FileIndex) -> bool {
        self.ids.contains(&id) || (self.ids.iter().any(|s| s.ino == id.ino) && !index.knows(id))
    }
}

/// What the kernel appends to the path of a mapped file that was deleted (/proc/PID/maps).
const DELETED: &str = " (deleted)";

/// Resolves `--inode ARG` to the files it selects: a path (a deleted file still mapped by
/// its former path), or a bare name: every mapped file of that name (deleted ones too), each
/// with its own path; else the file of that name in the current directory; else the first in
/// `LIBRARY_DIRS`. The error says why nothing was selected, naming what was searched.
pub fn resolve(arg: &str, index: &FileIndex) -> Result<Vec<Selected>> {
    if arg.is_empty() {
        bail!("--inode '': an empty name; give a file's path or name");
    }
    if arg.contains('/') {
        return Ok(vec![by_path(arg, Path::new(arg), index)?]);
    }
    let deleted = format!("{arg}{DELETED}");
    let mapped = index.matching(|p| p.file_name().is_some_and(|n| n == arg || n == deleted.as_str()));
    if !mapped.is_empty() {
        // Since 6.8 a mapping shows an overlay file's own inode, not the real one it maps.
        let ids = |id, path: &Path| [Some(id), overlay::real_file(path)].into_iter().flatten().collect();
        return Ok(mapped
            .into_iter()
            .map(|(id, path)| Selected { ids: ids(id, &path), path, mapped: true })
            .collect());
    }
    // Not mapped: the user's own file (`--inode x.dat -- ./prog`), as `./x.dat` would be.
    if Path::new(arg).symlink_metadata().is_ok() {
        return Ok(vec![by_path(arg, Path::new(arg), index)?]);
    }
    for dir in LIBRARY_DIRS {
        let cand = Path::new(dir).join(arg);
        if cand.exists() {
            return Ok(vec![by_path(arg, &cand, index)?]);
        }
    }
    bail!(
        "--inode {arg}: not mapped by any process, not in the current directory, and not found in {}",
        LIBRARY_DIRS.join(", ")
    );
}

/// The file at `cand` (from `--inode arg`), with every identity the kernel may give it.
fn by_path(arg: &str, cand: &Path, index: &FileIndex) -> Result<Selected> {
    let meta = match std::fs::metadata(cand) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return deleted_but_mapped(cand, index).ok_or_else(|| anyhow!("--inode {arg}: no such file"));
        }
        // Say why it cannot be used (a symlink loop, no permission), not just that nothing
        // was found.
        Err(e) => bail!("--inode {arg}: {}", io_reason(&e)),
    };
    if meta.is_dir() {
        bail!("--inode {arg}: {} is a directory, not a file", cand.display());
    }
    let path = std::fs::canonicalize(cand).unwrap_or_else(|_| cand.to_path_buf());
    let mut ids = vec![FileId::from_stat(meta.dev(), meta.ino())];
    let mut add = |id| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    for id in [mapping_id(&path, &meta), overlay::real_file(&path)].into_iter().flatten() {
        add(id);
    }
    for (id, _) in index.matching(|p| p == path || p == cand) {
        if id.ino == meta.ino() {
            add(id);
        }
    }
    let mapped = ids.iter().any(|id| index.knows(*id)) || index.paths.keys().any(|id| id.ino == meta.ino());
    Ok(Selected { path, ids, mapped })
}

/// A file deleted while processes still map it, by its former path (`cand`): each mapping
/// shows that path with ` (deleted)`, which names it in the report. Its inode lives on as
/// long as it is mapped, and so does its rmap lock.
fn deleted_but_mapped(cand: &Path, index: &FileIndex) -> Option<Selected> {
    // The kernel shows the canonical path: that of the directory where it is there still,
    // else (a directory gone too) the path as given, made absolute.
    let parent = cand.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let former = match std::fs::canonicalize(parent) {
        Ok(dir) => dir.join(cand.file_name()?),
        Err(_) => std::path::absolute(cand).ok()?,
    };
    let mut shown = former.into_os_string();
    shown.push(DELETED);
    let found = index.matching(|p| p == Path::new(&shown));
    let (_, path) = found.first()?.clone();
    Some(Selected { path, ids: found.into_iter().map(|(id, _)| id).collect(), mapped: true })
}

/// The identity of the file at `path` (`meta` its stat) as /proc/self/maps shows it after
/// mapping it here: the kernel's, which stat's can differ from (btrfs subvolumes), and before
/// 6.8 the real file's on overlayfs (since, maps shows the overlay's inode: `overlay`). None
/// for what is not a regular file or cannot be mapped.
fn mapping_id(path: &Path, meta: &std::fs::Metadata) -> Option<FileId> {
    if !meta.is_file() {
        return None;
    }
    // Read-only; no symlink followed (the path is canonical: one there now was planted since),
    // and checked to be the file stat described before it is mapped.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let st = file.metadata().ok()?;
    if !st.is_file() || (st.dev(), st.ino()) != (meta.dev(), meta.ino()) {
        return None;
    }
    // SAFETY: the mapping is never read (only its address is used), so a change to the file
    // meanwhile cannot be observed through it; one byte, which mmap allows past the end of a
    // file, so an empty file maps too.
    let map = unsafe { memmap2::MmapOptions::new().len(1).map(&file) }.ok()?;
    let at = map.as_ptr() as u64;
    let maps = procfs::process::Process::myself().ok()?.maps().ok()?;
    let m = maps.iter().find(|m| m.address.0 <= at && at < m.address.1)?;
    (m.inode != 0).then(|| FileId::from_major_minor(m.dev.0 as u32, m.dev.1 as u32, m.inode))
}

/// An I/O error as `strerror` says it, without Rust's "(os error N)".
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::files::tests::maps;

    #[test]
    fn resolves_bare_names_among_mapped_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("libfake.so.1");
        std::fs::write(&f, b"x").unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let mut index = FileIndex::default();
        // The mapping reports another dev for the same inode (as btrfs does): the kernel's.
        let other = FileId::from_major_minor(0, 99, meta.ino());
        index.add_maps(&maps(&format!("1000-2000 r--p 00000000 00:63 {} {}\n", meta.ino(), f.display())));
        let s = resolve("libfake.so.1", &index).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].path.as_path(), &s[0].ids[..], s[0].mapped), (f.as_path(), &[other][..], true));
        // By path: stat's identity, the mapping's, and this process's own mapping's.
        let s2 = resolve(f.to_str().unwrap(), &index).unwrap();
        assert_eq!(s2[0].path, std::fs::canonicalize(&f).unwrap());
        assert!(s2[0].ids.contains(&FileId::from_stat(meta.dev(), meta.ino())));
        assert!(s2[0].ids.contains(&other));
    }

    /// Two files of one name mapped (two containers' libc.so.6), one of them deleted since:
    /// the bare name selects each, with its own path; the deleted one by its former path too.
    #[test]
    fn a_bare_name_selects_every_mapped_file_of_that_name() {
        let mut index = FileIndex::default();
        index.add_maps(&maps(concat!(
            "1000-2000 r--p 00000000 08:01 11 /a/same.dat\n",
            "2000-3000 r--p 00000000 08:01 12 /b/same.dat\n",
            "3000-4000 r--p 00000000 08:01 13 /c/same.dat (deleted)\n",
            "4000-5000 r--p 00000000 08:01 14 /c/same.dat.1\n",
        )));
        let s = resolve("same.dat", &index).unwrap();
        let got: Vec<(&Path, u64)> = s.iter().map(|s| (s.path.as_path(), s.ids[0].ino)).collect();
        assert_eq!(
            got,
            [
                (Path::new("/a/same.dat"), 11),
                (Path::new("/b/same.dat"), 12),
                (Path::new("/c/same.dat (deleted)"), 13)
            ]
        );
        assert!(s.iter().all(|s| s.mapped && s.ids.len() == 1));
        let d = resolve("/c/same.dat", &index).unwrap();
        assert_eq!((d[0].path.as_path(), d[0].ids[0].ino), (Path::new("/c/same.dat (deleted)"), 13));
    }

    /// A file's identity is the one a mapping of it shows: here (no overlay) stat's.
    #[test]
    fn the_kernel_identity_comes_from_a_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let (f, empty) = (dir.path().join("f"), dir.path().join("empty"));
        std::fs::write(&f, b"x").unwrap();
        std::fs::write(&empty, b"").unwrap();
        for p in [&f, &empty] {
            let meta = std::fs::metadata(p).unwrap();
            assert_eq!(mapping_id(p, &meta), Some(FileId::from_stat(meta.dev(), meta.ino())), "{p:?}");
        }
        // What is not a regular file is not opened.
        assert_eq!(mapping_id(Path::new("/dev/null"), &std::fs::metadata("/dev/null").unwrap()), None);
    }

    #[test]
    fn overlay_devs_fall_back_to_the_inode_number() {
        let mut index = FileIndex::default();
        index.add_maps(&maps("1000-2000 r--p 00000000 00:26 652561 /usr/lib/x86_64-linux-gnu/libc.so.6\n2000-3000 r--p 00000000 00:26 7 /a\n3000-4000 r--p 00000000 00:27 7 /b\n"));
        let kernel_id = FileId::from_major_minor(0, 18, 652561);
        assert_eq!(index.path(kernel_id), Some(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")));
        // Ambiguous inode numbers stay unresolved rather than guessed.
        assert_eq!(index.path(FileId::from_major_minor(0, 18, 7)), None);
        let sel = Selected {
            path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
            ids: vec![FileId::from_major_minor(0, 40, 652561)],
            mapped: true,
        };
        assert!(sel.matches(kernel_id, &index));
        assert!(!sel.matches(FileId::from_major_minor(0, 18, 1), &index));
        // A known, different file with the same inode number is not this one.
        index.add_maps(&maps("1000-2000 r--p 00000000 00:12 652561 /tmp/other\n"));
        assert!(!sel.matches(kernel_id, &index));
    }

    #[test]
    fn unknown_and_directories_fail_with_what_was_searched() {
        let index = FileIndex::default();
        let e = resolve("libdoesnotexist.so.9", &index).unwrap_err().to_string();
        assert!(e.contains("not mapped by any process") && e.contains("/usr/lib"), "{e}");
        let e = resolve("", &index).unwrap_err().to_string();
        assert_eq!(e, "--inode '': an empty name; give a file's path or name");
        let e = resolve("/tmp", &index).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        let e = resolve("/no/such/file", &index).unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::os::unix::fs::symlink(dir.path().join("b"), &a).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("b")).unwrap();
        let e = resolve(a.to_str().unwrap(), &index).unwrap_err().to_string();
        assert_eq!(e, format!("--inode {}: Too many levels of symbolic links", a.display()));
    }
}
