//! Credential extraction: the one key of a request, from `Authorization` (Bearer or Basic)
//! or `X-API-Key` (docs/ARCHITECTURE.md, "The verify pipeline", step 1).

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, HeaderValue};
use zeroize::Zeroize;

use crate::error::AuthError;
use crate::key::{ApiKey, MAX_INPUT_LEN, MalformedKey};

/// The `X-API-Key` header.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Extracts and parses the one key in the headers: `Authorization: Bearer <key>` (scheme
/// case-insensitive), `X-API-Key: <key>`, or `Authorization: Basic` with the key as user name
/// (and an empty password), as Stripe accepts.
///
/// # Errors
/// [`AuthError::Missing`] without a credential, [`AuthError::MultipleCredentials`] with more
/// than one, [`AuthError::UnsupportedScheme`] for another scheme, [`AuthError::Malformed`]
/// when the value is not a key.
pub fn extract_key(headers: &HeaderMap) -> Result<ApiKey, AuthError> {
    extract_key_from(
        headers
            .get_all(AUTHORIZATION)
            .iter()
            .map(HeaderValue::as_bytes),
        headers.get_all(X_API_KEY).iter().map(HeaderValue::as_bytes),
    )
}

/// [`extract_key`] for any HTTP library: takes the raw values of the request's
/// `Authorization` headers and of its `X-API-Key` headers (every occurrence of each, as
/// bytes), so an adapter for a framework with its own header types (actix-web, http 0.2…)
/// needs no conversion. The same rules, without allocating: exactly one credential among
/// all the values given.
///
/// ```
/// use keyward::{AuthError, http::extract_key_from};
/// let none: [&[u8]; 0] = [];
/// assert_eq!(extract_key_from(none, none), Err(AuthError::Missing));
/// let two: [&[u8]; 2] = [b"Bearer a", b"Bearer b"];
/// assert_eq!(extract_key_from(two, none), Err(AuthError::MultipleCredentials));
/// assert_eq!(extract_key_from([&b"Token x"[..]], none), Err(AuthError::UnsupportedScheme));
/// ```
///
/// # Errors
/// As [`extract_key`].
pub fn extract_key_from<'a>(
    authorization: impl IntoIterator<Item = &'a [u8]>,
    x_api_key: impl IntoIterator<Item = &'a [u8]>,
) -> Result<ApiKey, AuthError> {
    let mut found = authorization
        .into_iter()
        .map(|v| (true, v))
        .chain(x_api_key.into_iter().map(|v| (false, v)));
    let Some((is_auth, bytes)) = found.next() else {
        return Err(AuthError::Missing);
    };
    if found.next().is_some() {
        return Err(AuthError::MultipleCredentials);
    }
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
