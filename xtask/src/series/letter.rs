//! Posting patches/: the author's identity, the To/Cc addresses from the kernel tree's
//! `scripts/get_maintainer.pl`, and the cover letter written from patches-report's numbers.

use anyhow::{bail, Context, Result};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use super::cover::{self, header};
use crate::{host::root, kernel};

/// `git config user.name` and `user.email`: the only identity a patch is signed with.
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    pub fn from_git_config() -> Result<Identity> {
        let get = |key: &str| -> Option<String> {
            let o = Command::new("git").args(["config", "--get", key]).current_dir(root()).output().ok()?;
            let v = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            (o.status.success() && !v.is_empty()).then_some(v)
        };
        match (get("user.name"), get("user.email")) {
            (Some(name), Some(email)) => Ok(Identity { name, email }),
            _ => bail!(
                "no git identity to sign the series with: set it with `git config --global user.name \"Your Name\"` \
                 and `git config --global user.email you@example.org`, then regenerate patches/ with git format-patch"
            ),
        }
    }

    /// "Name <email>", as From: and Signed-off-by: carry it.
    pub fn address(&self) -> String {
        format!("{} <{}>", self.name, self.email)
    }
}

/// Every patch's author and Signed-off-by must be the git identity: a series written by
/// someone else's (or a placeholder) identity is refused, not posted.
pub fn check_authorship(series: &[PathBuf], me: &Identity) -> Result<()> {
    for p in series {
        let text = std::fs::read_to_string(p)?;
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        let from = header(&text, "From").with_context(|| format!("patches/{name}: no From: header"))?;
        if from != me.address() {
            bail!(
                "patches/{name}: From: {from} is not your git identity {}; regenerate it with git format-patch",
                me.address()
            );
        }
        if name.starts_with("0000-") {
            continue;
        }
        let signed = format!("Signed-off-by: {}", me.address());
        if !text.lines().any(|l| l == signed) {
            bail!("patches/{name}: no `{signed}` line; sign it off (git commit -s) and regenerate it");
        }
    }
    Ok(())
}

/// To: maintainers, Cc: reviewers and lists, as get_maintainer.pl names them for a patch.
#[derive(Default)]
struct Addresses {
    to: BTreeSet<String>,
    cc: BTreeSet<String>,
}

fn get_maintainer(src: &Path, patch: &Path) -> Result<Addresses> {
    let o = Command::new("perl")
        .arg("scripts/get_maintainer.pl")
        .args(["--no-git", "--no-git-fallback", "--no-multiline", "--separator", "\n"])
        // A source file rather than a mail: who maintains it.
        .args(patch.extension().is_none_or(|e| e != "patch").then_some("-f"))
        .arg(patch)
        .current_dir(src)
        .output()
        .context("running scripts/get_maintainer.pl")?;
    if !o.status.success() {
        bail!("get_maintainer.pl {}: {}", patch.display(), String::from_utf8_lossy(&o.stderr).trim());
    }
    let mut a = Addresses::default();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let (who, role) = recipient(line);
        if who.is_empty() {
            continue;
        }
        if role.starts_with("maintainer") {
            a.to.insert(who.trim().to_owned());
        } else {
            a.cc.insert(who.trim().to_owned());
        }
    }
    Ok(a)
}

/// A get_maintainer.pl line split into the address and its role: `Name <addr> (maintainer:
/// SECTION (MORE))`, `list@host (open list:SECTION)`; a section name may hold parentheses.
fn recipient(line: &str) -> (&str, &str) {
    let split = match line.find("> (") {
        Some(i) => Some((&line[..=i], &line[i + 3..])),
        None => line.split_once(" ("),
    };
    let (who, role) = split.unwrap_or((line, ""));
    (who.trim(), role)
}

/// Writes To:/Cc: into each patch's mail header and the union into the cover letter's:
/// every patch goes to the maintainers of what it touches, the letter to all of them.
pub fn address(series: &[PathBuf], letter: &Path, me: &Identity) -> Result<()> {
    let src = kernel::unpacked_source(kernel::OURS)?;
    let mut all = Addresses::default();
    for p in series {
        let mut a = get_maintainer(&src, p)?;
        // Whoever get_maintainer.pl names for code whose behaviour the patch changes without
        // touching its files, in Cc.
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for (_, file) in BEHAVIOUR_OF.iter().filter(|(patch, _)| name.contains(patch)) {
            let b = get_maintainer(&src, Path::new(file))?;
            a.cc.extend(b.to.into_iter().chain(b.cc));
        }
        a.to.remove(&me.address());
        a.cc.retain(|c| !a.to.contains(c) && *c != me.address());
        set_recipients(p, &a)?;
        all.to.extend(a.to);
        all.cc.extend(a.cc);
    }
    all.cc.extend(LETTER_CC.iter().map(|c| c.to_string()));
    all.cc.retain(|c| !all.to.contains(c));
    set_recipients(letter, &all)
}

/// Patches (by a word of their file name) that change what a file they do not touch sees:
/// binfmt_elf's first mapping hands fsnotify_mmap_perm() (fanotify's pre-content event) the
/// first segment's length, not the whole image's.
const BEHAVIOUR_OF: [(&str, &str); 1] = [("binfmt_elf", "include/linux/fsnotify.h")];

/// Besides get_maintainer.pl's, the letter goes to the people whose threads it builds on:
/// Mateusz Guzik (patch 1's Suggested-by), Huang Shijie and Yibin Liu (who posted the earlier
/// attempts and have the many-core machines), Matthew Wilcox (reviewed Yibin Liu's). The
/// addresses are the ones the linux-mm threads or 7.2's MAINTAINERS show whole; where neither
/// has one, [`PLACEHOLDER`] stands in, and patches-send-ready refuses the series until a person
/// puts the real address there.
pub const LETTER_CC: [&str; 4] = [
    "Mateusz Guzik <mjguzik@gmail.com>",
    "Huang Shijie <ADDRESS-TO-FILL-IN>",
    "Yibin Liu <liuyibin@hygon.cn>",
    "Matthew Wilcox <willy@infradead.org>",
];

/// An address not known to us, to be filled in by whoever posts the series.
pub const PLACEHOLDER: &str = "ADDRESS-TO-FILL-IN";

/// The committed letter's first lines: it carries the repository's identity, which must not
/// go out. patches-send-ready removes them (every line starting with "*** " at the top).
pub const SIGN_NOTE: &str = "\
*** Not to be sent as it is. The From: and Signed-off-by: lines of
*** this series are rmapprof's repository identity, not a person's.
*** Whoever posts it signs it:
***   cargo xtask patches-send-ready --as \"Name <address>\"
*** (or with their git config) puts their identity on every mail, drops
*** these lines, runs checkpatch.pl --strict on the result and writes
*** it to target/patches-send/. Addresses shown as ADDRESS-TO-FILL-IN
*** are not in the linux-mm archive we worked from: fill them in first.";

/// Replaces the To:/Cc: headers of a format-patch mail by `a`'s, folded as git folds them.
fn set_recipients(path: &Path, a: &Addresses) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (head, body) =
        text.split_once("\n\n").with_context(|| format!("{}: no mail header", path.display()))?;
    let mut kept = Vec::new();
    let mut dropping = false;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if !dropping {
                kept.push(line.to_owned());
            }
            continue;
        }
        dropping = line.starts_with("To:") || line.starts_with("Cc:");
        if !dropping {
            kept.push(line.to_owned());
        }
    }
    for (name, set) in [("To", &a.to), ("Cc", &a.cc)] {
        if !set.is_empty() {
            kept.push(format!("{name}: {}", set.iter().cloned().collect::<Vec<_>>().join(",\n    ")));
        }
    }
    std::fs::write(path, format!("{}\n\n{body}", kept.join("\n")))?;
    Ok(())
}

/// Regenerates the cover letter in `git format-patch --cover-letter` layout: the text of
/// xtask/cover-letter.in with its @NAME@ fields filled from `fields`, between git's header
/// lines and the shortlog/diffstat already in the letter.
pub fn write_cover_letter(fields: &[(&str, String)]) -> Result<()> {
    let path = root().join("patches/0000-cover-letter.patch");
    let old = std::fs::read_to_string(&path).context("patches/0000-cover-letter.patch")?;
    let template = std::fs::read_to_string(root().join("xtask/cover-letter.in"))?;
    let (subject, blurb) =
        template.split_once("\n\n").context("cover-letter.in: subject, blank line, body")?;
    let version = kernel::kernel_version(&kernel::unpacked_source(kernel::OURS)?)?;
    let base = format!(
        "Debian's linux-source-{} {} from {} (Linux {version})",
        kernel::OURS,
        kernel::package_version(kernel::OURS),
        kernel::package_suite(kernel::OURS)
    );
    let mut blurb = blurb.replace("@BASE@", &base);
    for (name, value) in fields {
        blurb = blurb.replace(&format!("@{name}@"), value.trim_end());
    }
    if let Some(field) = blurb.split('@').skip(1).find(|f| is_field(f)) {
        bail!("xtask/cover-letter.in: @{field}@ has no value");
    }
    // Keep git's header lines; the shortlog and diffstat are git's for patches/ now, and the
    // subject's prefix and count are the patches'.
    let header_end = old.find("Subject:").context("cover letter without Subject")?;
    let patches = cover::read_series(&kernel::series(kernel::OURS)?)?;
    let tail = cover::shortlog_and_diffstat(&patches)?;
    let signature = old.rfind("\n-- \n").map(|i| &old[i + 1..]).unwrap_or("-- \n2.47.3\n");
    let (prefix, n) = (&patches[0].prefix, patches.len());
    // To:/Cc: are written afterwards, by [`address`].
    let text = format!(
        "{}Subject: [{prefix} 0/{n}] {}\n\n{SIGN_NOTE}\n\n{}\n\n{tail}{signature}",
        &old[..header_end],
        subject.trim(),
        blurb.trim_end(),
    );
    std::fs::write(&path, text)?;
    Ok(())
}

/// Replaces the text of field @NAME@ in the committed letter, found between the template's
/// paragraph before the field and its first line after it; the rest stays as it is.
pub fn replace_field(name: &str, value: &str) -> Result<()> {
    let path = root().join("patches/0000-cover-letter.patch");
    let old = std::fs::read_to_string(&path).context("patches/0000-cover-letter.patch")?;
    let template = std::fs::read_to_string(root().join("xtask/cover-letter.in"))?;
    let text = splice(&old, &template, name, value)?;
    std::fs::write(&path, text)?;
    Ok(())
}

fn splice(letter: &str, template: &str, name: &str, value: &str) -> Result<String> {
    let (before, after) = template
        .split_once(&format!("@{name}@"))
        .with_context(|| format!("cover-letter.in has no @{name}@"))?;
    let before = before.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let after = after.trim_start().lines().next().unwrap_or_default();
    if before.contains('@') || after.contains('@') || before.is_empty() || after.is_empty() {
        bail!("cover-letter.in: @{name}@ must sit between two paragraphs of plain text");
    }
    let start = letter.find(before).with_context(|| format!("the letter lacks {before:?}"))? + before.len();
    let end = start
        + letter[start..]
            .find(after)
            .with_context(|| format!("the letter lacks {after:?} after {before:?}"))?;
    Ok(format!("{}\n\n{}\n\n{}", &letter[..start], value.trim_end(), &letter[end..]))
}

/// patches-check's result lines as the letter lists them: one "- " item per line, wrapped at
/// 72 columns with continuation lines indented by two (a word longer than that stays whole).
pub fn bullets(lines: &str) -> String {
    let mut out = String::new();
    for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut col = 0;
        for (i, word) in line.split_whitespace().enumerate() {
            if i == 0 {
                out += "- ";
                col = 2;
            } else if col + 1 + word.len() > 72 {
                out += "\n  ";
                col = 2;
            } else {
                out.push(' ');
                col += 1;
            }
            out += word;
            col += word.len();
        }
        out.push('\n');
    }
    out
}

fn is_field(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &str = "From 1234 Mon Sep 17 00:00:00 2001\nFrom: A Person\n <a@example.org>\n\
        Date: Tue, 1 Dec 2026 21:10:29 +0000\nSubject: [RFC PATCH v2 1/3] mm: a\n long subject\n\
        Cc: old@example.org,\n    older@example.org\n\nBody.\nCc: stable@vger.kernel.org\n";

    #[test]
    fn a_field_is_replaced_between_its_paragraphs() {
        let template =
            "Subject\n\nIntro.\n\nChecks (from the tool):\n\n@CORRECTNESS@\n\nNot measured: x\ny\n";
        let letter =
            "Subject: s\n\nIntro.\n\nChecks (from the tool):\n\n- PASS a\n- PASS b\n\nNot measured: x\ny\n";
        let new = splice(letter, template, "CORRECTNESS", "- PASS c\n").unwrap();
        assert_eq!(
            new,
            "Subject: s\n\nIntro.\n\nChecks (from the tool):\n\n- PASS c\n\nNot measured: x\ny\n"
        );
        assert!(splice(letter, template, "ACQUISITIONS", "").is_err());
        assert!(splice("Subject\n", template, "CORRECTNESS", "").is_err());
    }

    #[test]
    fn result_lines_become_wrapped_items() {
        let b = bullets(&format!("PASS a: {}\n\nFAIL b: short\n", "word ".repeat(20)));
        assert_eq!(
            b,
            "- PASS a: word word word word word word word word word word word word\n  \
             word word word word word word word word\n- FAIL b: short\n"
        );
        assert!(b.lines().all(|l| l.len() <= 72));
    }

    #[test]
    fn roles_with_parentheses_keep_the_address_whole() {
        let l = "Alexander Viro <viro@zeniv.linux.org.uk> (maintainer:FILESYSTEMS (VFS and infrastructure))";
        assert_eq!(
            recipient(l),
            ("Alexander Viro <viro@zeniv.linux.org.uk>", "maintainer:FILESYSTEMS (VFS and infrastructure))")
        );
        let l = "linux-fsdevel@vger.kernel.org (open list:FILESYSTEMS (VFS and infrastructure))";
        assert_eq!(recipient(l).0, "linux-fsdevel@vger.kernel.org");
    }

    #[test]
    fn folded_headers_are_read_whole() {
        assert_eq!(header(MAIL, "From").as_deref(), Some("A Person <a@example.org>"));
        assert_eq!(header(MAIL, "Subject").as_deref(), Some("[RFC PATCH v2 1/3] mm: a long subject"));
        assert_eq!(header(MAIL, "To"), None);
    }

    #[test]
    fn recipients_replace_the_old_ones_and_leave_the_body_alone() {
        let dir = std::env::temp_dir().join(format!("xtask-letter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("0001.patch");
        std::fs::write(&p, MAIL).unwrap();
        let a = Addresses {
            to: ["M One <m1@example.org>".to_owned(), "M Two <m2@example.org>".to_owned()].into(),
            cc: ["list@example.org".to_owned()].into(),
        };
        set_recipients(&p, &a).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert_eq!(header(&t, "To").as_deref(), Some("M One <m1@example.org>, M Two <m2@example.org>"));
        assert_eq!(header(&t, "Cc").as_deref(), Some("list@example.org"));
        assert_eq!(header(&t, "Subject").as_deref(), Some("[RFC PATCH v2 1/3] mm: a long subject"));
        assert!(!t.contains("old@example.org"));
        assert!(t.ends_with("\n\nBody.\nCc: stable@vger.kernel.org\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_series_signed_by_someone_else_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-sign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("0001-x.patch");
        std::fs::write(&p, format!("{MAIL}\nSigned-off-by: A Person <a@example.org>\n")).unwrap();
        let me = Identity { name: "A Person".into(), email: "a@example.org".into() };
        check_authorship(std::slice::from_ref(&p), &me).unwrap();
        let other = Identity { name: "B".into(), email: "b@example.org".into() };
        let e = check_authorship(&[p], &other).unwrap_err().to_string();
        assert!(e.contains("is not your git identity B <b@example.org>"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
