//! The CSRF check of callers authenticated by an ambient credential (a cookie): a
//! state-changing request must carry the caller's token in `X-CSRF-Token` and must not come
//! from another site.

use http::{HeaderMap, Method};
use subtle::ConstantTimeEq;

use super::auth::AdminCaller;
use super::error::AdminError;

/// The header that carries the token (`X-CSRF-Token`), for callers with
/// [`AdminCaller::csrf_token`] set.
///
/// ```
/// assert_eq!(keyward::axum::admin::CSRF_HEADER, "x-csrf-token");
/// ```
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether a request of this method changes something (and so needs the token).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `Ok` when the request may proceed: the caller has no token (a Bearer caller), the method
/// changes nothing, or the request is not cross-site and carries the token.
///
/// # Errors
/// 403 `csrf`.
pub(crate) fn check(
    caller: &AdminCaller,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), AdminError> {
    let Some(token) = caller.csrf_token.as_deref() else {
        return Ok(());
    };
    if !changes_state(method) {
        return Ok(());
    }
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site {
        return Err(AdminError::csrf(
            "a cross-site request cannot change API keys: use the API-keys page of this site",
        ));
    }
    let mut sent = headers.get_all(CSRF_HEADER).iter();
    let matches = match (sent.next(), sent.next()) {
        (Some(value), None) => {
            !token.is_empty() && bool::from(value.as_bytes().ct_eq(token.as_bytes()))
        }
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(AdminError::csrf(
            "missing or wrong CSRF token: send the csrf_token of GET session in the X-CSRF-Token header",
        ))
    }
}
