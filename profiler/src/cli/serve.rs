//! `rmapprof serve`'s options (the daemon itself is serve/).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{parse_duration, ProbeArgs};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to serve /metrics and /debug/pprof/mutex on, IP:PORT. The default is loopback
    /// only: the paths of the files processes map are information a host may not want to
    /// publish; give another address to serve beyond this host (with --web.config.file).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9772", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// TLS and basic authentication, as node_exporter's --web.config.file (the Prometheus
    /// exporter-toolkit's YAML: tls_server_config: {cert_file, key_file}, basic_auth_users:
    /// {USER: BCRYPT-HASH}).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// How much of a file's path /metrics labels, the served pprof and the --pprof file show:
    /// the full path, the file name alone, or none (the file is then [dev MAJOR:MINOR ino INO]).
    /// The --output report, written when the daemon stops, keeps full paths.
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = PathLabels::Full)]
    pub path_labels: PathLabels,
    /// A request's headers must arrive within DUR of its first byte.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A connection waiting for a request (its first, or its next) is closed after DUR.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// At most N connections are open; one more closes the oldest idle or half-sent one.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Files promoted to a series of their own at each refresh: the N most waited on.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// At most this many files ever get a series of their own (at least --top); the rest
    /// are path="[other]".
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_files: usize,
    /// How often the kernel's maps are read and drained (also at each scrape).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub refresh: Duration,
    /// Write the profile since the start to FILE (pprof, gzipped) at every refresh, whole
    /// (temporary name, then rename).
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,
    /// When stopped, write report.txt, report.json, stacks.folded, flamegraph.svg and
    /// profile.pb.gz of the whole run to DIR.
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Append messages to FILE instead of stderr; SIGHUP reopens it (after log rotation).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an address to listen on; give IP:PORT, such as 127.0.0.1:9772"))
}

/// `--path-labels`: how much of a file's path the daemon serves (serve/labels.rs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PathLabels {
    /// The whole path.
    #[default]
    Full,
    /// The file name alone, without its directories.
    Basename,
    /// No path: the file is `[dev MAJOR:MINOR ino INO]`.
    None,
}
