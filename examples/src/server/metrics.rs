//! `GET /metrics`: Keyward's metrics (`keyward::metrics`) in Prometheus text format, through
//! `metrics-exporter-prometheus`'s recorder.
//!
//! **Order matters**: the manager takes its metric handles from the recorder installed when it
//! is built, so call [`install`] before `KeyManager::builder(…).build()`; a manager built
//! first records nothing.
//!
//! **No authentication.** The route is open, as Prometheus scrapes usually are: the binary
//! listens on loopback by default, and the metrics hold no key, key id or project name (label
//! values are bounded static strings), only counts and latencies. A server reachable from
//! elsewhere should still serve it on an internal port or behind its proxy's access rules,
//! since traffic patterns are operational information.
//!
//! ```no_run
//! # async fn run(manager_builder: keyward::KeyManagerBuilder) -> Result<(), Box<dyn std::error::Error>> {
//! use keyward_examples::server;
//! let handle = server::metrics::install()?; // first
//! let manager = manager_builder.build()?;  // then the manager
//! let app = server::router(manager).merge(server::metrics::router(handle));
//! # let _ = app; Ok(()) }
//! ```

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Where the metrics are served.
pub const METRICS: &str = "/metrics";

/// How often histogram buckets are drained when nobody scrapes ([`upkeep`]).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Histogram buckets, in seconds, for every `*_seconds` metric: store calls are sub-millisecond
/// to tens of milliseconds, Argon2 tens of milliseconds, a lost feed seconds.
const SECONDS_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    10.0,
];

/// Installs the Prometheus recorder as the process's global recorder and returns the handle
/// that renders it. Call it once, before building the manager.
///
/// # Errors
/// A recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)?
        .install_recorder()
}

/// `GET /metrics` rendering `handle`.
pub fn router<S: Clone + Send + Sync + 'static>(handle: PrometheusHandle) -> Router<S> {
    Router::new().route(
        METRICS,
        get(move || {
            let handle = handle.clone();
            async move { render(&handle) }
        }),
    )
}

fn render(handle: &PrometheusHandle) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}

/// Runs the exporter's upkeep (draining histogram buckets) every [`UPKEEP_INTERVAL`], for as
/// long as the task runs; spawn it beside the server.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}
