//! HTTP integration on the `http` crate, framework-agnostic: credential extraction from
//! headers, the key-in-the-URL check, the mapping of outcomes to status codes and headers
//! (RFC 6750), and [`Guard`], the whole per-request decision for any framework.
//!
//! | file | concern |
//! |---|---|
//! | `extract.rs` | [`extract_key`], [`extract_key_from`]: the one credential of a request |
//! | `query.rs` | [`reject_key_in_query`], [`reject_key_in_query_str`]: no key in the URL |
//! | `rejection.rs` | [`Rejection`], [`rejection`], [`auth_rejection`], [`invalid_request`] |
//! | `guard.rs` | [`Guard`], [`Check`], [`Pending`]: requirements, realm, and the decision |
//!
//! The `*_from` / `*_str` entry points and [`Guard`] take raw bytes and strings, so an
//! adapter for a framework with its own header types (actix-web, http 0.2) converts nothing
//! on the way in; on the way out it copies [`Rejection::status`] (`as_u16()`),
//! [`Rejection::header_pairs`] and [`Rejection::body`]. The axum adapter is
//! `keyward::axum` (feature `axum`). A complete actix-web middleware built on [`Guard`] alone,
//! with its test over real HTTP, is the repository's
//! [`examples/src/actix.rs`](https://github.com/keyward-rs/keyward/blob/main/examples/src/actix.rs).
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

mod extract;
mod guard;
mod query;
mod rejection;

pub use extract::{X_API_KEY, extract_key, extract_key_from};
pub use guard::{Check, DEFAULT_REALM, Guard, Pending};
pub use query::{reject_key_in_query, reject_key_in_query_str};
pub use rejection::{Rejection, auth_rejection, invalid_request, rejection};
