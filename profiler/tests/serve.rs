//! `rmapprof serve` with the real systems that read it: Debian's Prometheus scraping the
//! daemon, and Go's `go tool pprof` reading the profiles rmapprof writes. `cargo xtask test`
//! installs both (apt: prometheus, golang-go). Every assertion is about this test's own
//! files, so another rmapprof or workload on the host changes nothing.

mod common;

use common::*;
use rmapprof_report::Report;
use serde_json::Value;
use std::{
    io::{BufRead, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A port nothing listens on now (the kernel's pick for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn need(cmd: &str, package: &str) {
    let ok = Command::new("sh").args(["-c", &format!("command -v {cmd}")]).stdout(Stdio::null()).status();
    assert!(ok.is_ok_and(|s| s.success()), "{cmd} not found: `cargo xtask test` installs Debian's {package}");
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// `rmapprof serve` in the background, killed if the test fails.
struct Daemon {
    child: Child,
    addr: String,
    out: tempfile::TempDir,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, &[])
    }

    fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let out = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let (child, err) = spawn_until(
            rmapprof()
                .args(["serve", "--listen", &addr, "--output"])
                .arg(out.path())
                .args(extra)
                .envs(env.iter().copied()),
            "rmapprof: serving",
        );
        let (tx, stderr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Self { child, addr, out, stderr }
    }

    fn get(&self, path: &str) -> ureq::Response {
        ureq::get(&format!("http://{}{path}", self.addr)).timeout(Duration::from_secs(30)).call().unwrap()
    }

    fn metrics(&self) -> String {
        self.get("/metrics").into_string().unwrap()
    }

    /// SIGTERM: it must exit 0 and leave report.json; returns it (typed) and what it said.
    fn stop(mut self) -> (Report, Vec<String>, tempfile::TempDir) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().unwrap();
        let said: Vec<String> = self.stderr.try_iter().collect();
        assert_eq!(st.code(), Some(0), "{said:?}");
        let out = std::mem::replace(&mut self.out, tempfile::tempdir().unwrap());
        let report = read_report(&out.path().join("report.json"));
        (report, said, out)
    }
}

/// A sample's value in OpenMetrics text: the line that starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn waits_series(path: &Path) -> String {
    format!("rmapprof_file_waits_total{{path=\"{}\"", path.display())
}

/// Churns `hot` until the daemon has seen a wait on it (contention is a matter of chance).
fn churn_until_seen(d: &Daemon, hot: &MappedFile) {
    for _ in 0..40 {
        hot.churn(1);
        let m = d.metrics();
        let prefix = waits_series(&hot.path);
        if m.lines().any(|l| l.starts_with(&prefix) && !l.ends_with(" 0")) {
            return;
        }
    }
    panic!("no i_mmap_rwsem wait seen on {} after 40 rounds of churn", hot.path.display());
}

/// Prometheus on its own port and data directory, stopped (killed) at the end either way.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Self {
        need("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: rmapprof\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        let p = Self { child, url: format!("http://{listen}"), _dir: dir };
        p.wait_for("Prometheus scraping rmapprof", |p| {
            let r = p.query("up{job=\"rmapprof\"}", None);
            r.first().is_some_and(|s| s["value"][1] == "1")
        });
        p
    }

    /// The instant vector of `q` (at `time`, default now), from the HTTP query API.
    fn query(&self, q: &str, time: Option<f64>) -> Vec<Value> {
        let mut req = ureq::get(&format!("{}/api/v1/query", self.url)).query("query", q);
        if let Some(t) = time {
            req = req.query("time", &format!("{t:.3}"));
        }
        let Ok(resp) = req.timeout(Duration::from_secs(10)).call() else { return Vec::new() };
        let v: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            assert!(start.elapsed() < Duration::from_secs(90), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn value(s: &Value) -> f64 {
    s["value"][1].as_str().unwrap().parse().unwrap()
}

/// `lost[cause]` of a report: a cause the report lacks fails the test.
fn report_lost(r: &Report, cause: &str) -> u64 {
    *r.lost.get(cause).unwrap_or_else(|| panic!("{cause} missing in {:?}", r.lost))
}

/// `go tool pprof -top -cum` of a profile, by sample index: (total, cum of each node).
fn go_pprof_top(profile: &Path, index: &str) -> (u64, Vec<(u64, String)>) {
    need("go", "golang-go");
    let home = tempfile::tempdir().unwrap();
    let o = Command::new("go")
        .args(["tool", "pprof", "-top", "-cum", "-nodecount=100000", "-nodefraction=0", "-unit=ns"])
        .arg(format!("-sample_index={index}"))
        .arg(profile)
        .env("HOME", home.path())
        .env("GOCACHE", home.path().join("cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "go tool pprof: {}{text}", String::from_utf8_lossy(&o.stderr));
    let num = |s: &str| s.trim_end_matches("ns").parse::<u64>().unwrap_or_else(|_| panic!("{s} in {text}"));
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Showing nodes accounting for ")?.split(" of ").nth(1)?.strip_suffix(" total")
        })
        .map(num)
        .unwrap_or_else(|| panic!("no total in {text}"));
    let rows = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 6).then(|| (num(w[3]), w[5..].join(" ")))
        })
        .collect();
    (total, rows)
}

/// The root-frame node of `path` in go tool pprof's table: its cumulative value.
fn root_cum(rows: &[(u64, String)], path: &Path) -> Option<u64> {
    let name = format!("i_mmap_rwsem {}", path.display());
    rows.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// Prometheus scrapes the daemon while this test churns one file: through Prometheus's own
/// query API the churned file's wait counter rose (from no series at all) to what the
/// daemon's report.json says, and a file mapped but never churned has no series; the
/// daemon's pprof, read by `go tool pprof`, has the same waits under that file's root frame,
/// in its final profile.pb.gz and from /debug/pprof/mutex, and none in a one-second delta
/// profile taken after the churn.
#[test]
fn prometheus_sees_the_waits_report_json_counts() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "prom-hot.dat");
    let cold = MappedFile::new(dir.path(), "prom-cold.dat");
    let d = Daemon::start(&["--refresh", "1s"]);
    let prom = Prometheus::start(&d.addr);
    let before = now();
    churn_until_seen(&d, &hot);
    let churned = now();
    // A scrape that began after the churn ended (a scrape reads the maps again when the last
    // read is over half a second old) holds every wait.
    let q = format!("rmapprof_file_waits_total{{path=\"{}\"}}", hot.path.display());
    prom.wait_for("a scrape after the churn", |p| {
        p.query(&q, None).first().is_some_and(|s| s["value"][0].as_f64().unwrap() > churned + 1.0)
    });
    // rate() in README's query needs two samples of the series in its window.
    let samples =
        format!("count_over_time(rmapprof_file_wait_seconds_total{{path=\"{}\"}}[1h])", hot.path.display());
    prom.wait_for("two samples of the file's series", |p| {
        p.query(&samples, None)
            .first()
            .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            >= 2.0
    });
    let at = now();
    let waits = prom.query(&q, Some(at));
    let seconds =
        prom.query(&format!("rmapprof_file_wait_seconds_total{{path=\"{}\"}}", hot.path.display()), Some(at));
    let before_churn = prom.query(&q, Some(before));
    // The endpoint: cumulative, and a delta over one second after the churn (no waits there).
    let fetch = |query: &str, name: &str| {
        let mut body = Vec::new();
        d.get(&format!("/debug/pprof/mutex{query}")).into_reader().read_to_end(&mut body).unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let (cumulative, delta) = (fetch("", "cumulative.pb.gz"), fetch("?seconds=1", "delta.pb.gz"));
    let cold_series = prom.query(&format!("{{path=\"{}\"}}", cold.path.display()), Some(at));
    // README's query for the worst file runs as written and names a file with waits.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let worst =
        readme.split("```promql\n").nth(1).and_then(|s| s.split("\n```").next()).expect("README query");
    let top = prom.query(worst, Some(at));
    assert!(!top.is_empty() && top.iter().all(|s| s["metric"]["path"].is_string()), "{worst}: {top:?}");
    let (report, _, out) = d.stop();
    drop(prom);

    let f = file_entry(&report, hot.ino()).expect("churned file in report.json");
    let n = f.contentions;
    assert!(n > 0);
    eprintln!("prometheus: {waits:?} {seconds:?}; report.json: {n} waits, {} ns", f.wait_ns_total);
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(
        waits[0]["metric"]["inode"].as_str().unwrap().rsplit(':').next(),
        Some(&*hot.ino().to_string())
    );
    assert_eq!(value(&waits[0]) as u64, n, "Prometheus's waits against report.json's");
    let ns = f.wait_ns_total as f64 / 1e9;
    assert!((value(&seconds[0]) - ns).abs() <= ns * 1e-9, "{} s against {ns} s", value(&seconds[0]));
    assert!(before_churn.is_empty(), "no series before the churn: {before_churn:?}");
    assert!(cold_series.is_empty(), "the untouched file has no series: {cold_series:?}");

    // The daemon's final profile, read by Go's pprof: the file's root frame holds its waits.
    let profile = out.path().join("profile.pb.gz");
    let (_, rows) = go_pprof_top(&profile, "contentions");
    assert_eq!(root_cum(&rows, &hot.path), Some(n), "{rows:?}");
    let (_, rows) = go_pprof_top(&profile, "delay");
    assert_eq!(root_cum(&rows, &hot.path), Some(f.wait_ns_total));
    assert_eq!(root_cum(&rows, &cold.path), None);
    let (_, rows) = go_pprof_top(&cumulative, "contentions");
    assert_eq!(root_cum(&rows, &hot.path), Some(n), "{rows:?}");
    let (_, rows) = go_pprof_top(&delta, "contentions");
    assert_eq!(root_cum(&rows, &hot.path), None, "{rows:?}");
}

/// `rmapprof --pprof FILE -- mmap-churn`: go tool pprof's totals are report.json's waits and
/// ns waited, summed over its files' call paths.
#[test]
fn a_runs_pprof_read_by_go_tool_pprof_matches_report_json() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let profile = out.path().join("waits.pb.gz");
    let hot = dir.path().join("pprof-hot.dat");
    std::fs::write(&hot, vec![1u8; 8192]).unwrap();
    let mut report = Report::default();
    for _ in 0..10 {
        let st = rmapprof()
            .arg("-o")
            .arg(out.path())
            .arg("--pprof")
            .arg(&profile)
            .arg("--")
            .arg(workload("mmap-churn"))
            .arg(&hot)
            .args(["400000", "-j", "16"])
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        report = read_report(&out.path().join("report.json"));
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&hot).unwrap());
        if file_entry(&report, ino).is_some_and(|f| f.contentions > 0) {
            break;
        }
    }
    let paths = report.files.iter().flat_map(|f| &f.call_paths);
    let (waits, ns) = paths.fold((0, 0), |(w, n), p| (w + p.contentions, n + p.wait_ns_total));
    assert!(waits > 0, "no waits in any run: {report:?}");
    let (total, _) = go_pprof_top(&profile, "contentions");
    assert_eq!(total, waits);
    let (total, rows) = go_pprof_top(&profile, "delay");
    assert_eq!(total, ns);
    assert!(root_cum(&rows, &std::fs::canonicalize(&hot).unwrap()).is_some_and(|c| c > 0), "{rows:?}");
}

/// Bad input: an address in use and an unparseable one are one line each; a client that goes
/// away mid-request or mid-response and 100 concurrent scrapes leave the daemon profiling and
/// serving, and it stops cleanly.
#[test]
fn bad_addresses_and_abusive_clients() {
    let _s = serial();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = fails(rmapprof().args(["serve", "--listen", &addr]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(&format!("rmapprof: cannot listen on {addr}: ")) && err.contains("in use"),
        "{err}"
    );
    for bad in ["localhost", "127.0.0.1", "1.2.3.4.5:80", "127.0.0.1:99999", ""] {
        let (code, err) = fails(rmapprof().args(["serve", "--listen", bad]));
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("is not an address to listen on"), "{err}");
    }
    drop(taken);
    // An unwritable --pprof fails before anything is loaded, in a run and in the daemon: its
    // directory is never made (a bad argument, exit 2), nor written where it cannot be (1).
    let out = tempfile::tempdir().unwrap();
    for args in [&["-d", "1s"][..], &["serve", "--listen", "127.0.0.1:0"]] {
        let (code, err) = fails(
            rmapprof().args(args).arg("-o").arg(out.path()).args(["--pprof", "/proc/no/such/dir/w.pb.gz"]),
        );
        assert_eq!(code, 2, "{err}");
        assert!(
            err.starts_with("rmapprof: --pprof /proc/no/such/dir/w.pb.gz: no such directory /proc/no"),
            "{err}"
        );
        let (code, err) =
            fails(rmapprof().args(args).arg("-o").arg(out.path()).args(["--pprof", "/proc/w.pb.gz"]));
        assert_eq!(code, 1, "{err}");
        assert!(
            err.starts_with("rmapprof: --pprof /proc/w.pb.gz: output directory /proc is not writable"),
            "{err}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let hot = MappedFile::new(dir.path(), "abuse-hot.dat");
    let d = Daemon::start(&["--refresh", "1s"]);
    // Half a request, then gone; a whole request, then gone before reading the answer.
    for request in [
        "GET /metr",
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /debug/pprof/mutex HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        drop(s);
    }
    // Reading one byte of the answer and closing: a reset mid-response.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).unwrap();
    drop(s);
    let scrapes: Vec<_> = (0..100)
        .map(|_| {
            let url = format!("http://{}/metrics", d.addr);
            std::thread::spawn(move || {
                let r = ureq::get(&url).timeout(Duration::from_secs(60)).call();
                r.map(|r| r.into_string().unwrap()).map_err(|e| e.to_string())
            })
        })
        .collect();
    for s in scrapes {
        let text = s.join().unwrap().expect("a scrape among 100 concurrent ones");
        assert!(text.ends_with("# EOF\n"));
    }
    // Still profiling: a wait churned now shows up.
    churn_until_seen(&d, &hot);
    let m = d.metrics();
    assert!(sample(&m, "rmapprof_refreshes_total").unwrap() >= 2.0);
    let bad = ureq::get(&format!("http://{}/debug/pprof/mutex?seconds=0", d.addr)).call();
    assert!(matches!(bad, Err(ureq::Error::Status(400, _))), "{bad:?}");
    let (report, said, _) = d.stop();
    assert!(file_entry(&report, hot.ino()).is_some_and(|f| f.contentions > 0));
    assert!(said.iter().all(|l| !l.contains("panicked")), "{said:?}");
}

/// SIGHUP reopens --log (log rotation) and the daemon goes on; SIGTERM stops it cleanly.
#[test]
fn sighup_reopens_the_log_and_sigterm_stops() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let log: PathBuf = dir.path().join("rmapprof.log");
    let out = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = rmapprof()
        .args(["serve", "--listen", &addr, "--log"])
        .arg(&log)
        .arg("--output")
        .arg(out.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |p: &Path, what: &str| {
        let start = Instant::now();
        while !std::fs::read_to_string(p).unwrap_or_default().contains(what) {
            assert!(start.elapsed() < Duration::from_secs(60), "{what} never in {}", p.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&log, "rmapprof: serving");
    let rotated = dir.path().join("rmapprof.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    wait_for(&log, "SIGHUP: reopened");
    let m = ureq::get(&format!("http://{addr}/metrics")).call().unwrap().into_string().unwrap();
    assert!(m.contains("rmapprof_info{"));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("rmapprof: stopped") && !std::fs::read_to_string(&rotated).unwrap().contains("stopped")
    );
    assert!(out.path().join("report.json").exists() && out.path().join("profile.pb.gz").exists());
}

/// `HOLDER_WAITS` is drained like the other aggregation maps. A daemon whose holder map holds
/// only 256 rows (`RMAPPROF_FAULT_HOLDER_MAP_ENTRIES`), folding at every refresh
/// (`RMAPPROF_FAULT_FOLD_ROWS=0`), with `--holder-stacks` in tracepoint mode, watches rounds
/// of the holders workload until twice that many rows went through the map (a round makes
/// tens of rows, how many depends on the machine's speed and load, and a loaded machine
/// refreshes late: 32 rows filled there); each round's holder tasks are new, and so are its rows.
/// Drained, the map never fills although more rows go through it than it holds: every wait
/// on the file still has a holder cell at the end, and the stacks taken at release that only
/// holder rows name are still in the report. (Before the drain covered `HOLDER_WAITS`, no row
/// was ever evicted.)
#[test]
fn a_daemon_drains_its_holder_rows() {
    const ROWS: u32 = 256;
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holders.dat");
    std::fs::write(&path, vec![1u8; 65536]).unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    let d = Daemon::start_with(
        &["--mode", "tracepoint", "--holder-stacks", "--refresh", "200ms"],
        &[("RMAPPROF_FAULT_HOLDER_MAP_ENTRIES", &ROWS.to_string()), ("RMAPPROF_FAULT_FOLD_ROWS", "0")],
    );
    let drained = |m: &str| sample(m, "rmapprof_drained_rows_total{map=\"HOLDER_WAITS\"}").unwrap_or(0.0);
    let (mut max_rows, mut rounds) = (0.0f64, 0);
    // Rounds until twice the map's rows went through it: how many rows a round makes depends
    // on the machine and its load.
    while drained(&d.metrics()) <= 2.0 * ROWS as f64 {
        assert!(rounds < 200, "{rounds} rounds of the holders workload and few holder rows drained");
        let st = Command::new(workload("holders")).arg(&path).args(["10000", "-j", "6"]).status().unwrap();
        assert!(st.success());
        let m = d.metrics();
        max_rows = max_rows.max(sample(&m, "rmapprof_map_rows{map=\"HOLDER_WAITS\"}").unwrap_or(0.0));
        rounds += 1;
    }
    std::thread::sleep(Duration::from_millis(600)); // idle rows evicted
    let evicted = drained(&d.metrics());
    let (r, said, _) = d.stop();
    eprintln!("holder rows: {evicted} evicted in {rounds} rounds, at most {max_rows} at a scrape");
    assert_eq!(r.lost.get("holder_map_full"), Some(&0), "the holder map filled: {:?}", r.lost);
    // More rows went through the map than it holds (an undrained map would have filled), and
    // never more than a few periods' worth at once.
    assert!(evicted > ROWS as f64, "{evicted} holder rows evicted: {said:?}");
    assert!(max_rows < ROWS as f64, "{max_rows}");
    let f = r.files.iter().find(|f| f.ino == ino).expect("the workload's file is reported");
    let h = f.holders.as_ref().expect("holders of an i_mmap_rwsem file");
    let cells: u64 = h.matrix.iter().map(|c| c.contentions).sum();
    assert!(f.contentions > 0);
    assert_eq!(cells, f.contentions, "every wait has a holder cell: {h:?}");
    let seen = h.stacks.iter().filter(|s| s.frames.is_some()).count();
    assert!(seen > 0, "the holders' stacks taken at release are gone: {h:?}");
}

/// The soak test, for the daemon (folding at every refresh, `RMAPPROF_FAULT_FOLD_ROWS=0`): for
/// `RMAPPROF_SOAK_SECS` (default 20; `cargo xtask soak`
/// sets it) one-shot runs `rmapprof -- mmap-churn FILE` follow one another beside the daemon
/// (refresh every 200 ms, scraped every 250 ms). Every counter of every scrape is at least
/// what it was; the kernel's maps never hold more than a refresh period's rows (bounded, far
/// below capacity); the daemon's RSS after the first quarter grows by less than 4 MiB to the
/// end; and the daemon, whose maps were drained hundreds of times, counted on the churned file
/// exactly the waits the one-shot runs (which never drain) counted there, since every wait on
/// it happened while one of them ran, and the same time waited to within each program's own
/// clock reads. The kernel skips a program's run on a CPU where it already runs (a spinlock
/// waited on in an interrupt, or by a helper the program calls); each side counts those in
/// `lost.recursion_misses`, and a skipped run loses at most one wait, so the two sides then
/// agree to within the skips, and the time check (which a lost wait can exceed) is left out.
#[test]
fn soak_daemon_rss_flat_maps_bounded_counters_monotonic() {
    let _s = serial();
    let secs: u64 = std::env::var("RMAPPROF_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let hot = dir.path().join("soak-hot.dat");
    std::fs::write(&hot, vec![1u8; 8192]).unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&hot).unwrap());
    // Folding the files without a series at every refresh (what bounds the daemon's memory
    // past 50 000 rows) must keep every counter monotonic and the churned file exact.
    let d = Daemon::start_with(&["--refresh", "200ms"], &[("RMAPPROF_FAULT_FOLD_ROWS", "0")]);
    let pid = d.child.id();
    let rss = move || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix(" kB")?.trim().parse().ok())
            .unwrap()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One-shot runs until stopped and at least one saw a wait on the file: (waits, ns, runs,
    // runs the kernel skipped).
    let oneshots = {
        let stop = stop.clone();
        let hot = hot.clone();
        std::thread::spawn(move || {
            let (mut waits, mut ns, mut runs, mut skipped) = (0, 0, 0, 0);
            while !(stop.load(std::sync::atomic::Ordering::Relaxed) && waits > 0) && runs < 200 {
                let out = tempfile::tempdir().unwrap();
                let st = rmapprof()
                    .arg("-o")
                    .arg(out.path())
                    .arg("--")
                    .arg(workload("mmap-churn"))
                    .arg(&hot)
                    .args(["100000", "-j", "16"])
                    .output()
                    .unwrap();
                assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
                let r = read_report(&out.path().join("report.json"));
                if let Some(f) = file_entry(&r, ino) {
                    waits += f.contentions;
                    ns += f.wait_ns_total;
                }
                skipped += report_lost(&r, "recursion_misses");
                runs += 1;
            }
            (waits, ns, runs, skipped)
        })
    };
    let start = Instant::now();
    let mut last: std::collections::BTreeMap<String, f64> = Default::default();
    let (mut scrapes, mut rss_warm, mut max_rows) = (0, None, 0.0f64);
    let mut check = |m: &str| {
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, v)) = l.rsplit_once(' ') else { continue };
            let v: f64 = v.parse().unwrap();
            if series.starts_with("rmapprof_map_rows{") {
                max_rows = max_rows.max(v);
            }
            if series.contains("_total") {
                if let Some(prev) = last.get(series) {
                    assert!(v >= *prev, "{series} went from {prev} to {v}");
                }
                last.insert(series.to_owned(), v);
            }
        }
    };
    while start.elapsed() < Duration::from_secs(secs) {
        check(&d.metrics());
        scrapes += 1;
        if rss_warm.is_none() && start.elapsed() > Duration::from_secs(secs / 4) {
            rss_warm = Some(rss());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (waits, ns, runs, oneshot_skipped) = oneshots.join().unwrap();
    std::thread::sleep(Duration::from_millis(600)); // a scrape that reads the maps again
    check(&d.metrics());
    let (warm, end) = (rss_warm.unwrap(), rss());
    let (report, _, _) = d.stop();
    eprintln!(
        "soak: {scrapes} scrapes in {secs} s, RSS {warm} kB -> {end} kB, map rows at most {max_rows}; \
         {runs} one-shot runs counted {waits} waits, {ns} ns on the churned file; \
         the kernel skipped {oneshot_skipped} of their programs' runs"
    );
    assert!(end < warm + 4096, "RSS grew from {warm} kB to {end} kB");
    assert!(max_rows < 4096.0, "a map held {max_rows} rows in one refresh period");
    let lost = |skips: bool| -> u64 {
        last.iter()
            .filter(|(k, _)| k.starts_with("rmapprof_lost_events_total"))
            .filter(|(k, _)| k.contains("cause=\"recursion_misses\"") == skips)
            .map(|(_, v)| *v as u64)
            .sum()
    };
    assert_eq!(lost(false), 0, "events lost: {last:?}");
    // The daemon reads its programs' skips once more as it stops, after the last scrape.
    let daemon_skipped = report_lost(&report, "recursion_misses");
    assert!(daemon_skipped >= lost(true), "the report's skips {daemon_skipped} against the last scrape's");
    let skipped = daemon_skipped + oneshot_skipped;
    let drained = last.get("rmapprof_drained_rows_total{map=\"CONTENTION\"}").copied().unwrap_or(0.0);
    assert!(drained > 0.0, "the maps were drained");
    assert!(last.get("rmapprof_folds_total").is_some_and(|&n| n > 0.0), "folded: {last:?}");
    let f = file_entry(&report, ino).expect("the churned file in the daemon's report");
    let daemon_waits = f.contentions;
    assert!(
        daemon_waits.abs_diff(waits) <= skipped,
        "the daemon's {daemon_waits} waits against the one-shot runs' {waits}, {skipped} runs skipped"
    );
    // Each rmapprof times a wait with clock reads of its own programs, which the tracepoint
    // runs one after the other: some microseconds apart per wait, never near 100.
    let diff = f.wait_ns_total.abs_diff(ns);
    assert!(
        skipped > 0 || diff <= waits * 100_000,
        "the daemon's {} ns against the one-shot runs' {ns} ns",
        f.wait_ns_total
    );
    let series = waits_series(&std::fs::canonicalize(&hot).unwrap());
    let scraped = last.iter().find(|(k, _)| k.starts_with(&series)).map(|(_, v)| *v as u64);
    assert_eq!(scraped, Some(daemon_waits), "the last scrape's waits on the churned file");
}
