//! The series module's tests: against git itself, and on patches/ as committed.

use super::*;
use crate::host::root;

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Against git itself: a series where two patches change one file (apart), a long subject
/// git wraps, a new file and a large change git scales; the shortlog and diffstat computed
/// from the patch files are those of git's own cover letter.
#[test]
fn shortlog_and_diffstat_are_git_format_patches() {
    let dir = std::env::temp_dir().join(format!("xtask-series-git-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mm")).unwrap();
    let lines = |tag: &str, n: usize| (0..n).map(|i| format!("{tag} {i}\n")).collect::<String>();
    std::fs::write(dir.join("mm/mmap.c"), lines("base", 400)).unwrap();
    git(&dir, &["init", "-q"]);
    let commit = |msg: &str| {
        git(&dir, &["add", "-A"]);
        git(&dir, &["-c", "user.name=A Person", "-c", "user.email=a@example.org", "commit", "-q", "-m", msg]);
    };
    commit("base");
    let mut text = lines("base", 400).replace("base 10\n", "one 10\none 11\n");
    std::fs::write(dir.join("mm/mmap.c"), &text).unwrap();
    std::fs::write(dir.join("mm/new.h"), lines("new", 150)).unwrap();
    commit("mm: a subject long enough that git's shortlog has to wrap it onto a second line");
    text = text.replace("base 300\n", "").replace("base 301\n", "two\n");
    std::fs::write(dir.join("mm/mmap.c"), &text).unwrap();
    commit("mm: two");
    git(&dir, &["format-patch", "-q", "--cover-letter", "--subject-prefix=RFC PATCH", "-o", "out", "HEAD~2"]);
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(dir.join("out")).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let letter = std::fs::read_to_string(&paths[0]).unwrap();
    let patches = read_series(&paths[1..]).unwrap();
    assert_eq!(
        patches[0].subject,
        "mm: a subject long enough that git's shortlog has to wrap it onto a second line"
    );
    let ours = shortlog_and_diffstat(&patches).unwrap();
    let start = super::shortlog_start(&letter).unwrap();
    let theirs = &letter[start..=start + letter[start..].find("\n-- \n").unwrap()];
    assert_eq!(ours, theirs);
    assert!(ours.contains("A Person (2):\n"), "{ours}");
    assert!(ours.contains("2 files changed, 153 insertions(+), 3 deletions(-)"), "{ours}");
    // git's own letter passes; a stale count, a version nobody posted, a shortlog of other
    // patches and an internal target do not.
    let p = letter_problems(&letter, &paths[1..]).unwrap();
    assert!(p.is_empty(), "{p:?}");
    let stale = letter.replace("0/2]", "0/3]").replace("RFC PATCH 0", "RFC PATCH v2 0");
    let p = letter_problems(&stale, &paths[1..]).unwrap();
    assert_eq!(p.len(), 3, "{p:?}");
    let stale = letter.replace("  mm: two\n", "").replace("*** BLURB HERE ***", "- at most 12: 10.12, met");
    let p = letter_problems(&stale, &paths[1..]).unwrap();
    assert!(p[0].starts_with("the shortlog and diffstat are not"), "{p:?}");
    assert!(p[1].contains("internal target"), "{p:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_patch_that_rewrites_an_earlier_ones_lines_is_refused() {
    let p = |added: &[&str], removed: &[&str], k| Patch {
        author: "A <a@b>".into(),
        prefix: "RFC PATCH".into(),
        number: k,
        count: 2,
        subject: format!("p{k}"),
        files: vec![FileChange {
            path: "mm/vma.c".into(),
            created: None,
            deleted: false,
            added: added.iter().map(|s| s.to_string()).collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
        }],
    };
    let e = shortlog_and_diffstat(&[p(&["\tint batch;"], &[], 1), p(&[], &["\tint batch;"], 2)]).unwrap_err();
    assert!(e.to_string().contains("patch 2 removes a line patch 1 added to mm/vma.c"), "{e}");
}

/// patches/ as committed: the letter's subject, shortlog and diffstat are the series'.
#[test]
fn the_committed_letter_is_the_series() {
    let letter = std::fs::read_to_string(root().join("patches/0000-cover-letter.patch")).unwrap();
    let p = letter_problems(&letter, &crate::kernel::series(crate::kernel::OURS).unwrap()).unwrap();
    assert!(p.is_empty(), "patches/0000-cover-letter.patch:\n{}", p.join("\n"));
}
