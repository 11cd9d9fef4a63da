//! Who may manage keys: the [`AdminAuth`] trait the host implements, the [`AdminCaller`] it
//! names, the [`AdminDenied`] refusals, and [`BearerAdminAuth`], an implementation over
//! admin API keys.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use http::StatusCode;
use http::header::{AUTHORIZATION, RETRY_AFTER};
use http::request::Parts;

use crate::http::{Guard, Rejection, X_API_KEY};
use crate::manager::{KeyManager, Tenant};

/// Maps a request to the tenant the caller may manage and an actor id. The host implements
/// it (a session cookie, an admin API key, …); [`BearerAdminAuth`] is a ready-made one.
///
/// Every operation of the admin API runs through
/// [`KeyManager::tenant`](crate::KeyManager::tenant) with the caller's tenant, so a key of
/// another tenant is answered exactly as an unknown id.
///
/// ```
/// use http::request::Parts;
/// use keyward::Tenant;
/// use keyward::axum::admin::{AdminAuth, AdminCaller, AdminDenied};
///
/// /// Trusts a header set by an authenticating proxy in front of the service.
/// #[derive(Clone)]
/// struct ProxyAuth;
///
/// impl AdminAuth for ProxyAuth {
///     async fn authorize(&self, parts: &mut Parts) -> Result<AdminCaller, AdminDenied> {
///         let user = parts
///             .headers
///             .get("x-authenticated-user")
///             .and_then(|v| v.to_str().ok())
///             .ok_or_else(|| AdminDenied::Unauthenticated("sign in first".into()))?;
///         Ok(AdminCaller {
///             tenant: Tenant::new("web-app".parse().map_err(|_| AdminDenied::Forbidden("no project".into()))?),
///             actor: format!("user:{user}"),
///             csrf_token: None,
///         })
///     }
/// }
/// ```
pub trait AdminAuth: Clone + Send + Sync + 'static {
    /// Who is calling, and what they may manage.
    ///
    /// # Errors
    /// [`AdminDenied::Unauthenticated`] (401), [`AdminDenied::Forbidden`] (403), or another
    /// refusal.
    fn authorize(
        &self,
        parts: &mut Parts,
    ) -> impl Future<Output = Result<AdminCaller, AdminDenied>> + Send;
}

/// The caller of an admin request: whose keys it may manage, and who it is in the logs. Its
/// `Debug` hides the CSRF token.
///
/// ```
/// use keyward::Tenant;
/// use keyward::axum::admin::AdminCaller;
/// let caller = AdminCaller {
///     tenant: Tenant::new("web-app".parse()?).with_environment("prd".parse()?),
///     actor: "user:alice".into(),
///     csrf_token: Some("from-the-session".into()), // a cookie session: CSRF checks apply
/// };
/// assert!(!format!("{caller:?}").contains("from-the-session"));
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AdminCaller {
    /// Every operation goes through `manager.tenant(tenant)`.
    pub tenant: Tenant,
    /// Who acts, for the logs and the audit trail: `key:AbCdEf123456`, `user:alice`. Every
    /// change the caller makes is recorded with it (1 to 256 characters, no control
    /// characters; an id that breaks that rule is recorded cleaned up, with a warning logged).
    pub actor: String,
    /// `Some(token)` when the caller was authenticated by an ambient credential (a cookie):
    /// then every state-changing request (POST, PATCH, DELETE) must carry the header
    /// `X-CSRF-Token` equal to it (compared in constant time), and may not come from another
    /// site (`Sec-Fetch-Site: cross-site`), or it is answered 403 `csrf`. `None` for Bearer
    /// callers.
    pub csrf_token: Option<String>,
}

impl fmt::Debug for AdminCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminCaller")
            .field("tenant", &self.tenant)
            .field("actor", &self.actor)
            .field(
                "csrf_token",
                &self.csrf_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// Why an admin request is refused before it reaches the keys. The message goes into the
/// JSON body, so it must not contain a secret.
///
/// ```
/// use keyward::axum::admin::{AdminDenied, AdminError};
/// let e = AdminError::from(AdminDenied::Unauthenticated("sign in first".into()));
/// assert_eq!((e.status().as_u16(), e.code()), (401, "unauthenticated"));
/// let e = AdminError::from(AdminDenied::Forbidden("only project admins manage keys".into()));
/// assert_eq!((e.status().as_u16(), e.code()), (403, "forbidden"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminDenied {
    /// No or bad credentials: 401 `unauthenticated`.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed to manage keys: 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// The credential was sent in a way the service refuses (in the URL, twice): 400
    /// `invalid_request`.
    #[error("{0}")]
    Invalid(String),
    /// Too many requests: 429 `too_many_requests` with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// What to tell the caller.
        message: String,
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// The credential could not be checked (the store is down): 503 `temporarily_unavailable`.
    #[error("the key service is temporarily unavailable; retry shortly")]
    Unavailable,
}

/// The ready-made [`AdminAuth`]: `Authorization: Bearer <admin key>` (or `X-API-Key`),
/// verified by a [`KeyManager`] through a [`Guard`] that requires the scope `admin` (see
/// [`BearerAdminAuth::scope`]). The caller manages the keys of the admin key's project and
/// environment; its actor is `key:<id>`; it needs no CSRF token.
///
/// A bad key is 401 `unauthenticated` with the guard's explanation, a key without the scope
/// 403 `forbidden`, the store down 503.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keyward::axum::admin::{AdminAuth, BearerAdminAuth};
/// use keyward::{HashParams, IssueRequest, KeyManager};
///
/// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
///     .serve("dev".parse()?)
///     .hash_params(HashParams::INSECURE_TEST_ONLY)
///     .build()?;
/// let admin = manager
///     .issue(IssueRequest::new("web-app".parse()?, "dev".parse()?).scopes(["admin"])?)
///     .await?;
/// let (mut parts, ()) = http::Request::builder()
///     .header("authorization", format!("Bearer {}", admin.key.expose_secret()))
///     .body(())?
///     .into_parts();
/// let caller = BearerAdminAuth::new(manager).authorize(&mut parts).await?;
/// assert_eq!(caller.actor, format!("key:{}", admin.record.id));
/// assert_eq!(caller.tenant.to_string(), "project 'web-app', environment 'dev'");
/// assert!(caller.csrf_token.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BearerAdminAuth {
    guard: Guard,
}

/// The scope [`BearerAdminAuth`] requires unless told otherwise.
pub const ADMIN_SCOPE: &str = "admin";

impl BearerAdminAuth {
    /// Admin keys of `manager` with the scope [`ADMIN_SCOPE`].
    pub fn new(manager: KeyManager) -> Self {
        Self {
            guard: Guard::new(manager)
                .realm(super::REALM)
                .require([ADMIN_SCOPE]),
        }
    }

    /// Requires this scope instead of [`ADMIN_SCOPE`].
    ///
    /// # Panics
    /// When `scope` is not a valid scope name (it is part of the program, as with
    /// [`Guard::require`]).
    pub fn scope(self, scope: &str) -> Self {
        Self {
            guard: self.guard.require([scope]),
        }
    }

    /// The guard that verifies the keys.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

impl AdminAuth for BearerAdminAuth {
    async fn authorize(&self, parts: &mut Parts) -> Result<AdminCaller, AdminDenied> {
        let identity = self
            .guard
            .authenticate(
                parts.uri.query(),
                parts
                    .headers
                    .get_all(AUTHORIZATION)
                    .iter()
                    .map(|v| v.as_bytes()),
                parts
                    .headers
                    .get_all(X_API_KEY)
                    .iter()
                    .map(|v| v.as_bytes()),
            )
            .await
            .map_err(denied)?;
        Ok(AdminCaller {
            actor: format!("key:{}", identity.id),
            tenant: Tenant::new(identity.project).with_environment(identity.environment),
            csrf_token: None,
        })
    }
}

/// The guard's refusal as an [`AdminDenied`], keeping its message.
fn denied(r: Rejection) -> AdminDenied {
    let message = serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    match r.status {
        StatusCode::UNAUTHORIZED => AdminDenied::Unauthenticated(message),
        StatusCode::FORBIDDEN => AdminDenied::Forbidden(message),
        StatusCode::BAD_REQUEST => AdminDenied::Invalid(message),
        StatusCode::TOO_MANY_REQUESTS => AdminDenied::TooManyRequests {
            message,
            retry_after: r
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1),
        },
        _ => AdminDenied::Unavailable,
    }
}

/// [`AdminAuth`] behind a pointer, so the handlers are not generic.
pub(crate) trait DynAuth: Send + Sync {
    fn authorize_boxed<'a>(
        &'a self,
        parts: &'a mut Parts,
    ) -> Pin<Box<dyn Future<Output = Result<AdminCaller, AdminDenied>> + Send + 'a>>;
}

impl<A: AdminAuth> DynAuth for A {
    fn authorize_boxed<'a>(
        &'a self,
        parts: &'a mut Parts,
    ) -> Pin<Box<dyn Future<Output = Result<AdminCaller, AdminDenied>> + Send + 'a>> {
        Box::pin(self.authorize(parts))
    }
}
