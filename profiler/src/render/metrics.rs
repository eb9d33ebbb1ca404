//! `rmapprof serve`'s `/metrics`: OpenMetrics text, encoded by prometheus-client from what the
//! daemon measured since it started. Every `_total` is a counter that only grows over the
//! daemon's life; which files get a series of their own is decided in serve/series.rs, and
//! this module only formats.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::report::Report;

/// One file's counters since the daemon started; a value the mode cannot observe is None,
/// and then has no sample (never a 0 that reads as "none happened").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileCounters {
    pub waits: u64,
    pub wait_ns: u64,
    pub spin_ns: Option<u64>,
    pub slowpaths: Option<u64>,
    pub acquisitions: Option<u64>,
}

impl FileCounters {
    pub fn add(&mut self, o: &FileCounters) {
        self.waits += o.waits;
        self.wait_ns += o.wait_ns;
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.spin_ns = add(self.spin_ns, o.spin_ns);
        self.slowpaths = add(self.slowpaths, o.slowpaths);
        self.acquisitions = add(self.acquisitions, o.acquisitions);
    }
}

/// A file with a series of its own: `path` as it was when it got it (kept for the daemon's
/// life, so the series never changes labels), and `inode` as `major:minor:ino`.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSeries {
    pub path: String,
    pub inode: String,
    pub counters: FileCounters,
}

/// The path label of the series that holds every file without one of its own. Not a path
/// (paths are absolute), so no file can be confused with it.
pub const OTHER: &str = "[other]";

/// Everything `/metrics` shows: the cumulative report and the per-file series of it.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub report: Report,
    pub files: Vec<FileSeries>,
    pub other: FileCounters,
    /// Rows moved from the kernel's maps into the daemon's totals, by map.
    pub drained_rows: std::collections::BTreeMap<String, u64>,
    /// Times the daemon read the maps.
    pub refreshes: u64,
    /// Times the files without a series were folded to bound the daemon's memory.
    pub folds: u64,
}

/// The exposition as OpenMetrics text, `# EOF` included.
pub fn openmetrics(e: &Exposition) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics(e.clone())));
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut s, &registry);
    s
}

#[derive(Debug)]
struct Metrics(Exposition);

type Labels = Vec<(&'static str, String)>;

fn counter<N>(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, N)]) -> std::fmt::Result
where
    ConstCounter<N>: EncodeMetric,
    N: Copy,
{
    family(enc, name, help, rows, |v| ConstCounter::new(v))
}

fn gauge<N: Copy>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, N)],
) -> std::fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    family(enc, name, help, rows, |v| ConstGauge::new(v))
}

fn family<N: Copy, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, N)],
    metric: impl Fn(N) -> M,
) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let first = metric(rows[0].1);
    let mut d = enc.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, v) in rows {
        metric(*v).encode(d.encode_family(labels)?)?;
    }
    Ok(())
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let e = &self.0;
        let r = &e.report;
        let info: Labels = vec![
            ("version", r.version.clone()),
            ("mode", r.mode.name().to_owned()),
            ("kernel", r.kernel.clone()),
        ];
        gauge(
            &mut enc,
            "rmapprof_info",
            "rmapprof's version, probe mode and the kernel it profiles.",
            &[(info, 1i64)],
        )?;
        counter(
            &mut enc,
            "rmapprof_profiled_seconds",
            "Time profiled since the daemon started.",
            &[(vec![], secs(r.duration_ns))],
        )?;

        // Per file: the promoted files, then `other`.
        let rows: Vec<(Labels, &FileCounters)> = e
            .files
            .iter()
            .map(|f| (vec![("path", f.path.clone()), ("inode", f.inode.clone())], &f.counters))
            .chain([(vec![("path", OTHER.to_owned()), ("inode", String::new())], &e.other)])
            .collect();
        let count = |get: &dyn Fn(&FileCounters) -> Option<u64>| -> Vec<(Labels, u64)> {
            rows.iter().filter_map(|(l, c)| Some((l.clone(), get(c)?))).collect()
        };
        let time = |get: &dyn Fn(&FileCounters) -> Option<u64>| -> Vec<(Labels, f64)> {
            rows.iter().filter_map(|(l, c)| Some((l.clone(), secs(get(c)?)))).collect()
        };
        counter(
            &mut enc,
            "rmapprof_file_waits",
            "Sleeping waits for the file's i_mmap_rwsem (lock:contention_begin/end).",
            &count(&|c| Some(c.waits)),
        )?;
        counter(
            &mut enc,
            "rmapprof_file_wait_seconds",
            "Time slept waiting for the file's i_mmap_rwsem.",
            &time(&|c| Some(c.wait_ns)),
        )?;
        counter(
            &mut enc,
            "rmapprof_file_spin_seconds",
            "Time spent optimistically spinning for the file's i_mmap_rwsem (kprobe/fentry modes).",
            &time(&|c| c.spin_ns),
        )?;
        counter(
            &mut enc,
            "rmapprof_file_slowpaths",
            "Contended acquisitions of the file's i_mmap_rwsem, spinning or sleeping (kprobe/fentry modes).",
            &count(&|c| c.slowpaths),
        )?;
        counter(
            &mut enc,
            "rmapprof_file_acquisitions",
            "Acquisitions of the file's i_mmap_rwsem, contended or not (--acquisitions).",
            &count(&|c| c.acquisitions),
        )?;
        let gauge_files = vec![(vec![], e.files.len() as i64)];
        gauge(
            &mut enc,
            "rmapprof_file_series",
            "Files with a series of their own (the rest are path=\"[other]\").",
            &gauge_files,
        )?;

        let locks: Vec<(Labels, u64)> =
            r.locks.iter().map(|l| (vec![("lock", l.lock.clone())], l.contentions)).collect();
        counter(
            &mut enc,
            "rmapprof_lock_waits",
            "Sleeping waits on every contended lock, by class (i_mmap_rwsem, mmap_lock, other).",
            &locks,
        )?;
        let locks: Vec<(Labels, f64)> =
            r.locks.iter().map(|l| (vec![("lock", l.lock.clone())], secs(l.wait_ns_total))).collect();
        counter(
            &mut enc,
            "rmapprof_lock_wait_seconds",
            "Time slept waiting on every contended lock, by class.",
            &locks,
        )?;

        let lost: Vec<(Labels, u64)> = r.lost.iter().map(|(k, v)| (vec![("cause", k.clone())], *v)).collect();
        counter(
            &mut enc,
            "rmapprof_lost_events",
            "Events not measured (or measured without their stack), by cause.",
            &lost,
        )?;
        counter(
            &mut enc,
            "rmapprof_nested_waits",
            "Lock waits inside an rwsem wait, by design not measured.",
            &[(vec![], r.nested_waits)],
        )?;

        let rows: Vec<(Labels, i64)> =
            r.map_rows.iter().map(|(k, v)| (vec![("map", k.clone())], v.rows as i64)).collect();
        gauge(
            &mut enc,
            "rmapprof_map_rows",
            "Rows in use in each in-kernel aggregation map at the last read, before the daemon drained it.",
            &rows,
        )?;
        let rows: Vec<(Labels, i64)> =
            r.map_rows.iter().map(|(k, v)| (vec![("map", k.clone())], v.max as i64)).collect();
        gauge(&mut enc, "rmapprof_map_capacity", "Capacity of each in-kernel aggregation map.", &rows)?;
        let drained: Vec<(Labels, u64)> =
            e.drained_rows.iter().map(|(k, v)| (vec![("map", k.clone())], *v)).collect();
        counter(
            &mut enc,
            "rmapprof_drained_rows",
            "Rows moved from each kernel map into the daemon's totals.",
            &drained,
        )?;
        counter(
            &mut enc,
            "rmapprof_refreshes",
            "Times the daemon read the kernel's maps.",
            &[(vec![], e.refreshes)],
        )?;
        counter(
            &mut enc,
            "rmapprof_folds",
            "Times the call paths of files without a series were folded to bound memory.",
            &[(vec![], e.folds)],
        )?;

        if let Some(cost) = &r.bpf_cost {
            let runs: Vec<(Labels, u64)> =
                cost.iter().map(|c| (vec![("program", c.program.clone())], c.runs)).collect();
            counter(
                &mut enc,
                "rmapprof_bpf_runs",
                "Runs of each of rmapprof's BPF programs (kernel BPF statistics).",
                &runs,
            )?;
            let ns: Vec<(Labels, f64)> =
                cost.iter().map(|c| (vec![("program", c.program.clone())], secs(c.ns))).collect();
            counter(
                &mut enc,
                "rmapprof_bpf_seconds",
                "CPU time in each of rmapprof's BPF programs: its own cost.",
                &ns,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::text::tests::sample;

    /// Counters end in _total, a mode's unobserved values have no sample, label values are
    /// escaped, and the text ends with # EOF.
    #[test]
    fn openmetrics_counters_and_labels() {
        let e = Exposition {
            report: sample(),
            files: vec![FileSeries {
                path: "/tmp/a \"b\"\nc".into(),
                inode: "8:1:12".into(),
                counters: FileCounters { waits: 3, wait_ns: 1_500_000_000, ..Default::default() },
            }],
            other: FileCounters { waits: 1, wait_ns: 10, ..Default::default() },
            refreshes: 2,
            ..Default::default()
        };
        let t = openmetrics(&e);
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert!(t.contains("# TYPE rmapprof_file_waits counter\n"), "{t}");
        assert!(t.contains(r#"rmapprof_file_waits_total{path="/tmp/a \"b\"\nc",inode="8:1:12"} 3"#), "{t}");
        assert!(
            t.contains(r#"rmapprof_file_wait_seconds_total{path="/tmp/a \"b\"\nc",inode="8:1:12"} 1.5"#),
            "{t}"
        );
        assert!(t.contains(r#"rmapprof_file_waits_total{path="[other]",inode=""} 1"#), "{t}");
        assert!(!t.contains("rmapprof_file_spin_seconds"), "no spin in tracepoint mode: {t}");
        assert!(t.contains(r#"rmapprof_lock_waits_total{lock="i_mmap_rwsem"}"#), "{t}");
        assert!(t.contains("rmapprof_refreshes_total 2"), "{t}");
        assert!(t.lines().all(|l| !l.is_empty()));
    }
}
