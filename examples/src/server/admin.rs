//! Who may manage keys on this server: [`ServerAdminAuth`], an admin API key in a header
//! (`Authorization: Bearer`, `X-API-Key`: the library's [`BearerAdminAuth`], no CSRF token)
//! or else a signed-in session ([`SessionAdminAuth`], the browser's way, with a CSRF token).

use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use keyward::axum::admin::{AdminAuth, AdminCaller, AdminDenied, BearerAdminAuth};
use keyward::http::X_API_KEY;
use keyward::{KeyManager, Tenant};

use super::login::{NotSignedIn, signed_in};

/// The signed-in session of `/login` as an [`AdminAuth`]: the admin key's project and
/// environment as the tenant, `key:<id>` as the actor, the session's CSRF token (so every
/// POST, PATCH and DELETE must carry `X-CSRF-Token`). The admin key is re-read by id on each
/// request: once it is revoked or expired, the session is ended and the caller is 401.
/// Needs the session layer ([`SessionOptions::layer`](super::SessionOptions::layer)) in
/// front.
#[derive(Debug, Clone)]
pub struct SessionAdminAuth {
    manager: KeyManager,
}

impl SessionAdminAuth {
    /// Sessions whose admin keys `manager` checks.
    pub fn new(manager: KeyManager) -> Self {
        Self { manager }
    }
}

impl AdminAuth for SessionAdminAuth {
    async fn authorize(&self, parts: &mut Parts) -> Result<AdminCaller, AdminDenied> {
        match signed_in(&self.manager, parts).await {
            Ok(s) => Ok(AdminCaller {
                tenant: Tenant::new(s.project).with_environment(s.environment),
                actor: format!("key:{}", s.key_id),
                csrf_token: Some(s.csrf_token),
            }),
            Err(NotSignedIn::Unavailable) => Err(AdminDenied::Unavailable),
            Err(e) => Err(AdminDenied::Unauthenticated(e.message().to_owned())),
        }
    }
}

/// This server's [`AdminAuth`]: a request that carries a key in `Authorization` or
/// `X-API-Key` is judged by that key alone ([`BearerAdminAuth`], scope `admin`; scripts and
/// curl); any other by its session ([`SessionAdminAuth`]; the API-keys page). Without either,
/// the answer is [`BearerAdminAuth`]'s 401 (or its 400 for a key put in the URL).
#[derive(Debug, Clone)]
pub struct ServerAdminAuth {
    bearer: BearerAdminAuth,
    session: SessionAdminAuth,
}

impl ServerAdminAuth {
    /// Admin keys and sessions checked by `manager`.
    pub fn new(manager: KeyManager) -> Self {
        Self {
            bearer: BearerAdminAuth::new(manager.clone()),
            session: SessionAdminAuth::new(manager),
        }
    }
}

impl AdminAuth for ServerAdminAuth {
    async fn authorize(&self, parts: &mut Parts) -> Result<AdminCaller, AdminDenied> {
        let has_key =
            parts.headers.contains_key(AUTHORIZATION) || parts.headers.contains_key(X_API_KEY);
        if has_key {
            return self.bearer.authorize(parts).await;
        }
        match self.session.authorize(parts).await {
            Ok(caller) => Ok(caller),
            Err(AdminDenied::Unauthenticated(message)) => {
                // No session: a key in the query string is still refused as such (400).
                match self.bearer.authorize(parts).await {
                    Err(AdminDenied::Unauthenticated(_)) => {
                        Err(AdminDenied::Unauthenticated(message))
                    }
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }
}
