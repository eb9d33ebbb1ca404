use super::*;
use crate::report::ClassRow;

fn run(kernel: &str, fork: u64, mmap: u64) -> Report {
    let mut r = crate::render::text::tests::sample();
    r.kernel = kernel.into();
    r.mode = crate::mode::RunMode::Fentry;
    r.acquisitions_counted = Some(true);
    r.cycles = Some(100);
    let row = |c: &str, n| ClassRow { class: c.into(), write_acquisitions: Some(n), ..Default::default() };
    r.files[0].by_class = vec![row("fork", fork), row("mmap", mmap)];
    r.files[0].spin_ns_total = Some(10_000);
    r.files[0].acquire_paths = vec![crate::report::AcquirePath {
        rw: "write".into(),
        frames: vec!["kernel_clone".into(), "copy_process".into(), "down_write".into()],
        acquisitions: fork,
        ..Default::default()
    }];
    r
}

#[test]
fn delta_table_per_class_and_file() {
    let t = table(&run("6.12.117", 510, 404), &run("6.12.117-patched", 100, 404));
    let row = |c: &str| -> Vec<String> {
        t.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(c))
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("fork"), ["libc.so.6", "fork", "5.10", "1.00", "-80%"]);
    assert_eq!(row("mmap"), ["libc.so.6", "mmap", "4.04", "4.04", "+0%"]);
    assert_eq!(row("all"), ["libc.so.6", "all", "9.14", "5.04", "-45%"]);
    assert!(t.contains("per cycle (100 and 100 cycles)"));
    assert!(t.lines().all(|l| l.len() <= 80), "{t}");
}

#[test]
fn differential_flame_graph() {
    let (b, a) = (run("a", 510, 404), run("b", 100, 404));
    assert_eq!(
        folded_acquisitions(&b),
        "i_mmap_rwsem libc.so.6;write;kernel_clone;copy_process;down_write 5100\n"
    );
    let svg = String::from_utf8(flamegraph(&b, &a, Width::Before).unwrap()).unwrap();
    assert!(svg.contains("copy_process") && svg.contains("before -&gt; after, width = before"), "{svg}");
    let svg = String::from_utf8(flamegraph(&b, &a, Width::After).unwrap()).unwrap();
    assert!(svg.contains("copy_process") && svg.contains("width = after"), "{svg}");
}

/// A non-ASCII basename longer than the column was cut inside a character (a panic).
#[test]
fn long_non_ascii_names_are_cut_by_characters() {
    let (mut b, mut a) = (run("a", 510, 404), run("b", 100, 404));
    let name = "ä".repeat(40);
    b.files[0].path = Some(format!("/tmp/{name}"));
    a.files[0].path = b.files[0].path.clone();
    let t = table(&b, &a);
    let row = t.lines().find(|l| l.contains(" fork ")).unwrap();
    assert!(row.starts_with(&format!("{}~ fork", "ä".repeat(25))), "{t}");
    // Columns stay aligned: the row is as many characters wide as an ASCII one.
    let ascii = table(&run("a", 510, 404), &run("b", 100, 404));
    let width = |t: &str| t.lines().find(|l| l.contains(" fork ")).unwrap().chars().count();
    assert_eq!(width(&t), width(&ascii));
}

/// A newline in a file name stays inside its row, escaped.
#[test]
fn control_characters_in_names_are_escaped() {
    let (mut b, mut a) = (run("a", 510, 404), run("b", 100, 404));
    b.files[0].path = Some("/tmp/a\nb\tc".into());
    a.files[0].path = b.files[0].path.clone();
    let t = table(&b, &a);
    assert!(t.lines().any(|l| l.starts_with("a\\nb\\tc ") && l.contains(" fork ")), "{t}");
    assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
}

/// A tracepoint-mode run: sleeping waits only (no acquisitions, no spin), by caller class
/// and call path; `dup_mmap` waited `fork_ns` in `fork_waits` waits, `mmap_region` 10 us
/// in 4.
fn tracepoint_run(kernel: &str, cycles: Option<u64>, fork_waits: u64, fork_ns: u64) -> Report {
    let mut r = crate::render::text::tests::sample();
    r.kernel = kernel.into();
    r.cycles = cycles;
    let row =
        |c: &str, n, ns| ClassRow { class: c.into(), contentions: n, sleep_ns: ns, ..Default::default() };
    r.files[0].by_class = vec![row("fork", fork_waits, fork_ns), row("mmap", 4, 10_000)];
    let path = |f: &str, n, ns| crate::report::CallPath {
        rw: "write".into(),
        frames: vec!["entry_SYSCALL_64".into(), f.into(), "down_write".into()],
        contentions: n,
        wait_ns_total: ns,
        wait_ns_max: ns,
        osq_ns: None,
    };
    r.files[0].call_paths = vec![path("mmap_region", 4, 10_000), path("dup_mmap", fork_waits, fork_ns)];
    r
}

fn cols<'a>(t: &'a str, table: &str, class: &str) -> Vec<&'a str> {
    let from = t.find(&format!("\ni_mmap_rwsem {table}")).unwrap_or_else(|| panic!("no {table:?} in {t}"));
    t[from..]
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(class))
        .unwrap()
        .split_whitespace()
        .collect()
}

/// Tracepoint runs count no acquisitions: compare their waits and wait time.
#[test]
fn tracepoint_runs_compare_waits() {
    let (b, a) = (tracepoint_run("6.18", Some(100), 5, 1000), tracepoint_run("6.18-p", Some(100), 1, 200));
    let t = table(&b, &a);
    assert_eq!(cols(&t, "waits per cycle", "fork"), ["libc.so.6", "fork", "0.05", "0.01", "-80%"], "{t}");
    assert_eq!(
        cols(&t, "wait time per cycle", "fork"),
        ["libc.so.6", "fork", "10", "ns", "2", "ns", "-80%"],
        "{t}"
    );
    assert!(!t.lines().next().unwrap().starts_with("compared:"), "same basis, no note: {t}");
    assert!(t.lines().all(|l| l.len() <= 80), "{t}");
    for width in [Width::Before, Width::After] {
        let svg = String::from_utf8(flamegraph(&b, &a, width).unwrap()).unwrap();
        assert!(svg.contains("dup_mmap") && !svg.contains("no waits were recorded"), "{svg}");
        assert!(svg.contains("i_mmap_rwsem waits: before -&gt; after"), "{svg}");
        assert!(svg.contains("width = ns waited per 1000 cycles"), "{svg}");
    }
}

/// Per cycle against totals is no comparison: both totals, and one line says why.
#[test]
fn cycles_against_no_cycles_compares_totals() {
    let (b, a) = (tracepoint_run("6.18", Some(100), 5, 1000), tracepoint_run("6.18-p", None, 1, 200));
    let t = table(&b, &a);
    let first = t.lines().next().unwrap();
    assert_eq!(first, "compared: waits and wait time, totals (only before has cycles)", "{t}");
    assert_eq!(t.matches("compared:").count(), 1, "{t}");
    assert!(!t.contains("per cycle"), "{t}");
    assert_eq!(cols(&t, "waits, totals", "fork"), ["libc.so.6", "fork", "5", "1", "-80%"], "{t}");
    assert_eq!(
        cols(&t, "wait time, totals", "fork"),
        ["libc.so.6", "fork", "1.00", "us", "200", "ns", "-80%"],
        "{t}"
    );
}

/// The path a change cut by 80% stays wide enough to read in the default (before-width)
/// graph; in the after-width one it is a sliver whose name does not fit.
#[test]
fn a_cut_path_is_readable_at_before_width() {
    // dup_mmap: 1000 -> 200 ns per cycle, beside mmap_region's 10 us, unchanged.
    let mut b = tracepoint_run("6.18", Some(1), 5, 1000);
    let mut a = tracepoint_run("6.18-p", Some(1), 1, 200);
    for r in [&mut b, &mut a] {
        r.files[0].call_paths[0].wait_ns_total = 10_000;
    }
    let svg = |w| String::from_utf8(flamegraph(&b, &a, w).unwrap()).unwrap();
    let (before, after) = (svg(Width::Before), svg(Width::After));
    // The frame's label, as inferno writes it when the name fits: `>dup_mmap</text>`.
    assert!(before.contains(">dup_mmap</text>"), "{before}");
    assert!(!after.contains(">dup_mmap</text>"), "{after}");
    // Colours still mean after - before: the cut path's leaf (inferno colours leaves) is
    // blue, its change negative, in both.
    let leaf = |svg: &str, ns: &str| {
        let at = svg.find(&format!("<title>down_write ({ns} ns")).unwrap_or_else(|| panic!("{svg}"));
        svg[at..at + 60].to_owned()
    };
    assert!(leaf(&before, "1,000,000").contains("; -7.27%)"), "{}", leaf(&before, "1,000,000"));
    assert!(leaf(&after, "200,000").contains("; -7.84%)"), "{}", leaf(&after, "200,000"));
}

/// Only one run had any paths: the other width says so instead of failing.
#[test]
fn one_empty_run_draws_both_widths() {
    let b = tracepoint_run("6.18", Some(100), 5, 1000);
    let mut a = b.clone();
    a.files.clear();
    let after = String::from_utf8(flamegraph(&b, &a, Width::After).unwrap()).unwrap();
    assert!(after.contains("no waits were recorded after"), "{after}");
    let before = String::from_utf8(flamegraph(&b, &a, Width::Before).unwrap()).unwrap();
    assert!(before.contains(">dup_mmap</text>"), "{before}");
    let t = table(&b, &a);
    assert_eq!(cols(&t, "waits per cycle", "fork"), ["libc.so.6", "fork", "0.05", "0.00", "-100%"], "{t}");
    // A path only one run has: drawn at its width, absent (zero) at the other's.
    let mut cut = b.clone();
    cut.files[0].call_paths.retain(|p| !p.frames.contains(&"dup_mmap".to_owned()));
    for w in [Width::Before, Width::After] {
        let svg = String::from_utf8(flamegraph(&b, &cut, w).unwrap()).unwrap();
        assert_eq!(svg.contains(">dup_mmap</text>"), w == Width::Before, "{svg}");
    }
    let mut none = b.clone();
    none.files.clear();
    let svg = String::from_utf8(flamegraph(&none, &a, Width::Before).unwrap()).unwrap();
    assert!(svg.contains("no waits were recorded<"), "{svg}");
}

/// The holder matrix before and after: per (waiter, holder), a cell one run lacks is 0 there.
#[test]
fn holder_matrix_before_and_after() {
    let before = crate::render::text::tests::with_holders();
    let mut after = before.clone();
    let h = after.files[0].holders.as_mut().unwrap();
    h.matrix.remove(1);
    h.matrix[0].contentions = 4;
    let t = table(&before, &after);
    assert!(t.contains("waits by waiter and holder, totals"), "{t}");
    let row = |holder: &str| {
        t.lines()
            .find(|l| l.split_whitespace().nth(2) == Some(holder))
            .unwrap_or_else(|| panic!("{holder}: {t}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("teardown"), ["libc.so.6", "fork", "teardown", "2", "4", "+100%"]);
    assert_eq!(row("readers"), ["libc.so.6", "fork", "readers", "1", "0", "-100%"]);
    assert!(t.lines().all(|l| l.len() <= 80), "{t}");
    // A report from before holders were seen: said, not a table of zeros.
    let mut old = before.clone();
    old.files[0].holders = None;
    assert!(table(&old, &after).contains("holders: only one run saw them"));
}

/// One path, two files (a container's libc.so.6 and the host's, or a tmpfs copy bound over
/// the original): each keeps its own row, named by device and inode, instead of the second
/// replacing the first (which dropped the one with the counts).
#[test]
fn two_files_of_one_path_keep_their_own_rows() {
    let two = |fork: u64| {
        let mut r = run("7.2.13", fork, 404);
        let mut idle = r.files[0].clone();
        idle.dev = "0:39".into();
        idle.ino = 652561;
        idle.by_class = vec![];
        idle.acquire_paths = vec![];
        r.files[0].dev = "0:56".into();
        r.files[0].ino = 2;
        r.files.push(idle);
        r
    };
    let t = table(&two(515), &two(103));
    let line = t.lines().find(|l| l.contains(" fork ")).unwrap();
    assert!(line.starts_with("libc.so.6 [dev 0:56 ino 2] fork"), "{t}");
    let fork: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fork[fork.len() - 3..], ["5.15", "1.03", "-80%"], "{t}");
    // The idle file has no acquisitions: no rows of its own, and none of the other's.
    assert_eq!(t.lines().filter(|l| l.contains(" fork ")).count(), 1, "{t}");
    // A path named once stays matched by path alone, whatever its inode.
    let t = table(&run("7.2.13", 515, 404), &run("7.2.13", 103, 404));
    assert!(!t.contains("[dev"), "{t}");
}
