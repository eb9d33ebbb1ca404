//! Command line, in the shape of perf and bpftrace tools: options, then `-- COMMAND ARGS...`.

use clap::{Parser, Subcommand};
use std::{path::PathBuf, time::Duration};

use crate::mode::Mode;

mod serve;
pub use serve::{PathLabels, ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "rmapprof",
    version = crate::build_info::SHORT,
    long_version = crate::build_info::LONG,
    about = "Per-file i_mmap_rwsem (file reverse-map lock) contention profiler",
    long_about = "Profiles the running kernel for contention on address_space->i_mmap_rwsem, \
        attributes every wait to the file (inode and path), kernel call path and the holder of \
        the lock, and writes report.txt, report.json, stacks.folded, flamegraph.svg, \
        holders.folded and holders.svg (and a pprof profile with --pprof). `rmapprof serve` \
        serves the same as OpenMetrics (/metrics) and pprof (/debug/pprof/mutex). Without \
        COMMAND it profiles the whole system until --duration or Ctrl-C; with COMMAND it \
        profiles the whole system while COMMAND runs and exits with COMMAND's status (124 when \
        --duration ends it first, as timeout(1)).",
    after_help = "Examples:\n  sudo rmapprof --inode libc.so.6 -- ./spawn 2000 -j 8\n  \
        sudo rmapprof --acquisitions --inode libc.so.6 -- ./spawn 1000\n  \
        sudo rmapprof --duration 10s --interval 1s\n  sudo rmapprof serve --listen 127.0.0.1:9772\n  sudo rmapprof -p \"$(pidof -s postgres)\" -d 30s --inode libc.so.6\n  \
        rmapprof diff base/report.json patched/report.json",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub sub: Option<Sub>,

    /// Report only this file: a path, or a bare name such as libc.so.6 looked up among the files
    /// processes map and the standard library directories. Repeatable. Default: every file.
    #[arg(long = "inode", value_name = "FILE")]
    pub inodes: Vec<String>,

    /// Count only the waits of this process's own threads (not its children: profile a
    /// process tree as COMMAND). Stops when it exits.
    #[arg(short = 'p', long = "pid", value_name = "PID", conflicts_with = "command")]
    pub pid: Option<u32>,

    /// Profile for this long (10s, 500ms, 2m; a bare number is seconds; at most 365 days). A
    /// COMMAND still running then is ended as timeout(1) ends it: SIGTERM to its process
    /// group, 2 s, then SIGKILL; rmapprof then exits with 124.
    #[arg(short = 'd', long, value_name = "DUR", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Print the per-file table of each such period while running, stamped with its offsets
    /// from the start; the last, partial period before the final report.
    #[arg(short = 'i', long, value_name = "DUR", value_parser = parse_duration)]
    pub interval: Option<Duration>,

    /// Workload cycles the run covers, for per-cycle numbers. Default: the COUNT argument of a
    /// bundled workload (spawn, execl, shellscript, mmap-churn) run as COMMAND.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub cycles: Option<u64>,

    /// Directory for report.txt, report.json, stacks.folded, flamegraph.svg.
    #[arg(short = 'o', long, value_name = "DIR", default_value = "rmapprof-out")]
    pub output: PathBuf,

    #[command(flatten)]
    pub probes: ProbeArgs,

    /// Also measure rmapprof's own cost: the kernel's BPF run-time statistics (runs and ns of
    /// each of our programs) while profiling. Adds two clock reads per program run.
    #[arg(long)]
    pub bpf_stats: bool,
    /// Also count each file's waits per waiting task (comm, pid, tid), as `perf lock
    /// contention -t` does per lock: printed with the summary, in report.txt and in
    /// report.json's `tasks`. A row per task in the kernel, which fork-heavy work fills.
    #[arg(long)]
    pub by_task: bool,

    /// Also write the wait stacks as a pprof profile (gzipped profile.proto) to FILE, for
    /// `go tool pprof`, Pyroscope or Parca: samples are waits and ns waited per file and call
    /// path, the file the root frame.
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,

    /// Command to run and profile (as the invoking user under sudo), in a cgroup of its own
    /// (else its process group) that rmapprof never leaves running: a signal ending the run is
    /// passed on to it, 2 s later (or at a second signal) it is killed; processes of it left
    /// when COMMAND exits, `setsid` ones included, are ended so too.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl Cli {
    /// --cycles, or COUNT when COMMAND is one of the bundled workloads (`spawn 1000 -j 4`).
    pub fn cycles(&self) -> Option<u64> {
        if self.cycles.is_some() {
            return self.cycles;
        }
        let (prog, args) = self.command.split_first()?;
        let name = std::path::Path::new(prog).file_name()?.to_str()?;
        if !["spawn", "execl", "shellscript", "mmap-churn"].contains(&name) {
            return None;
        }
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-j" {
                it.next();
            } else if let Ok(n) = a.parse() {
                return Some(n);
            }
        }
        None
    }
}

/// How the kernel is probed: the options `rmapprof` and `rmapprof serve` share.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// How to observe the lock.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,

    /// kprobe/fentry modes: also count every i_mmap_rwsem acquisition (write and read), time
    /// its hold, and count the rmap tree operations inside it, per file and call path. This
    /// probes down_*/up_* of every rwsem in the kernel, which slows fork/exec-heavy work
    /// measurably (docs/performance.md); the counts are exact regardless, the wait times are
    /// the ones to take from a run without it.
    #[arg(long)]
    pub acquisitions: bool,

    /// Also take the stack of the task holding a file's i_mmap_rwsem, when its release wakes
    /// a sleeping waiter (sched:sched_waking, every mode): the holder's path, or the last
    /// reader's, in `holders` and holders.svg. Costs an unwind per woken waiter and a check
    /// per wakeup in the system while one waits. Waiters that only spin (kprobe/fentry
    /// modes) are never woken: their holders' stacks need --acquisitions.
    #[arg(long)]
    pub holder_stacks: bool,

    /// Kernel BTF to read struct layouts from.
    #[arg(long, value_name = "FILE", default_value = "/sys/kernel/btf/vmlinux")]
    pub btf: PathBuf,
    /// Kernel frames kept per stack (as perf's --max-stack). Unwinding is most of what an
    /// acquisition costs in kprobe/fentry modes; the caller class needs the few innermost
    /// frames, the flame graphs the rest.
    #[arg(long, value_name = "N", default_value_t = profiler_common::STACK_DEPTH as u32,
          value_parser = clap::value_parser!(u32).range(1..=profiler_common::STACK_DEPTH as i64))]
    pub max_stack: u32,
    /// kprobe and fentry modes unwind the kernel stack once per call site of the rwsem
    /// slowpaths (and with --acquisitions of down_write/down_read and the rmap tree
    /// operations) and reuse it; the first reuses and every Nth after are unwound again to
    /// check it. A site caught with two call paths is split by the stack word where they part
    /// (then a second word, then a hash of the stack above); only a hash row caught again is
    /// unwound every time. Counted in the report. 1 checks every reuse; 0 turns the cache
    /// off: one unwind per acquisition.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub stack_cache_check: u64,
}

impl ProbeArgs {
    /// The combinations the kernel can never give, as a usage error.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.acquisitions && self.mode == Mode::Tracepoint {
            return Err(crate::errors::usage(
                "--acquisitions needs kprobe or fentry mode; the lock tracepoints see only waits",
            ));
        }
        Ok(())
    }

    /// The collector's configuration with these options.
    pub fn config(&self, tgid: Option<u32>, bpf_stats: bool, by_task: bool) -> crate::collector::Config<'_> {
        crate::collector::Config {
            mode: self.mode,
            btf: &self.btf,
            tgid,
            stacks: crate::collector::StackOptions {
                max_stack: self.max_stack,
                cache_check: self.stack_cache_check,
            },
            bpf_stats,
            acquisitions: self.acquisitions,
            holder_stacks: self.holder_stacks,
            by_task,
            text_range: crate::attribution::symbols::KernelSymbols::text_range(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Compare two reports (say, base and patched kernel): an 80-column delta table on stdout
    /// and in DIR/diff.txt, and a differential flame graph in DIR/diff-flamegraph.svg.
    Diff {
        before: PathBuf,
        after: PathBuf,
        #[arg(short = 'o', long, value_name = "DIR", default_value = "rmapprof-diff")]
        output: PathBuf,
    },
    /// Run as a daemon until stopped, serving OpenMetrics on /metrics and the wait stacks as
    /// pprof on /debug/pprof/mutex (127.0.0.1 unless --listen says otherwise).
    Serve(ServeArgs),
    /// Estimate the throughput ceiling that i_mmap_rwsem write holds put on the profiled
    /// workload at other CPU counts; two reports (before, after a patch) side by side.
    Model {
        #[arg(required = true, num_args = 1..=2, value_name = "REPORT.json")]
        reports: Vec<PathBuf>,
        #[arg(long, value_name = "N,N,...", default_value = "64,128,384", value_parser = parse_cpus)]
        cpus: std::vec::Vec<u32>,
        /// Cost of moving the lock to its next owner, per write acquisition (a cache-line
        /// transfer between sockets is ~100 ns); 0 models hold times alone.
        #[arg(long, value_name = "NS", default_value_t = 100.0)]
        handoff_ns: f64,
    },
    /// Write the man pages and shell completions into DIR, which must not exist (for
    /// `cargo xtask dist`).
    #[command(hide = true)]
    DistAssets { dir: PathBuf },
}

/// The longest --duration or --interval: a year. Long enough for any profiling run, and far
/// from where adding it to a clock reading overflows (which panics).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `10s`, `500ms`, `1m30s`, or a bare number of seconds (`2.5`). Zero and more than
/// [`MAX_DURATION`] are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Duration::try_from_secs_f64(secs).map_err(|_| too_long(s))?
        }
        Ok(_) => return Err(format!("'{s}' is not a duration")),
        Err(_) => humantime::parse_duration(s.trim()).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => too_long(s),
            e => format!("'{s}' is not a duration ({e}); try 10s, 500ms, 2m"),
        })?,
    };
    if d.is_zero() {
        return Err("duration must be greater than 0".into());
    }
    if d > MAX_DURATION {
        return Err(too_long(s));
    }
    Ok(d)
}

fn too_long(s: &str) -> String {
    format!("'{s}' is longer than the longest duration accepted, 365 days")
}

/// `--cpus 64,128,384`: CPU counts, each above 0.
pub fn parse_cpus(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(|x| {
            x.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| format!("'{x}' is not a CPU count"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "0", "0s", "-1", "abc", "NaN", "inf", "1e99", "10 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        // Out of range, bare or with a unit: refused, never a panic later (Instant + d).
        assert_eq!(parse_duration("365days"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("31536000"), Ok(MAX_DURATION));
        for long in ["18446744073709551615s", "18446744073709551615", "1e18", "366days", "31536001", "2y"] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("longest duration accepted, 365 days"), "{long}: {e}");
        }
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("64,128, 384"), Ok(vec![64, 128, 384]));
        assert!(parse_cpus("64,x").is_err() && parse_cpus("0").is_err());
    }

    /// `rmapprof` and `rmapprof serve` take the same probe options, parsed the same way.
    #[test]
    fn both_commands_take_the_probe_options() {
        let probe = ["--mode", "kprobe", "--acquisitions", "--holder-stacks", "--max-stack", "8"];
        let c = Cli::try_parse_from(["rmapprof"].into_iter().chain(probe)).unwrap();
        let Some(Sub::Serve(s)) =
            Cli::try_parse_from(["rmapprof", "serve"].into_iter().chain(probe)).unwrap().sub
        else {
            panic!("serve")
        };
        for p in [&c.probes, &s.probes] {
            assert_eq!((p.mode, p.acquisitions, p.holder_stacks, p.max_stack), (Mode::Kprobe, true, true, 8));
        }
        assert!(Cli::try_parse_from(["rmapprof", "serve", "--max-stack", "0"]).is_err());
    }

    #[test]
    fn command_after_double_dash() {
        let c =
            Cli::try_parse_from(["rmapprof", "--inode", "libc.so.6", "--", "sh", "-c", "true --x"]).unwrap();
        assert_eq!(c.inodes, ["libc.so.6"]);
        assert_eq!(c.command, ["sh", "-c", "true --x"]);
        assert_eq!(c.probes.mode, Mode::Auto);
        assert!(Cli::try_parse_from(["rmapprof", "-p", "1", "--", "true"]).is_err());
        assert!(Cli::try_parse_from(["rmapprof", "--mode", "magic"]).is_err());
        assert!(Cli::try_parse_from(["rmapprof", "--cycles", "0"]).is_err());
        let d = Cli::try_parse_from(["rmapprof", "diff", "a.json", "b.json"]).unwrap();
        assert!(matches!(d.sub, Some(Sub::Diff { .. })));
        // A command named diff is still a command after --.
        let c = Cli::try_parse_from(["rmapprof", "--", "diff", "a", "b"]).unwrap();
        assert!(c.sub.is_none() && c.command == ["diff", "a", "b"]);
        assert!(Cli::try_parse_from(["rmapprof", "--inode", "x", "diff", "a", "b"]).is_err());
    }

    #[test]
    fn cycles_from_bundled_workloads() {
        let c = |args: &[&str]| Cli::try_parse_from(["rmapprof"].iter().chain(args)).unwrap().cycles();
        assert_eq!(c(&["--", "./target/release/spawn", "-j", "4", "100"]), Some(100));
        assert_eq!(c(&["--", "execl", "250"]), Some(250));
        assert_eq!(c(&["--", "mmap-churn", "/tmp/f", "1000", "-j", "8"]), Some(1000));
        assert_eq!(c(&["--", "sh", "-c", "100"]), None);
        assert_eq!(c(&["--cycles", "7", "--", "sh"]), Some(7));
        assert_eq!(c(&[]), None);
    }
}
