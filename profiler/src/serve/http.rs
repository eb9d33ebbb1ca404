//! The daemon's HTTP endpoints (axum on hyper): `/metrics` and `/debug/pprof/mutex`. A client
//! that goes away mid-response, a malformed request or a burst of scrapes is hyper's to
//! handle: the connection ends, the daemon goes on profiling. Connections, their limits, TLS
//! and authentication are conn.rs's.

use axum::{
    extract::{Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use std::time::Duration;
use tokio::sync::watch;

use super::{labels::PathLabels, now_nanos, Shared, SCRAPE_FRESH};
use crate::render;

#[derive(Clone)]
struct App {
    daemon: Shared,
    /// Becomes true when the daemon stops: a delta profile in progress ends then.
    stop: watch::Receiver<bool>,
    /// What the profile shows of paths (`/metrics`' labels are made so in series.rs).
    labels: PathLabels,
}

/// The longest `?seconds=` of a delta profile: a connection being answered is never timed
/// out, so this bounds how long one request holds one.
pub const MAX_DELTA: u64 = 300;

pub fn router(daemon: Shared, stop: watch::Receiver<bool>, labels: PathLabels) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/debug/pprof/mutex", get(pprof))
        .route("/", get(index))
        .with_state(App { daemon, stop, labels })
}

async fn index() -> &'static str {
    "rmapprof: /metrics (OpenMetrics), /debug/pprof/mutex[?seconds=N] (pprof of i_mmap_rwsem waits)\n"
}

async fn metrics(State(app): State<App>) -> Response {
    let mut d = app.daemon.lock().await;
    // A failed read serves the last values (still monotonic) and says why once per failure.
    if let Err(e) = d.refresh(SCRAPE_FRESH) {
        say!("rmapprof: reading the maps: {e:#}");
    }
    let text = render::metrics::openmetrics(&d.exposition);
    drop(d);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        .into_response()
}

#[derive(serde::Deserialize)]
struct PprofQuery {
    seconds: Option<u64>,
}

/// The waits since the daemon started (cumulative, as Go's mutex profile), or with
/// `?seconds=N` those of the next N seconds (a delta profile, as Go's `?seconds=`).
async fn pprof(State(mut app): State<App>, Query(q): Query<PprofQuery>) -> Response {
    let before = match q.seconds {
        None => None,
        Some(s) if s == 0 || s > MAX_DELTA => {
            return (StatusCode::BAD_REQUEST, format!("seconds must be 1 to {MAX_DELTA}\n")).into_response();
        }
        Some(s) => {
            let start = {
                let mut d = app.daemon.lock().await;
                if let Err(e) = d.refresh(Duration::ZERO) {
                    say!("rmapprof: reading the maps: {e:#}");
                }
                app.labels.apply(d.report().clone())
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(s)) => {}
                _ = app.stop.wait_for(|s| *s) => {
                    return (StatusCode::SERVICE_UNAVAILABLE, "rmapprof is stopping\n").into_response();
                }
            }
            Some(start)
        }
    };
    let mut d = app.daemon.lock().await;
    let fresh = if before.is_some() { Duration::ZERO } else { SCRAPE_FRESH };
    if let Err(e) = d.refresh(fresh) {
        say!("rmapprof: reading the maps: {e:#}");
    }
    let now = app.labels.apply(d.report().clone());
    drop(d);
    let body = match &before {
        Some(b) => render::pprof::profile(&crate::report::delta(b, &now), now_nanos()),
        None => render::pprof::profile(&now, now_nanos()),
    };
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"i_mmap_rwsem.pb.gz\""),
        ],
        body,
    )
        .into_response()
}
