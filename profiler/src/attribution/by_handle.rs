//! A file's path from its inode alone, for files no live process maps any more: the binary a
//! fork+exec workload execs is mapped only by children that are gone by the time rmapprof
//! scans /proc. `open_by_handle_at(2)` opens an inode given a file handle and a descriptor on
//! its filesystem's mount; the path is then the kernel's name for that open file.
//!
//! A handle is filesystem-specific. ext2/3/4 (and others using the kernel's generic
//! `FILEID_INO32_GEN` encoding with 8 bytes) identify an inode by its number and generation,
//! and accept generation 0 as "any generation"; that is the only encoding built here. Other
//! filesystems (tmpfs and xfs check the generation, btrfs and 9p use their own handles) leave
//! the file unnamed, as before. The name is trusted only if that path, looked up again, is the
//! same inode on the same device (an inode whose dentry is not cached has no usable name), or
//! if the kernel says it was deleted, as /proc/PID/maps would.

use std::{
    ffi::CString,
    os::{fd::AsRawFd, unix::ffi::OsStrExt, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use super::FileId;

/// `FILEID_INO32_GEN` in include/linux/exportfs.h: { u32 ino; u32 gen; }.
const FILEID_INO32_GEN: i32 = 1;
const INO32_GEN_BYTES: u32 = 8;
/// MAX_HANDLE_SZ in include/linux/exportfs.h.
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// A mount of a filesystem's root whose handles are `FILEID_INO32_GEN`, open: its device
/// (kernel `s_dev`) and a descriptor on it. A bind mount of a subdirectory is left out: it
/// cannot name files outside that directory.
pub struct Mount {
    dev: u32,
    dir: std::fs::File,
}

/// The mounts `path` can open files in.
pub fn mounts() -> Vec<Mount> {
    let Ok(infos) = procfs::process::Process::myself().and_then(|p| p.mountinfo()) else {
        return Vec::new();
    };
    let mut seen = Vec::new();
    let mut mounts = Vec::new();
    for m in infos.into_iter().filter(|m| m.root == "/") {
        let Some((major, minor)) = m.majmin.split_once(':') else { continue };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
        let dev = FileId::from_major_minor(major, minor, 0).dev;
        if seen.contains(&dev) {
            continue;
        }
        seen.push(dev);
        if ino32_gen_handles(&m.mount_point) {
            if let Ok(dir) = std::fs::File::open(&m.mount_point) {
                mounts.push(Mount { dev, dir });
            }
        }
    }
    mounts
}

/// Whether the filesystem mounted at `root` encodes its own root as FILEID_INO32_GEN in 8
/// bytes; only then does a handle built that way mean the same to it.
fn ino32_gen_handles(root: &Path) -> bool {
    let Ok(root) = CString::new(root.as_os_str().as_bytes()) else { return false };
    let mut h =
        FileHandle { handle_bytes: MAX_HANDLE_SZ as u32, handle_type: 0, f_handle: [0; MAX_HANDLE_SZ] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `root` is a NUL-terminated path, `h` a file_handle whose handle_bytes says how
    // much room f_handle has, `mount_id` a valid int; the kernel writes only within those.
    let r = unsafe {
        libc::syscall(libc::SYS_name_to_handle_at, libc::AT_FDCWD, root.as_ptr(), &mut h, &mut mount_id, 0)
    };
    r == 0 && h.handle_type == FILEID_INO32_GEN && h.handle_bytes == INO32_GEN_BYTES
}

/// The path of the file `id`, if one of `mounts` holds it and the kernel still has a name for
/// the inode.
pub fn path(id: FileId, mounts: &[Mount]) -> Option<PathBuf> {
    let ino = u32::try_from(id.ino).ok()?;
    let mount = mounts.iter().find(|m| m.dev == id.dev)?;
    let mut h = FileHandle {
        handle_bytes: INO32_GEN_BYTES,
        handle_type: FILEID_INO32_GEN,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    h.f_handle[..4].copy_from_slice(&ino.to_ne_bytes()); // generation 0: any
                                                         // O_PATH: no read permission or open side effects needed, only a name.
                                                         // SAFETY: `mount.dir` is an open descriptor, `h` a filled file_handle; on success the
                                                         // kernel returns a new descriptor that we own and close below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.dir.as_raw_fd(),
            &mut h,
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned to us by the kernel and nothing else owns it.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let name = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    trusted(&name, id).then_some(name)
}

/// The kernel's name for an open file is a path only if its dentry is connected: it must look
/// up to the same inode, or be marked deleted (the path it had, as /proc/PID/maps shows it).
fn trusted(name: &Path, id: FileId) -> bool {
    if name.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return name.is_absolute();
    }
    std::fs::metadata(name).is_ok_and(|m| m.ino() == id.ino && FileId::from_stat(m.dev(), m.ino()) == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in the test's temporary directory, on whatever filesystem holds it: named from
    /// its inode where that filesystem allows it (ext4 on this project's machines), else left
    /// unnamed rather than misnamed.
    #[test]
    fn names_a_file_from_its_inode_or_not_at_all() {
        let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let f = dir.path().join("ünïcode\nname.so");
        std::fs::write(&f, b"x").unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let id = FileId::from_stat(meta.dev(), meta.ino());
        let is_root = unsafe { libc::geteuid() } == 0;
        let c = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and a zeroed statfs the kernel fills.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut fs) }, 0);
        let ext4 = fs.f_type == 0xEF53; // EXT4_SUPER_MAGIC (ext2/3 too)
        match path(id, &mounts()) {
            Some(p) => assert_eq!(p, std::fs::canonicalize(&f).unwrap()),
            // open_by_handle_at needs CAP_DAC_READ_SEARCH.
            None => assert!(!(ext4 && is_root), "ext4 as root must name {}", f.display()),
        }
        // An inode that does not exist is never named.
        assert_eq!(path(FileId { dev: id.dev, ino: u32::MAX as u64 - 7 }, &mounts()), None);
        // Nor one on a device nothing is mounted from.
        assert_eq!(path(FileId { dev: u32::MAX, ino: meta.ino() }, &mounts()), None);
    }

    #[test]
    fn deleted_names_are_kept_as_the_kernel_gives_them() {
        let id = FileId { dev: 1, ino: 2 };
        assert!(trusted(Path::new("/tmp/lib.so (deleted)"), id));
        assert!(!trusted(Path::new("lib.so (deleted)"), id));
        assert!(!trusted(Path::new("/"), id));
    }
}
