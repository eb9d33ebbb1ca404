//! The daemon's connections: its own accept loop over hyper's HTTP/1 connections (with TLS
//! when `--web.config.file` asks), because a daemon any local user can connect to must not be
//! held by them (`axum::serve` has neither of these):
//!
//! - a request's headers (TLS handshake included) must arrive within `--header-timeout` of
//!   its first byte, and a connection waits for the next request (or for its first) at most
//!   `--idle-timeout`; a connection with a request being answered has neither limit (a delta
//!   profile takes its `?seconds=`), and once the answer is handed to hyper, a client that
//!   does not read it is idle;
//! - at most `--max-connections` are open, so the daemon's own files (the kernel's maps,
//!   /proc, `--pprof`) always have descriptors: a connection past the cap closes the oldest
//!   idle or half-sent one (the oldest of all when every one is being answered), so a flood
//!   of connections cannot keep a scrape out.

use axum::Router;
use hyper::{body::Incoming, Request};
use std::{
    collections::BTreeMap,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, Notify},
    task::JoinSet,
};

use super::webconfig::{unauthorized, BasicAuth};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

/// One open connection, as the sweeper and the cap see it.
struct Slot {
    state: Mutex<State>,
    close: Notify,
}

struct State {
    /// Requests whose answer is being made.
    answering: usize,
    /// Since when nothing is being answered.
    idle_since: Instant,
    /// The first byte read since then: a request (or TLS handshake) has begun.
    request_since: Option<Instant>,
    /// Told to close (evicted or timed out): no longer counted.
    closing: bool,
}

impl Slot {
    fn new() -> Self {
        let state = State { answering: 0, idle_since: Instant::now(), request_since: None, closing: false };
        Self { state: Mutex::new(state), close: Notify::new() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves plain data: go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_some(&self) {
        let mut s = self.state();
        if s.answering == 0 && s.request_since.is_none() {
            s.request_since = Some(Instant::now());
        }
    }

    fn begin(self: &Arc<Self>) -> Answering {
        self.state().answering += 1;
        Answering(self.clone())
    }

    /// Whether the connection has waited past its limit.
    fn expired(&self, now: Instant, limits: &Limits) -> bool {
        let s = self.state();
        s.answering == 0
            && match s.request_since {
                Some(t) => now.duration_since(t) > limits.header,
                None => now.duration_since(s.idle_since) > limits.idle,
            }
    }

    /// Closes the connection (its task drops it); false if it was closing already.
    fn close(&self) -> bool {
        let mut s = self.state();
        if s.closing {
            return false;
        }
        s.closing = true;
        self.close.notify_one();
        true
    }
}

/// A request being answered; idle again when dropped.
struct Answering(Arc<Slot>);

impl Drop for Answering {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.answering -= 1;
        if s.answering == 0 {
            s.idle_since = Instant::now();
            s.request_since = None;
        }
    }
}

/// The open connections, in the order they were accepted.
#[derive(Default)]
struct Connections(Mutex<BTreeMap<u64, Arc<Slot>>>);

impl Connections {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Room for one more under `max`: if there is none, the oldest connection not being
    /// answered is closed, or if every one is being answered (delta profiles, say), the
    /// oldest of all: the new connection is never the one refused.
    fn make_room(&self, max: usize) {
        let map = self.map();
        let open = || map.values().filter(|s| !s.state().closing);
        if open().count() < max {
            return;
        }
        let oldest_idle = open().find(|s| s.state().answering == 0);
        if let Some(s) = oldest_idle.or_else(|| open().next()) {
            s.close();
        }
    }
}

/// Removes its connection from the set when its task ends, however it ends.
struct Registered(Arc<Connections>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.map().remove(&self.1);
    }
}

/// A TCP stream that tells its slot when bytes arrive.
struct Tracked {
    tcp: TcpStream,
    slot: Arc<Slot>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.slot.read_some();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// What every connection serves, and how.
#[derive(Clone)]
pub struct Server {
    pub app: Router,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub auth: Option<Arc<BasicAuth>>,
    pub limits: Limits,
}

/// Accepts and serves until `stop`; then lets each connection finish its answer (a few
/// seconds at most) and closes the rest.
pub async fn serve(listener: TcpListener, server: Server, stop: watch::Receiver<bool>) {
    let conns = Arc::new(Connections::default());
    let sweeper = tokio::spawn(sweep(conns.clone(), server.limits));
    let mut tasks = JoinSet::new();
    let mut next = 0u64;
    let mut until_stop = stop.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut until_stop) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Ok((tcp, _)) = accepted else {
            // Out of descriptors (EMFILE) or a connection reset before accept: try again soon
            // rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        conns.make_room(server.limits.max_connections);
        let slot = Arc::new(Slot::new());
        next += 1;
        conns.map().insert(next, slot.clone());
        let registered = Registered(conns.clone(), next);
        tasks.spawn(connection(Tracked { tcp, slot }, server.clone(), stop.clone(), registered));
    }
    drop(listener);
    let _ =
        tokio::time::timeout(Duration::from_secs(5), async { while tasks.join_next().await.is_some() {} })
            .await;
    sweeper.abort();
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Closes the connections that waited past their limit.
async fn sweep(conns: Arc<Connections>, limits: Limits) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = Instant::now();
        for slot in conns.map().values() {
            if slot.expired(now, &limits) {
                slot.close();
            }
        }
    }
}

async fn connection(io: Tracked, server: Server, stop: watch::Receiver<bool>, registered: Registered) {
    let slot = io.slot.clone();
    let serve = async {
        match &server.tls {
            None => http(io, &server, slot.clone(), stop).await,
            Some(tls) => {
                if let Ok(io) = tls.accept(io).await {
                    http(io, &server, slot.clone(), stop).await
                }
            }
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = slot.close.notified() => {}
    }
    drop(registered);
}

async fn http<IO>(io: IO, server: &Server, slot: Arc<Slot>, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (app, auth) = (server.app.clone(), server.auth.clone());
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (mut app, auth, answering) = (app.clone(), auth.clone(), slot.begin());
        async move {
            let _answering = answering;
            if let Some(auth) = auth {
                if !auth.allows(req.headers()).await {
                    return Ok::<_, Infallible>(unauthorized());
                }
            }
            tower_service::Service::call(&mut app, req).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped(&mut stop) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closing(c: &Connections) -> Vec<u64> {
        c.map().iter().filter(|(_, s)| s.state().closing).map(|(id, _)| *id).collect()
    }

    /// At the cap, the oldest connection not being answered closes; when every one is being
    /// answered, the oldest of all; below the cap, none.
    #[test]
    fn the_cap_closes_the_oldest_idle_then_the_oldest() {
        let c = Connections::default();
        let slots: Vec<Arc<Slot>> = (1..=3).map(|_| Arc::new(Slot::new())).collect();
        for (id, s) in slots.iter().enumerate() {
            c.map().insert(id as u64 + 1, s.clone());
        }
        let _answering = slots[0].begin();
        c.make_room(4);
        assert_eq!(closing(&c), [] as [u64; 0]);
        c.make_room(3);
        assert_eq!(closing(&c), [2]);
        let _more = slots[2].begin();
        c.make_room(3);
        assert_eq!(closing(&c), [2], "two open under a cap of three");
        c.make_room(2);
        assert_eq!(closing(&c), [1, 2], "every one answered: the oldest");
        let limits =
            Limits { header: Duration::from_secs(10), idle: Duration::from_secs(60), max_connections: 1 };
        let later = Instant::now() + Duration::from_secs(61);
        assert!(!slots[2].expired(later, &limits), "a connection being answered never expires");
        let idle = Slot::new();
        assert!(idle.expired(later, &limits) && !idle.expired(Instant::now(), &limits));
        idle.read_some();
        assert!(idle.expired(Instant::now() + Duration::from_secs(11), &limits), "headers late");
    }
}
