use super::*;
use crate::report::{CallPath, LockSummary, Waits};

pub(crate) fn sample() -> Report {
    let mut hist = vec![0; 40];
    hist[10] = 3;
    hist[12] = 1;
    Report {
        tool: "rmapprof".into(),
        version: "0.1.0".into(),
        schema: crate::schema::REPORT_SCHEMA,
        build: None,
        mode: RunMode::Tracepoint,
        acquisitions_counted: Some(false),
        kernel: "6.18.0".into(),
        duration_ns: 2_000_000_000,
        command: Some(vec!["spawn".into(), "100".into()]),
        pid: None,
        cycles: None,
        cpus: None,
        selected: vec![],
        probes: vec![],
        lost: [("stats_map_full".to_owned(), 0)].into_iter().collect(),
        recursion_misses: Default::default(),
        nested_waits: 2,
        unwind: [("unwinds", 120), ("cache_hits", 99_000), ("cache_checks", 1500), ("cache_conflicts", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        unwind_conflict_sites: vec!["vma_link_file+0x2f (depth 14920)".into()],
        map_rows: Default::default(),
        bpf_cost: None,
        locks: vec![LockSummary {
            lock: "i_mmap_rwsem".into(),
            contentions: 4,
            wait_ns_total: 8000,
            wait_ns_max: 5000,
            wait_hist_log2: hist.clone(),
        }],
        mmap_lock_by_process: vec![],
        files: vec![FileReport {
            path: Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
            dev: "254:1".into(),
            ino: 42,
            contentions: 4,
            wait_ns_total: 8000,
            wait_ns_max: 5000,
            wait_hist_log2: hist,
            write: Waits { contentions: 3, wait_ns_total: 7000, wait_ns_max: 5000 },
            read: Waits { contentions: 1, wait_ns_total: 1000, wait_ns_max: 1000 },
            call_paths: vec![CallPath {
                rw: "write".into(),
                frames: vec!["entry_SYSCALL_64".into(), "dup_mmap".into(), "down_write".into()],
                contentions: 3,
                wait_ns_total: 7000,
                wait_ns_max: 5000,
                osq_ns: None,
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn summary_table() {
    let s = summary(&sample());
    let row = s.lines().find(|l| l.contains("libc.so.6")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[0], "/usr/lib/x86_64-linux-gnu/libc.so.6");
    assert_eq!(cols[1], "4");
    assert_eq!(&cols[2..4], ["8.00", "us"]);
    assert_eq!(cols.last(), Some(&"75"));
    assert!(s.lines().all(|l| l.len() <= 80), "{s}");
}

#[test]
fn full_report_has_paths_and_histogram() {
    let s = full(&sample());
    assert!(s.contains("lost: none\nnested waits (only the outer wait is measured): 2\n"), "{s}");
    assert!(
        s.contains(
            "stacks: 120 unwound, 99000 from the call-site cache (1500 rechecked, 1 differed)\n  \
             two paths through one site: vma_link_file+0x2f (depth 14920)\n"
        ),
        "{s}"
    );
    let i = s.find("down_write").unwrap();
    assert!(i < s.find("dup_mmap").unwrap(), "innermost frame first");
    assert!(s.contains("[   1K,    2K)        3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"), "{s}");
    assert!(s.contains(&format!("[   4K,    8K)        1 |{:<40}|", "@".repeat(13))), "{s}");
    assert!(s.lines().all(|l| l.len() <= 80), "{s}");
}

#[test]
fn per_cycle_table_by_caller() {
    use crate::report::ClassRow;
    let mut r = sample();
    assert_eq!(classes(&r), "", "no caller rows, no table");
    r.cycles = Some(100);
    r.files[0].by_class = vec![ClassRow {
        class: "fork".into(),
        write_acquisitions: Some(500),
        read_acquisitions: Some(0),
        hold_ns: Some(150_000),
        rmap_inserts: Some(500),
        rmap_removes: Some(0),
        slowpath_ns: Some(0),
        spin_ns: Some(20_000),
        contentions: 3,
        sleep_ns: 7000,
        per_cycle: None,
    }];
    let t = classes(&r);
    assert!(t.contains("per cycle by caller (100 cycles)"), "{t}");
    let row: Vec<&str> =
        t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
    assert_eq!(row, ["fork", "5.00", "0.00", "5.00", "0.00", "1.50", "us", "200", "ns", "70", "ns"]);
    r.files[0].by_class[0].write_acquisitions = None; // tracepoint mode: not observed
    r.cycles = None;
    let t = classes(&r);
    assert!(t.lines().any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["fork", "-"]), "{t}");
    assert!(t.lines().all(|l| l.len() <= 80), "{t}");
}

/// The mode line says what the run could not see and how to see it.
#[test]
fn mode_line_names_what_was_not_counted() {
    let mut r = sample();
    let mode_line = |r: &Report| full(r).lines().find(|l| l.starts_with("mode:")).unwrap().to_owned();
    assert!(mode_line(&r).contains("optimistic spinning not seen"));
    r.mode = RunMode::Fentry;
    assert!(mode_line(&r).contains("--acquisitions also counts every acquisition"), "{}", mode_line(&r));
    r.acquisitions_counted = Some(true);
    assert_eq!(mode_line(&r), "mode: fentry (waits, spinning included, and every acquisition)");
}

#[test]
fn long_paths_keep_the_file_name() {
    let mut r = sample();
    r.files[0].path = Some(format!("/{}/libc.so.6", "x".repeat(60)));
    let s = summary(&r);
    assert!(s.lines().any(|l| l.starts_with("...") && l.contains("libc.so.6 ")));
}

/// A newline or other control character in a name (file, frame, command) neither splits a
/// line nor reaches the terminal raw: it is escaped.
#[test]
fn control_characters_are_escaped() {
    let mut r = sample();
    r.files[0].path = Some("/tmp/evil\nname\x1b[31m".into());
    r.files[0].call_paths[0].frames.push("odd\tframe".into());
    r.command = Some(vec!["sh".into(), "-c".into(), "echo a\necho b".into()]);
    r.files[0].by_class = vec![crate::report::ClassRow { class: "fork".into(), ..Default::default() }];
    for out in [summary(&r), classes(&r), full(&r)] {
        for l in out.split('\n') {
            assert!(!l.chars().any(char::is_control), "{l:?}");
        }
    }
    assert!(summary(&r).contains("/tmp/evil\\nname\\x1b[31m "), "{}", summary(&r));
    assert!(full(&r).contains("\n== /tmp/evil\\nname\\x1b[31m (dev"), "{}", full(&r));
    assert!(full(&r).contains("        odd\\tframe\n"), "{}", full(&r));
    assert!(full(&r).contains("command: sh -c echo a\\necho b\n"), "{}", full(&r));
}

/// Tracepoint mode sees sleeping waits alone: the per-cycle table shows those (count and
/// time per cycle), not columns of `-`, and a wait under half a ns per cycle is no `0 ns`.
#[test]
fn tracepoint_table_shows_waits() {
    use crate::report::ClassRow;
    let mut r = sample();
    r.cycles = Some(100_000);
    let row =
        |c: &str, n, ns| ClassRow { class: c.into(), contentions: n, sleep_ns: ns, ..Default::default() };
    r.files[0].by_class = vec![row("fork", 3, 7000), row("mmap", 1, 1000)];
    let t = classes(&r);
    let fork: Vec<&str> =
        t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
    // 3 waits and 7 us in 100,000 cycles; 2.33 us a wait.
    assert_eq!(fork, ["fork", "<0.0001", "<1", "ns", "2.33", "us"], "{t}");
    assert!(!t.contains(" - ") && !t.contains(" 0 ns"), "{t}");
    r.cycles = Some(100);
    let t = classes(&r);
    let fork: Vec<&str> =
        t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
    assert_eq!(fork, ["fork", "0.03", "70", "ns", "2.33", "us"], "{t}");
    r.cycles = None;
    let t = classes(&r);
    let fork: Vec<&str> =
        t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
    assert_eq!(fork, ["fork", "3", "7.00", "us", "2.33", "us"], "{t}");
    assert!(t.lines().all(|l| l.len() <= 80 && l.is_ascii()), "{t}");
    // kprobe/fentry mode without --acquisitions: spin as well.
    r.files[0].by_class[0].spin_ns = Some(500);
    r.files[0].by_class[1].spin_ns = Some(0);
    let t = classes(&r);
    let fork: Vec<&str> =
        t.lines().find(|l| l.trim_start().starts_with("fork")).unwrap().split_whitespace().collect();
    assert_eq!(fork, ["fork", "3", "7.00", "us", "2.33", "us", "500", "ns"], "{t}");
    assert!(t.contains("SPIN: optimistic spinning"), "{t}");
}

/// The summary says what W% is, where it prints it.
#[test]
fn summary_explains_write_share() {
    let s = summary(&sample());
    assert!(s.lines().any(|l| l.starts_with("W%:") && l.contains("write")), "{s}");
    assert!(s.lines().all(|l| l.len() <= 80 && l.is_ascii()), "{s}");
}

/// A stack deeper than the 12 frames shown says it was cut.
#[test]
fn cut_stacks_say_so() {
    let mut r = sample();
    r.files[0].call_paths[0].frames = (0..15).map(|i| format!("f{i}")).collect();
    let s = full(&r);
    assert!(s.contains("        f3\n        ... 3 more frames\n"), "{s}");
    assert!(!s.contains("        f2\n"), "{s}");
    r.files[0].call_paths[0].frames.truncate(12);
    assert!(!full(&r).contains("more frame"));
    r.files[0].call_paths[0].frames.push("f12".into());
    assert!(full(&r).contains("        f1\n        ... 1 more frame\n"), "{}", full(&r));
}

/// `sample()` with holders: a fork waiter behind an exiting holder and a reader-owned lock.
pub(crate) fn with_holders() -> Report {
    use crate::report::{HolderCell, HolderStack, HolderTask, Holders};
    let mut r = sample();
    r.files[0].holders = Some(Holders {
        source: "owner field".into(),
        same_task: 0,
        matrix: vec![
            HolderCell {
                waiter: "fork".into(),
                holder: "teardown".into(),
                contentions: 2,
                wait_ns_total: 5000,
            },
            HolderCell {
                waiter: "fork".into(),
                holder: "readers".into(),
                contentions: 1,
                wait_ns_total: 2000,
            },
        ],
        stacks: vec![
            HolderStack {
                class: "teardown".into(),
                frames: None,
                doing: Some("[exiting]".into()),
                contentions: 2,
                wait_ns_total: 5000,
            },
            HolderStack {
                class: "readers".into(),
                frames: None,
                doing: Some("[readers]".into()),
                contentions: 1,
                wait_ns_total: 2000,
            },
        ],
        tasks: vec![HolderTask {
            comm: Some("spawn".into()),
            pid: 100,
            tid: 101,
            class: "teardown".into(),
            contentions: 2,
            wait_ns_total: 5000,
        }],
    });
    r
}

#[test]
fn holder_matrix_rows_are_waiters_and_columns_holders() {
    let s = full(&with_holders());
    assert!(s.lines().all(|l| l.chars().count() <= 80), "{s}");
    let head = s.lines().find(|l| l.trim_start().starts_with("WAITER")).unwrap();
    let cols: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(cols, ["WAITER", "teardown", "readers"], "{s}");
    let row = s.lines().find(|l| l.trim_start().starts_with("fork ")).unwrap();
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["fork", "2", "5.00", "us", "1", "2.00", "us"]);
    assert!(s.contains("2 waits    5.00 us on a teardown holder [exiting]"), "{s}");
    assert!(s.contains("spawn                 100      101 teardown"), "{s}");
}

#[test]
fn by_task_lists_each_files_waiters() {
    use crate::report::TaskWaits;
    let mut r = sample();
    assert_eq!(by_task(&r), "");
    r.files[0].tasks = vec![TaskWaits {
        comm: Some("spawn".into()),
        pid: 7,
        tid: Some(8),
        contentions: 4,
        wait_ns_total: 8000,
        wait_ns_max: 5000,
    }];
    let s = by_task(&r);
    let row = s.lines().last().unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["spawn", "7", "8", "4", "8.00", "us", "5.00", "us"]
    );
}
