//! `rmapprof serve` against clients that would hold it or read what they should not: half-sent
//! and idle connections, a connection cap, TLS and basic authentication (with Debian's
//! Prometheus scraping over both), the path label policy, and the capabilities the daemon
//! keeps once attached. Every assertion is about this test's own connections, files and
//! processes, so another rmapprof on the host changes nothing.

mod common;

use common::*;
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `rmapprof serve` in the background, killed if the test fails; what it said, by line.
struct Daemon {
    child: Child,
    addr: String,
    said: std::sync::mpsc::Receiver<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Listening on `listen` (a free loopback port when None), served at `addr` from here.
    fn start_on(listen: Option<&str>, extra: &[&str]) -> Self {
        let port = free_port();
        let listen = listen.map_or(format!("127.0.0.1:{port}"), |l| format!("{l}:{port}"));
        let mut child = rmapprof()
            .args(["serve", "--listen", &listen, "--refresh", "1s"])
            .args(extra)
            .env_remove("SUDO_UID")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, said) = std::sync::mpsc::channel();
        let (serving_tx, serving) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if l.starts_with("rmapprof: serving") {
                    let _ = serving_tx.send(());
                }
                let _ = tx.send(l);
            }
        });
        let mut d = Self { child, addr: format!("127.0.0.1:{port}"), said };
        if serving.recv_timeout(Duration::from_secs(120)).is_err() {
            panic!(
                "rmapprof serve did not start: {:?}, {:?}",
                d.child.try_wait(),
                d.said.try_iter().collect::<Vec<_>>()
            );
        }
        d
    }

    fn start(extra: &[&str]) -> Self {
        Self::start_on(None, extra)
    }

    fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.addr);
        ureq::get(&url).timeout(Duration::from_secs(30)).call().unwrap().into_string().unwrap()
    }

    /// SIGTERM: it exits 0; what it said in all.
    fn stop(mut self) -> Vec<String> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let said: Vec<String> = self.said.try_iter().collect();
        assert_eq!(st.code(), Some(0), "{said:?}");
        said
    }
}

/// Whether the server closed `s` (EOF or reset) before `deadline`.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (408, 400): read on to the close
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

fn half_sent(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: slow").unwrap();
    s
}

/// Issue 26, item 2: 100 half-sent requests are all closed within 15 s (the header timeout,
/// 10 s by default); with the connection cap reached by idle and half-sent connections, a
/// scrape still gets its answer within Prometheus's default scrape timeout (10 s), and the
/// oldest idle connection is the one closed for it; `?seconds=` above 300 is refused.
#[test]
fn half_sent_and_idle_connections_cannot_hold_the_daemon() {
    let _s = serial();
    let d = Daemon::start(&["--max-connections", "150"]);
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = (0..100).map(|_| half_sent(&d.addr)).collect();
    let deadline = start + Duration::from_secs(15);
    let open: usize = conns.iter_mut().map(|s| !closed_by(s, deadline) as usize).sum();
    assert_eq!(open, 0, "{open} of 100 half-sent requests still open after {:?}", start.elapsed());
    eprintln!("100 half-sent requests closed after {:?}", start.elapsed());

    // The cap: 75 idle (nothing sent), then 75 half-sent.
    let mut idle: Vec<TcpStream> = (0..75).map(|_| TcpStream::connect(&d.addr).unwrap()).collect();
    let _half: Vec<TcpStream> = (0..75).map(|_| half_sent(&d.addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let at = Instant::now();
    let url = format!("http://{}/metrics", d.addr);
    let scrape = ureq::get(&url).timeout(Duration::from_secs(10)).call();
    let text = scrape.expect("a scrape with the cap reached").into_string().unwrap();
    assert!(text.ends_with("# EOF\n"));
    eprintln!("scrape at the cap answered in {:?}", at.elapsed());
    // The oldest idle connection made room: it is closed, long before any timeout.
    assert!(closed_by(&mut idle[0], Instant::now() + Duration::from_secs(2)), "the oldest idle connection");
    assert!(!closed_by(&mut idle[74], Instant::now() + Duration::from_millis(200)), "the newest idle one");

    let bad = ureq::get(&format!("http://{}/debug/pprof/mutex?seconds=301", d.addr)).call();
    match bad {
        Err(ureq::Error::Status(400, r)) => {
            assert_eq!(r.into_string().unwrap(), "seconds must be 1 to 300\n")
        }
        other => panic!("{other:?}"),
    }
    let said = d.stop();
    assert!(said.iter().all(|l| !l.contains("panicked")), "{said:?}");
}

/// A keep-alive connection waiting for its next request is closed after `--idle-timeout`;
/// listening beyond loopback without authentication says so, in one line.
#[test]
fn idle_keep_alive_connections_are_closed() {
    let _s = serial();
    let d = Daemon::start_on(Some("0.0.0.0"), &["--idle-timeout", "2s"]);
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while !String::from_utf8_lossy(&answer).contains("/debug/pprof/mutex") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    assert!(closed_by(&mut s, answered + Duration::from_secs(8)), "idle connection still open");
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(1500), "closed after {idle:?}, before the idle timeout");
    let said = d.stop();
    let warned: Vec<&String> = said.iter().filter(|l| l.contains("warning")).collect();
    assert_eq!(warned.len(), 1, "{said:?}");
    assert!(
        warned[0].starts_with("rmapprof: warning: serving on 0.0.0.0:")
            && warned[0].contains("basic_auth_users")
    );
}

/// Bad arguments and bad `--web.config.file`s are one line before anything is loaded: exit 2
/// for what they say, 1 for a file that cannot be read; `--max-files` is a hard cap.
#[test]
fn serve_argument_and_web_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let bad_yaml = write("bad.yml", "basic_auth_users: [");
    let bad_hash = write("hash.yml", "basic_auth_users:\n  prom: secret\n");
    let no_cert =
        write("cert.yml", "tls_server_config:\n  cert_file: /no/such.crt\n  key_file: /no/such.key\n");
    for (args, code, says) in [
        (vec!["--max-files", "2", "--top", "5"], 2, "--top 5 is above --max-files 2"),
        (vec!["--max-files", "0"], 2, "--max-files must be at least 1"),
        (vec!["--top", "0"], 2, "--top must be at least 1"),
        (vec!["--path-labels", "some"], 2, "some"),
        (vec!["--web.config.file", "/no/such/web.yml"], 1, "--web.config.file /no/such/web.yml"),
        (vec!["--web.config.file", &bad_yaml], 2, "bad.yml"),
        (vec!["--web.config.file", &bad_hash], 2, "not a bcrypt hash"),
        (vec!["--web.config.file", &no_cert], 1, "/no/such.crt"),
    ] {
        let (got, err) = fails(rmapprof().args(["serve", "--listen", "127.0.0.1:0"]).args(&args));
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(err.starts_with("rmapprof: ") && err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("loading the probes"), "{args:?}: {err}");
    }
}

/// A file in a 0700 directory, churned until the daemon's /metrics has a series on its inode.
fn churn_until_series(d: &Daemon, hot: &MappedFile) -> String {
    // The inode label is `major:minor:ino`, the last label.
    let inode = format!(":{}\"}}", hot.ino());
    for _ in 0..40 {
        hot.churn(1);
        let m = d.metrics();
        if let Some(l) = m.lines().find(|l| l.starts_with("rmapprof_file_waits_total{") && l.contains(&inode))
        {
            return l.to_owned();
        }
    }
    panic!("no series for {} after 40 rounds of churn", hot.path.display());
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).unwrap();
    raw
}

/// `--path-labels none`: /metrics keeps the file's inode label and no path; the served pprof
/// names it by device and inode; its directory is nowhere in either. `basename`: the file
/// name alone.
#[test]
fn path_labels_keep_paths_out_of_metrics_and_pprof() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private-dir-0700");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let hot = MappedFile::new(&private, "labels-hot.dat");
    let dev_ino = |line: &str| line.split("inode=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    for (policy, want) in [("none", None), ("basename", Some("labels-hot.dat"))] {
        let d = Daemon::start(&["--path-labels", policy]);
        let line = churn_until_series(&d, &hot);
        let inode = dev_ino(&line);
        let (dev, ino) = inode.rsplit_once(':').unwrap();
        let name = want.map_or(format!("[dev {dev} ino {ino}]"), str::to_owned);
        assert!(line.contains(&format!("path=\"{name}\"")), "{policy}: {line}");
        let m = d.metrics();
        assert!(!m.contains("private-dir-0700"), "{policy}: {m}");
        let mut gz = Vec::new();
        ureq::get(&format!("http://{}/debug/pprof/mutex", d.addr))
            .call()
            .unwrap()
            .into_reader()
            .read_to_end(&mut gz)
            .unwrap();
        let pprof = String::from_utf8_lossy(&gunzip(&gz)).into_owned();
        assert!(pprof.contains(&format!("i_mmap_rwsem {name}")) && pprof.contains(&inode), "{policy}");
        assert!(!pprof.contains("private-dir-0700"), "{policy}");
        d.stop();
    }
}

/// The bits of capabilities in /proc/PID/status (CapEff and the others).
fn cap_set(status: &str, set: &str) -> u64 {
    let line = status.lines().find_map(|l| l.strip_prefix(&format!("{set}:"))).unwrap();
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// Once attached the daemon holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH alone (effective,
/// permitted, bounding; nothing inheritable or ambient), and still names the file of another
/// user's process, in a directory only that user can enter.
#[test]
fn the_daemon_keeps_only_what_it_needs_and_still_names_other_users_files() {
    let _s = serial();
    const NOBODY: u32 = 65534;
    let d = Daemon::start(&[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    // linux/capability.h: CAP_DAC_READ_SEARCH 2, CAP_SYS_PTRACE 19.
    let kept = (1u64 << 2) | (1u64 << 19);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(cap_set(&status, set), kept, "{set} in\n{status}");
    }
    assert_eq!(cap_set(&status, "CapInh") | cap_set(&status, "CapAmb"), 0, "{status}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = dir.path().join("nobodys-0700");
    std::fs::create_dir(&private).unwrap();
    let hot = private.join("nobodys-hot.dat");
    std::fs::write(&hot, vec![1u8; 8192]).unwrap();
    for p in [&private, &hot] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let series = format!("rmapprof_file_waits_total{{path=\"{}\"", hot.display());
    let mut seen = false;
    for _ in 0..40 {
        use std::os::unix::process::CommandExt as _;
        let st = Command::new(workload("mmap-churn"))
            .arg(&hot)
            .args(["200000", "-j", "16"])
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        if d.metrics().lines().any(|l| l.starts_with(&series)) {
            seen = true;
            break;
        }
    }
    assert!(seen, "no series for {} of user nobody", hot.display());
    d.stop();

    // --output in a directory another user owns: the daemon keeps what writes there, and
    // writes the report when stopped.
    let out = dir.path().join("nobodys-output");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    let d = Daemon::start(&["--output", out.to_str().unwrap()]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    // CAP_CHOWN 0, CAP_DAC_OVERRIDE 1, CAP_FOWNER 3.
    let writing = kept | 1 | (1 << 1) | (1 << 3);
    assert_eq!(cap_set(&status, "CapEff"), writing, "{status}");
    d.stop();
    assert!(out.join("report.json").exists());
}

/// The daemon's certificate (self-signed, for 127.0.0.1) and key, by openssl.
fn self_signed(dir: &Path) {
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=rmapprof-test", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.crt"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
}

/// One request over TLS without credentials, by `openssl s_client`: the whole answer.
fn tls_request(addr: &str, ca: &Path) -> String {
    let mut c = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect", addr, "-CAfile"])
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = c.wait();
    out
}

/// Prometheus with three jobs on one target, over TLS (the daemon's certificate as CA): with
/// the right basic auth, a wrong password, none.
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
    fn start(target: &str, ca: &Path, password: &str) -> Self {
        let ok = Command::new("sh").args(["-c", "command -v prometheus"]).stdout(Stdio::null()).status();
        assert!(ok.is_ok_and(|s| s.success()), "prometheus not found: `cargo xtask test` installs Debian's");
        let dir = tempfile::tempdir().unwrap();
        let job = |name: &str, auth: &str| {
            format!(
                "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n{auth}    static_configs:\n      - targets: ['{target}']\n",
                ca.display()
            )
        };
        let auth = |p: &str| format!("    basic_auth:\n      username: prom\n      password: '{p}'\n");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}",
                job("rmapprof", &auth(password)),
                job("wrong", &auth("not-it")),
                job("none", "")
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
        Self { child, url: format!("http://{listen}"), _dir: dir }
    }

    fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let req = ureq::get(&format!("{}/api/v1/query", self.url)).query("query", q);
        let Ok(resp) = req.timeout(Duration::from_secs(10)).call() else { return Vec::new() };
        let v: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
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

/// `--web.config.file` with TLS and basic auth: Prometheus scrapes over TLS with the right
/// password (up 1, the churned file's series there) and is refused with a wrong one or none
/// (up 0); a request without credentials gets 401 with `WWW-Authenticate: Basic`.
#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path());
    let password = "correct horse";
    let hash = bcrypt::hash(password, 6).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prom: '{hash}'\n"
        ),
    )
    .unwrap();
    let hot = MappedFile::new(dir.path(), "tls-hot.dat");
    let d = Daemon::start(&["--web.config.file", web.to_str().unwrap()]);
    let ca = dir.path().join("server.crt");
    let answer = tls_request(&d.addr, &ca);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("www-authenticate: basic"), "{answer}");
    // Plain HTTP to the TLS port is no scrape.
    assert!(ureq::get(&format!("http://{}/metrics", d.addr))
        .timeout(Duration::from_secs(10))
        .call()
        .is_err());

    let prom = Prometheus::start(&d.addr, &ca, password);
    prom.wait_for("every job scraped", |p| p.query("up").len() == 3);
    let up =
        |job: &str| prom.query(&format!("up{{job=\"{job}\"}}"))[0]["value"][1].as_str().unwrap().to_owned();
    assert_eq!(up("rmapprof"), "1");
    assert_eq!((up("wrong"), up("none")), ("0".to_owned(), "0".to_owned()));
    let q = format!("rmapprof_file_waits_total{{job=\"rmapprof\",path=\"{}\"}}", hot.path.display());
    for _ in 0..40 {
        hot.churn(1);
        if !prom.query(&q).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let series = prom.query(&q);
    assert_eq!(series.len(), 1, "the churned file's series, scraped over TLS: {series:?}");
    drop(prom);
    d.stop();
}
