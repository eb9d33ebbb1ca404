//! `rmapprof serve`: profile until stopped and serve what was measured since the start, as
//! OpenMetrics text on `/metrics` (render/metrics.rs) and as a pprof profile on
//! `/debug/pprof/mutex` (render/pprof.rs), for Prometheus and continuous profilers.
//!
//! The daemon reads the kernel's maps at every `--refresh` and at a scrape (at most every
//! half second), draining them into its totals (collector/drain.rs), so the maps stay small and the
//! counters grow for the daemon's life. SIGTERM and SIGINT stop it (the final report and
//! profile go to `--output`); SIGHUP reopens `--log` (log rotation) and goes on.
//!
//! Whoever can connect reads the paths of the files measured: `--web.config.file` (TLS, basic
//! authentication) and `--path-labels` limit that, conn.rs bounds what a client can hold, and
//! once attached the daemon gives up every capability the refresh does not need
//! (privileges.rs).

mod conn;
mod http;
mod labels;
pub mod privileges;
mod series;
mod webconfig;

use anyhow::{Context, Result};
use std::{
    collections::HashSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    attribution::{files::FileIndex, symbols::KernelSymbols, FileId},
    cli::ServeArgs,
    collector::Collector,
    output::{now_nanos, OutputDir, PprofFile},
    preflight,
    render::{self, metrics::Exposition},
    report::{self, Report},
};

/// What the daemon keeps: the probes, the totals, and the last exposition it made.
pub struct Daemon {
    collector: Collector,
    series: series::Series,
    index: FileIndex,
    symbols: KernelSymbols,
    window: report::Window<'static>,
    last_refresh: Option<Instant>,
    /// Rows of the totals past which unpromoted files are folded (collector/drain.rs).
    max_rows: usize,
    pub exposition: Exposition,
}

impl Daemon {
    /// Reads and drains the maps, unless that was done `fresh` ago.
    pub fn refresh(&mut self, fresh: Duration) -> Result<()> {
        if self.last_refresh.is_some_and(|t| t.elapsed() < fresh) {
            return Ok(());
        }
        let at = Instant::now();
        let snap = self.collector.drain()?;
        self.index.scan_proc();
        self.index.name_unmapped(snap.files().map(FileId::from));
        let r = self.window.report(&snap, &self.index, &self.symbols, at);
        // Names of what is mapped now and of the files measured; nothing else, over days.
        let keep: HashSet<FileId> = snap.files().map(FileId::from).collect();
        self.index.retain(&keep);
        let (files, other) = self.series.update(&r);
        // After the update, so that a file promoted now is kept whole.
        let series = &self.series;
        self.collector.fold_unless(self.max_rows, |dev, ino| {
            series.is_promoted(&FileId { dev, ino }.dev_string(), ino)
        });
        let (drained_rows, folds) = self.collector.drained();
        self.exposition = Exposition {
            report: r,
            files,
            other,
            drained_rows,
            folds,
            refreshes: self.exposition.refreshes + 1,
        };
        self.last_refresh = Some(at);
        Ok(())
    }

    pub fn report(&self) -> &Report {
        &self.exposition.report
    }
}

pub type Shared = Arc<tokio::sync::Mutex<Daemon>>;

/// A scrape reads the maps again when the last read is older than this.
pub const SCRAPE_FRESH: Duration = Duration::from_millis(500);

pub async fn run(args: ServeArgs) -> Result<u8> {
    args.probes.check()?;
    check(&args)?;
    let web = args.web_config_file.as_deref().map(webconfig::WebConfig::load).transpose()?;
    let web = web.unwrap_or(webconfig::WebConfig { tls: None, auth: None });
    if !args.listen.ip().is_loopback() && web.auth.is_none() {
        say!(
            "rmapprof: warning: serving on {} without basic_auth_users (--web.config.file): whoever reaches it reads the paths of the files measured",
            args.listen
        );
    }
    let log = args.log.clone();
    if let Some(l) = &log {
        reopen_log(l)?;
    }
    preflight::check_caps()?;
    let out = args.output.as_deref().map(OutputDir::create).transpose()?;
    let pprof = args.pprof.as_deref().map(PprofFile::new).transpose()?;
    // Before attaching: an address in use is an error at once, not after loading the probes.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    say!("rmapprof: loading the probes (kernel BTF, eBPF verifier)...");
    // rmapprof's own BPF time is one of the daemon's metrics.
    let collector = Collector::start(&args.probes.config(None, true, false))?;
    let mode = collector.mode;
    let window = report::Window {
        mode,
        acquisitions: collector.acquisitions,
        probes: collector.probes.clone(),
        started: Instant::now(),
        cycles: None,
        command: None,
        pid: None,
        selected: &[],
    };
    let daemon = Daemon {
        collector,
        window,
        series: series::Series::new(args.top, args.max_files, args.path_labels),
        index: FileIndex::default(),
        symbols: KernelSymbols::load(),
        last_refresh: None,
        // Fault injection for the tests: fold at every refresh (RMAPPROF_FAULT_FOLD_ROWS=0).
        max_rows: std::env::var("RMAPPROF_FAULT_FOLD_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(crate::collector::MAX_ROWS),
        exposition: Exposition::default(),
    };
    let shared: Shared = Arc::new(tokio::sync::Mutex::new(daemon));
    shared.lock().await.refresh(Duration::ZERO)?;
    // The directories of --pprof and --log (reopened on SIGHUP), and --output.
    let dir_of = |p: &PathBuf| crate::output::split(p).map(|(d, _)| d.to_owned());
    let written: Vec<PathBuf> = args
        .output
        .iter()
        .cloned()
        .chain(args.pprof.iter().filter_map(dir_of))
        .chain(args.log.iter().filter_map(dir_of))
        .collect();
    privileges::keep_only(&privileges::kept(&written))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = conn::Server {
        app: http::router(shared.clone(), stop_rx.clone(), args.path_labels),
        limits: conn::Limits {
            header: args.header_timeout,
            idle: args.idle_timeout,
            max_connections: args.max_connections,
        },
        tls: web.tls,
        auth: web.auth,
    };
    let scheme = if server.tls.is_some() { "https" } else { "http" };
    let server = tokio::spawn(conn::serve(listener, server, stop_rx));
    say!(
        "rmapprof: serving i_mmap_rwsem contention ({} mode) on {scheme}://{}/metrics and /debug/pprof/mutex",
        mode.name(),
        args.listen
    );
    let mut ticks = tokio::time::interval(args.refresh);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if let Some(l) = &log {
                    match reopen_log(l) {
                        Ok(()) => say!("rmapprof: SIGHUP: reopened {}", l.display()),
                        // The old descriptor stays: messages still go somewhere.
                        Err(e) => say!("rmapprof: SIGHUP: {e:#}"),
                    }
                }
            }
            _ = ticks.tick() => {
                let mut d = shared.lock().await;
                // An error reading the maps is said and the daemon goes on: the next refresh
                // may work, and the counters keep what they had.
                if let Err(e) = d.refresh(Duration::ZERO) {
                    say!("rmapprof: reading the maps: {e:#}");
                    continue;
                }
                if let Some(p) = &pprof {
                    if let Err(e) = p.write(&args.path_labels.apply(d.report().clone())) {
                        say!("rmapprof: {e:#}");
                    }
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    let mut d = shared.lock().await;
    d.refresh(Duration::ZERO)?;
    // The final report names files with the kernel's symbols as a run's report does.
    let pprof_written = match &pprof {
        Some(p) => Some(p.write(&args.path_labels.apply(d.report().clone()))?),
        None => None,
    };
    // The line says what was written: every file of the lists, never a list of its own.
    let mut wrote = Vec::new();
    if let Some(out) = &out {
        let report = d.report().clone();
        let mut files = render::outputs(&report)?;
        files.push(("profile.pb.gz".to_owned(), render::pprof::profile(&report, now_nanos())));
        out.write_all(&files)?;
        wrote.push(out.listing(files.iter().map(|(name, _)| name.as_str())));
    }
    wrote.extend(pprof_written.map(|p| p.display().to_string()));
    if !wrote.is_empty() {
        say!("rmapprof: wrote {}", wrote.join(" and "));
    }
    say!("rmapprof: stopped");
    Ok(0)
}

/// The arguments clap cannot check alone.
fn check(args: &ServeArgs) -> Result<()> {
    use crate::errors::usage;
    if args.top == 0 {
        return Err(usage("--top must be at least 1"));
    }
    if args.max_files == 0 {
        return Err(usage("--max-files must be at least 1"));
    }
    if args.top > args.max_files {
        return Err(usage(format!(
            "--top {} is above --max-files {}: at most --max-files files ever get a series",
            args.top, args.max_files
        )));
    }
    if args.max_connections == 0 {
        return Err(usage("--max-connections must be at least 1"));
    }
    Ok(())
}

/// Points stderr at `path` (appending), so every message goes there; called again on SIGHUP
/// after the log was rotated. Opened as root in a directory another user may own: never
/// through a link at its name (output/mod.rs).
fn reopen_log(path: &std::path::Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = crate::output::open_log(path).with_context(|| format!("--log {}", path.display()))?;
    // SAFETY: dup2 onto fd 2 of a descriptor we own; both stay valid (f closes its own).
    if unsafe { libc::dup2(f.as_raw_fd(), 2) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("--log {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use std::collections::BTreeSet;

    /// The systemd unit in the repository starts a daemon with arguments rmapprof accepts,
    /// listening on loopback.
    #[test]
    fn the_systemd_unit_runs_a_valid_serve_command() {
        let unit = include_str!("../../../systemd/rmapprof.service");
        let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
        let cli = crate::cli::Cli::try_parse_from(exec.split_whitespace()).expect("ExecStart parses");
        let Some(crate::cli::Sub::Serve(args)) = cli.sub else { panic!("not rmapprof serve: {exec}") };
        assert!(args.listen.ip().is_loopback(), "{exec}");
        assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID") && unit.contains("KillSignal=SIGTERM"));
        // The unit bounds the daemon to what it needs to attach and what it keeps after.
        let bounding: BTreeSet<String> = unit
            .lines()
            .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
            .expect("CapabilityBoundingSet")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let needed: BTreeSet<String> = super::privileges::TO_ATTACH
            .iter()
            .chain(&super::privileges::KEPT)
            .map(|c| c.to_string())
            .collect();
        assert_eq!(bounding, needed);
        assert!(unit.lines().any(|l| l == "NoNewPrivileges=yes"));
    }

    /// `--max-files` is a hard cap: `--top` above it, and 0 of either, are refused.
    #[test]
    fn top_and_max_files_are_checked() {
        let parse = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(["rmapprof", "serve"].iter().chain(args)).unwrap();
            let Some(crate::cli::Sub::Serve(a)) = cli.sub else { panic!() };
            super::check(&a).map_err(|e| (crate::errors::exit_status(&e), e.to_string()))
        };
        assert!(parse(&[]).is_ok() && parse(&["--top", "5", "--max-files", "5"]).is_ok());
        for (args, says) in [
            (&["--max-files", "2", "--top", "5"][..], "--top 5 is above --max-files 2"),
            (&["--max-files", "0"], "--max-files must be at least 1"),
            (&["--top", "0"], "--top must be at least 1"),
            (&["--max-connections", "0"], "--max-connections must be at least 1"),
        ] {
            let (code, e) = parse(args).unwrap_err();
            assert_eq!(code, 2, "{args:?}");
            assert!(e.starts_with(says), "{args:?}: {e}");
        }
    }
}
