//! Rendering outcomes as HTTP answers (RFC 6750): [`Rejection`], its status, its
//! `WWW-Authenticate` challenge and `Retry-After`, and its JSON body.

use std::time::Duration;

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::{AuthError, Error};
use crate::time::Timestamp;

/// An HTTP answer for a rejected request: status, headers and a JSON body.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The status code.
    pub status: StatusCode,
    /// `WWW-Authenticate` and/or `Retry-After` where they apply.
    pub headers: HeaderMap,
    /// `{"error": "<code>", "message": "<explanation>"}`.
    pub body: String,
}

impl Rejection {
    /// The media type of [`Rejection::body`], for the `Content-Type` header.
    pub const CONTENT_TYPE: &'static str = "application/json";

    /// The headers to send, as name and value bytes, `Content-Type` included: what an
    /// adapter for a framework with its own header types (actix-web, http 0.2…) copies into
    /// its response, with the status as [`StatusCode::as_u16`] and the body as it is.
    ///
    /// ```
    /// use keyward::{AuthError, Timestamp, http::auth_rejection};
    /// let r = auth_rejection(&AuthError::Missing, "api", Timestamp::now());
    /// let pairs: Vec<(&str, &[u8])> = r.header_pairs().collect();
    /// assert_eq!(pairs, [
    ///     ("www-authenticate", &b"Bearer realm=\"api\""[..]),
    ///     ("content-type", &b"application/json"[..]),
    /// ]);
    /// assert_eq!(r.status.as_u16(), 401);
    /// ```
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .chain(std::iter::once((
                "content-type",
                Self::CONTENT_TYPE.as_bytes(),
            )))
    }
}

/// RFC 6750 `error` code and status for an outcome.
fn classify(err: &AuthError) -> (StatusCode, Option<&'static str>) {
    use AuthError as A;
    match err {
        A::Missing => (StatusCode::UNAUTHORIZED, None),
        A::Malformed(_)
        | A::WrongPrefix { .. }
        | A::WrongEnvironment { .. }
        | A::Invalid
        | A::Revoked { .. }
        | A::Expired { .. }
        | A::UnsupportedScheme => (StatusCode::UNAUTHORIZED, Some("invalid_token")),
        A::WrongProject { .. } | A::InsufficientScope { .. } => {
            (StatusCode::FORBIDDEN, Some("insufficient_scope"))
        }
        A::QuotaExceeded { .. } | A::CreditsExhausted { .. } | A::RateLimited { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, None)
        }
        A::MultipleCredentials | A::KeyInQueryString => {
            (StatusCode::BAD_REQUEST, Some(INVALID_REQUEST))
        }
    }
}

/// Makes text safe inside a quoted header parameter (RFC 6750 allows %x20-21 / %x23-5B /
/// %x5D-7E): quotes and backslashes become `'`, anything else outside becomes `?`.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            '…' => '.',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .collect()
}

fn json_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": code, "message": message }).to_string()
}

/// The `WWW-Authenticate` challenge of RFC 6750: `Bearer realm="…"`, then
/// `error="…", error_description="…"` when `error` (a code and its description) is given,
/// then `scope="…"`. Quoted values are made header-safe.
fn challenge(realm: &str, error: Option<(&str, &str)>, scope: Option<&str>) -> Option<HeaderValue> {
    let mut challenge = format!("Bearer realm=\"{}\"", header_safe(realm));
    if let Some((code, description)) = error {
        challenge.push_str(&format!(
            ", error=\"{code}\", error_description=\"{}\"",
            header_safe(description)
        ));
    }
    if let Some(scope) = scope {
        challenge.push_str(&format!(", scope=\"{scope}\""));
    }
    HeaderValue::from_str(&challenge).ok()
}

/// A 400 answer for a request the server cannot take (a body that is not the expected JSON, a
/// bad value, a key in the URL…), in the shape of every other rejection: the JSON body
/// `{"error": "invalid_request", "message": …}` and, as RFC 6750 §3.1 describes,
/// `WWW-Authenticate: Bearer realm="…", error="invalid_request", error_description="…"`.
///
/// ```
/// let r = keyward::http::invalid_request("api", "'scopes' is empty");
/// assert_eq!(r.status, 400);
/// assert_eq!(
///     r.headers["www-authenticate"],
///     "Bearer realm=\"api\", error=\"invalid_request\", error_description=\"'scopes' is empty\""
/// );
/// assert_eq!(r.body, r#"{"error":"invalid_request","message":"'scopes' is empty"}"#);
/// ```
pub fn invalid_request(realm: &str, message: &str) -> Rejection {
    let mut headers = HeaderMap::new();
    if let Some(v) = challenge(realm, Some((INVALID_REQUEST, message)), None) {
        headers.insert(WWW_AUTHENTICATE, v);
    }
    Rejection {
        status: StatusCode::BAD_REQUEST,
        headers,
        body: json_body(INVALID_REQUEST, message),
    }
}

/// RFC 6750's error code for a request that is malformed (400).
const INVALID_REQUEST: &str = "invalid_request";

/// Maps a credential outcome to an HTTP answer. `realm` names the protected space in
/// `WWW-Authenticate`; `now` computes `Retry-After` for quotas.
///
/// ```
/// use keyward::{AuthError, Timestamp, http::auth_rejection};
/// let r = auth_rejection(&AuthError::Invalid, "api", Timestamp::now());
/// assert_eq!(r.status, 401);
/// assert_eq!(
///     r.headers["www-authenticate"].to_str().unwrap(),
///     "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the API key is not valid: it is unknown or its secret is wrong; check that the whole key was copied, or issue a new one\""
/// );
/// ```
pub fn auth_rejection(err: &AuthError, realm: &str, now: Timestamp) -> Rejection {
    let (status, code) = classify(err);
    let message = err.to_string();
    let mut headers = HeaderMap::new();
    if status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status == StatusCode::BAD_REQUEST
    {
        let scope = match err {
            AuthError::InsufficientScope { missing, .. } => Some(missing.to_string()),
            _ => None,
        };
        let error = code.map(|code| (code, message.as_str()));
        if let Some(v) = challenge(realm, error, scope.as_deref()) {
            headers.insert(WWW_AUTHENTICATE, v);
        }
    }
    let retry = match err {
        AuthError::QuotaExceeded { resets_at, .. } => Some(now.until(*resets_at)),
        AuthError::CreditsExhausted {
            resets_at: Some(t), ..
        } => Some(now.until(*t)),
        AuthError::RateLimited { retry_after } => Some(*retry_after),
        _ => None,
    };
    if let Some(retry) = retry {
        headers.insert(RETRY_AFTER, retry_after_value(retry));
    }
    let code = code.unwrap_or(match status {
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        _ => "missing_credentials",
    });
    Rejection {
        status,
        headers,
        body: json_body(code, &message),
    }
}

fn retry_after_value(d: Duration) -> HeaderValue {
    // Round up: retrying early only earns another 429.
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

/// Maps any manager error to an HTTP answer: credential outcomes as in [`auth_rejection`],
/// store and hashing failures as 503 (log them: the message is for operators, and is not in
/// the answer), overload as 503 with `Retry-After: 1`, an admin operation's unknown key
/// ([`Error::NotFound`]) as 404 `not_found`, invalid input ([`Error::Invalid`]) as 400
/// `invalid_request` (as [`invalid_request`]), a refused rotation
/// ([`Error::RotationConflict`]) or a state that forbids the change
/// ([`Error::InvalidState`]) as 409 `conflict`, anything else as 500.
///
/// ```
/// use keyward::{Error, KeyId, Timestamp, http::rejection};
/// let r = rejection(&Error::NotFound(KeyId::generate()?), "api", Timestamp::now());
/// assert_eq!(r.status, 404);
/// assert!(r.body.starts_with(r#"{"error":"not_found""#));
/// # Ok::<(), keyward::RandomError>(())
/// ```
pub fn rejection(err: &Error, realm: &str, now: Timestamp) -> Rejection {
    match err {
        Error::Auth(a) => auth_rejection(a, realm, now),
        Error::NotFound(_) => Rejection {
            status: StatusCode::NOT_FOUND,
            headers: HeaderMap::new(),
            body: json_body("not_found", &err.to_string()),
        },
        Error::Invalid(_) => invalid_request(realm, &err.to_string()),
        Error::RotationConflict { .. } | Error::InvalidState { .. } => Rejection {
            status: StatusCode::CONFLICT,
            headers: HeaderMap::new(),
            body: json_body("conflict", &err.to_string()),
        },
        Error::Store(_) | Error::Hash(_) | Error::Overloaded => {
            let mut headers = HeaderMap::new();
            if matches!(err, Error::Overloaded) {
                headers.insert(RETRY_AFTER, HeaderValue::from(1u32));
            }
            Rejection {
                status: StatusCode::SERVICE_UNAVAILABLE,
                headers,
                body: json_body(
                    "temporarily_unavailable",
                    "the key service is temporarily unavailable; retry shortly",
                ),
            }
        }
        _ => Rejection {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            headers: HeaderMap::new(),
            body: json_body("server_error", "internal error"),
        },
    }
}
