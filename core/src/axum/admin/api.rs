//! The JSON handlers of the admin API and [`api_router`]. Every handler authorizes the caller
//! first ([`AdminAuth`], then the CSRF check), then works through
//! `manager.tenant(caller.tenant)`, so a key of another tenant is the same 404 as an unknown id.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, OriginalUri, Path, Query, Request, State,
};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LINK};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::key::{ApiKey, Environment, KeyId};
use crate::manager::{IssueRequest, KeyInfo, KeyStatus, RotateOptions, TenantKeys};
use crate::scope::{Scope, ScopeSet};
use crate::store::{KeyChange, ListQuery};
use crate::time::{Timestamp, parse_duration};

use super::AdminConfig;
use super::auth::{AdminAuth, AdminCaller, DynAuth};
use super::csrf;
use super::error::AdminError;
use super::model::{
    CreateKeyRequest, CreatedKey, ErrorBody, KeyInfoSchema, KeyUsageSchema, ReplacedKey,
    RotateKeyRequest, RotatedKeyBody, SHOWN_ONCE, ScopeName, Session, UpdateKeyRequest,
};

/// The header that carries the next page's cursor (also in `Link: rel="next"`).
pub const NEXT_CURSOR: HeaderName = HeaderName::from_static("x-next-cursor");

/// How many store pages one list request reads at most while a `status` filter skips keys;
/// past that the answer is a short page that still links to the next.
const MAX_SCANNED_PAGES: usize = 10;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AdminState {
    config: Arc<AdminConfig>,
    auth: Arc<dyn DynAuth>,
}

impl AdminState {
    fn keys(&self, caller: &AdminCaller) -> TenantKeys {
        self.config.manager.tenant(caller.tenant.clone())
    }

    fn fail(&self, e: &Error) -> AdminError {
        AdminError::from_key_error(&self.config.manager, e)
    }

    fn info(&self, record: &crate::store::KeyRecord) -> KeyInfo {
        KeyInfo::from_record(record, self.config.manager.now())
    }
}

/// The JSON API (see the [module docs](super)): mount it with
/// `Router::nest_service("/api/v1/me/api-keys", api_router(config, auth))`, which routes both
/// `/api/v1/me/api-keys` and `/api/v1/me/api-keys/` to the list. (axum 0.8's `Router::nest`
/// routes only the first to the nested `/`, so `GET /api/v1/me/api-keys/` would be 404.)
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, body::Body, http::Request};
/// use keyward::axum::admin::{AdminConfig, BearerAdminAuth, api_router};
/// use keyward::{HashParams, IssueRequest, KeyManager};
/// use tower::ServiceExt as _;
///
/// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
///     .serve("dev".parse()?)
///     .hash_params(HashParams::INSECURE_TEST_ONLY)
///     .build()?;
/// let app = api_router(
///     AdminConfig::new(manager.clone()).offer_scopes(["read", "write"]),
///     BearerAdminAuth::new(manager.clone()),
/// );
/// let admin = manager
///     .issue(IssueRequest::new("web-app".parse()?, "dev".parse()?).scopes(["admin"])?)
///     .await?;
/// let created = app
///     .oneshot(
///         Request::post("/")
///             .header("authorization", format!("Bearer {}", admin.key.expose_secret()))
///             .header("content-type", "application/json")
///             .body(Body::from(r#"{"name": "ci", "scopes": ["read"]}"#))?,
///     )
///     .await?;
/// assert_eq!(created.status(), 201);
/// assert_eq!(created.headers()["cache-control"], "no-store");
/// # Ok(()) }
/// ```
pub fn api_router<A: AdminAuth>(config: AdminConfig, auth: A) -> Router {
    let max_body = config.max_body;
    let state = AdminState {
        config: Arc::new(config),
        auth: Arc::new(auth),
    };
    Router::new()
        .route("/session", get(session))
        .route("/", get(list_keys).post(create_key))
        .route(
            "/{key_id}/",
            get(get_key).patch(update_key).delete(revoke_key),
        )
        .route("/{key_id}/revoke/", post(revoke_key_post))
        .route("/{key_id}/rotate/", post(rotate_key))
        .route("/{key_id}/usage/", get(key_usage))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn no_route() -> AdminError {
    AdminError::not_found("no such route")
}

async fn method_not_allowed() -> AdminError {
    AdminError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

// ---------------------------------------------------------------------------------------
// Extractors

/// The authorized caller: [`AdminAuth::authorize`], then the CSRF check.
pub(crate) struct Caller(AdminCaller);

impl FromRequestParts<AdminState> for Caller {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let caller = state.auth.authorize_boxed(parts).await?;
        csrf::check(&caller, &parts.method, &parts.headers)?;
        Ok(Self(caller))
    }
}

/// A JSON body, its rejections answered as [`AdminError`]s (400, 413, 415).
pub(crate) struct JsonBody<T>(T);

impl<T> FromRequest<AdminState> for JsonBody<T>
where
    Json<T>: FromRequest<AdminState, Rejection = axum::extract::rejection::JsonRejection>,
{
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &AdminState) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(r) => Err(AdminError::from_json_rejection(&r, state.config.max_body)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Answers

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an admin answer as JSON");
            AdminError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            )
            .into_response()
        }
    }
}

/// An answer that carries a full key: never cached by browsers or proxies.
fn secret_response(body: &impl Serialize) -> Response {
    let mut r = json_response(StatusCode::CREATED, body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The key id in a path, or a 400 that says what is wrong with it (and, for a whole key
/// pasted into the URL, that it may have leaked).
fn path_id(raw: &str) -> Result<KeyId, AdminError> {
    KeyId::new(raw).map_err(|e| {
        if ApiKey::parse(raw).is_ok() {
            AdminError::invalid_request(
                "that is a whole API key, not its id: put only the 12-character id in the URL \
                 (URLs end up in logs), and revoke this key, since it may have leaked",
            )
        } else {
            AdminError::invalid_request(e.to_string())
        }
    })
}

/// Scopes for a new or changed key: at least one, each valid and, when the service restricts
/// them, offered.
fn scopes(config: &AdminConfig, names: &[ScopeName]) -> Result<ScopeSet, AdminError> {
    if names.is_empty() {
        return Err(AdminError::invalid_request(
            "'scopes' is empty: grant at least one scope, e.g. [\"read\"]",
        ));
    }
    let mut parsed = Vec::with_capacity(names.len());
    for ScopeName(name) in names {
        let scope =
            Scope::new(name).map_err(|e| AdminError::invalid_request(format!("'scopes': {e}")))?;
        if !config.offered.is_empty() && !config.offered.contains(&scope) {
            return Err(AdminError::invalid_request(format!(
                "'scopes': '{scope}' is not offered here; choose from {}",
                offered_list(config)
            )));
        }
        parsed.push(scope);
    }
    ScopeSet::parse(parsed.iter().map(Scope::as_str))
        .map_err(|e| AdminError::invalid_request(format!("'scopes': {e}")))
}

fn offered_list(config: &AdminConfig) -> String {
    config
        .offered
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Metadata must be a JSON object (or `null`: none).
fn metadata(value: Option<serde_json::Value>) -> Result<Option<serde_json::Value>, AdminError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(m @ serde_json::Value::Object(_)) => Ok(Some(m)),
        Some(_) => Err(AdminError::invalid_request(
            "'metadata' must be a JSON object, e.g. {\"team\": \"data\"}",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Handlers

/// Who is signed in, which keys they manage, the scopes offered and the CSRF token.
#[utoipa::path(
    get,
    path = "/session",
    tag = "api-keys",
    responses(
        (status = 200, description = "The caller's session", body = Session),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn session(State(state): State<AdminState>, Caller(caller): Caller) -> Response {
    let body = Session {
        actor: caller.actor,
        project: caller.tenant.project.to_string(),
        environments: caller
            .tenant
            .environment
            .iter()
            .map(ToString::to_string)
            .collect(),
        scopes: state
            .config
            .offered
            .iter()
            .map(ToString::to_string)
            .collect(),
        csrf_token: caller.csrf_token,
    };
    json_response(StatusCode::OK, &body)
}

/// `GET /?limit=N&after=CURSOR&environment=E&status=S`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    limit: Option<u32>,
    after: Option<String>,
    environment: Option<String>,
    status: Option<String>,
}

/// The `status` filter of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusFilter {
    Key(KeyStatus),
    /// Replaced by a rotation (whether or not its grace period is over).
    Rotated,
}

impl StatusFilter {
    fn parse(text: &str) -> Result<Self, AdminError> {
        Ok(match text {
            "active" => Self::Key(KeyStatus::Active),
            "revoked" => Self::Key(KeyStatus::Revoked),
            "expired" => Self::Key(KeyStatus::Expired),
            "rotated" => Self::Rotated,
            _ => {
                return Err(AdminError::invalid_request(
                    "'status' must be one of active, revoked, expired, rotated",
                ));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Key(s) => s.as_str(),
            Self::Rotated => "rotated",
        }
    }

    fn matches(self, k: &KeyInfo) -> bool {
        match self {
            Self::Key(s) => k.status == s,
            Self::Rotated => k.rotated_to.is_some(),
        }
    }
}

/// A page position as text: the last key's creation time (Unix ms) and id,
/// `1764672000000.7Kq2mZ9xA1bC`.
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

/// One page of the caller's keys, oldest first, with the filters applied. A page that may
/// not be the last carries `Link: <…?limit=N&after=CURSOR…>; rel="next"` (RFC 8288) and
/// `X-Next-Cursor: CURSOR`; the last page carries neither.
#[utoipa::path(
    get,
    path = "/",
    tag = "api-keys",
    params(
        ("limit" = Option<u32>, Query, description = "Keys per page, 1 to the maximum (default 100, maximum 1000)", minimum = 1, maximum = 1000),
        ("after" = Option<String>, Query, description = "Where the page starts: the cursor of the previous page", pattern = r"^[0-9]{1,15}\.[0-9A-Za-z]{12}$"),
        ("environment" = Option<String>, Query, description = "Only keys of this environment", pattern = r"^[a-z][a-z0-9]{1,9}$"),
        ("status" = Option<String>, Query, description = "Only keys in this state: active, revoked, expired, rotated", pattern = r"^(active|revoked|expired|rotated)$"),
    ),
    responses(
        (status = 200, description = "A page of keys", body = [KeyInfoSchema],
            headers(
                ("Link" = String, description = "The next page: `<...?limit=N&after=CURSOR>; rel=\"next\"`"),
                ("X-Next-Cursor" = String, description = "The next page's cursor"),
            )),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn list_keys(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    OriginalUri(uri): OriginalUri,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, AdminError> {
    let config = &state.config;
    let Query(params) = params.map_err(|e| {
        AdminError::invalid_request(format!(
            "{}; use ?limit=1..{}&after=<cursor>&environment=<environment>&status=<status>",
            e.body_text(),
            config.max_page
        ))
    })?;
    let limit = params.limit.unwrap_or(config.default_page);
    if !(1..=config.max_page).contains(&limit) {
        return Err(AdminError::invalid_request(format!(
            "'limit' must be 1 to {}, not {limit}",
            config.max_page
        )));
    }
    let after = match params.after.as_deref() {
        None => None,
        Some(text) => Some(parse_cursor(text).ok_or_else(|| {
            AdminError::invalid_request(
                "'after' is not a cursor: pass the X-Next-Cursor of the previous page",
            )
        })?),
    };
    let environment = params
        .environment
        .as_deref()
        .map(str::parse::<Environment>)
        .transpose()
        .map_err(|e| AdminError::invalid_request(format!("'environment': {e}")))?;
    let status = params
        .status
        .as_deref()
        .map(StatusFilter::parse)
        .transpose()?;

    let keys = state.keys(&caller);
    let mut query = ListQuery {
        project: None,
        environment,
        after,
        limit,
    };
    let mut page: Vec<KeyInfo> = Vec::new();
    let mut next: Option<String> = None;
    for scanned in 1..=MAX_SCANNED_PAGES {
        let batch = keys.list(&query).await.map_err(|e| state.fail(&e))?;
        let full = batch.len() >= limit as usize;
        let mut last_seen = None;
        let mut rest = batch.into_iter();
        for k in rest.by_ref() {
            last_seen = Some(cursor(&k));
            query.after = Some((k.created_at, k.id));
            if status.is_none_or(|s| s.matches(&k)) {
                page.push(k);
                if page.len() >= limit as usize {
                    break;
                }
            }
        }
        let more = full || rest.next().is_some();
        if page.len() >= limit as usize || (more && scanned == MAX_SCANNED_PAGES) {
            next = if more { last_seen } else { None };
            break;
        }
        if !more {
            break;
        }
    }
    let mut response = json_response(StatusCode::OK, &page);
    if let Some(next) = next {
        let mut link = format!("<{}?limit={limit}&after={next}", uri.path());
        if let Some(e) = environment {
            link.push_str(&format!("&environment={e}"));
        }
        if let Some(s) = status {
            link.push_str(&format!("&status={}", s.as_str()));
        }
        link.push_str(">; rel=\"next\"");
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.insert(LINK, v);
        }
        if let Ok(v) = HeaderValue::from_str(&next) {
            headers.insert(NEXT_CURSOR, v);
        }
    }
    Ok(response)
}

/// Issues a key in the caller's tenant; the full key is in this answer only.
#[utoipa::path(
    post,
    path = "/",
    tag = "api-keys",
    request_body(content = CreateKeyRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key, shown this once (`Cache-Control: no-store`)", body = CreatedKey,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "A bad field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn create_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateKeyRequest>,
) -> Result<Response, AdminError> {
    let config = &state.config;
    let scopes = scopes(config, &body.scopes)?;
    let environment = match body.environment.as_deref() {
        Some(text) => text
            .parse::<Environment>()
            .map_err(|e| AdminError::invalid_request(format!("'environment': {e}")))?,
        None => caller.tenant.environment.ok_or_else(|| {
            AdminError::invalid_request(
                "'environment' is missing: you manage every environment of the project, so name the key's",
            )
        })?,
    };
    if let Some(own) = caller.tenant.environment
        && own != environment
    {
        return Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "you manage the keys of environment '{own}' only and cannot issue a key of \
                 '{environment}'; sign in with an admin key of '{environment}'"
            ),
        ));
    }
    let mut req = IssueRequest::new(caller.tenant.project.clone(), environment).name(body.name);
    req.scopes = scopes;
    if let Some(text) = body.expires_in {
        let d = parse_duration(&text)
            .map_err(|e| AdminError::invalid_request(format!("'expires_in': {e}")))?;
        req = req.expires_in(d);
    }
    if let Some(m) = metadata(body.metadata)? {
        req = req.metadata(m);
    }
    let issued = state
        .keys(&caller)
        .issue(req)
        .await
        .map_err(|e| state.fail(&e))?;
    tracing::info!(actor = %caller.actor, key.id = %issued.record.id, "issued an API key");
    Ok(secret_response(&CreatedKey {
        key: issued.key.expose_secret(),
        info: state.info(&issued.record),
        warning: SHOWN_ONCE,
    }))
}

/// One key of the caller's tenant.
#[utoipa::path(
    get,
    path = "/{key_id}/",
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's 12-character id", pattern = r"^[0-9A-Za-z]{12}$", min_length = 12, max_length = 12)),
    responses(
        (status = 200, description = "The key", body = KeyInfoSchema),
        (status = 400, description = "Not a key id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn get_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Response, AdminError> {
    let id = path_id(&key_id)?;
    match state
        .keys(&caller)
        .get(&id)
        .await
        .map_err(|e| state.fail(&e))?
    {
        Some(info) => Ok(json_response(StatusCode::OK, &info)),
        None => Err(state.fail(&Error::NotFound(id))),
    }
}

/// Changes a key's name, scopes, metadata or expiry; absent fields stay as they are.
#[utoipa::path(
    patch,
    path = "/{key_id}/",
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's 12-character id", pattern = r"^[0-9A-Za-z]{12}$", min_length = 12, max_length = 12)),
    request_body(content = UpdateKeyRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed key", body = KeyInfoSchema),
        (status = 400, description = "Not a key id, or a bad field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn update_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
    JsonBody(body): JsonBody<UpdateKeyRequest>,
) -> Result<Response, AdminError> {
    let id = path_id(&key_id)?;
    let mut change = KeyChange::default();
    if let Some(name) = body.name {
        change.name = Some(name);
    }
    if let Some(names) = &body.scopes {
        change.scopes = Some(scopes(&state.config, names)?);
    }
    if let Some(m) = body.metadata {
        change.metadata = Some(metadata(m)?);
    }
    if let Some(at) = body.expires_at {
        change.expires_at = Some(
            at.as_deref()
                .map(Timestamp::parse_rfc3339)
                .transpose()
                .map_err(|e| AdminError::invalid_request(format!("'expires_at': {e}")))?,
        );
    }
    if change == KeyChange::default() {
        return Err(AdminError::invalid_request(
            "the body changes nothing: send at least one of name, scopes, metadata, expires_at",
        ));
    }
    let record = state
        .keys(&caller)
        .update(&id, &change)
        .await
        .map_err(|e| state.fail(&e))?;
    tracing::info!(actor = %caller.actor, key.id = %id, "changed an API key");
    Ok(json_response(StatusCode::OK, &state.info(&record)))
}

/// Revokes a key at once (repeating it changes nothing), as `POST /{key_id}/revoke/` does:
/// the key stays readable, with status `revoked`.
#[utoipa::path(
    delete,
    description = "Revokes the key, as `POST /{key_id}/revoke/` does (kept for clients of the \
                   example server's earlier API). The key is not deleted: it stays readable, \
                   with status `revoked`.",
    path = "/{key_id}/",
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's 12-character id", pattern = r"^[0-9A-Za-z]{12}$", min_length = 12, max_length = 12)),
    responses(
        (status = 200, description = "The revoked key", body = KeyInfoSchema),
        (status = 400, description = "Not a key id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Response, AdminError> {
    revoke(&state, &caller, &key_id).await
}

/// Revokes a key at once (repeating it changes nothing): the same as `DELETE /{key_id}/`.
#[utoipa::path(
    post,
    path = "/{key_id}/revoke/",
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's 12-character id", pattern = r"^[0-9A-Za-z]{12}$", min_length = 12, max_length = 12)),
    responses(
        (status = 200, description = "The revoked key", body = KeyInfoSchema),
        (status = 400, description = "Not a key id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_key_post(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Response, AdminError> {
    revoke(&state, &caller, &key_id).await
}

async fn revoke(
    state: &AdminState,
    caller: &AdminCaller,
    key_id: &str,
) -> Result<Response, AdminError> {
    let id = path_id(key_id)?;
    let info = state
        .keys(caller)
        .revoke(&id)
        .await
        .map_err(|e| state.fail(&e))?;
    tracing::info!(actor = %caller.actor, key.id = %id, "revoked an API key");
    Ok(json_response(StatusCode::OK, &info))
}

/// Issues a replacement key; the old one keeps working for the grace period. The full new
/// key is in this answer only.
#[utoipa::path(
    post,
    path = "/{key_id}/rotate/",
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's 12-character id", pattern = r"^[0-9A-Za-z]{12}$", min_length = 12, max_length = 12)),
    request_body(content = Option<RotateKeyRequest>, content_type = "application/json",
        description = "Optional: `{\"grace\": \"24h\", \"force\": false}`"),
    responses(
        (status = 201, description = "The new key, shown this once (`Cache-Control: no-store`)", body = RotatedKeyBody,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Not a key id, or a bad field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 409, description = "The key is revoked, expired or already rotated, and `force` is not set", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let body = body.map_err(|r| AdminError::from_bytes_rejection(&r, state.config.max_body))?;
    let id = path_id(&key_id)?;
    let body: RotateKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKeyRequest::default()
    } else {
        if !is_json(&headers) {
            return Err(AdminError::unsupported_media_type());
        }
        // `null` is no body too.
        serde_json::from_slice::<Option<RotateKeyRequest>>(&body)
            .map_err(|e| {
                AdminError::invalid_request(format!(
                    "invalid JSON body: {e}; send nothing, or {{\"grace\": \"24h\", \"force\": false}}"
                ))
            })?
            .unwrap_or_default()
    };
    let grace = match body.grace {
        Some(text) => parse_duration(&text)
            .map_err(|e| AdminError::invalid_request(format!("'grace': {e}")))?,
        None => state.config.default_grace,
    };
    let mut options = RotateOptions::grace(grace);
    if body.force {
        options = options.force();
    }
    let rotated = state
        .keys(&caller)
        .rotate_with(&id, options)
        .await
        .map_err(|e| state.fail(&e))?;
    tracing::info!(actor = %caller.actor, key.id = %id, new_key.id = %rotated.record.id, "rotated an API key");
    Ok(secret_response(&RotatedKeyBody {
        key: rotated.key.expose_secret(),
        info: state.info(&rotated.record),
        replaces: ReplacedKey {
            id,
            expires_at: rotated.grace_end,
        },
        warning: SHOWN_ONCE,
    }))
}

/// Whether the request says its body is JSON (`application/json`, or `application/*+json`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// A key's own event quota and credits in the current period.
#[utoipa::path(
    get,
    path = "/{key_id}/usage/",
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's 12-character id", pattern = r"^[0-9A-Za-z]{12}$", min_length = 12, max_length = 12)),
    responses(
        (status = 200, description = "The key's usage", body = KeyUsageSchema),
        (status = 400, description = "Not a key id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn key_usage(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Response, AdminError> {
    let id = path_id(&key_id)?;
    let usage = state
        .keys(&caller)
        .key_usage(&id)
        .await
        .map_err(|e| state.fail(&e))?;
    Ok(json_response(StatusCode::OK, &usage))
}
