//! The admin API's OpenAPI 3.1 document, derived from the handlers' `#[utoipa::path]`
//! attributes and the bodies' schemas (nothing written by hand), with its paths relative to
//! the API's mount.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use utoipa::OpenApi as _;
use utoipa::openapi::{OpenApi, Server};

use serde_json::Value;

use super::{AdminConfig, api};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "API keys",
        description = "Self-service management of a project's API keys (keyward admin API). \
                       Paths are relative to the API's mount; every error is \
                       `{\"error\": code, \"message\": text}`."
    ),
    paths(
        api::keys::session,
        api::list::list_keys,
        api::keys::create_key,
        api::keys::get_key,
        api::keys::update_key,
        api::keys::revoke_key,
        api::keys::revoke_key_post,
        api::keys::rotate_key,
        api::keys::key_usage,
        api::audit::audit_trail,
    ),
    tags((name = "api-keys", description = "A project's API keys"))
)]
struct AdminApiDoc;

/// The admin API's OpenAPI 3.1 document, its paths relative to the API's mount and no
/// `servers` (the host sets them, or uses [`openapi_json`]).
///
/// ```
/// let doc = keyward::axum::admin::openapi();
/// assert!(doc.paths.paths.contains_key("/{key_id}/rotate/"));
/// ```
pub fn openapi() -> OpenApi {
    let mut doc = AdminApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// [`openapi`] as JSON, with `servers` = `[{"url": api_base}]` (where the host mounts
/// [`api_router`](super::api_router)).
///
/// ```
/// let json = keyward::axum::admin::openapi_json("/api/v1/me/api-keys");
/// let doc: serde_json::Value = serde_json::from_str(&json)?;
/// assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")));
/// assert_eq!(doc["servers"][0]["url"], "/api/v1/me/api-keys");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn openapi_json(api_base: &str) -> String {
    let mut doc = openapi();
    doc.servers = Some(vec![Server::new(api_base)]);
    match doc.to_json() {
        Ok(json) => json,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the admin API's OpenAPI document");
            String::from("{}")
        }
    }
}

/// [`openapi_json`] for the router `config` makes: `scopes` lists the scopes it offers (when
/// it restricts them) and `limit` has its largest page, so that every request the document
/// allows is one the router accepts.
///
/// ```
/// use keyward::axum::admin::{AdminConfig, openapi_json_for};
/// # let manager = keyward::KeyManager::builder(keyward_memory::MemoryStore::new()).build()?;
/// let config = AdminConfig::new(manager).offer_scopes(["read", "write"]).max_page(50);
/// let doc: serde_json::Value = serde_json::from_str(&openapi_json_for(&config, "/keys"))?;
/// assert_eq!(doc["components"]["schemas"]["ScopeName"]["enum"], serde_json::json!(["read", "write"]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn openapi_json_for(config: &AdminConfig, api_base: &str) -> String {
    let json = openapi_json(api_base);
    let Ok(mut doc) = serde_json::from_str::<Value>(&json) else {
        return json;
    };
    if !config.offered_scopes().is_empty()
        && let Some(scope) = doc.pointer_mut("/components/schemas/ScopeName")
        && let Some(scope) = scope.as_object_mut()
    {
        let offered = config.offered_scopes().iter().map(|s| s.as_str().into());
        scope.insert("enum".into(), Value::Array(offered.collect()));
    }
    if let Some(Value::Array(params)) = doc.pointer_mut("/paths/~1/get/parameters") {
        for param in params {
            if param["name"] == "limit"
                && let Some(schema) = param.get_mut("schema").and_then(Value::as_object_mut)
            {
                schema.insert("maximum".into(), config.max_page.into());
            }
        }
    }
    doc.to_string()
}

/// A router that answers `GET /` (of its mount) with [`openapi_json_for`]`(config,
/// api_base)`, as `application/json`:
/// `Router::nest_service("/api/v1/openapi.json", openapi_router(&config, ..))`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, http::Request};
/// use tower::ServiceExt as _;
/// # let manager = keyward::KeyManager::builder(keyward_memory::MemoryStore::new()).build()?;
/// let config = keyward::axum::admin::AdminConfig::new(manager);
/// let app = keyward::axum::admin::openapi_router(&config, "/api/v1/me/api-keys");
/// let r = app.oneshot(Request::get("/").body(Body::empty())?).await?;
/// assert_eq!(r.headers()["content-type"], "application/json");
/// # Ok(()) }
/// ```
pub fn openapi_router(config: &AdminConfig, api_base: &str) -> Router {
    let json = openapi_json_for(config, api_base);
    Router::new().route(
        "/",
        get(move || {
            let json = json.clone();
            async move { json_document(json) }
        }),
    )
}

fn json_document(json: String) -> Response {
    let mut r = json.into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
