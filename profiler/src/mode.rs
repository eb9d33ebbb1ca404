//! How rmapprof observes the lock: the mode asked for (`--mode`), and the one a run used,
//! which the report records and the renderers read.

use serde::{Deserialize, Serialize};

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

/// The mode a run used: `auto` resolved to what the kernel allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    #[default]
    Tracepoint,
    Kprobe,
    Fentry,
}

impl RunMode {
    pub fn name(self) -> &'static str {
        match self {
            RunMode::Tracepoint => "tracepoint",
            RunMode::Kprobe => "kprobe",
            RunMode::Fentry => "fentry",
        }
    }

    /// The rwsem slowpaths and osq_lock were probed: spinning and slowpaths are observed.
    pub fn probed(self) -> bool {
        self != RunMode::Tracepoint
    }
}

impl std::fmt::Display for RunMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
