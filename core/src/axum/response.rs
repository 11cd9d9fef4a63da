//! Keyward's answers as axum responses, and the realm marker: an error a handler returns is
//! rendered in [`DEFAULT_REALM`] and marked, and the [`KeywardLayer`](super::KeywardLayer)
//! in front of the route renders it again in its own realm.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};

use crate::error::{AuthError, Error};
use crate::http::{DEFAULT_REALM, Guard, Rejection, rejection};
use crate::key::KeyId;
use crate::time::Timestamp;

/// What the failure log says when a route behind the layer failed with a store error.
const HANDLER_FAILED: &str = "a request failed: the key service is unavailable";

impl IntoResponse for Rejection {
    /// The status, the headers, `Content-Type: application/json` and the JSON body.
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        *headers = self.headers;
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(Rejection::CONTENT_TYPE),
        );
        response
    }
}

/// The error a handler returned, left in its response's extensions for the layer.
#[derive(Clone)]
struct HandlerError(Arc<Error>);

impl IntoResponse for Error {
    /// The answer of [`rejection`] in [`DEFAULT_REALM`] at the system clock's time. Behind a
    /// [`KeywardLayer`](super::KeywardLayer), the layer answers instead in its own realm, at
    /// its manager's time, and logs a store or hashing failure through
    /// [`KeyManager::log_failure`](crate::KeyManager::log_failure).
    fn into_response(self) -> Response {
        let mut response = rejection(&self, DEFAULT_REALM, Timestamp::now()).into_response();
        response
            .extensions_mut()
            .insert(HandlerError(Arc::new(self)));
        response
    }
}

impl IntoResponse for AuthError {
    /// As [`Error`]'s.
    fn into_response(self) -> Response {
        Error::Auth(self).into_response()
    }
}

/// The route's response, unless it carries a handler's Keyward error: then the status, the
/// challenge, `Retry-After` and the body are those of `guard`'s answer (other headers stay),
/// and a store failure is logged with the key's public id. Without the marker this is one
/// extensions lookup.
pub(super) fn answer_in_realm(guard: &Guard, id: &KeyId, mut response: Response) -> Response {
    let Some(HandlerError(err)) = response.extensions_mut().remove::<HandlerError>() else {
        return response;
    };
    let answer = guard.answer(Some(id), &err, HANDLER_FAILED);
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.remove(WWW_AUTHENTICATE);
    headers.remove(RETRY_AFTER);
    for (name, value) in answer.headers {
        if let Some(name) = name {
            headers.insert(name, value);
        }
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(Rejection::CONTENT_TYPE),
    );
    *response.body_mut() = Body::from(answer.body);
    response
}
