//! Attribution: turning the kernel's (dev, ino) and stack keys into paths and symbol names.
mod by_handle;
pub mod callers;
pub mod files;
mod overlay;
pub mod select;
pub mod symbols;

/// A file as the kernel identifies it: `dev` is `s_dev` (MAJOR << 20 | MINOR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u32,
    pub ino: u64,
}

impl From<(u32, u64)> for FileId {
    fn from((dev, ino): (u32, u64)) -> Self {
        Self { dev, ino }
    }
}

impl FileId {
    pub fn major(self) -> u32 {
        self.dev >> 20
    }
    pub fn minor(self) -> u32 {
        self.dev & 0xfffff
    }
    pub fn from_major_minor(major: u32, minor: u32, ino: u64) -> Self {
        Self { dev: (major << 20) | (minor & 0xfffff), ino }
    }
    /// From `stat`'s st_dev, which glibc encodes differently from the kernel's s_dev.
    pub fn from_stat(st_dev: u64, ino: u64) -> Self {
        Self::from_major_minor(libc::major(st_dev), libc::minor(st_dev), ino)
    }
    pub fn dev_string(self) -> String {
        format!("{}:{}", self.major(), self.minor())
    }
}
