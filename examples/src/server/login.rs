//! Signing in to the API-keys page: `GET /login` (a form where an admin pastes an admin API
//! key once), `POST /login` (verifies it, opens a server-side session), `POST /logout`.
//!
//! The session (tower-sessions, in memory) holds the admin key's **id**, its project and
//! environment and a random CSRF token, never the key itself. Its cookie is `HttpOnly`,
//! `SameSite=Strict`, and `Secure` when [`SessionOptions::secure`] is set (a server behind
//! TLS must set it; the example listens on plain HTTP on loopback, so it is off by default).
//! Every admin request re-reads the admin key by id ([`signed_in`]): once that key is revoked,
//! expired or stripped of its `admin` scope, the session stops working at once.

use std::fmt;
use std::time::Duration;

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyward::{AuthError, Environment, Error, KeyId, KeyManager, KeyStatus, Project, Requirements};
use serde::{Deserialize, Serialize};
use tower_sessions::cookie::SameSite;
use tower_sessions::cookie::time;
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer};

/// The sign-in page and form target.
pub const LOGIN: &str = "/login";
/// Ends the session (POST).
pub const LOGOUT: &str = "/logout";
/// Where a successful sign-in leads.
pub const AFTER_LOGIN: &str = "/settings/api-keys";
/// The scope a key needs to sign in.
pub const ADMIN_SCOPE: &str = "admin";

/// Where the session's data lives in the session record.
const SESSION_KEY: &str = "keyward.admin";

/// The headers of every page this module serves: the same policy as the API-keys page (no
/// inline script or style; forms post to this origin only).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// How the session cookie is set.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Mark the cookie `Secure` (sent over HTTPS only) and name it with the `__Host-` prefix.
    /// Set it whenever the server is reached over TLS (directly or behind a TLS proxy).
    pub secure: bool,
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
}

impl Default for SessionOptions {
    /// Not `Secure` (the example serves plain HTTP on loopback); 8 hours of inactivity.
    fn default() -> Self {
        Self {
            secure: false,
            idle_timeout: Duration::from_secs(8 * 3600),
        }
    }
}

impl SessionOptions {
    /// The cookie's name: `__Host-keyward_session` when secure, else `keyward_session`.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-keyward_session"
        } else {
            "keyward_session"
        }
    }

    /// The session layer: an in-memory store (sessions do not survive a restart, and each
    /// instance has its own; a deployment with several instances uses a shared store, e.g.
    /// `tower-sessions-sqlx-store`), cookie `HttpOnly`, `SameSite=Strict`, `Path=/`.
    pub fn layer(&self) -> SessionManagerLayer<MemoryStore> {
        let idle =
            time::Duration::seconds(i64::try_from(self.idle_timeout.as_secs()).unwrap_or(i64::MAX));
        SessionManagerLayer::new(MemoryStore::default())
            .with_name(self.cookie_name())
            .with_http_only(true)
            .with_same_site(SameSite::Strict)
            .with_secure(self.secure)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(idle))
    }
}

/// What a signed-in session holds: the admin key's id and binding, and the CSRF token the
/// page must echo in `X-CSRF-Token`. Never the key.
#[derive(Clone, Serialize, Deserialize)]
pub struct SignedIn {
    /// The admin key that signed in.
    pub key_id: KeyId,
    /// Its project.
    pub project: Project,
    /// Its environment.
    pub environment: Environment,
    /// 32 random bytes, hex.
    pub csrf_token: String,
}

impl fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedIn")
            .field("key_id", &self.key_id)
            .field("project", &self.project)
            .field("environment", &self.environment)
            .field("csrf_token", &"[REDACTED]")
            .finish()
    }
}

/// Why [`signed_in`] found no usable session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSignedIn {
    /// No session, or not signed in.
    Missing,
    /// The admin key behind the session was revoked, expired or lost its `admin` scope; the
    /// session has been ended.
    KeyNoLongerValid,
    /// The key store could not be read.
    Unavailable,
}

impl NotSignedIn {
    /// The message for the caller.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Missing => {
                "sign in at /login with an admin API key, or send one in 'Authorization: Bearer <key>'"
            }
            Self::KeyNoLongerValid => {
                "the admin key you signed in with is no longer valid (revoked, expired or without \
                 the admin scope): sign in again at /login with a valid one"
            }
            Self::Unavailable => "the key service is temporarily unavailable; retry shortly",
        }
    }
}

/// The signed-in session of this request, if its admin key is still active with the
/// `admin` scope in the same project and environment (read from the store by id on every
/// call, so a revocation ends the session at once).
///
/// # Errors
/// [`NotSignedIn`]: no session, a key that is no longer valid (the session is then ended), or
/// the store down.
pub async fn signed_in(manager: &KeyManager, parts: &Parts) -> Result<SignedIn, NotSignedIn> {
    let Some(session) = parts.extensions.get::<Session>() else {
        tracing::error!("the session layer is missing in front of an admin route (a server bug)");
        return Err(NotSignedIn::Missing);
    };
    let signed = match session.get::<SignedIn>(SESSION_KEY).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(NotSignedIn::Missing),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the session");
            return Err(NotSignedIn::Unavailable);
        }
    };
    let info = match manager.get(&signed.key_id).await {
        Ok(info) => info,
        Err(e) => {
            tracing::error!(key.id = %signed.key_id, error = %e, "cannot re-check a session's admin key");
            return Err(NotSignedIn::Unavailable);
        }
    };
    let still_valid = info.is_some_and(|k| {
        k.status == KeyStatus::Active
            && k.project == signed.project
            && k.environment == signed.environment
            && k.scopes.iter().any(|s| s.as_str() == ADMIN_SCOPE)
    });
    if !still_valid {
        tracing::info!(key.id = %signed.key_id, "ended a session whose admin key is no longer valid");
        if let Err(e) = session.flush().await {
            tracing::error!(error = %e, "cannot end a session");
        }
        return Err(NotSignedIn::KeyNoLongerValid);
    }
    Ok(signed)
}

/// `GET /login`, `POST /login`, `POST /logout`. Needs [`SessionOptions::layer`] in front.
pub fn router(manager: KeyManager) -> Router {
    Router::new()
        .route(LOGIN, get(login_page).post(login))
        .route(LOGOUT, post(logout))
        .with_state(manager)
}

/// The form's body. Holds the key only until the request ends: zeroized on drop, no `Debug`.
#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

impl Drop for LoginForm {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// 32 random bytes as 64 hex digits.
fn csrf_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Sign in · API keys</title>\n</head>\n<body>\n<main>\n<h1>API keys: sign in</h1>\n{body}\n</main>\n</body>\n</html>\n"
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CSP),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The sign-in form, with an optional message (`id="login-error"`): only this module's own
/// constant texts, never request input, so nothing needs escaping.
fn form(status: StatusCode, error: Option<&str>) -> Response {
    let error = error.map_or(String::new(), |e| {
        format!("<p id=\"login-error\" role=\"alert\">{e}</p>\n")
    });
    page(
        status,
        &format!(
            "{error}<p>Paste an API key with the <code>admin</code> scope (issued with the \
             <code>keyward</code> CLI). It is checked once and not kept: the session remembers \
             only its id.</p>\n\
             <form id=\"login-form\" method=\"post\" action=\"{LOGIN}\">\n\
             <label for=\"key\">Admin API key</label>\n\
             <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"off\" \
             spellcheck=\"false\" required>\n\
             <button id=\"sign-in\" type=\"submit\">Sign in</button>\n</form>"
        ),
    )
}

async fn login_page(State(manager): State<KeyManager>, parts: Parts) -> Response {
    match signed_in(&manager, &parts).await {
        Ok(s) => page(
            StatusCode::OK,
            &format!(
                "<p id=\"signed-in\">Signed in with admin key <code>{}</code> ({} / {}).</p>\n\
                 <p><a href=\"{AFTER_LOGIN}\">Manage API keys</a></p>\n\
                 <form method=\"post\" action=\"{LOGOUT}\"><button id=\"sign-out\" \
                 type=\"submit\">Sign out</button></form>",
                s.key_id, s.project, s.environment
            ),
        ),
        Err(_) => form(StatusCode::OK, None),
    }
}

/// A form post from another site (`Sec-Fetch-Site: cross-site`): refused, so no other site
/// can sign a visitor in with a key of its choosing.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
}

async fn login(
    State(manager): State<KeyManager>,
    session: Session,
    headers: HeaderMap,
    body: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return form(
            StatusCode::FORBIDDEN,
            Some("sign in from this site's own form"),
        );
    }
    let Ok(Form(body)) = body else {
        return form(
            StatusCode::BAD_REQUEST,
            Some("send the form: key=&lt;admin API key&gt;"),
        );
    };
    let required = match Requirements::scopes([ADMIN_SCOPE]) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the admin scope does not parse");
            return form(StatusCode::INTERNAL_SERVER_ERROR, Some("server error"));
        }
    };
    let who = match manager.verify(body.key.trim(), &required).await {
        Ok(who) => who,
        Err(e) => return refused(&e),
    };
    drop(body);
    let signed = SignedIn {
        key_id: who.id,
        project: who.project.clone(),
        environment: who.environment,
        csrf_token: csrf_token(),
    };
    // A new session id at sign-in: an id planted before it (session fixation) is worthless.
    if let Err(e) = session.cycle_id().await {
        tracing::error!(error = %e, "cannot renew the session id");
        return form(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(NotSignedIn::Unavailable.message()),
        );
    }
    if let Err(e) = session.insert(SESSION_KEY, &signed).await {
        tracing::error!(error = %e, "cannot store the session");
        return form(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(NotSignedIn::Unavailable.message()),
        );
    }
    tracing::info!(key.id = %who.id, project = %who.project, "signed in to the API-keys page");
    see_other(AFTER_LOGIN)
}

/// Why a pasted key was refused, without echoing it: the outcome only (the library's messages
/// never contain a key).
fn refused(e: &Error) -> Response {
    match e {
        Error::Auth(AuthError::InsufficientScope { .. }) => form(
            StatusCode::FORBIDDEN,
            Some(
                "that key is valid but has no <code>admin</code> scope: sign in with an admin key",
            ),
        ),
        Error::Auth(AuthError::RateLimited { .. }) => form(
            StatusCode::TOO_MANY_REQUESTS,
            Some("too many attempts: wait a minute and try again"),
        ),
        Error::Auth(_) => form(
            StatusCode::UNAUTHORIZED,
            Some(
                "that key was not accepted (unknown, mistyped, revoked, expired or of another environment)",
            ),
        ),
        e => {
            tracing::error!(error = %e, "cannot verify a key at sign-in");
            form(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(NotSignedIn::Unavailable.message()),
            )
        }
    }
}

async fn logout(session: Session) -> Response {
    if let Err(e) = session.flush().await {
        tracing::error!(error = %e, "cannot end a session");
    }
    see_other(LOGIN)
}

fn see_other(to: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_static(to))],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (csrf_token(), csrf_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_secure_cookie_uses_the_host_prefix() {
        assert_eq!(SessionOptions::default().cookie_name(), "keyward_session");
        let secure = SessionOptions {
            secure: true,
            ..SessionOptions::default()
        };
        assert_eq!(secure.cookie_name(), "__Host-keyward_session");
    }

    #[test]
    fn the_session_debug_hides_the_csrf_token() {
        let s = SignedIn {
            key_id: "AbCdEf123456".parse().unwrap_or_else(|_| unreachable!()),
            project: "web-app".parse().unwrap_or_else(|_| unreachable!()),
            environment: "dev".parse().unwrap_or_else(|_| unreachable!()),
            csrf_token: "secret-token".into(),
        };
        assert!(!format!("{s:?}").contains("secret-token"));
    }
}
