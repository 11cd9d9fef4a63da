//! The JSON API of the admin router: [`api_router`] and what its handlers share. Every handler
//! authorizes the caller first ([`AdminAuth`], then the CSRF check), then works through
//! `manager.tenant(caller.tenant)`, so a key of another tenant is the same 404 as an unknown id.
//!
//! | file | concern |
//! |---|---|
//! | `extract.rs` | the caller and the JSON body, as extractors |
//! | `input.rs` | key ids, scopes and metadata read from a request |
//! | `answer.rs` | JSON answers, and the one-time answers that carry a key |
//! | `list.rs` | the paginated, filtered list |
//! | `keys.rs` | the session, and create, get, update, revoke, rotate and usage of one key |
//! | `audit.rs` | the tenant's audit trail |

mod answer;
pub(crate) mod audit;
mod extract;
mod input;
pub(crate) mod keys;
pub(crate) mod list;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use http::{HeaderName, StatusCode};

use crate::audit::{Actor, MAX_ACTOR_LEN};
use crate::error::Error;
use crate::manager::{KeyInfo, TenantKeys};

use super::AdminConfig;
use super::auth::{AdminAuth, AdminCaller, DynAuth};
use super::error::AdminError;
use audit::audit_trail;
use keys::{
    create_key, get_key, key_usage, revoke_key, revoke_key_post, rotate_key, session, update_key,
};
use list::list_keys;

/// The header that carries the next page's cursor (also in `Link: rel="next"`).
pub const NEXT_CURSOR: HeaderName = HeaderName::from_static("x-next-cursor");

/// How many store pages one list request reads at most while a `status` filter skips keys;
/// past that the answer is a short page that still links to the next.
pub(crate) const MAX_SCANNED_PAGES: usize = 10;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AdminState {
    config: Arc<AdminConfig>,
    auth: Arc<dyn DynAuth>,
}

impl AdminState {
    /// The caller's tenant, its changes attributed to the caller's actor in the audit trail.
    pub(super) fn keys(&self, caller: &AdminCaller) -> TenantKeys {
        self.config
            .manager
            .acting_as(actor_of(&caller.actor))
            .tenant(caller.tenant.clone())
    }

    pub(super) fn fail(&self, e: &Error) -> AdminError {
        AdminError::from_key_error(&self.config.manager, e)
    }

    pub(super) fn info(&self, record: &crate::store::KeyRecord) -> KeyInfo {
        KeyInfo::from_record(record, self.config.manager.now())
    }
}

/// The audit trail's actor for the host's actor id. An id that is no valid [`Actor`] (empty,
/// too long, control characters) is the host's bug, but refusing the request would lock its
/// users out of their keys, so it is made valid instead and logged: control characters become
/// `\u{FFFD}`, the text is cut to [`MAX_ACTOR_LEN`] characters, and an empty id is `unknown`.
pub(crate) fn actor_of(id: &str) -> Actor {
    if let Ok(actor) = Actor::new(id) {
        return actor;
    }
    let cleaned: String = id
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .take(MAX_ACTOR_LEN)
        .collect();
    tracing::warn!(
        actor = %cleaned,
        "the admin caller's actor id is not a valid audit actor (1-256 characters, no control characters); recorded as shown"
    );
    let cleaned = if cleaned.is_empty() {
        "unknown".to_owned()
    } else {
        cleaned
    };
    Actor::new(cleaned).unwrap_or_else(|_| Actor::system())
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
        .route("/audit", get(audit_trail))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_actor_id_is_made_valid_not_refused() {
        assert_eq!(actor_of("user:alice").as_str(), "user:alice");
        assert_eq!(actor_of("").as_str(), "unknown");
        assert_eq!(actor_of("a\nb").as_str(), "a\u{FFFD}b");
        assert_eq!(actor_of(&"x".repeat(300)).as_str().len(), MAX_ACTOR_LEN);
    }
}
