//! Inode → path, and `--inode NAME` → inode.
//!
//! The kernel hands us (s_dev, i_ino). Paths come from the files processes map
//! (/proc/PID/maps lists dev and inode as the kernel sees them, which `stat` does not always do:
//! btrfs subvolumes report another st_dev). Scans are cached across the run. A file that only
//! processes gone before the last scan mapped (the binary that fork+exec workloads exec) is
//! named from its inode instead (`by_handle`).

use anyhow::{anyhow, bail, Result};
use procfs::process::{MMapPath, MemoryMaps};

pub use super::FileId;
use super::{by_handle, overlay};
use std::{
    collections::HashMap,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// Where bare `--inode` names are looked for after the mapped files.
pub const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// Paths of mapped files by kernel identity, filled from /proc scans.
#[derive(Default)]
pub struct FileIndex {
    paths: HashMap<FileId, PathBuf>,
    /// Files `name_unmapped` could not name: not tried again at every --interval (a snapshot
    /// lists every file of the run, and a filesystem that cannot open by inode never will).
    unnamable: std::collections::HashSet<FileId>,
}

impl FileIndex {
    /// Adds every file-backed mapping of every process (processes that vanish mid-scan and
    /// kernel threads are skipped).
    pub fn scan_proc(&mut self) {
        let Ok(procs) = procfs::process::all_processes() else {
            return;
        };
        for p in procs.flatten() {
            if let Ok(maps) = p.maps() {
                self.add_maps(&maps);
            }
        }
    }

    /// Forgets every file but `keep` (the daemon's files with waits), so that an index rescanned
    /// at every refresh for days holds what is mapped now and what was measured, not every
    /// file ever mapped.
    pub fn retain(&mut self, keep: &std::collections::HashSet<FileId>) {
        self.paths.retain(|id, _| keep.contains(id));
        self.unnamable.retain(|id| keep.contains(id));
    }

    pub fn add_maps(&mut self, maps: &MemoryMaps) {
        for m in maps.iter() {
            if let (MMapPath::Path(path), true) = (&m.pathname, m.inode != 0) {
                let id = FileId::from_major_minor(m.dev.0 as u32, m.dev.1 as u32, m.inode);
                self.paths.entry(id).or_insert_with(|| path.clone());
            }
        }
    }

    /// The path of the file the kernel calls `id`. If no mapping shows that exact (dev, ino),
    /// falls back to the one path mapped with that inode number: overlayfs (and btrfs
    /// subvolumes) show userspace another dev than the inode's own `s_dev`, with the same ino.
    pub fn path(&self, id: FileId) -> Option<&Path> {
        if let Some(p) = self.paths.get(&id) {
            return Some(p);
        }
        let mut same_ino = self.paths.iter().filter(|(k, _)| k.ino == id.ino).map(|(_, p)| p);
        let first = same_ino.next()?;
        same_ino.all(|p| p == first).then_some(first.as_path())
    }

    /// Names the files in `ids` that no scan saw mapped, from the inode itself (`by_handle`).
    pub fn name_unmapped(&mut self, ids: impl IntoIterator<Item = FileId>) {
        let mut mounts = None;
        for id in ids {
            if self.path(id).is_none() && !self.unnamable.contains(&id) {
                let mounts = mounts.get_or_insert_with(by_handle::mounts);
                match by_handle::path(id, mounts) {
                    Some(p) => {
                        self.paths.insert(id, p);
                    }
                    None => {
                        self.unnamable.insert(id);
                    }
                }
            }
        }
    }

    fn knows(&self, id: FileId) -> bool {
        self.paths.contains_key(&id)
    }

    /// Mapped files whose path is `path` or whose name is `name`.
    fn matching(&self, pred: impl Fn(&Path) -> bool) -> Vec<(FileId, PathBuf)> {
        let mut v: Vec<_> =
            self.paths.iter().filter(|(_, p)| pred(p)).map(|(i, p)| (*i, p.clone())).collect();
        v.sort();
        v
    }
}

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
        return Ok(mapped
            .into_iter()
            .map(|(id, path)| Selected { path, ids: vec![id], mapped: true })
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

    #[test]
    fn kernel_dev_encoding() {
        let id = FileId::from_major_minor(259, 3, 42);
        assert_eq!(id.dev, (259 << 20) | 3);
        assert_eq!((id.major(), id.minor()), (259, 3));
        assert_eq!(id.dev_string(), "259:3");
        // glibc's st_dev for 259:3 is not 259<<20|3; from_stat must undo it.
        let st_dev = libc::makedev(259, 3);
        assert_eq!(FileId::from_stat(st_dev, 42), id);
    }

    fn maps(text: &str) -> MemoryMaps {
        use procfs::FromBufRead;
        MemoryMaps::from_buf_read(text.as_bytes()).unwrap()
    }

    #[test]
    fn maps_lines() {
        let mut index = FileIndex::default();
        index.add_maps(&maps(concat!(
            "7f1c2a000000-7f1c2a028000 r--p 00000000 fe:01 1835023                    /usr/lib/x86_64-linux-gnu/libc.so.6\n",
            "7ffd-7ffe rw-p 00000000 00:00 0  [stack]\n",
            "55d0-55d1 rw-p 00000000 00:00 0 \n",
        )));
        let id = FileId::from_major_minor(0xfe, 1, 1835023);
        assert_eq!(index.path(id), Some(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")));
        assert_eq!(index.paths.len(), 1);
    }

    proptest::proptest! {
        // /proc/PID/maps text of any shape: procfs parses or refuses it, add_maps never panics.
        #[test]
        fn maps_garbage_never_panics(text in "\\PC{0,300}") {
            use procfs::FromBufRead;
            if let Ok(m) = MemoryMaps::from_buf_read(text.as_bytes()) {
                FileIndex::default().add_maps(&m);
            }
        }

        // Well-formed lines: each file mapping is indexed by its kernel (dev, ino), in any order.
        #[test]
        fn maps_index_every_file_mapping(
            rows in proptest::collection::vec((0u32..4096, 0u32..256, 1u64.., "/[a-z]{1,8}/[a-z.]{1,12}"), 1..20)
        ) {
            let text: String = rows
                .iter()
                .enumerate()
                .map(|(i, (maj, min, ino, path))| {
                    format!("{:x}-{:x} r--p 00000000 {maj:02x}:{min:02x} {ino} {path}\n", i * 0x1000, i * 0x1000 + 0x1000)
                })
                .collect();
            let mut index = FileIndex::default();
            index.add_maps(&maps(&text));
            for (maj, min, ino, _) in &rows {
                let got = index.paths.get(&FileId::from_major_minor(*maj, *min, *ino)).unwrap();
                // The first mapping of a (dev, ino) names it.
                let first = rows.iter().find(|r| (r.0, r.1, r.2) == (*maj, *min, *ino)).unwrap();
                proptest::prop_assert_eq!(got, Path::new(&first.3));
            }
        }
    }

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

    #[test]
    fn scans_this_process() {
        let mut index = FileIndex::default();
        index.scan_proc();
        let exe = std::fs::canonicalize("/proc/self/exe").unwrap();
        let meta = std::fs::metadata(&exe).unwrap();
        assert!(index.paths.iter().any(|(id, p)| *p == exe && id.ino == meta.ino()));
    }
}
