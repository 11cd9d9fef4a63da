//! The admin API behind a service's own "API keys" settings page (feature `admin`): an axum
//! router over [`TenantKeys`](crate::TenantKeys) that lists, issues, changes, revokes and
//! rotates the keys of the signed-in caller's project (and environment), and its OpenAPI 3.1
//! document.
//!
//! | file | concern |
//! |---|---|
//! | `auth.rs` | [`AdminAuth`] (the host's: who is calling, which tenant), [`AdminCaller`], [`AdminDenied`], [`BearerAdminAuth`] (admin API keys) |
//! | `api/` | [`api_router`] and its handlers: extractors, request values, answers, the list, one key |
//! | `model.rs` | request and response bodies and their schemas |
//! | `error.rs` | [`AdminError`]: `{"error": code, "message": text}` |
//! | `csrf.rs` | the CSRF check of cookie-authenticated callers |
//! | `openapi.rs` | [`openapi`], [`openapi_json`], [`openapi_json_for`], [`openapi_router`] |
//! | `page.rs`, `page/` | [`page_router`]: the API-keys page (HTML, script and style embedded) |
//!
//! | method | path (under the mount) | answer |
//! |---|---|---|
//! | GET | `/session` | `{"actor","project","environments","scopes","csrf_token"}` |
//! | GET | `/?limit&after&environment&status` | a page of [`KeyInfo`](crate::KeyInfo), next page in `Link` and `X-Next-Cursor` |
//! | POST | `/` | 201 `{"key","info","warning"}`, `Cache-Control: no-store` |
//! | GET, PATCH, DELETE | `/{key_id}/` | the key; changed; revoked |
//! | POST | `/{key_id}/revoke/` | the revoked key |
//! | POST | `/{key_id}/rotate/` | 201 `{"key","info","replaces":{"id","expires_at"},"warning"}`, `Cache-Control: no-store` |
//! | GET | `/{key_id}/usage/` | the key's [`KeyUsage`](crate::KeyUsage) |
//!
//! **Tenant scoping.** Every operation runs through `manager.tenant(caller.tenant)`: a key of
//! another tenant is answered with the same bytes as an id that does not exist (404), and keys
//! are issued inside the tenant only.
//!
//! **CSRF.** A caller authenticated by an ambient credential (a cookie) carries a
//! `csrf_token`: then POST, PATCH and DELETE must send it in `X-CSRF-Token` (compared in
//! constant time) and must not be `Sec-Fetch-Site: cross-site`, or they are 403 `csrf`. Bearer
//! callers need no token.
//!
//! **Errors** are `{"error": code, "message": text}` ([`AdminError`]); bad input is 400,
//! 413 or 415, never 500; the store down is 503 (logged for operators). Changes are logged
//! with the actor and the key's id, never a key.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::Router;
//! use keyward::axum::admin::{AdminConfig, BearerAdminAuth, api_router, openapi_router};
//! use keyward::{HashParams, KeyManager};
//!
//! let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
//!     .serve("dev".parse()?)
//!     .hash_params(HashParams::INSECURE_TEST_ONLY)
//!     .build()?;
//! let config = AdminConfig::new(manager.clone()).offer_scopes(["read", "write"]);
//! let app: Router = Router::new()
//!     // nest_service, not nest: axum 0.8's nest would not route `/api/v1/me/api-keys/`.
//!     .nest_service("/api/v1/me/api-keys", api_router(config.clone(), BearerAdminAuth::new(manager)))
//!     .nest_service("/api/v1/openapi.json", openapi_router(&config, "/api/v1/me/api-keys"));
//! # drop(app);
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::manager::KeyManager;
use crate::scope::Scope;

mod api;
mod auth;
mod csrf;
mod error;
mod model;
mod openapi;
mod page;

pub use api::{NEXT_CURSOR, api_router};
pub use auth::{ADMIN_SCOPE, AdminAuth, AdminCaller, AdminDenied, BearerAdminAuth};
pub use csrf::CSRF_HEADER;
pub use error::AdminError;
pub use openapi::{openapi, openapi_json, openapi_json_for, openapi_router};
pub use page::page_router;

/// The realm of the admin API's credential checks.
const REALM: &str = "admin";

/// How long a rotated key keeps working when the request names no grace period, unless
/// [`AdminConfig::default_grace`] says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Keys per list page unless the request's `limit` or [`AdminConfig::default_page`] says
/// otherwise.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest `limit` of a list unless [`AdminConfig::max_page`] says otherwise.
pub const MAX_PAGE: u32 = 1000;
/// The largest request body, in bytes (64 KiB), unless [`AdminConfig::max_body`] says
/// otherwise; a larger one is 413 `payload_too_large`.
pub const MAX_BODY: usize = 64 * 1024;

/// What the admin API offers: the manager, the scopes a new key may have, the default grace
/// period of a rotation, the page sizes and the body limit.
///
/// ```
/// use std::time::Duration;
/// use keyward::axum::admin::AdminConfig;
/// # let manager = keyward::KeyManager::builder(keyward_memory::MemoryStore::new()).build()?;
/// let config = AdminConfig::new(manager)
///     .offer_scopes(["read", "write"])
///     .default_grace(Duration::from_secs(3600))
///     .max_page(500);
/// assert_eq!(config.offered_scopes().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AdminConfig {
    manager: KeyManager,
    offered: Vec<Scope>,
    default_grace: Duration,
    max_page: u32,
    default_page: u32,
    max_body: usize,
    login_url: Option<String>,
}

impl AdminConfig {
    /// The admin API of `manager`'s keys: any scope, a grace of [`DEFAULT_GRACE`], pages of
    /// [`DEFAULT_PAGE`] up to [`MAX_PAGE`], bodies up to [`MAX_BODY`].
    pub fn new(manager: KeyManager) -> Self {
        Self {
            manager,
            offered: Vec::new(),
            default_grace: DEFAULT_GRACE,
            max_page: MAX_PAGE,
            default_page: DEFAULT_PAGE,
            max_body: MAX_BODY,
            login_url: None,
        }
    }

    /// The scopes a new or changed key may be granted, in the order the page shows them; the
    /// API refuses others with 400. Without this call any valid scope may be granted.
    ///
    /// # Panics
    /// When a name is not a valid scope (they are part of the program; see
    /// [`AdminConfig::try_offer_scopes`] for names read from configuration).
    pub fn offer_scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match self.try_offer_scopes(scopes) {
            Ok(config) => config,
            Err(e) => panic!("AdminConfig::offer_scopes: {e}"),
        }
    }

    /// [`AdminConfig::offer_scopes`] for names read from configuration.
    ///
    /// # Errors
    /// [`InvalidValue`](crate::InvalidValue) when a name is not a valid scope.
    pub fn try_offer_scopes<I, S>(mut self, scopes: I) -> Result<Self, crate::InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut offered: Vec<Scope> = Vec::new();
        for s in scopes {
            let scope = Scope::new(s.as_ref())?;
            if !offered.contains(&scope) {
                offered.push(scope);
            }
        }
        self.offered = offered;
        Ok(self)
    }

    /// How long a rotated key keeps working when the request names no grace period.
    pub fn default_grace(mut self, grace: Duration) -> Self {
        self.default_grace = grace;
        self
    }

    /// The largest `limit` of a list (at least 1); the default page shrinks to fit.
    pub fn max_page(mut self, max: u32) -> Self {
        self.max_page = max.max(1);
        self.default_page = self.default_page.min(self.max_page);
        self
    }

    /// Keys per list page when the request names no `limit` (1 to the maximum).
    pub fn default_page(mut self, n: u32) -> Self {
        self.default_page = n.clamp(1, self.max_page);
        self
    }

    /// The largest request body, in bytes.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Where the page sends a caller who is not signed in (its sign-in link), e.g. `/login`.
    /// None by default: the page then says to sign in, without a link.
    pub fn login_url(mut self, url: impl Into<String>) -> Self {
        self.login_url = Some(url.into());
        self
    }

    /// The page's sign-in link, if any.
    pub fn login(&self) -> Option<&str> {
        self.login_url.as_deref()
    }

    /// The manager.
    pub fn manager(&self) -> &KeyManager {
        &self.manager
    }

    /// The scopes offered (empty: any).
    pub fn offered_scopes(&self) -> &[Scope] {
        &self.offered
    }
}
