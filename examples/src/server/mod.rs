//! The example ingestion server behind the `keyward-server` binary: a trace-ingestion API
//! protected by API keys, with self-service key management for a project's admins.
//!
//! | route | scope | |
//! |---|---|---|
//! | `GET /healthz` | none | liveness |
//! | `GET /api/v1/me/api-keys/ping/` | `read` | `{"status":"ok"}`: checks a key |
//! | `POST /api/v1/traces/batch` | `write` | ingests `{"events":[{…},…]}` |
//! | `POST /api/v1/me/api-keys/` | `admin` | issues a key (shown once) |
//! | `GET /api/v1/me/api-keys/` | `admin` | lists the keys (masked) |
//! | `DELETE /api/v1/me/api-keys/{key_id}/` | `admin` | revokes a key at once |
//! | `POST /api/v1/me/api-keys/{key_id}/rotate/` | `admin` | issues a replacement key; 409 for a revoked, expired or already rotated key unless the body says `"force": true` |
//!
//! An admin key manages the keys of its own project **and environment**: it lists, revokes
//! and rotates those only (any other id is 404, as if it did not exist), and it issues keys
//! in its own environment only, so a `dev` admin key cannot mint a `prd` key.
//!
//! Build the app with [`router`] and run it with [`serve`]; the binary adds argument parsing
//! and logging. Nothing here logs a key: only public key ids.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use keyward::EventsAccepted;
use keyward::axum::{KeywardLayer, VerifiedKey};
use keyward::{
    ApiKey, Environment, Error, Identity, IssueRequest, IssuedKey, KeyId, KeyInfo, KeyManager,
    ListQuery, Project, RotateOptions, Scope, Tenant, TenantKeys, Timestamp, parse_duration,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use self::login::SessionOptions;

pub mod login;

/// The realm in this server's `WWW-Authenticate` challenges.
pub const REALM: &str = "keyward";
/// Health check, no authentication.
pub const HEALTHZ: &str = "/healthz";
/// Checks a key with scope `read`.
pub const PING: &str = "/api/v1/me/api-keys/ping/";
/// Ingests a batch of events with scope `write`.
pub const TRACES_BATCH: &str = "/api/v1/traces/batch";
/// Lists (GET) and issues (POST) keys with scope `admin`.
pub const API_KEYS: &str = "/api/v1/me/api-keys/";
/// Revokes (DELETE) a key with scope `admin`.
pub const API_KEY: &str = "/api/v1/me/api-keys/{key_id}/";
/// Rotates (POST) a key with scope `admin`.
pub const API_KEY_ROTATE: &str = "/api/v1/me/api-keys/{key_id}/rotate/";

/// The most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// The largest request body any route reads, in bytes (2 MiB); a larger one is answered 413
/// `body_too_large`.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// How long a rotated key keeps working when the request names no grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

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

/// The app: every route of the module docs, each behind a [`KeywardLayer`] with its scope;
/// the sign-in routes behind the session layer `sessions` describes.
pub fn router_with(manager: KeyManager, sessions: &SessionOptions) -> Router {
    let signed_in = login::router(manager.clone()).layer(sessions.layer());
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
        .route_layer(auth.clone().require(["write"]));
    let admin = Router::new()
        .route(API_KEYS, get(list_keys).post(create_key))
        .route(API_KEY, delete(revoke_key))
        .route(API_KEY_ROTATE, post(rotate_key))
        .route_layer(auth.require(["admin"]));
    Router::new()
        .route(HEALTHZ, get(healthz))
        .merge(read)
        .merge(write)
        .merge(admin)
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
    let app = router_with(manager.clone(), sessions);
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
    /// An admin operation's unknown id is one outside the caller's project and environment
    /// (`TenantKeys`): the answer says where the caller's keys are.
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) => Self::not_found(
                "no such key in your project and environment: list them with GET /api/v1/me/api-keys/",
            ),
            e => Self::Keys(e),
        }
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

/// A response that carries a full key: never cached by browsers or proxies.
fn secret_response(status: StatusCode, body: &impl Serialize) -> Response {
    let mut r = json_response(status, body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
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

/// `POST /api/v1/me/api-keys/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    /// A human-readable name.
    #[serde(default)]
    name: String,
    /// Must be the caller's environment (the default).
    environment: Option<Environment>,
    /// At least one scope.
    scopes: Vec<Scope>,
    /// `90s`, `15m`, `24h`, `30d`, `2w`.
    expires_in: Option<String>,
    /// Free-form JSON, at most 16 KiB.
    metadata: Option<serde_json::Value>,
}

/// A key shown once, with its public view.
#[derive(Serialize)]
struct KeyOnce<'a> {
    /// The full key: shown once; only its hash is stored.
    key: &'a str,
    #[serde(flatten)]
    info: KeyInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaces: Option<ReplacedKey>,
    warning: &'static str,
}

#[derive(Serialize)]
struct ReplacedKey {
    id: KeyId,
    /// When the old key stops working (the end of the grace period).
    expires_at: Timestamp,
}

const SHOWN_ONCE: &str =
    "this is the only time the full key is shown: store it now; only its hash is kept";

fn key_once(manager: &KeyManager, issued: &IssuedKey, replaces: Option<ReplacedKey>) -> Response {
    secret_response(
        StatusCode::CREATED,
        &KeyOnce {
            key: issued.key.expose_secret(),
            info: KeyInfo::from_record(&issued.record, manager.now()),
            replaces,
            warning: SHOWN_ONCE,
        },
    )
}

async fn create_key(
    State(state): State<AppState>,
    VerifiedKey(who): VerifiedKey,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<Response, ApiError> {
    let environment = body.environment.unwrap_or(who.environment);
    if environment != who.environment {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this admin key belongs to environment '{}' and can only issue '{}' keys; use an admin key of '{environment}'",
                who.environment, who.environment
            ),
        ));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::bad_request(
            "'scopes' is empty: grant at least one scope, e.g. [\"read\", \"write\"]",
        ));
    }
    let mut req = IssueRequest::new(who.project.clone(), environment).name(body.name);
    req.scopes = body.scopes.into_iter().collect();
    if let Some(text) = body.expires_in {
        let d = parse_duration(&text)
            .map_err(|e| ApiError::bad_request(format!("'expires_in': {e}")))?;
        req = req.expires_in(d);
    }
    if let Some(m) = body.metadata {
        req = req.metadata(m);
    }
    let issued = tenant_of(&state, &who).issue(req).await?;
    tracing::info!(key.id = %issued.record.id, by = %who.id, "issued API key over HTTP");
    Ok(key_once(&state.manager, &issued, None))
}

/// The admin operations an admin key may perform: on its own project and environment only.
/// Every key route goes through it, so a key of another tenant is 404, exactly as an unknown
/// id.
fn tenant_of(state: &AppState, who: &Identity) -> TenantKeys {
    state
        .manager
        .tenant(Tenant::new(who.project.clone()).with_environment(who.environment))
}

/// Keys per page of `GET /api/v1/me/api-keys/` unless `limit` says otherwise.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest `limit` of `GET /api/v1/me/api-keys/`.
pub const MAX_PAGE: u32 = 1000;

/// `GET /api/v1/me/api-keys/?limit=N&after=CURSOR`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// Keys per page, 1 to [`MAX_PAGE`] (default [`DEFAULT_PAGE`]).
    limit: Option<u32>,
    /// Where the page starts: the `after` of the previous page's `Link: rel="next"`.
    after: Option<String>,
}

/// A page position as text: the last key's creation time (Unix ms) and id, `1764672000000.7Kq2mZ9xA1bC`.
fn cursor(k: &KeyInfo) -> String {
    format!("{}.{}", k.created_at.unix_millis(), k.id)
}

fn parse_cursor(text: &str) -> Option<(Timestamp, KeyId)> {
    let (ms, id) = text.split_once('.')?;
    Some((
        Timestamp::from_unix_millis(ms.parse().ok()?),
        id.parse().ok()?,
    ))
}

/// One page of the caller's keys, oldest first. A full page carries
/// `Link: <…?limit=N&after=CURSOR>; rel="next"` (RFC 8288); the last page carries none. A
/// page costs one indexed store query however many keys the project has.
async fn list_keys(
    State(state): State<AppState>,
    VerifiedKey(who): VerifiedKey,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; use ?limit=1..{MAX_PAGE}&after=<cursor from the previous page's Link header>",
            e.body_text()
        ))
    })?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "'limit' must be 1 to {MAX_PAGE}, not {limit}"
        )));
    }
    let after = match params.after.as_deref() {
        None => None,
        Some(text) => Some(parse_cursor(text).ok_or_else(|| {
            ApiError::bad_request(
                "'after' is not a cursor: pass the 'after' of the previous page's Link header",
            )
        })?),
    };
    let query = ListQuery {
        after,
        limit,
        ..ListQuery::default()
    };
    let keys = tenant_of(&state, &who).list(&query).await?;
    let mut response = json_response(StatusCode::OK, &keys);
    if keys.len() == limit as usize
        && let Some(last) = keys.last()
        && let Ok(link) = HeaderValue::from_str(&format!(
            "<{API_KEYS}?limit={limit}&after={}>; rel=\"next\"",
            cursor(last)
        ))
    {
        response
            .headers_mut()
            .insert(axum::http::header::LINK, link);
    }
    Ok(response)
}

/// The key id in a path, or a 400 that says what is wrong with it (and, for a whole key
/// pasted into the URL, that it may have leaked).
fn path_id(raw: &str) -> Result<KeyId, ApiError> {
    KeyId::new(raw).map_err(|e| {
        let message = if ApiKey::parse(raw).is_ok() {
            "that is a whole API key, not its id: put only the 12-character id in the URL \
             (URLs end up in logs), and revoke this key, since it may have leaked"
                .to_owned()
        } else {
            e.to_string()
        };
        ApiError::bad_request(message)
    })
}

async fn revoke_key(
    State(state): State<AppState>,
    VerifiedKey(who): VerifiedKey,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&key_id)?;
    let info = tenant_of(&state, &who).revoke(&id).await?;
    tracing::info!(key.id = %id, by = %who.id, "revoked API key over HTTP");
    Ok(json_response(StatusCode::OK, &info))
}

/// `POST /api/v1/me/api-keys/{key_id}/rotate/`, with an optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    /// How long the old key keeps working: `90s`, `15m`, `24h` (the default), `30d`.
    grace: Option<String>,
    /// Rotate even a revoked, expired or already rotated key (otherwise 409 Conflict).
    #[serde(default)]
    force: bool,
}

async fn rotate_key(
    State(state): State<AppState>,
    VerifiedKey(who): VerifiedKey,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| ApiError::unreadable_body(r.status(), r.body_text()))?;
    let id = path_id(&key_id)?;
    let body: RotateKey = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid JSON body: {e}; send nothing, or {{\"grace\": \"24h\", \"force\": false}}"
            ))
        })?
    };
    let grace = match body.grace {
        Some(text) => {
            parse_duration(&text).map_err(|e| ApiError::bad_request(format!("'grace': {e}")))?
        }
        None => DEFAULT_GRACE,
    };
    let mut options = RotateOptions::grace(grace);
    if body.force {
        options = options.force();
    }
    let rotated = tenant_of(&state, &who).rotate_with(&id, options).await?;
    tracing::info!(key.id = %id, new_key.id = %rotated.record.id, by = %who.id, "rotated API key over HTTP");
    let grace_end = rotated.grace_end;
    Ok(key_once(
        &state.manager,
        &IssuedKey::from(rotated),
        Some(ReplacedKey {
            id,
            expires_at: grace_end,
        }),
    ))
}
