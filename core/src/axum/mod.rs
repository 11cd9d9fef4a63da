//! axum integration (feature `axum`): a tower layer that verifies the request's API key, an
//! extractor that hands the verified [`Identity`](crate::Identity) to handlers, and
//! [`IntoResponse`](axum::response::IntoResponse) for [`Rejection`](crate::Rejection),
//! [`Error`](crate::Error) and [`AuthError`](crate::AuthError), so handlers return
//! `Result<_, keyward::Error>` and use `?`.
//!
//! | file | concern |
//! |---|---|
//! | `layer.rs` | [`KeywardLayer`], [`KeywardService`], [`KeywardFuture`]: a [`Guard`](crate::http::Guard) as tower middleware |
//! | `extract.rs` | [`VerifiedKey`] and [`MissingKeywardLayer`] |
//! | `response.rs` | the `IntoResponse` impls and the realm marker |
//! | `secret_scanning.rs` | `keyward::axum::secret_scanning` (feature `secret-scanning`): GitHub's secret-scanning partner endpoint |
//! | `admin/` | `keyward::axum::admin` (feature `admin`): the JSON API and page for a service's own API-keys settings |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, body::Body, http::Request, routing::{get, post}};
//! use keyward::axum::{KeywardLayer, VerifiedKey};
//! use keyward::{HashParams, IssueRequest, KeyManager};
//! use tower::ServiceExt as _;
//!
//! async fn ping() -> &'static str { "ok" }
//!
//! async fn ingest(
//!     axum::extract::State(manager): axum::extract::State<KeyManager>,
//!     VerifiedKey(who): VerifiedKey,
//! ) -> Result<String, keyward::Error> {
//!     let counted = manager.consume_events(&who, 10).await?; // 429 over a quota, 503 if the store is down
//!     Ok(format!("{} events stored under {}/{}", counted.accepted, who.project, who.environment))
//! }
//!
//! let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
//!     .serve("dev".parse()?)
//!     .hash_params(HashParams::INSECURE_TEST_ONLY) // tests only
//!     .build()?;
//! let auth = KeywardLayer::new(manager.clone()).realm("ingest");
//! let app = Router::new()
//!     .route("/ping", get(ping).route_layer(auth.clone().require(["read"])))
//!     .route("/ingest", post(ingest).route_layer(auth.require(["write"])))
//!     .with_state(manager.clone());
//!
//! let issued = manager
//!     .issue(IssueRequest::new("web-app".parse()?, "dev".parse()?).scopes(["write"])?)
//!     .await?;
//! let request = |method, uri| {
//!     Request::builder()
//!         .method(method)
//!         .uri(uri)
//!         .header("authorization", format!("Bearer {}", issued.key.expose_secret()))
//!         .body(Body::empty())
//! };
//! let ok = app.clone().oneshot(request("POST", "/ingest")?).await?;
//! assert_eq!(ok.status(), 200);
//! let refused = app.oneshot(request("GET", "/ping")?).await?; // the key lacks `read`
//! assert_eq!(refused.status(), 403);
//! assert!(refused.headers()["www-authenticate"].to_str()?.starts_with("Bearer realm=\"ingest\""));
//! # Ok(()) }
//! ```
//!
//! What the layer does, per request ([`Guard::check`](crate::http::Guard::check), then
//! [`Pending::verify`](crate::http::Pending::verify) when needed):
//!
//! 1. refuses a key in the URL's query string, under any parameter name or none,
//!    percent-encoded or not (400 `invalid_request`, logged with the key's public id: URLs
//!    end up in logs);
//! 2. takes the one credential from `Authorization: Bearer <key>` (any case of `Bearer`),
//!    `X-API-Key: <key>` or `Authorization: Basic` with the key as user name; none is 401
//!    with a bare `WWW-Authenticate: Bearer realm="…"` challenge, two are 400 with an
//!    `error="invalid_request"` challenge;
//! 3. verifies it against the route's requirements: first with
//!    [`KeyManager::verify_cached`](crate::KeyManager::verify_cached), which decides a
//!    cached key on the spot, so the common request allocates no future here and the route's
//!    own future is returned; only when the store is needed (a cold verify, credits) with
//!    [`KeyManager::verify_key`](crate::KeyManager::verify_key) in a boxed future;
//! 4. on success, puts the [`Identity`](crate::Identity) into the request's extensions,
//!    marks the credential header sensitive, and calls the route; otherwise answers 401
//!    `invalid_token`, 403 `insufficient_scope`, 429 with `Retry-After`, or 503 when the key
//!    store is down (also logged with `tracing::error!`, with the key's public id only).
//!
//! **Errors from handlers, in the layer's realm.** `IntoResponse for keyward::Error` cannot
//! know the realm or the manager, so it answers in [`DEFAULT_REALM`] at the system clock's
//! time and leaves the error in the response's extensions. The layer in front of the route
//! finds it there (one extensions lookup per response; nothing is allocated when there is
//! none), answers again with its own realm and its manager's clock (`Retry-After` of a
//! quota), and logs a store or hashing failure (503) through
//! [`KeyManager::log_failure`](crate::KeyManager::log_failure), with the key's public id. On
//! a route without the layer the default answer stands, and a store or hashing failure is
//! logged when the response is dropped.

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod extract;
mod layer;
mod response;
#[cfg(feature = "secret-scanning")]
#[cfg_attr(docsrs, doc(cfg(feature = "secret-scanning")))]
pub mod secret_scanning;

pub use crate::http::DEFAULT_REALM;
pub use extract::{MissingKeywardLayer, VerifiedKey};
pub use layer::{KeywardFuture, KeywardLayer, KeywardService};
