//! stdout and stderr that may go away mid-run: a pipe whose reader exits (`| head -1`), or a
//! closed descriptor. Rust's print macros panic then ("failed printing to stdout"), which
//! would end the run without its output files. Here the first failed write turns that stream
//! off and the run goes on: profiling, writing the files and the exit status are unaffected,
//! as other command-line tools behave on EPIPE.

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `s` to stdout, unless an earlier write failed.
pub fn out(s: &str) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        // A reader that went away, or no stdout at all, is the user's choice; anything else
        // (a full disk under `> file`) is worth the one line.
        let quiet = matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::EBADF));
        if !quiet {
            err(&format!(
                "rmapprof: stdout: {e}; printing no more there (the output files are still written)\n"
            ));
        }
    }
}

/// Writes `s` to stderr, unless an earlier write failed (then there is nowhere to say so).
pub fn err(s: &str) {
    if STDERR_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut e = std::io::stderr().lock();
    if e.write_all(s.as_bytes()).and_then(|()| e.flush()).is_err() {
        STDERR_GONE.store(true, Ordering::Relaxed);
    }
}

/// `eprintln!` that never panics: one line to stderr through [`err`]. The line is escaped
/// (`render::escape`): a newline in a path or a command argument must not split it.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::err(&format!("{}\n", $crate::render::escape(&format!($($arg)*))))
    };
}

/// `print!` that never panics: to stdout through [`out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::console::out(&format!($($arg)*))
    };
}
