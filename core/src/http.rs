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
use crate::key::{ApiKey, CHECK_LEN, ID_LEN, KeyId, MAX_INPUT_LEN, MalformedKey, SECRET_LEN};
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

/// Refuses a request whose query string carries a key: URLs end up in access logs, proxies
/// and browser history, so a key seen there must be treated as leaked.
///
/// The query is percent-decoded (`%5F` is `_`, `+` is a space) in one pass, without
/// allocating, and refused when:
///
/// - it holds a **key-shaped token** anywhere, under any parameter name or none, in any
///   position, alone or inside a longer value (`?KEY`, `?KEY=1`, `?a=x&KEY`,
///   `?q=Bearer+KEY`, `kw%5Fdev%5F…`, `?next=/x?k=KEY`). Key-shaped means the key grammar
///   of [`SCANNER_REGEX`](crate::SCANNER_REGEX) (`<prefix>_<env>_<12-char id>_<49 base62
///   characters>`), of any prefix and environment, **whatever its checksum**: a checksum that
///   does not match may be a real key with one mangled character, and the exposure is what
///   matters. The match is stricter than the regex's word boundaries: a key glued to other
///   letters, digits or `_` counts too. A false alarm needs a token of that very shape
///   (lowercase labels, then exactly 12 characters between two `_`, then 49 or more), which
///   ordinary parameters (ids, words, `snake_case`) do not have. The key's public id is
///   logged (`tracing::warn!`, field `key.id`), never the rest;
/// - or it uses a parameter name that would carry a credential (`api_key`, `apikey`,
///   `api-key`, `key`, `access_token`, `token`, `x-api-key`, any case, percent-decoded),
///   whatever its value.
///
/// The work is linear in the query's length with a constant-size state: a huge query costs
/// one pass.
///
/// ```
/// use keyward::http::reject_key_in_query;
/// assert!(reject_key_in_query(&"/ping?page=2&q=hello+world".parse()?).is_ok());
/// assert!(reject_key_in_query(&"/ping?access_token=abc".parse()?).is_err());
/// # Ok::<(), http::uri::InvalidUri>(())
/// ```
///
/// # Errors
/// [`AuthError::KeyInQueryString`].
pub fn reject_key_in_query(uri: &Uri) -> Result<(), AuthError> {
    let Some(query) = uri.query() else {
        return Ok(());
    };
    let mut scanner = KeyShapeScanner::default();
    if let Some(id) = percent_decoded(query.as_bytes()).find_map(|b| scanner.push(b)) {
        match std::str::from_utf8(&id).ok().map(KeyId::new) {
            Some(Ok(id)) => tracing::warn!(
                key.id = %id,
                "refused a request with an API key in its URL query string; the key may be in \
                 access logs: revoke it if it is real"
            ),
            _ => tracing::warn!("refused a request with an API key in its URL query string"),
        }
        return Err(AuthError::KeyInQueryString);
    }
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let param = QUERY_KEY_PARAMS.iter().find(|p| {
            percent_decoded(name.as_bytes())
                .map(|b| b.to_ascii_lowercase())
                .eq(p.bytes())
        });
        if let Some(param) = param {
            tracing::warn!(
                parameter = param,
                "refused a request with a credential parameter in its URL query string"
            );
            return Err(AuthError::KeyInQueryString);
        }
    }
    Ok(())
}

/// The bytes of a URL query as decoded: `%XX` is the byte `XX` (a `%` not followed by two
/// hex digits stays as it is), `+` is a space.
fn percent_decoded(raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *raw.get(i)?;
        i += 1;
        Some(match b {
            b'+' => b' ',
            b'%' => match (raw.get(i).and_then(hex), raw.get(i + 1).and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    i += 2;
                    hi << 4 | lo
                }
                _ => b'%',
            },
            b => b,
        })
    })
}

fn hex(b: &u8) -> Option<u8> {
    char::from(*b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Finds the key grammar in a stream of bytes with constant state: runs of `[0-9A-Za-z_]` are
/// split at `_` into segments; a key is four consecutive segments — one ending in a label
/// (`[a-z][a-z0-9]{1,9}`, the prefix, possibly glued to what precedes it), a label (the
/// environment), 12 characters (the id), and 49 or more characters (the secret and checksum,
/// possibly followed by more).
#[derive(Default)]
struct KeyShapeScanner {
    /// The last three completed segments of the current run, oldest first.
    done: [Segment; 3],
    /// How many segments of the current run are complete (at most 3 are kept).
    complete: usize,
    current: Segment,
}

/// What the scanner keeps of one segment: its length, its last [`LABEL_MAX`] bytes and its
/// first [`ID_LEN`] bytes (the id, when the segment is one).
#[derive(Clone, Copy, Default)]
struct Segment {
    len: usize,
    head: [u8; ID_LEN],
    tail: [u8; LABEL_MAX],
}

/// The longest prefix or environment label.
const LABEL_MAX: usize = 10;

impl Segment {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.head.get_mut(self.len) {
            *slot = b;
        }
        self.tail.rotate_left(1);
        self.tail[LABEL_MAX - 1] = b;
        self.len += 1;
    }

    /// The length of the longest label (`[a-z][a-z0-9]{1,9}`) this segment ends with.
    fn label_suffix(&self) -> usize {
        let kept = self.len.min(LABEL_MAX);
        let tail = &self.tail[LABEL_MAX - kept..];
        let lower_alnum = tail
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .count();
        let run = &tail[kept - lower_alnum..];
        // The longest such suffix starts at the run's first letter, if two bytes or more remain.
        match run.iter().position(u8::is_ascii_lowercase) {
            Some(first) if run.len() - first >= 2 => run.len() - first,
            _ => 0,
        }
    }

    fn is_label(&self) -> bool {
        self.len <= LABEL_MAX && self.label_suffix() == self.len
    }
}

impl KeyShapeScanner {
    /// Takes the next decoded byte; returns the id of a key-shaped token when this byte
    /// completes one.
    fn push(&mut self, b: u8) -> Option<[u8; ID_LEN]> {
        if b == b'_' {
            if self.complete == 3 {
                self.done.rotate_left(1);
                self.done[2] = self.current;
            } else {
                self.done[self.complete] = self.current;
                self.complete += 1;
            }
            self.current = Segment::default();
            return None;
        }
        if !b.is_ascii_alphanumeric() {
            self.complete = 0;
            self.current = Segment::default();
            return None;
        }
        self.current.push(b);
        let [prefix, env, id] = &self.done;
        (self.complete == 3
            && self.current.len == SECRET_LEN + CHECK_LEN
            && id.len == ID_LEN
            && env.is_label()
            && prefix.label_suffix() >= 2)
            .then_some(id.head)
    }
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
