//! The admin router (feature `admin`): the API-keys page ([`page_router`]) over the JSON API
//! of one tenant's keys.
//!
//! PLACEHOLDER on branch `admin-page`: only what the page needs to compile ([`AdminConfig`],
//! [`AdminAuth`], [`AdminCaller`], [`AdminDenied`], as the shared contract states them). At
//! merge this file is replaced by the `admin-api` branch's `mod.rs` and `auth.rs`; the page
//! uses [`AdminConfig::login_url`] (an addition to the contract) and nothing else of them.

use std::future::Future;
use std::time::Duration;

use crate::manager::{KeyManager, Tenant};
use crate::scope::Scope;

mod page;

pub use page::page_router;

/// Maps a request to the tenant the caller may manage and an actor id. The host implements
/// it (session cookie, admin API key, ...). Errors: `Unauthenticated` → 401, `Forbidden` →
/// 403.
pub trait AdminAuth: Clone + Send + Sync + 'static {
    /// The caller of this request, or why it is refused.
    fn authorize(
        &self,
        parts: &mut http::request::Parts,
    ) -> impl Future<Output = Result<AdminCaller, AdminDenied>> + Send;
}

/// Who calls the admin API, and over which tenant.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    /// Every operation goes through `manager.tenant(tenant)`.
    pub tenant: Tenant,
    /// Who acts, e.g. `key:AbCdEf123456`, `user:alice`.
    pub actor: String,
    /// `Some(token)` when the caller was authenticated by an ambient credential (a cookie):
    /// every state-changing request must then carry `X-CSRF-Token` equal to it.
    pub csrf_token: Option<String>,
}

/// Why a request is refused; the message goes into the JSON body.
#[derive(Debug, Clone)]
pub enum AdminDenied {
    /// No valid credential: 401.
    Unauthenticated(String),
    /// A valid credential without the right: 403.
    Forbidden(String),
}

/// What the admin router offers: the manager, the scopes the page offers, defaults.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    manager: KeyManager,
    scopes: Vec<Scope>,
    default_grace: Duration,
    max_page: u32,
    login_url: Option<String>,
}

impl AdminConfig {
    /// A configuration over `manager`, offering no scopes.
    pub fn new(manager: KeyManager) -> Self {
        Self {
            manager,
            scopes: Vec::new(),
            default_grace: Duration::from_secs(24 * 3600),
            max_page: 100,
            login_url: None,
        }
    }

    /// The scopes the page offers (the API refuses others).
    ///
    /// # Panics
    /// When a name is not a valid scope.
    pub fn offer_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.scopes = scopes
            .into_iter()
            .map(|s| match Scope::new(s.as_ref()) {
                Ok(scope) => scope,
                Err(e) => panic!("AdminConfig::offer_scopes: {e}"),
            })
            .collect();
        self
    }

    /// The grace period of a rotation that names none.
    pub fn default_grace(mut self, grace: Duration) -> Self {
        self.default_grace = grace;
        self
    }

    /// The largest page of a list.
    pub fn max_page(mut self, max: u32) -> Self {
        self.max_page = max;
        self
    }

    /// Where the page sends a caller who is not signed in (its sign-in link), e.g. `/login`.
    /// None by default: the page then says to sign in, without a link.
    pub fn login_url(mut self, url: impl Into<String>) -> Self {
        self.login_url = Some(url.into());
        self
    }

    /// The manager.
    pub fn manager(&self) -> &KeyManager {
        &self.manager
    }

    /// The scopes offered.
    pub fn offered_scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The sign-in link of the page, if any.
    pub fn login(&self) -> Option<&str> {
        self.login_url.as_deref()
    }
}
