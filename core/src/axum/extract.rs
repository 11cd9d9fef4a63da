//! [`VerifiedKey`]: the identity the layer verified, as an extractor.

use std::convert::Infallible;
use std::fmt;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use crate::manager::Identity;

/// The verified identity of the request's API key, put there by
/// [`KeywardLayer`](super::KeywardLayer).
///
/// As an extractor it answers 500, with a hint in the body and in the log, when the route
/// has no [`KeywardLayer`](super::KeywardLayer): a configuration error, not the client's
/// ([`MissingKeywardLayer`]). `Option<VerifiedKey>` yields `None` instead.
///
/// ```
/// use keyward::axum::VerifiedKey;
///
/// async fn whoami(VerifiedKey(who): VerifiedKey) -> String {
///     format!("{} in {}/{}", who.id, who.project, who.environment)
/// }
/// async fn greet(who: Option<VerifiedKey>) -> String {
///     who.map_or_else(|| "hello".to_owned(), |who| format!("hello, {}", who.name))
/// }
/// # let _: axum::Router = axum::Router::new()
/// #     .route("/a", axum::routing::get(whoami))
/// #     .route("/b", axum::routing::get(greet));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey(pub Identity);

impl std::ops::Deref for VerifiedKey {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.0
    }
}

/// [`VerifiedKey`] was extracted on a route without [`KeywardLayer`](super::KeywardLayer):
/// 500 `server_error` with a hint on how to fix it, also logged with `tracing::error!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingKeywardLayer;

/// The hint given when [`VerifiedKey`] is used without the layer.
const MISSING_LAYER_HINT: &str = "server misconfiguration: this route reads the verified API key, but no KeywardLayer \
     runs before it; add .route_layer(keyward::axum::KeywardLayer::new(manager).require([...])) \
     to the route or its router";

impl fmt::Display for MissingKeywardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MISSING_LAYER_HINT)
    }
}

impl std::error::Error for MissingKeywardLayer {}

impl IntoResponse for MissingKeywardLayer {
    fn into_response(self) -> Response {
        tracing::error!("{MISSING_LAYER_HINT}");
        let body = serde_json::json!({ "error": "server_error", "message": MISSING_LAYER_HINT });
        let mut response = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedKey {
    type Rejection = MissingKeywardLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(VerifiedKey)
            .ok_or(MissingKeywardLayer)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedKey {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Identity>().cloned().map(VerifiedKey))
    }
}
