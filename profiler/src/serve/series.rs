//! Which files get a `/metrics` series of their own, so label cardinality stays bounded and
//! every series stays a monotonic counter for the daemon's life.
//!
//! - At each refresh the `--top N` files by time waited are promoted: from then on, for the
//!   daemon's life, the file has a series of its own, with the labels it got then (its path
//!   as known at promotion, and `major:minor:ino`), whose values are its totals since the
//!   daemon started. A file that later drops out of the top N keeps its series: a counter
//!   never disappears nor goes back.
//! - `path="[other]"` holds every file never promoted, plus, frozen, what each promoted file
//!   had while it was in `other` (its values at the refresh before its promotion). So `other`
//!   never decreases when a file leaves it. Summing every file series therefore counts a
//!   promoted file's early waits twice (in its series and in `other`); the class totals
//!   (`rmapprof_lock_waits_total{lock="i_mmap_rwsem"}`) are the exact sum.
//! - At most `--max-files` files are ever promoted; past that, new files stay in `other`.
//! - A series' `path` label is what `--path-labels` serves of the path (labels.rs).

use std::collections::{BTreeMap, HashMap};

use crate::{
    render::metrics::{FileCounters, FileSeries},
    report::{FileReport, Report},
    serve::labels::PathLabels,
};

type Key = (String, u64);

pub struct Series {
    top: usize,
    max: usize,
    labels: PathLabels,
    /// Promoted files in order of promotion: their labels and last counters.
    promoted: BTreeMap<Key, (usize, FileSeries)>,
    /// What `other` holds of each file not promoted: its counters at the last refresh.
    in_other: HashMap<Key, FileCounters>,
    /// What promoted files left in `other`.
    frozen: FileCounters,
    /// Refreshes each unnamed top file has waited for its path.
    unnamed: HashMap<Key, u32>,
}

/// Refreshes a top file without a path waits to be named before it is promoted under
/// `[dev D ino I]`.
const UNNAMED_REFRESHES: u32 = 5;

pub fn counters(f: &FileReport) -> FileCounters {
    FileCounters {
        waits: f.contentions,
        wait_ns: f.wait_ns_total,
        spin_ns: f.spin_ns_total,
        slowpaths: f.slowpaths,
        acquisitions: f.acquisitions,
    }
}

impl Series {
    /// `top` files promoted at each refresh, `max` in all (`max` >= `top`: serve's arguments
    /// are checked).
    pub fn new(top: usize, max: usize, labels: PathLabels) -> Self {
        Self {
            top,
            max,
            labels,
            promoted: BTreeMap::new(),
            in_other: HashMap::new(),
            frozen: FileCounters::default(),
            unnamed: HashMap::new(),
        }
    }

    /// Whether the file (`major:minor`, inode) has a series of its own.
    pub fn is_promoted(&self, dev: &str, ino: u64) -> bool {
        self.promoted.contains_key(&(dev.to_owned(), ino))
    }

    /// The series of a cumulative report: the promoted files' and `other`.
    pub fn update(&mut self, r: &Report) -> (Vec<FileSeries>, FileCounters) {
        // The folded files (collector/drain.rs) are never one file to promote.
        let folded = |f: &&FileReport| f.dev == "0:0" && f.ino == 0;
        let active = |f: &FileReport| {
            let c = counters(f);
            c.waits > 0 || c.slowpaths.unwrap_or(0) > 0 || c.acquisitions.unwrap_or(0) > 0
        };
        let mut ranked: Vec<&FileReport> = r.files.iter().filter(|f| active(f) && !folded(f)).collect();
        // Time waited, sleeping and (where the mode sees it) spinning; then contended and all
        // acquisitions, for files that never waited.
        ranked.sort_by_key(|f| {
            let c = counters(f);
            std::cmp::Reverse((c.wait_ns + c.spin_ns.unwrap_or(0), c.slowpaths, c.acquisitions))
        });
        for f in ranked.into_iter().take(self.top) {
            let key = (f.dev.clone(), f.ino);
            if self.promoted.contains_key(&key) || self.promoted.len() >= self.max {
                continue;
            }
            // The path is a label for the series' life: a file not named yet (mapped only
            // for moments, between /proc scans) waits a few refreshes to be named first.
            if f.path.is_none() {
                let seen = self.unnamed.entry(key.clone()).or_default();
                *seen += 1;
                if *seen < UNNAMED_REFRESHES {
                    continue;
                }
            }
            self.unnamed.remove(&key);
            if let Some(left) = self.in_other.remove(&key) {
                self.frozen.add(&left);
            }
            let series = FileSeries {
                path: self.labels.name(f.path.as_deref(), &f.dev, f.ino),
                inode: format!("{}:{}", f.dev, f.ino),
                counters: FileCounters::default(),
            };
            let order = self.promoted.len();
            self.promoted.insert(key, (order, series));
        }
        let mut other = self.frozen.clone();
        self.in_other.clear();
        for f in &r.files {
            let key = (f.dev.clone(), f.ino);
            let c = counters(f);
            match self.promoted.get_mut(&key) {
                Some((_, s)) => s.counters = c,
                None => {
                    other.add(&c);
                    self.in_other.insert(key, c);
                }
            }
        }
        let mut files: Vec<(usize, FileSeries)> = self.promoted.values().cloned().collect();
        files.sort_by_key(|(order, _)| *order);
        (files.into_iter().map(|(_, s)| s).collect(), other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: u64, waits: u64, ns: u64) -> FileReport {
        FileReport {
            path: Some(format!("/f{ino}")),
            dev: "8:1".into(),
            ino,
            contentions: waits,
            wait_ns_total: ns,
            ..Default::default()
        }
    }

    /// Top 1 of 3 files over refreshes: a file promoted keeps its series when it drops out of
    /// the top, `other` never decreases, and nothing changes labels.
    #[test]
    fn promoted_files_keep_series_and_every_counter_grows() {
        let mut s = Series::new(1, 2, PathLabels::Full);
        let steps = [
            vec![file(1, 5, 500), file(2, 1, 100)],
            vec![file(1, 5, 500), file(2, 10, 1000), file(3, 2, 200)],
            vec![file(1, 6, 600), file(2, 10, 1000), file(3, 50, 5000)],
        ];
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let mut seen = Vec::new();
        for files in steps {
            let r = Report { files, ..Default::default() };
            let (series, other) = s.update(&r);
            let mut now: BTreeMap<String, u64> =
                series.iter().map(|f| (f.path.clone(), f.counters.waits)).collect();
            now.insert("[other]".into(), other.waits);
            for (k, v) in &last {
                assert!(now.get(k).is_some_and(|n| n >= v), "{k} went from {v} to {:?}", now.get(k));
            }
            last = now;
            seen.push(series.iter().map(|f| f.path.clone()).collect::<Vec<_>>());
        }
        // /f1 first; /f2 promoted when it leads; /f3 leads last but max 2 series: stays in other.
        assert_eq!(seen, [vec!["/f1"], vec!["/f1", "/f2"], vec!["/f1", "/f2"]]);
        assert_eq!(last["/f1"], 6);
        assert_eq!(last["/f2"], 10);
        // other: /f3's 50, plus /f2's 1 frozen when it was promoted.
        assert_eq!(last["[other]"], 51);
    }

    /// A top file without a path waits 5 refreshes for one; named meanwhile, it gets its
    /// path; never named, its device and inode.
    #[test]
    fn unnamed_files_wait_for_a_path() {
        let mut s = Series::new(2, 4, PathLabels::Full);
        let unnamed = |ino| FileReport { path: None, ..file(ino, 1, 100) };
        for i in 1..=5 {
            let files = if i >= 3 { vec![unnamed(1), file(2, 1, 100)] } else { vec![unnamed(1), unnamed(2)] };
            let (series, _) = s.update(&Report { files, ..Default::default() });
            let paths: Vec<String> = series.iter().map(|f| f.path.clone()).collect();
            match i {
                1 | 2 => assert!(paths.is_empty(), "{i}: {paths:?}"),
                3 | 4 => assert_eq!(paths, ["/f2"], "{i}"),
                _ => assert_eq!(paths, ["/f2", "[dev 8:1 ino 1]"], "{i}"),
            }
        }
    }

    /// `--max-files` is a hard cap, and two files of one name keep series of their own (their
    /// `inode` labels differ) whatever the label policy.
    #[test]
    fn max_files_caps_and_basenames_never_merge() {
        let twin =
            |ino: u64| FileReport { path: Some(format!("/d{ino}/same.so")), ..file(ino, ino, ino * 100) };
        for labels in [PathLabels::Full, PathLabels::Basename, PathLabels::None] {
            let mut s = Series::new(2, 2, labels);
            let files = vec![twin(1), twin(2), twin(3)];
            s.update(&Report { files, ..Default::default() });
            let (series, _) = s.update(&Report {
                files: vec![
                    twin(1),
                    twin(2),
                    FileReport { contentions: 99, wait_ns_total: 99_999, ..twin(3) },
                ],
                ..Default::default()
            });
            let inodes: Vec<&str> = series.iter().map(|f| f.inode.as_str()).collect();
            assert_eq!(inodes, ["8:1:3", "8:1:2"], "{labels:?}");
            let paths: Vec<&str> = series.iter().map(|f| f.path.as_str()).collect();
            let want = match labels {
                PathLabels::Full => ["/d3/same.so", "/d2/same.so"],
                PathLabels::Basename => ["same.so", "same.so"],
                PathLabels::None => ["[dev 8:1 ino 3]", "[dev 8:1 ino 2]"],
            };
            assert_eq!(paths, want, "{labels:?}");
        }
    }
}
