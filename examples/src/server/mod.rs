//! The example ingestion server behind the `keyward-server` binary: a trace-ingestion API
//! protected by API keys, with self-service key management for a project's admins, over
//! HTTP and in a browser page.
//!
//! | route | who | |
//! |---|---|---|
//! | `GET /healthz` | anyone | liveness |
//! | `GET /api/v1/me/api-keys/ping/` | key with `read` | `{"status":"ok"}`: checks a key |
//! | `POST /api/v1/traces/batch` | key with `write` | ingests `{"events":[{…},…]}` |
//! | `GET /login`, `POST /login`, `POST /logout` | anyone | sign in to the page with an admin key ([`login`]) |
//! | `/api/v1/me/api-keys/…` | admin | the library's admin JSON API ([`keyward::axum::admin::api_router`]): list, create, get, change, revoke, rotate, usage |
//! | `GET /api/v1/openapi.json` | anyone | its OpenAPI 3.1 document |
//! | `GET /settings/api-keys` | anyone (the data needs admin) | the API-keys page ([`keyward::axum::admin::page_router`]) |
//! | `GET /metrics` | anyone (loopback) | Keyward's metrics in Prometheus text format, when mounted ([`metrics`]: the binary does) |
//! | `POST /api/v1/secret-scanning/` | GitHub (signed) | leak reports, with `--secret-scanning-public-key` ([`secret_scanning`]) |
//!
//! "Admin" is an admin key (scope `admin`) in `Authorization: Bearer` or `X-API-Key`, or a
//! session opened at `/login` with one ([`admin::ServerAdminAuth`]). It manages the keys of
//! the admin key's own project **and environment**: any other id is 404, as if it did not
//! exist, and keys are issued in that environment only, with the scopes `read` and `write`
//! ([`OFFERED_SCOPES`]; admin keys come from the CLI).
//!
//! Key events ([`keyward::KeyEvent`]) are logged, and POSTed as JSON to `--webhook-url` when
//! given ([`webhook`]).
//!
//! Build the app with [`router`] and run it with [`serve`]; the binary adds argument parsing
//! and logging. Nothing here logs a key: only public key ids.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyward::axum::admin::{AdminConfig, api_router, openapi_json_for, page_router};
use keyward::axum::{KeywardLayer, VerifiedKey};
use keyward::{Environment, Error, EventsAccepted, Identity, KeyId, KeyManager, Project};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use self::admin::{ServerAdminAuth, SessionAdminAuth};
pub use self::login::SessionOptions;

pub mod admin;
pub mod login;
pub mod metrics;
// events: key events logged and posted to a webhook (webhook.rs).
pub mod secret_scanning;
pub mod webhook;

/// The realm in this server's `WWW-Authenticate` challenges.
pub const REALM: &str = "keyward";
/// Health check, no authentication.
pub const HEALTHZ: &str = "/healthz";
/// Checks a key with scope `read`.
pub const PING: &str = "/api/v1/me/api-keys/ping/";
/// Ingests a batch of events with scope `write`.
pub const TRACES_BATCH: &str = "/api/v1/traces/batch";
/// Where the admin JSON API is mounted (its list is `API_KEYS`).
pub const API_KEYS_BASE: &str = "/api/v1/me/api-keys";
/// Lists (GET) and issues (POST) keys: admin.
pub const API_KEYS: &str = "/api/v1/me/api-keys/";
/// The admin API's OpenAPI document.
pub const OPENAPI: &str = "/api/v1/openapi.json";
/// The API-keys page.
pub const API_KEYS_PAGE: &str = "/settings/api-keys";
/// The scopes the page and the admin API grant (admin keys are issued with the CLI).
pub const OFFERED_SCOPES: [&str; 2] = ["read", "write"];

/// The most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// The largest request body any route reads, in bytes (2 MiB); a larger one is answered 413
/// `body_too_large`.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
struct AppState {
    manager: KeyManager,
    sink: Arc<EventSink>,
}

/// Where accepted events go. This example only counts them per project and environment.
#[derive(Debug, Default)]
struct EventSink {
    counts: Mutex<HashMap<(Project, Environment), u64>>,
}

impl EventSink {
    /// Stores `n` events under the binding; returns the binding's new total.
    fn store(&self, project: &Project, environment: Environment, n: u64) -> u64 {
        let Ok(mut counts) = self.counts.lock() else {
            return 0;
        };
        let total = counts.entry((project.clone(), environment)).or_insert(0);
        *total += n;
        *total
    }
}

/// The app with the default [`SessionOptions`] (session cookie not `Secure`: plain HTTP).
pub fn router(manager: KeyManager) -> Router {
    router_with(manager, &SessionOptions::default())
}

/// The app: every route of the module docs; the key routes each behind a [`KeywardLayer`]
/// with its scope; the sign-in routes, the admin API and the page behind the session layer
/// `sessions` describes.
pub fn router_with(manager: KeyManager, sessions: &SessionOptions) -> Router {
    let config = AdminConfig::new(manager.clone())
        .offer_scopes(OFFERED_SCOPES)
        .login_url(login::LOGIN);
    let admin_auth = ServerAdminAuth::new(manager.clone());
    let openapi = openapi_json_for(&config, API_KEYS_BASE);
    // nest_service, not nest: axum 0.8's nest would not route `{mount}/` to the nested `/`.
    let signed_in = login::router(manager.clone())
        .nest_service(
            API_KEYS_BASE,
            api_router(config.clone(), admin_auth.clone()),
        )
        .nest_service(
            API_KEYS_PAGE,
            page_router(config, admin_auth, API_KEYS_BASE),
        )
        .layer(sessions.layer())
        .route(OPENAPI, get(move || async move { json_text(openapi) }));
    let auth = KeywardLayer::new(manager.clone()).realm(REALM);
    let state = AppState {
        manager,
        sink: Arc::new(EventSink::default()),
    };
    let read = Router::new()
        .route(PING, get(ping))
        .route_layer(auth.clone().require(["read"]));
    let write = Router::new()
        .route(TRACES_BATCH, post(traces_batch))
        .route_layer(auth.require(["write"]));
    Router::new()
        .route(HEALTHZ, get(healthz))
        .merge(read)
        .merge(write)
        .with_state(state)
        .merge(signed_in)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Serves the app on `listener` until `shutdown` completes, lets requests in flight finish,
/// then calls [`KeyManager::shutdown`] so the pending last-used times reach the store.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve(
    listener: TcpListener,
    manager: KeyManager,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, manager, &SessionOptions::default(), shutdown).await
}

/// [`serve`] with the session cookie set as `sessions` says.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve_with(
    listener: TcpListener,
    manager: KeyManager,
    sessions: &SessionOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_app(
        listener,
        router_with(manager.clone(), sessions),
        manager,
        shutdown,
    )
    .await
}

/// [`serve`] with an app built by the caller, e.g. [`router_with`] merged with
/// [`metrics::router`] or extended by [`secret_scanning::mount`]: serves `app` until
/// `shutdown`, then shuts `manager` down.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    manager: KeyManager,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Err(e) = manager.shutdown().await {
        tracing::error!(error = %e, "could not write the last-used times on shutdown");
    }
    served
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

// ---------------------------------------------------------------------------------------
// Errors

/// An error answer: the server's own, a status and `{"error": code, "message": …}` (a 400
/// also carries `WWW-Authenticate: Bearer realm="keyward", error="invalid_request", …`,
/// [`keyward::http::invalid_request`]); or a failed key operation, which `keyward::axum`
/// answers in this server's realm (the layer in front of every route that uses one renders
/// it): credential outcomes and quotas (401, 403, 429 with `Retry-After`), a refused rotation
/// (409), invalid input (400), the store down (503, logged by the layer with the caller's key
/// id, never a key).
#[derive(Debug)]
enum ApiError {
    Status {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    Keys(Error),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::Keys(e)
    }
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Status {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// A body the server could not read: 413 `body_too_large` over [`MAX_BODY_BYTES`], else
    /// 400 with the extractor's explanation.
    fn unreadable_body(status: StatusCode, explanation: String) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                status,
                "body_too_large",
                format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes (2 MiB); send less per request (at most {MAX_BATCH_EVENTS} events per batch)"
                ),
            )
        } else {
            Self::bad_request(format!("cannot read the request body: {explanation}"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Keys(e) => e.into_response(),
            Self::Status {
                status: StatusCode::BAD_REQUEST,
                message,
                ..
            } => keyward::http::invalid_request(REALM, &message).into_response(),
            Self::Status {
                status,
                code,
                message,
            } => json_response(
                status,
                &serde_json::json!({ "error": code, "message": message }),
            ),
        }
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a response as JSON");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A JSON document that is already text.
fn json_text(text: String) -> Response {
    let mut r = text.into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON body, with rejections answered as `{"error","message"}`: 400 for JSON that does not
/// parse or does not fit (the message says where), 415 without a JSON content type, 413
/// `body_too_large` for a body over [`MAX_BODY_BYTES`].
struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request(format!("invalid JSON body: {}", r.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with 'Content-Type: application/json'",
        ),
        _ => ApiError::unreadable_body(r.status(), r.body_text()),
    }
}

// ---------------------------------------------------------------------------------------
// Handlers

#[derive(Debug, Serialize)]
struct Status {
    status: &'static str,
}

const OK: Status = Status { status: "ok" };

async fn healthz() -> Json<Status> {
    Json(OK)
}

async fn ping() -> Json<Status> {
    Json(OK)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// A batch of events: `{"events": [{…}, …]}`, each event a JSON object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    events: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize)]
struct BatchAccepted {
    accepted: u64,
    project: Project,
    environment: Environment,
    key_id: KeyId,
    /// Events stored under this project and environment since the server started.
    total: u64,
    /// The quotas the batch was counted against (`null` where none is set).
    quota: QuotaState,
}

#[derive(Debug, Serialize)]
struct QuotaState {
    project: Option<keyward::QuotaUsage>,
    key: Option<keyward::QuotaUsage>,
}

async fn traces_batch(
    State(state): State<AppState>,
    VerifiedKey(who): VerifiedKey,
    JsonBody(batch): JsonBody<Batch>,
) -> Result<Response, ApiError> {
    let n = batch.events.len();
    if n == 0 {
        return Err(ApiError::bad_request(
            "the batch has no events: send {\"events\": [{…}, …]}",
        ));
    }
    if n > MAX_BATCH_EVENTS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!("the batch has {n} events; send at most {MAX_BATCH_EVENTS} per request"),
        ));
    }
    let counted = count_events(&state.manager, &who, n as u64).await?;
    let n = counted.accepted;
    let total = state.sink.store(&who.project, who.environment, n);
    tracing::debug!(key.id = %who.id, project = %who.project, events = n, "accepted a batch");
    Ok(json_response(
        StatusCode::OK,
        &BatchAccepted {
            accepted: n,
            project: who.project,
            environment: who.environment,
            key_id: who.id,
            total,
            quota: QuotaState {
                project: counted.project,
                key: counted.key,
            },
        },
    ))
}

/// Charges `n` events to the key's own quota and its project's quota
/// ([`KeyManager::consume_events`], atomic in the store and shared by every instance): the one
/// place where ingestion meets quotas. A batch that would cross a limit is refused whole with
/// [`keyward::AuthError::QuotaExceeded`], which becomes 429 with `Retry-After`.
///
/// # Errors
/// [`Error::Auth`] with the quota outcome; [`Error::Store`] when the store fails (503).
pub async fn count_events(
    manager: &KeyManager,
    identity: &Identity,
    n: u64,
) -> Result<EventsAccepted, Error> {
    manager.consume_events(identity, n).await
}
