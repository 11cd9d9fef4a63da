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
//! `keyward::axum` (feature `axum`). An actix-web 4 middleware, for instance (a sketch, not
//! compiled here: actix is not a dependency):
//!
//! ```rust,ignore
//! async fn keyward_auth(
//!     guard: web::Data<keyward::http::Guard>,
//!     req: ServiceRequest,
//!     next: Next<impl MessageBody>,
//! ) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
//!     let headers = req.headers();
//!     let outcome = guard
//!         .authenticate(
//!             Some(req.query_string()),
//!             headers.get_all("authorization").map(|v| v.as_bytes()),
//!             headers.get_all("x-api-key").map(|v| v.as_bytes()),
//!         )
//!         .await;
//!     match outcome {
//!         Ok(identity) => {
//!             req.extensions_mut().insert(identity);
//!             Ok(next.call(req).await?.map_into_left_body())
//!         }
//!         Err(r) => {
//!             let status = StatusCode::from_u16(r.status.as_u16()).expect("a valid status");
//!             let mut answer = HttpResponse::build(status);
//!             for (name, value) in r.header_pairs() {
//!                 answer.append_header((name, value));
//!             }
//!             Ok(req.into_response(answer.body(r.body)).map_into_right_body())
//!         }
//!     }
//! }
//! ```
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
