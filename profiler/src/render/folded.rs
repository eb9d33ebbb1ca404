//! Folded stacks (Brendan Gregg's format) and the flame graph drawn from them by inferno.
//! A stack is `i_mmap_rwsem <file>;<write|read>;<outermost kernel frame>;...;<lock call>`,
//! its weight the nanoseconds waited there.

use anyhow::{Context, Result};
use inferno::flamegraph::{self, Options};

use crate::report::Report;

/// A name as one folded frame: escaped (a newline would end the stack's line, see
/// `render::escape`), and ';' (the frame separator) written ':'.
pub(crate) fn frame(s: &str) -> String {
    super::escape(s).replace(';', ":")
}

/// The root frame names a file by its file name alone (the flame graph's root row is narrow),
/// or as every output names a file without a path.
fn file_label(path: Option<&str>, dev: &str, ino: u64) -> String {
    match path {
        Some(p) => p.rsplit('/').next().unwrap_or(p).to_owned(),
        None => super::file_label(None, dev, ino),
    }
}

/// Which waits a folded file holds.
#[derive(Clone, Copy, PartialEq)]
pub enum WaitPart {
    /// Off-CPU: sleeping in the rwsem slowpath (lock:contention_begin/end).
    Sleep,
    /// On-CPU: optimistic spinning (kprobe/fentry modes).
    Spin,
    /// Both: the main flame graph.
    All,
}

/// One line per (file, direction, call path), heaviest files first.
pub fn folded(r: &Report) -> String {
    folded_waits(r, WaitPart::All)
}

pub fn folded_waits(r: &Report, which: WaitPart) -> String {
    let mut out = String::new();
    for f in &r.files {
        let root = frame(&format!("i_mmap_rwsem {}", file_label(f.path.as_deref(), &f.dev, f.ino)));
        let paths = match which {
            WaitPart::Sleep => f.call_paths.iter().collect::<Vec<_>>(),
            WaitPart::Spin => f.spin_paths.iter().collect(),
            WaitPart::All => f.spin_paths.iter().chain(&f.call_paths).collect(),
        };
        for p in paths {
            if p.wait_ns_total == 0 {
                continue;
            }
            // Beside spin (on CPU), say that the other waits are sleeps (off CPU).
            let label = if which == WaitPart::All && !f.spin_paths.is_empty() && p.osq_ns.is_none() {
                format!("sleep {}", p.rw)
            } else {
                p.rw.clone()
            };
            let mut line = format!("{root};{}", frame(&label));
            for fr in &p.frames {
                line.push(';');
                line.push_str(&frame(fr));
            }
            match p.osq_ns {
                // Spin splits into its two parts as leaf frames: queued in the MCS lock, and
                // spinning on the owner (or stealing the lock) after it.
                Some(osq) => {
                    let osq = osq.min(p.wait_ns_total);
                    if osq > 0 {
                        out.push_str(&format!("{line};osq_lock {osq}\n"));
                    }
                    if p.wait_ns_total > osq {
                        out.push_str(&format!("{line};[owner spinning] {}\n", p.wait_ns_total - osq));
                    }
                }
                None => out.push_str(&format!("{line} {}\n", p.wait_ns_total)),
            }
        }
    }
    out
}

/// Holder stacks weighted by the ns others waited on them, one line per (file, holder stack):
/// `i_mmap_rwsem <file>;holder <class>;<outermost frame>;...;<acquisition call> <ns>`, or, where
/// the holder's stack is not seen, `...;holder <class>;[syscall munmap] <ns>`.
pub fn holders_folded(r: &Report) -> String {
    let mut out = String::new();
    for f in &r.files {
        let Some(h) = &f.holders else { continue };
        let root = frame(&format!("i_mmap_rwsem {}", file_label(f.path.as_deref(), &f.dev, f.ino)));
        for st in &h.stacks {
            if st.wait_ns_total == 0 {
                continue;
            }
            let mut line = format!("{root};{}", frame(&format!("holder {}", st.class)));
            let leaf = st.doing.iter().cloned();
            for fr in st.frames.iter().flatten().cloned().chain(leaf) {
                line.push(';');
                line.push_str(&frame(&fr));
            }
            out.push_str(&format!("{line} {}\n", st.wait_ns_total));
        }
    }
    out
}

/// The holder flame graph: the widest tower is the path whose holds cost the most waiting.
pub fn holders_svg(r: &Report, folded: &str) -> Result<Vec<u8>> {
    let title = title(r).replacen("i_mmap_rwsem wait:", "i_mmap_rwsem holders:", 1);
    let subtitle = "holders when waits began (kernel stacks with --acquisitions), width = ns others waited";
    svg(r, folded, title, subtitle)
}

/// The title names the files and the mode, so a graph pasted alone still says what it is.
pub fn title(r: &Report) -> String {
    let names: Vec<String> = r
        .files
        .iter()
        .take(4)
        .map(|f| super::escape(&file_label(f.path.as_deref(), &f.dev, f.ino)).into_owned())
        .collect();
    let more = if r.files.len() > 4 { format!(" +{}", r.files.len() - 4) } else { String::new() };
    let files = if names.is_empty() { "no contention seen".to_owned() } else { names.join(", ") + &more };
    format!("i_mmap_rwsem wait: {files} ({} mode)", r.mode)
}

/// SVG flame graph; width is nanoseconds waited.
pub fn flamegraph_svg(r: &Report, folded: &str) -> Result<Vec<u8>> {
    flamegraph_svg_titled(r, folded, title(r))
}

pub fn flamegraph_svg_titled(r: &Report, folded: &str, title: String) -> Result<Vec<u8>> {
    svg(r, folded, title, "kernel stacks of contended waits, width = ns waited")
}

fn svg(r: &Report, folded: &str, title: String, subtitle: &str) -> Result<Vec<u8>> {
    let mut opts = Options::default();
    opts.title = title;
    opts.subtitle = Some(format!("Linux {} - {subtitle}", super::escape(&r.kernel)));
    opts.count_name = "ns".into();
    opts.name_type = "Function:".into();
    if folded.is_empty() {
        // inferno refuses a graph without samples; say so in an SVG of the same title rather
        // than invent a 1 ns frame.
        return Ok(empty_svg(&opts.title, "no waits were recorded").into_bytes());
    }
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut opts, folded.lines(), &mut svg).context("drawing flame graph")?;
    Ok(svg)
}

/// An SVG of `title` and one line saying why there is no graph.
pub(crate) fn empty_svg(title: &str, why: &str) -> String {
    let xml = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let (esc, why) = (xml(title), xml(why));
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"1200\" height=\"80\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"600\" y=\"24\" text-anchor=\"middle\" font-size=\"17\">{esc}</text>\n\
         <text x=\"600\" y=\"56\" text-anchor=\"middle\" font-size=\"12\">{why}</text>\n</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::text::tests::sample;

    #[test]
    fn folds_root_first_with_ns_weights() {
        let r = sample();
        assert_eq!(folded(&r), "i_mmap_rwsem libc.so.6;write;entry_SYSCALL_64;dup_mmap;down_write 7000\n");
    }

    #[test]
    fn spin_splits_into_osq_and_owner_spinning() {
        let mut r = sample();
        let mut spin = r.files[0].call_paths[0].clone();
        spin.rw = "spin".into();
        spin.wait_ns_total = 1000;
        spin.osq_ns = Some(600);
        r.files[0].spin_paths = vec![spin];
        let s = folded_waits(&r, WaitPart::Spin);
        assert_eq!(
            s,
            "i_mmap_rwsem libc.so.6;spin;entry_SYSCALL_64;dup_mmap;down_write;osq_lock 600\n\
             i_mmap_rwsem libc.so.6;spin;entry_SYSCALL_64;dup_mmap;down_write;[owner spinning] 400\n"
        );
        let all = folded_waits(&r, WaitPart::All);
        assert_eq!(all.lines().count(), 3);
        assert!(all.lines().last().unwrap().starts_with("i_mmap_rwsem libc.so.6;sleep write;"), "{all}");
        assert_eq!(folded_waits(&r, WaitPart::Sleep), folded(&sample()));
    }

    #[test]
    fn separators_in_names_are_escaped() {
        let mut r = sample();
        r.files[0].path = Some("/tmp/a;b".into());
        r.files[0].call_paths[0].frames = vec!["x;y".into()];
        assert_eq!(folded(&r), "i_mmap_rwsem a:b;write;x:y 7000\n");
    }

    #[test]
    fn svg_has_title_and_frames() {
        let r = sample();
        let svg = String::from_utf8(flamegraph_svg(&r, &folded(&r)).unwrap()).unwrap();
        assert!(svg.contains("i_mmap_rwsem wait: libc.so.6 (tracepoint mode)"));
        assert!(svg.contains("dup_mmap"));
        let mut empty = r.clone();
        empty.files.clear();
        let svg = String::from_utf8(flamegraph_svg(&empty, "").unwrap()).unwrap();
        assert!(svg.contains("no contention seen"));
    }

    #[test]
    fn holders_fold_file_first_then_class_then_stack() {
        let mut r = crate::render::text::tests::with_holders();
        let h = r.files[0].holders.as_mut().unwrap();
        h.stacks[0].frames = Some(vec!["do_exit".into(), "exit_mmap".into(), "down_write".into()]);
        h.stacks[0].doing = None;
        assert_eq!(
            holders_folded(&r),
            "i_mmap_rwsem libc.so.6;holder teardown;do_exit;exit_mmap;down_write 5000\n\
             i_mmap_rwsem libc.so.6;holder readers;[readers] 2000\n"
        );
        let svg = String::from_utf8(holders_svg(&r, &holders_folded(&r)).unwrap()).unwrap();
        assert!(svg.contains("i_mmap_rwsem holders: libc.so.6"), "{svg}");
    }

    /// One line per stack whatever a name holds; control characters escaped, not dropped.
    #[test]
    fn control_characters_keep_one_line_per_stack() {
        let mut r = sample();
        r.files[0].path = Some("/tmp/a\nb\r;c".into());
        r.files[0].call_paths[0].frames = vec!["x\u{85}y".into()];
        assert_eq!(folded(&r), "i_mmap_rwsem a\\nb\\r:c;write;x\\u{85}y 7000\n");
        assert!(title(&r).contains("a\\nb\\r;c"), "{}", title(&r));
    }
}
