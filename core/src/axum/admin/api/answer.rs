//! The admin API's JSON answers.

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use crate::axum::admin::error::AdminError;

/// A JSON answer with this status.
pub(super) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an admin answer as JSON");
            AdminError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            )
            .into_response()
        }
    }
}

/// An answer that carries a full key: never cached by browsers or proxies.
pub(super) fn secret_response(body: &impl Serialize) -> Response {
    let mut r = json_response(StatusCode::CREATED, body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
