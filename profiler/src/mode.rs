//! How rmapprof observes the lock: the mode asked for (`--mode`), and the one a run used,
//! which the report records and the renderers read (rmapprof-report's `RunMode`).

/// The mode asked for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// fentry/fexit if the kernel allows, else kprobe, else tracepoint.
    Auto,
    /// lock:contention_begin/end: sleeping waits only; optimistic spinning is invisible.
    Tracepoint,
    /// kprobes and kretprobes on the rwsem slowpaths and osq_lock: optimistic spinning too;
    /// with --acquisitions also kprobes on down_*/up_* and the rmap tree.
    Kprobe,
    /// fentry (and fexit where kprobe mode has a kretprobe) on the same functions.
    Fentry,
}

pub use rmapprof_report::RunMode;
