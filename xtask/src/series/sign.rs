//! `cargo xtask patches-send-ready`: a person signs the series before it goes out.
//!
//! The committed copies of patches/ carry the repository's identity (From: and
//! Signed-off-by:), which is nobody a reviewer can answer. This stamps the poster's identity
//! (`--as "Name <address>"`, or their git config) on every mail, refuses the repository's own
//! identity and addresses that reach nobody, refuses a letter that still has a placeholder or
//! a section marked to be rerun, drops the letter's "*** " note, and runs checkpatch --strict
//! on the stamped patches. The result goes to target/patches-send/, ready for
//! `git send-email --to-cover --cc-cover`; patches/ is left as it is.

use anyhow::{bail, Context, Result};
use std::{path::Path, process::Command};

use super::{
    cover::{self, header},
    letter::{Identity, PLACEHOLDER},
};
use crate::{
    host::{root, sh},
    kernel,
};

/// What marks a part of the committed letter measured on something other than the series.
pub const RERUN: &str = "TO-BE-RERUN";

/// Where the stamped series goes.
const OUT: &str = "target/patches-send";

impl Identity {
    /// "Name <address>", as `--as` takes it.
    pub fn parse(s: &str) -> Result<Identity> {
        let (name, rest) =
            s.split_once('<').with_context(|| format!("--as {s:?}: expected \"Name <address>\""))?;
        let email =
            rest.strip_suffix('>').with_context(|| format!("--as {s:?}: expected \"Name <address>\""))?;
        let name = name.trim().trim_matches('"').to_owned();
        if name.is_empty() || !email.contains('@') || email.contains(char::is_whitespace) {
            bail!("--as {s:?}: expected \"Name <address>\" with a name and an address");
        }
        Ok(Identity { name, email: email.to_owned() })
    }

    /// "Name <address>" as a From: header carries it: the name quoted when it holds a
    /// character RFC 5322 reserves (as "Liam R. Howlett"), RFC 2047-encoded when it is not
    /// ASCII, as git format-patch writes them.
    fn mail_from(&self) -> String {
        let name = if !self.name.is_ascii() {
            let mut q = String::from("=?UTF-8?q?");
            for b in self.name.bytes() {
                match b {
                    b' ' => q.push('_'),
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => q.push(b as char),
                    _ => q += &format!("={b:02X}"),
                }
            }
            q + "?="
        } else if self.name.contains(|c| "()<>[]:;@\\,.\"".contains(c)) {
            format!("\"{}\"", self.name.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            self.name.clone()
        };
        format!("{name} <{}>", self.email)
    }
}

/// The identity the committed series carries: patch 1's From:.
fn repository_identity(first_patch: &Path) -> Result<Identity> {
    let text = std::fs::read_to_string(first_patch)?;
    let from = header(&text, "From").with_context(|| format!("{}: no From:", first_patch.display()))?;
    Identity::parse(&from)
}

/// Refuses the repository's identity, and addresses that reach no one: replies to the
/// series must find the person who posted it.
pub fn refuse(me: &Identity, repository: &Identity) -> Result<()> {
    if me.email.eq_ignore_ascii_case(&repository.email) || me.name.eq_ignore_ascii_case(&repository.name) {
        bail!(
            "{} is the repository's own identity, not a person's: sign as yourself with \
             --as \"Your Name <address>\" (or your git config)",
            me.address()
        );
    }
    let domain = me.email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
    let reserved = [".example", ".invalid", ".test", ".localhost"].iter().any(|t| domain.ends_with(t))
        || ["example.org", "example.com", "example.net", "localhost"].contains(&domain.as_str())
        || me.email.contains("noreply")
        || me.email.contains(PLACEHOLDER);
    if reserved {
        bail!("{}: replies to that address reach no one; sign with an address you read", me.address());
    }
    Ok(())
}

/// One mail of the series with `me` in From: and in place of the repository's
/// Signed-off-by:, and, for the cover letter, without its "*** " note.
pub fn stamp(text: &str, me: &Identity, repository: &Identity, cover_letter: bool) -> Result<String> {
    let (head, body) = text.split_once("\n\n").context("no mail header")?;
    let mut out = Vec::new();
    let mut in_from = false;
    for line in head.lines() {
        if in_from && line.starts_with([' ', '\t']) {
            continue;
        }
        in_from = line.starts_with("From:");
        out.push(if in_from { format!("From: {}", me.mail_from()) } else { line.to_owned() });
    }
    let mut body = body;
    if cover_letter {
        while let Some(rest) = body.strip_prefix("***").and_then(|b| b.split_once('\n')).map(|(_, r)| r) {
            body = rest;
        }
        body = body.trim_start_matches('\n');
    }
    for (marker, what) in [
        (PLACEHOLDER, "put the address there (and in xtask/src/series/letter.rs's LETTER_CC)"),
        (RERUN, "run cargo xtask patches-check and patches-report on this series"),
    ] {
        if let Some(line) = head.lines().chain(body.lines()).find(|l| l.contains(marker)) {
            bail!("{marker} is still there ({}): {what}", line.trim());
        }
    }
    let theirs = format!("Signed-off-by: {}", repository.address());
    let mine = format!("Signed-off-by: {}", me.address());
    let body: Vec<String> =
        body.lines().map(|l| if l == theirs { mine.clone() } else { l.to_owned() }).collect();
    if !cover_letter && !body.contains(&mine) {
        bail!("no `{theirs}` line to sign in place of");
    }
    let mut stamped = format!("{}\n\n{}", out.join("\n"), body.join("\n"));
    if text.ends_with('\n') {
        stamped.push('\n');
    }
    Ok(stamped)
}

/// Stamps patches/ into target/patches-send/ as `as_` (or the git config's identity) and runs
/// checkpatch --strict on the stamped patches.
pub fn send_ready(as_: Option<&str>) -> Result<()> {
    let me = match as_ {
        Some(s) => Identity::parse(s)?,
        None => Identity::from_git_config()?,
    };
    let patches = kernel::series(kernel::OURS)?;
    let first = patches.first().context("patches/ holds no patch")?;
    refuse(&me, &repository_identity(first)?)?;
    let repository = repository_identity(first)?;
    let letter = root().join("patches/0000-cover-letter.patch");
    let problems = cover::letter_problems(&std::fs::read_to_string(&letter)?, &patches)?;
    if !problems.is_empty() {
        bail!("patches/0000-cover-letter.patch does not fit the series: {}", problems.join("; "));
    }
    let out = root().join(OUT);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut stamped = Vec::new();
    for p in std::iter::once(&letter).chain(&patches) {
        let name = p.file_name().context("patch without a name")?;
        let text = stamp(&std::fs::read_to_string(p)?, &me, &repository, p == &letter)
            .with_context(|| format!("patches/{}", name.to_string_lossy()))?;
        let to = out.join(name);
        std::fs::write(&to, text)?;
        if p != &letter {
            stamped.push(to);
        }
    }
    let checkpatch = kernel::unpacked_source(kernel::OURS)?.join("scripts/checkpatch.pl");
    for p in &stamped {
        // An absolute path outside git's index: checkpatch reads it as a patch, not a file.
        sh(Command::new("perl").arg(&checkpatch).args(["--strict", "--no-tree", "-q"]).arg(p))
            .with_context(|| format!("checkpatch --strict on {}", p.display()))?;
    }
    eprintln!(
        "xtask: {} mails signed by {} in {OUT}, checkpatch --strict clean; send with\n  \
         git send-email --to-cover --cc-cover {OUT}/*.patch",
        stamped.len() + 1,
        me.address()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "Seed ab840e01 maintainers <maintainers@users.noreply.b-seed-ab840e01.example>";

    fn repo() -> Identity {
        Identity::parse(REPO).unwrap()
    }

    const PATCH: &str = "From 95b6 Mon Sep 17 00:00:00 2001\nFrom: Seed ab840e01 maintainers\n \
        <maintainers@users.noreply.b-seed-ab840e01.example>\nDate: Tue, 1 Dec 2026 21:08:25 +0000\n\
        Subject: [RFC PATCH 1/2] mm: x\nTo: A <a@kernel.org>\n\nText.\n\n\
        Suggested-by: Mateusz Guzik <mjguzik@gmail.com>\n\
        Signed-off-by: Seed ab840e01 maintainers <maintainers@users.noreply.b-seed-ab840e01.example>\n\
        ---\n mm/x.c | 1 +\n";

    #[test]
    fn stamping_puts_the_poster_in_from_and_signed_off_by() {
        let me = Identity::parse("Ada Lovelace <ada@kernel.org>").unwrap();
        let t = stamp(PATCH, &me, &repo(), false).unwrap();
        assert_eq!(header(&t, "From").as_deref(), Some("Ada Lovelace <ada@kernel.org>"));
        assert!(t.contains("\nSigned-off-by: Ada Lovelace <ada@kernel.org>\n---\n"), "{t}");
        assert!(!t.contains("maintainers@"), "{t}");
        // The rest is left alone: other trailers, headers, the diff.
        assert!(t.contains("Suggested-by: Mateusz Guzik <mjguzik@gmail.com>\n"));
        assert_eq!(header(&t, "Subject").as_deref(), Some("[RFC PATCH 1/2] mm: x"));
        assert!(t.ends_with("---\n mm/x.c | 1 +\n"));
        // A name with a reserved character is quoted in From:, one not ASCII encoded; both
        // sign off as written.
        let me = Identity::parse("Liam R. Howlett <liam@infradead.org>").unwrap();
        let t = stamp(PATCH, &me, &repo(), false).unwrap();
        assert_eq!(header(&t, "From").as_deref(), Some("\"Liam R. Howlett\" <liam@infradead.org>"));
        assert!(t.contains("\nSigned-off-by: Liam R. Howlett <liam@infradead.org>\n"));
        let me = Identity::parse("Paweł Nowak <pawel@kernel.org>").unwrap();
        let t = stamp(PATCH, &me, &repo(), false).unwrap();
        assert_eq!(header(&t, "From").as_deref(), Some("=?UTF-8?q?Pawe=C5=82_Nowak?= <pawel@kernel.org>"));
    }

    #[test]
    fn the_cover_letter_loses_its_note_and_keeps_the_rest() {
        let me = Identity::parse("Ada Lovelace <ada@kernel.org>").unwrap();
        let letter = format!(
            "From 1 Mon Sep 17 00:00:00 2001\nFrom: {REPO}\nSubject: [RFC PATCH 0/2] x\n\n\
             {}\n\nOn fork/exec-heavy loads.\n\n*** not a note here\n",
            crate::series::letter::SIGN_NOTE
        );
        let t = stamp(&letter, &me, &repo(), true).unwrap();
        assert!(t.contains("\n\nOn fork/exec-heavy loads.\n\n*** not a note here\n"), "{t}");
        assert!(!t.contains("Not to be sent"), "{t}");
        assert_eq!(header(&t, "From").as_deref(), Some("Ada Lovelace <ada@kernel.org>"));
    }

    #[test]
    fn the_repository_identity_and_dead_addresses_are_refused() {
        let e = refuse(&repo(), &repo()).unwrap_err().to_string();
        assert!(e.contains("the repository's own identity"), "{e}");
        // The repository's name with another address is still not a person.
        let e = refuse(&Identity::parse("Seed ab840e01 maintainers <me@kernel.org>").unwrap(), &repo())
            .unwrap_err()
            .to_string();
        assert!(e.contains("the repository's own identity"), "{e}");
        for dead in ["A <a@example.org>", "A <a@users.noreply.github.com>", "A <a@host.invalid>"] {
            let e = refuse(&Identity::parse(dead).unwrap(), &repo()).unwrap_err().to_string();
            assert!(e.contains("reach no one"), "{dead}: {e}");
        }
        refuse(&Identity::parse("Ada Lovelace <ada@kernel.org>").unwrap(), &repo()).unwrap();
        assert!(Identity::parse("ada@kernel.org").is_err());
        assert!(Identity::parse("Ada <>").is_err());
    }

    /// The committed letter cannot go out yet: it names placeholders and parts to rerun, and
    /// stamping says which.
    #[test]
    fn placeholders_and_stale_parts_are_refused() {
        let me = Identity::parse("Ada Lovelace <ada@kernel.org>").unwrap();
        let t = PATCH.replace("To: A <a@kernel.org>", "Cc: Someone <ADDRESS-TO-FILL-IN>");
        let e = stamp(&t, &me, &repo(), false).unwrap_err().to_string();
        assert!(e.contains("ADDRESS-TO-FILL-IN is still there"), "{e}");
        let t = PATCH.replace("Text.", "[TO-BE-RERUN: old numbers]");
        assert!(stamp(&t, &me, &repo(), false).unwrap_err().to_string().contains("TO-BE-RERUN"));
        let unsigned = PATCH.replace("Signed-off-by: Seed", "Reviewed-by: Seed");
        assert!(stamp(&unsigned, &me, &repo(), false).unwrap_err().to_string().contains("no `Signed-off-by"));
        let letter = std::fs::read_to_string(root().join("patches/0000-cover-letter.patch")).unwrap();
        let committed = repository_identity(&kernel::series(kernel::OURS).unwrap()[0]).unwrap();
        assert_eq!(committed.address(), REPO);
        assert!(stamp(&letter, &me, &committed, true).is_err());
    }
}
