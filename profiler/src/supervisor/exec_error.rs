//! What a shell says when COMMAND cannot be started, and the status it exits with: a missing
//! program (127), a script whose interpreter is missing (127, as bash 5.2 exits), a directory
//! or a file without execute permission (126).

use std::{
    io::Read,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use crate::errors::Exit;

/// The exit status and message for `prog` failing to execute with `e`.
pub fn describe(prog: &str, e: &std::io::Error) -> Exit {
    let found = resolve(prog);
    match e.raw_os_error() {
        Some(libc::ENOENT) => match found.as_deref().and_then(interpreter) {
            Some(interp) => Exit(127, format!("{prog}: bad interpreter {interp}: No such file or directory")),
            None if found.as_deref().is_some_and(Path::is_file) => {
                Exit(127, format!("{prog}: cannot execute: required file not found"))
            }
            None if prog.contains('/') => Exit(127, format!("{prog}: No such file or directory")),
            None => Exit(127, format!("{prog}: command not found")),
        },
        Some(libc::EACCES) if found.as_deref().is_some_and(Path::is_dir) => {
            Exit(126, format!("{prog}: is a directory"))
        }
        Some(libc::EACCES) => Exit(126, format!("{prog}: permission denied")),
        _ => Exit(126, format!("{prog}: {e}")),
    }
}

/// The file `prog` names as execvp(3) finds it: the path itself when it has a `/`, else the
/// first entry of `$PATH` that exists.
pub fn resolve(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return p.symlink_metadata().is_ok().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| p.exists())
}

/// The interpreter a `#!` line names, if `file` is a regular file that starts with one. The
/// file is opened for reading only, non-blocking (a FIFO named as COMMAND does not hang us),
/// and only its first line is read; what is read goes to the user's own stderr.
fn interpreter(file: &Path) -> Option<String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = [0u8; 256];
    let n = f.take(256).read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let interp = String::from_utf8_lossy(line).split_whitespace().next()?.to_owned();
    Some(interp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_a_shell_says() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("bad");
        std::fs::write(&script, "#!/nonexistent -x\necho hi\n").unwrap();
        let s = script.to_str().unwrap();
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        let eacces = std::io::Error::from_raw_os_error(libc::EACCES);
        let e = describe(s, &enoent);
        assert_eq!(
            (e.0, e.1),
            (127, format!("{s}: bad interpreter /nonexistent: No such file or directory"))
        );
        let e = describe(dir.path().to_str().unwrap(), &eacces);
        assert_eq!(e.0, 126);
        assert!(e.1.ends_with(": is a directory"), "{}", e.1);
        let e = describe("no-such-command-rmapprof", &enoent);
        assert_eq!((e.0, e.1.as_str()), (127, "no-such-command-rmapprof: command not found"));
        assert_eq!(resolve("sh").map(|p| p.is_file()), Some(true));
    }
}
