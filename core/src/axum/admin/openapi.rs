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

use super::api;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "API keys",
        description = "Self-service management of a project's API keys (keyward admin API). \
                       Paths are relative to the API's mount; every error is \
                       `{\"error\": code, \"message\": text}`."
    ),
    paths(
        api::session,
        api::list_keys,
        api::create_key,
        api::get_key,
        api::update_key,
        api::revoke_key,
        api::revoke_key_post,
        api::rotate_key,
        api::key_usage,
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

/// A router that answers `GET /` (of its mount) with [`openapi_json`]`(api_base)`, as
/// `application/json`: `Router::nest_service("/api/v1/openapi.json", openapi_router(..))`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, http::Request};
/// use tower::ServiceExt as _;
/// let app = keyward::axum::admin::openapi_router("/api/v1/me/api-keys");
/// let r = app.oneshot(Request::get("/").body(Body::empty())?).await?;
/// assert_eq!(r.headers()["content-type"], "application/json");
/// # Ok(()) }
/// ```
pub fn openapi_router(api_base: &str) -> Router {
    let json = openapi_json(api_base);
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
