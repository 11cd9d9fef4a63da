//! HTTP integration on the `http` crate, framework-agnostic: credential extraction from
//! headers and the mapping of outcomes to status codes and headers (RFC 6750).
//!
//! ```
//! use http::{HeaderMap, HeaderValue};
//! use keyward::{AuthError, http::extract_key};
//!
//! let mut headers = HeaderMap::new();
//! assert_eq!(extract_key(&headers).unwrap_err(), AuthError::Missing);
//! headers.insert("authorization", HeaderValue::from_static("bearer not-a-key"));
//! assert!(matches!(extract_key(&headers), Err(AuthError::Malformed(_))));
//! ```

use std::time::Duration;

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderName, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use zeroize::Zeroize;

use crate::error::{AuthError, Error};
use crate::key::{ApiKey, MAX_INPUT_LEN, MalformedKey};
use crate::time::Timestamp;

/// The `X-API-Key` header.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Query parameters that would carry a key in the URL; a request using one is refused.
const QUERY_KEY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "access_token",
    "token",
    "x-api-key",
];

/// Extracts and parses the one key in the headers: `Authorization: Bearer <key>` (scheme
/// case-insensitive), `X-API-Key: <key>`, or `Authorization: Basic` with the key as user name
/// (and an empty password), as Stripe accepts.
///
/// # Errors
/// [`AuthError::Missing`] without a credential, [`AuthError::MultipleCredentials`] with more
/// than one, [`AuthError::UnsupportedScheme`] for another scheme, [`AuthError::Malformed`]
/// when the value is not a key.
pub fn extract_key(headers: &HeaderMap) -> Result<ApiKey, AuthError> {
    let mut found = headers
        .get_all(AUTHORIZATION)
        .iter()
        .map(|v| (true, v))
        .chain(headers.get_all(X_API_KEY).iter().map(|v| (false, v)));
    let Some((is_auth, value)) = found.next() else {
        return Err(AuthError::Missing);
    };
    if found.next().is_some() {
        return Err(AuthError::MultipleCredentials);
    }
    let bytes = value.as_bytes();
    if !is_auth {
        return Ok(ApiKey::parse_bytes(bytes)?);
    }
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b""[..]),
    };
    let token = trim_spaces(rest);
    if scheme.eq_ignore_ascii_case(b"bearer") {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        Ok(ApiKey::parse_bytes(token)?)
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        parse_basic(token)
    } else {
        Err(AuthError::UnsupportedScheme)
    }
}

fn trim_spaces(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b' ').map_or(start, |i| i + 1);
    &b[start..end]
}

/// Decodes `base64(user:password)` into a stack buffer and takes the user name (or, if that
/// is empty, the password) as the key. The buffer is zeroized.
fn parse_basic(token: &[u8]) -> Result<ApiKey, AuthError> {
    let mut buf = [0u8; MAX_INPUT_LEN + 4];
    if token.len() > (MAX_INPUT_LEN / 3 + 1) * 4 {
        return Err(MalformedKey::TooLong { len: token.len() }.into());
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode_slice(token, &mut buf);
    let result = match decoded {
        Ok(n) => {
            let creds = &buf[..n];
            let (user, pass) = match creds.iter().position(|&b| b == b':') {
                Some(i) => (&creds[..i], &creds[i + 1..]),
                None => (creds, &b""[..]),
            };
            let candidate = if user.is_empty() { pass } else { user };
            ApiKey::parse_bytes(candidate).map_err(AuthError::from)
        }
        Err(_) => Err(AuthError::Malformed(MalformedKey::WrongShape { parts: 0 })),
    };
    buf.zeroize();
    result
}

/// Refuses a request whose query string carries a key (a known parameter name, or any value
/// that parses as a key): URLs end up in logs and browser history.
///
/// # Errors
/// [`AuthError::KeyInQueryString`].
pub fn reject_key_in_query(uri: &Uri) -> Result<(), AuthError> {
    let Some(query) = uri.query() else {
        return Ok(());
    };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if QUERY_KEY_PARAMS
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p))
            || ApiKey::parse(value).is_ok()
        {
            return Err(AuthError::KeyInQueryString);
        }
    }
    Ok(())
}

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
            (StatusCode::BAD_REQUEST, Some("invalid_request"))
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
    let realm = header_safe(realm);
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let mut challenge = format!("Bearer realm=\"{realm}\"");
        if let Some(code) = code {
            challenge.push_str(&format!(
                ", error=\"{code}\", error_description=\"{}\"",
                header_safe(&message)
            ));
        }
        if let AuthError::InsufficientScope { missing, .. } = err {
            challenge.push_str(&format!(", scope=\"{missing}\""));
        }
        if let Ok(v) = HeaderValue::from_str(&challenge) {
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
/// store and hashing failures as 503 (log them: the message is for operators), overload as
/// 503 with `Retry-After: 1`, a refused rotation ([`Error::RotationConflict`]) as 409
/// Conflict, anything else as 500.
pub fn rejection(err: &Error, realm: &str, now: Timestamp) -> Rejection {
    match err {
        Error::Auth(a) => auth_rejection(a, realm, now),
        Error::RotationConflict { .. } => Rejection {
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
