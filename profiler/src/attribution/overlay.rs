//! The real file behind a path on overlayfs. A process mapping a file through an overlay
//! mount maps the real file (the upper layer's copy, else the first lower layer's), and that
//! inode's i_mmap_rwsem is the one contended; stat shows the overlay's inode, and since 6.8
//! so does /proc/PID/maps. The layers are in the mount's options (mountinfo): the file is
//! where the overlay looks for it, the upper directory first, then each lower one in order.

use procfs::process::{MountInfo, Process};
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::FileId;

/// The identity of the real file behind `path` (canonical) where it is on an overlay mount
/// whose layers this process can see; through nested overlays, the innermost one's. None
/// where it is not on overlayfs, or its layers do not have it (a metacopy or redirect
/// overlay, or layers mounted in another namespace): rmapprof then matches by inode number.
pub fn real_file(path: &Path) -> Option<FileId> {
    let mounts = Process::myself().ok()?.mountinfo().ok()?;
    let mut path = path.to_path_buf();
    let mut real = None;
    // Bounded: an overlay's layer can be on another overlay, not on itself.
    for _ in 0..8 {
        let Some(next) = layer_file(&path, &mounts.0) else {
            break;
        };
        let meta = std::fs::metadata(&next).ok()?;
        real = Some(FileId::from_stat(meta.dev(), meta.ino()));
        path = next;
    }
    real
}

/// The file behind `path` in the layers of the overlay mount `path` is on, if it is on one.
fn layer_file(path: &Path, mounts: &[MountInfo]) -> Option<PathBuf> {
    // The mount `path` is on: the one with the longest mount point above it (the last
    // mounted there where there are several).
    let mount = mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())?;
    if mount.fs_type != "overlay" {
        return None;
    }
    // Under the mount point, and under the overlay directory mounted there (a bind mount).
    let rel = Path::new(mount.root.trim_start_matches('/')).join(path.strip_prefix(&mount.mount_point).ok()?);
    let opt = |k: &str| mount.super_options.get(k).cloned().flatten();
    let upper = opt("upperdir").map(|u| vec![unescape(&u)]).unwrap_or_default();
    let lower = opt("lowerdir").map(|l| split_layers(&l)).unwrap_or_default();
    upper.into_iter().chain(lower).map(|layer| layer.join(&rel)).find(|p| {
        // A whiteout (a 0:0 character device) hides the lower file: the overlay has none.
        std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
    })
}

/// `lowerdir`'s layers: separated by `:` (`::` before data-only layers), in which a `:`,
/// `,` or `\` of a path is escaped with `\`.
fn split_layers(s: &str) -> Vec<PathBuf> {
    let mut layers = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => layers.last_mut().unwrap().extend(chars.next()),
            ':' => layers.push(String::new()),
            c => layers.last_mut().unwrap().push(c),
        }
    }
    layers.into_iter().filter(|l| !l.is_empty()).map(PathBuf::from).collect()
}

fn unescape(s: &str) -> PathBuf {
    split_layers(s).into_iter().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_layers_are_split_where_unescaped() {
        let got = split_layers(r"/a:/b\:c:/d\,e::/data");
        assert_eq!(got, ["/a", "/b:c", "/d,e", "/data"].map(PathBuf::from));
    }

    #[test]
    fn a_file_on_no_overlay_has_no_layer() {
        assert_eq!(real_file(&std::fs::canonicalize("/proc/self/exe").unwrap()), None);
    }
}
