//! Inode → path (`--inode NAME` → inode is select.rs).
//!
//! The kernel hands us (s_dev, i_ino). Paths come from the files processes map
//! (/proc/PID/maps lists dev and inode as the kernel sees them, which `stat` does not always do:
//! btrfs subvolumes report another st_dev). Scans are cached across the run. A file that only
//! processes gone before the last scan mapped (the binary that fork+exec workloads exec) is
//! named from its inode instead (`by_handle`).

use procfs::process::{MMapPath, MemoryMaps};

use super::by_handle;
pub use super::FileId;
use std::{
    collections::HashMap,
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
    pub(super) paths: HashMap<FileId, PathBuf>,
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

    pub(super) fn knows(&self, id: FileId) -> bool {
        self.paths.contains_key(&id)
    }

    /// Mapped files whose path is `path` or whose name is `name`.
    pub(super) fn matching(&self, pred: impl Fn(&Path) -> bool) -> Vec<(FileId, PathBuf)> {
        let mut v: Vec<_> =
            self.paths.iter().filter(|(_, p)| pred(p)).map(|(i, p)| (*i, p.clone())).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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

    /// /proc/PID/maps text as procfs parses it (select.rs's tests use it too).
    pub(in crate::attribution) fn maps(text: &str) -> MemoryMaps {
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
    fn scans_this_process() {
        let mut index = FileIndex::default();
        index.scan_proc();
        let exe = std::fs::canonicalize("/proc/self/exe").unwrap();
        let meta = std::fs::metadata(&exe).unwrap();
        assert!(index.paths.iter().any(|(id, p)| *p == exe && id.ino == meta.ino()));
    }
}
