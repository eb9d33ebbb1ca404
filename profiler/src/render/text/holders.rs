//! report.txt's holder sections: per file the waiter x holder matrix, the holders' stacks and
//! tasks; the waits per task (`--by-task`); mmap_lock waits per process.

use std::fmt::Write;

use super::{frames, short_path};
use crate::{
    render::{clip, escape, fmt_ns, Keep},
    report::{FileReport, Report, TaskWaits},
    schema::caller_class,
};

/// Holder columns per block of the matrix: 3 + 12 + 4 x 16 = 79 columns.
const COLUMNS: usize = 4;

fn cell(waits: u64, ns: u64) -> String {
    format!("{waits} {}", fmt_ns(ns))
}

/// A file's waits by holder: the matrix (rows waiter class, columns holder class, cells
/// waits and time waited), the holders' stacks and tasks.
pub fn file_holders(f: &FileReport) -> String {
    let mut s = String::new();
    let Some(h) = &f.holders else { return s };
    if h.matrix.is_empty() {
        return s;
    }
    let how = match h.source.as_str() {
        "tracked holds" => "tracked holds: their stacks",
        "owner field, stacks at release" => "owner field; stacks at their releases",
        _ => "owner field; for stacks: --holder-stacks",
    };
    let _ = writeln!(s, "   holders when the waits began ({how}):");
    let used = |list: &mut Vec<String>, c: &str| {
        if !list.iter().any(|x| x == c) {
            list.push(c.to_owned());
        }
    };
    let (mut waiters, mut holders) = (vec![], vec![]);
    for c in &h.matrix {
        used(&mut waiters, &c.waiter);
        used(&mut holders, &c.holder);
    }
    let order = |c: &String| caller_class::HOLDER_ALL.iter().position(|x| x == c);
    holders.sort_by_key(order);
    waiters.sort_by_key(order);
    for block in holders.chunks(COLUMNS) {
        let mut head = format!("   {:<12}", "WAITER");
        for c in block {
            let _ = write!(head, " {:>15}", clip(c, 15, Keep::Head));
        }
        let _ = writeln!(s, "{head}");
        for w in &waiters {
            let mut row = format!("   {:<12}", clip(w, 12, Keep::Head));
            for c in block {
                let v = h.matrix.iter().find(|m| &m.waiter == w && &m.holder == c);
                let text = v.map_or_else(|| "-".to_owned(), |m| cell(m.contentions, m.wait_ns_total));
                let _ = write!(row, " {text:>15}");
            }
            let _ = writeln!(s, "{row}");
        }
    }
    if h.same_task > 0 {
        let _ = writeln!(s, "   waits for a lock the waiter itself held: {}", h.same_task);
    }
    for st in h.stacks.iter().take(5) {
        let _ = writeln!(
            s,
            "   {:>6} waits {:>10} on a {} holder{}",
            st.contentions,
            fmt_ns(st.wait_ns_total),
            st.class,
            st.doing.as_deref().map(|d| format!(" {}", escape(d))).unwrap_or_default()
        );
        if let Some(fr) = &st.frames {
            s.push_str(&frames(fr));
        }
    }
    if !h.tasks.is_empty() {
        let _ = writeln!(
            s,
            "   {:<16} {:>8} {:>8} {:<12} {:>7} {:>10}",
            "HOLDER", "PID", "TID", "CLASS", "WAITS", "WAITED"
        );
        for t in h.tasks.iter().take(5) {
            let _ = writeln!(
                s,
                "   {:<16} {:>8} {:>8} {:<12} {:>7} {:>10}",
                clip(t.comm.as_deref().unwrap_or("?"), 16, Keep::Head),
                t.pid,
                t.tid,
                clip(&t.class, 12, Keep::Head),
                t.contentions,
                fmt_ns(t.wait_ns_total)
            );
        }
    }
    s
}

fn task_table(s: &mut String, rows: &[TaskWaits], limit: usize) {
    let _ = writeln!(
        s,
        "   {:<16} {:>8} {:>8} {:>7} {:>10} {:>10}",
        "COMM", "PID", "TID", "WAITS", "WAITED", "MAX"
    );
    for t in rows.iter().take(limit) {
        let _ = writeln!(
            s,
            "   {:<16} {:>8} {:>8} {:>7} {:>10} {:>10}",
            clip(t.comm.as_deref().unwrap_or("?"), 16, Keep::Head),
            t.pid,
            t.tid.map_or_else(|| "-".to_owned(), |t| t.to_string()),
            t.contentions,
            fmt_ns(t.wait_ns_total),
            fmt_ns(t.wait_ns_max)
        );
    }
    if rows.len() > limit {
        let _ = writeln!(s, "   ... {} more", rows.len() - limit);
    }
}

/// mmap_lock waits per process whose mm it is.
pub fn mmap_lock_by_process(r: &Report) -> String {
    let mut s = String::new();
    if r.mmap_lock_by_process.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\nmmap_lock waits by process (whose mm it is):");
    task_table(&mut s, &r.mmap_lock_by_process, 10);
    s
}

/// `--by-task`: each file's waits per waiting task (comm, pid, tid), as `perf lock contention
/// -t` gives them per lock.
pub fn by_task(r: &Report) -> String {
    let mut s = String::new();
    let files: Vec<&FileReport> = r.files.iter().filter(|f| !f.tasks.is_empty()).collect();
    if files.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\ni_mmap_rwsem waits by task:");
    for f in files {
        let _ = writeln!(s, "  {}", short_path(f, 76));
        task_table(&mut s, &f.tasks, 20);
    }
    s
}
