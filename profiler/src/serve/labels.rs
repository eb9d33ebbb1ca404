//! `--path-labels`: how much of a file's path the daemon serves, in `/metrics` labels and in
//! the pprof frame and label names alike. Whoever can connect reads what is served, and a
//! path says what another user works on (a file in a 0700 directory is named all the same),
//! so a host can serve the file name alone, or no name at all: the `inode` label
//! (`major:minor:ino`) still keeps every file's series apart, and pprof samples are keyed by
//! inode too, so two files with one name never merge.

pub use crate::cli::PathLabels;
use crate::{render::file_label, report::Report};

impl PathLabels {
    /// What the daemon serves of `path`; None serves as `[dev D ino I]`.
    pub fn path(self, path: Option<&str>) -> Option<String> {
        match (self, path) {
            (_, None) | (PathLabels::None, _) => None,
            (PathLabels::Full, Some(p)) => Some(p.to_owned()),
            (PathLabels::Basename, Some(p)) => {
                Some(p.rsplit('/').find(|s| !s.is_empty()).unwrap_or(p).to_owned())
            }
        }
    }

    /// The file's name as a label or frame: its path as served, or its device and inode.
    pub fn name(self, path: Option<&str>, dev: &str, ino: u64) -> String {
        file_label(self.path(path).as_deref(), dev, ino)
    }

    /// `report` with every file's path as served (for `/debug/pprof/mutex`).
    pub fn apply(self, mut report: Report) -> Report {
        if self != PathLabels::Full {
            for f in &mut report.files {
                f.path = self.path(f.path.as_deref());
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_serves_what_it_says() {
        let p = Some("/home/alice/private/notes.db");
        assert_eq!(PathLabels::Full.name(p, "8:1", 12), "/home/alice/private/notes.db");
        assert_eq!(PathLabels::Basename.name(p, "8:1", 12), "notes.db");
        assert_eq!(PathLabels::None.name(p, "8:1", 12), "[dev 8:1 ino 12]");
        for policy in [PathLabels::Full, PathLabels::Basename, PathLabels::None] {
            assert_eq!(policy.name(None, "8:1", 12), "[dev 8:1 ino 12]");
        }
    }
}
