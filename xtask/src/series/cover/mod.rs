//! The cover letter's facts about the series, from the patch files alone (no kernel tree):
//! the subject numbering, and the shortlog and diffstat `git format-patch --cover-letter`
//! gives for the patches in patches/.
//!
//! git itself formats both: a scratch repository gets one commit per patch, by the patch's
//! author and with its subject, changing as many lines of each file as the patch adds and
//! removes (distinct lines, so git's diff counts exactly those), and `git format-patch
//! --cover-letter` writes the shortlog (wrapped as git wraps it) and the diffstat (scaled as
//! git scales it). The diffstat is the sum of the patches' counts per file: what git gives
//! for the series as long as no patch rewrites lines an earlier one added, which is refused.

use anyhow::{bail, Context, Result};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

/// One patch of a format-patch series, as its mail says.
#[derive(Debug)]
pub struct Patch {
    /// From:, "Name <address>".
    pub author: String,
    /// The bracketed prefix without the numbers: "RFC PATCH".
    pub prefix: String,
    /// k of "k/N".
    pub number: usize,
    /// N of "k/N".
    pub count: usize,
    /// The subject after the prefix.
    pub subject: String,
    /// Per file, in the order the patch has them: lines added, lines removed, and the text of
    /// the lines added and removed (to refuse a series whose patches rewrite each other).
    pub files: Vec<FileChange>,
}

#[derive(Debug, Default)]
pub struct FileChange {
    pub path: String,
    /// "new file mode M" or "deleted file mode M": the mode, executable or not.
    pub created: Option<String>,
    pub deleted: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Patch {
    pub fn read(path: &Path) -> Result<Patch> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Patch::parse(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Patch> {
        let author = header(text, "From").context("no From: header")?;
        let subject = header(text, "Subject").context("no Subject: header")?;
        let (prefix, number, count, subject) = split_subject(&subject)?;
        Ok(Patch { author, prefix, number, count, subject, files: file_changes(text)? })
    }
}

/// "[RFC PATCH 1/2] mm: x" -> ("RFC PATCH", 1, 2, "mm: x").
pub fn split_subject(s: &str) -> Result<(String, usize, usize, String)> {
    let (tag, rest) = s
        .strip_prefix('[')
        .and_then(|s| s.split_once("] "))
        .with_context(|| format!("subject without a [PREFIX k/N] tag: {s}"))?;
    let (prefix, numbers) = tag.rsplit_once(' ').with_context(|| format!("no k/N in [{tag}]"))?;
    let (k, n) = numbers.split_once('/').with_context(|| format!("no k/N in [{tag}]"))?;
    Ok((prefix.to_owned(), k.parse()?, n.parse()?, rest.trim().to_owned()))
}

/// The lines each file's hunks add and remove, read by the hunks' own line counts (a removed
/// line that starts with "-- " is not mistaken for the mail's signature).
fn file_changes(text: &str) -> Result<Vec<FileChange>> {
    let mut files: Vec<FileChange> = Vec::new();
    let (mut old_left, mut new_left) = (0usize, 0usize);
    for line in text.lines() {
        if old_left > 0 || new_left > 0 {
            let f = files.last_mut().context("a hunk before any diff --git")?;
            match line.as_bytes().first() {
                Some(b'+') => {
                    f.added.push(line[1..].to_owned());
                    new_left -= 1;
                }
                Some(b'-') => {
                    f.removed.push(line[1..].to_owned());
                    old_left -= 1;
                }
                Some(b'\\') => {}
                _ => {
                    old_left = old_left.saturating_sub(1);
                    new_left = new_left.saturating_sub(1);
                }
            }
            continue;
        }
        if let Some(paths) = line.strip_prefix("diff --git ") {
            let b =
                paths.rsplit_once(" b/").map(|(_, b)| b).with_context(|| format!("odd diff line: {line}"))?;
            files.push(FileChange { path: b.to_owned(), ..Default::default() });
        } else if let Some(mode) = line.strip_prefix("new file mode ") {
            files.last_mut().context("new file mode before diff --git")?.created =
                Some(mode.trim().to_owned());
        } else if line.starts_with("deleted file mode ") {
            files.last_mut().context("deleted file mode before diff --git")?.deleted = true;
        } else if line.starts_with("rename from ")
            || line.starts_with("copy from ")
            || line.starts_with("GIT binary patch")
        {
            bail!("renames, copies and binary patches are not counted here: {line}");
        } else if let Some(h) = line.strip_prefix("@@ -") {
            let (old, rest) = h.split_once(" +").with_context(|| format!("odd hunk header: {line}"))?;
            let new = rest.split_once(" @@").with_context(|| format!("odd hunk header: {line}"))?.0;
            let len = |r: &str| r.split_once(',').map_or(Ok(1), |(_, n)| n.parse::<usize>());
            old_left = len(old)?;
            new_left = len(new)?;
        }
    }
    if files.is_empty() {
        bail!("no diff in the patch");
    }
    Ok(files)
}

/// The series in order, each checked against its place: k/N with N the series' length and
/// one prefix for all.
pub fn read_series(paths: &[PathBuf]) -> Result<Vec<Patch>> {
    let patches: Vec<Patch> = paths.iter().map(|p| Patch::read(p)).collect::<Result<_>>()?;
    for (i, p) in patches.iter().enumerate() {
        if p.number != i + 1 || p.count != patches.len() {
            bail!(
                "\"{}\" is numbered {}/{}, but it is patch {} of {}",
                p.subject,
                p.number,
                p.count,
                i + 1,
                patches.len()
            );
        }
        if p.prefix != patches[0].prefix {
            bail!("\"{}\" has the prefix [{}], patch 1 [{}]", p.subject, p.prefix, patches[0].prefix);
        }
    }
    Ok(patches)
}

/// What `git format-patch --cover-letter` writes between the blurb and the signature for
/// these patches: "AUTHOR (N):", the subjects, a blank line, the diffstat.
pub fn shortlog_and_diffstat(patches: &[Patch]) -> Result<String> {
    refuse_rewrites(patches)?;
    let dir = std::env::temp_dir().join(format!(
        "xtask-series-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = format_in(&dir, patches);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn format_in(dir: &Path, patches: &[Patch]) -> Result<String> {
    let git = |args: &[&str]| -> Result<String> {
        let o = Command::new("git")
            .args(args)
            .current_dir(dir)
            // Only git's defaults: no user or system configuration changes the layout.
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", dir)
            .env("GIT_COMMITTER_NAME", "xtask")
            .env("GIT_COMMITTER_EMAIL", "xtask@localhost")
            .output()
            .context("running git")?;
        if !o.status.success() {
            bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    git(&["init", "-q", "-b", "base"])?;
    // Each file holds, per patch, a block of distinct lines: the ones that patch removes
    // until it is applied, then as many new ones as it adds, so git counts exactly those.
    // A file exists from the patch that creates it until the one that deletes it.
    let paths: Vec<&str> = {
        let mut v: Vec<&str> = patches.iter().flat_map(|p| p.files.iter().map(|f| f.path.as_str())).collect();
        v.sort();
        v.dedup();
        v
    };
    let write_all = |done: usize| -> Result<()> {
        for path in &paths {
            let file = dir.join(path);
            let mut content = String::new();
            let mut exists = true;
            let mut executable = false;
            for (k, p) in patches.iter().enumerate() {
                for f in p.files.iter().filter(|f| f.path == *path) {
                    if let Some(mode) = &f.created {
                        exists = k < done;
                        executable = mode.ends_with("755");
                    }
                    if f.deleted && k < done {
                        exists = false;
                    }
                    let (n, what) = if k < done { (f.added.len(), "new") } else { (f.removed.len(), "old") };
                    for j in 0..n {
                        content += &format!("{path} {k} {what} {j}\n");
                    }
                }
            }
            let _ = std::fs::remove_file(&file);
            if exists {
                std::fs::create_dir_all(file.parent().unwrap())?;
                std::fs::write(&file, content)?;
                if executable {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
                }
            }
        }
        Ok(())
    };
    write_all(0)?;
    git(&["add", "-A"])?;
    git(&["-c", "user.name=base", "-c", "user.email=base@localhost", "commit", "-q", "-m", "base"])?;
    for (k, p) in patches.iter().enumerate() {
        write_all(k + 1)?;
        git(&["add", "-A"])?;
        git(&["commit", "-q", "--allow-empty", "--author", &p.author, "-m", &p.subject])?;
    }
    let letter = git(&["format-patch", "--cover-letter", "--stdout", &format!("HEAD~{}", patches.len())])?;
    let letter = letter.split("\nFrom ").next().unwrap_or("");
    let start = shortlog_start(letter).context("git's cover letter has no shortlog")?;
    let end = letter.find("\n-- \n").context("git's cover letter has no signature")?;
    Ok(letter[start..=end].to_owned())
}

/// The summed diffstat is git's only if no patch removes a line an earlier patch added.
fn refuse_rewrites(patches: &[Patch]) -> Result<()> {
    let mut added: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (k, p) in patches.iter().enumerate() {
        for f in &p.files {
            if let Some(line) = f.removed.iter().find(|l| added.contains_key(&(f.path.as_str(), l.as_str())))
            {
                let earlier = added[&(f.path.as_str(), line.as_str())];
                bail!(
                    "patch {} removes a line patch {earlier} added to {} ({line:?}): the letter's diffstat \
                     cannot be summed from the patches; write it with git format-patch --cover-letter \
                     in a kernel tree",
                    k + 1,
                    f.path
                );
            }
        }
        for f in &p.files {
            for l in f.added.iter().filter(|l| !l.trim().is_empty() && l.trim() != "}" && l.trim() != "{") {
                added.insert((f.path.as_str(), l.as_str()), k + 1);
            }
        }
    }
    Ok(())
}

/// What is wrong with the cover letter `letter` for the series `paths` (nothing: empty): its
/// subject is [PREFIX 0/N] with the patches' prefix and N, the prefix says RFC and no version
/// (none was posted before), its shortlog and diffstat are git's for the patches, and it
/// carries none of our internal targets.
pub fn letter_problems(letter: &str, paths: &[PathBuf]) -> Result<Vec<String>> {
    let patches = read_series(paths)?;
    let mut problems = Vec::new();
    let subject = header(letter, "Subject").context("the letter has no Subject:")?;
    let (prefix, k, n, _) = split_subject(&subject)?;
    if k != 0 || n != patches.len() {
        problems.push(format!("the letter is numbered {k}/{n}; the series has {} patches", patches.len()));
    }
    if prefix != patches[0].prefix {
        problems.push(format!("the letter's prefix [{prefix}] is not the patches' [{}]", patches[0].prefix));
    }
    if prefix != "RFC PATCH" {
        problems.push(format!(
            "[{prefix}]: the series goes out as [RFC PATCH k/N] (no earlier version was posted)"
        ));
    }
    let want = shortlog_and_diffstat(&patches)?;
    let have = shortlog_start(letter)
        .and_then(|i| letter[i..].find("\n-- \n").map(|j| &letter[i..=i + j]))
        .unwrap_or("");
    if have != want {
        problems.push(format!(
            "the shortlog and diffstat are not git format-patch's for patches/:\n--- letter\n{have}--- git\n{want}"
        ));
    }
    // The letter's mm-selftests line and the messages tell one story: no "fail: none" beside
    // a message that reports selftest failures.
    let letter_says_none = letter.contains("mm-selftests:") && {
        let i = letter.find("mm-selftests:").unwrap_or(0);
        letter[i..].split("\n- ").next().unwrap_or("").contains("fail: none")
    };
    for (path, p) in paths.iter().zip(&patches) {
        let text = std::fs::read_to_string(path)?;
        let message = text.split("\n---\n").next().unwrap_or("");
        let fails = message.split("\n\n").any(|para| {
            let para = para.to_lowercase();
            (para.contains("selftest") || para.contains("mremap_test")) && para.contains("fail")
        });
        if fails && letter_says_none {
            problems.push(format!(
                "patch {}'s message reports selftest failures, the letter's mm-selftests line \"fail: none\"",
                p.number
            ));
        }
    }
    for word in ["met", "NOT met"] {
        if letter.lines().any(|l| l.trim_end().ends_with(&format!(", {word}"))) {
            problems.push(format!("the letter names an internal target (\"{word}\")"));
        }
    }
    Ok(problems)
}

/// The value of `name:` in the mail header block (folded lines joined), if present.
pub fn header(text: &str, name: &str) -> Option<String> {
    let block = text.split("\n\n").next()?;
    let mut value: Option<String> = None;
    for line in block.lines() {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some(v) = line.strip_prefix(name).and_then(|r| r.strip_prefix(':')) {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

/// Where `git format-patch --cover-letter`'s shortlog starts: its "AUTHOR (N):" line.
pub fn shortlog_start(letter: &str) -> Option<usize> {
    let mut at = 0;
    for line in letter.split_inclusive('\n') {
        let l = line.trim_end();
        if let Some(n) = l.strip_suffix("):").and_then(|h| h.rsplit_once(" (")).map(|(_, n)| n) {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return Some(at);
            }
        }
        at += line.len();
    }
    None
}

#[cfg(test)]
mod tests;
