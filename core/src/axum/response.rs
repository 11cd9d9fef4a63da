//! Keyward's answers as axum responses, and the realm marker: an error a handler returns is
//! rendered in [`DEFAULT_REALM`] and marked, and the [`KeywardLayer`](super::KeywardLayer)
//! in front of the route renders it again in its own realm.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};

use crate::error::{AuthError, Error};
use crate::http::{DEFAULT_REALM, Guard, Rejection, rejection};
use crate::key::KeyId;
use crate::throttle::LogThrottle;
use crate::time::{SystemClock, Timestamp};

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

/// What the failure log says when a route without the layer failed with a store error.
const UNGUARDED_FAILED: &str = "a request failed: the key service is unavailable (the route has no KeywardLayer, which would name the key)";

/// The error a handler returned, left in its response's extensions for the layer.
#[derive(Clone)]
struct HandlerError(Arc<Unanswered>);

/// A handler's error until a layer answers it. If none does (a route without the layer), an
/// infrastructure failure is logged when the response is dropped, so that a 503 is never
/// silent: at most one line per cause per 10 s in the process, since there is no manager
/// whose throttle to use.
struct Unanswered {
    error: Error,
    answered: AtomicBool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if *self.answered.get_mut() || is_clients(&self.error) {
            return;
        }
        static THROTTLE: OnceLock<LogThrottle> = OnceLock::new();
        let throttle = THROTTLE
            .get_or_init(|| LogThrottle::new(Duration::from_secs(10), Arc::new(SystemClock)));
        let cause = self.error.cause();
        if let Some(suppressed) = throttle.admit(cause) {
            tracing::error!(error = %self.error, %cause, suppressed, "{UNGUARDED_FAILED}");
        }
    }
}

/// Whether an error is the client's (an outcome or bad input), not the service's: as
/// [`KeyManager::log_failure`](crate::KeyManager::log_failure) decides, not logged at ERROR.
fn is_clients(e: &Error) -> bool {
    matches!(
        e,
        Error::Auth(_)
            | Error::NotFound(_)
            | Error::Invalid(_)
            | Error::InvalidState { .. }
            | Error::RotationConflict { .. }
    )
}

impl IntoResponse for Error {
    /// The answer of [`rejection`] in [`DEFAULT_REALM`] at the system clock's time. Behind a
    /// [`KeywardLayer`](super::KeywardLayer), the layer answers instead in its own realm, at
    /// its manager's time, and logs a store or hashing failure through
    /// [`KeyManager::log_failure`](crate::KeyManager::log_failure). Without a layer, such a
    /// failure is logged (without a key id) when the response is dropped.
    fn into_response(self) -> Response {
        let mut response = rejection(&self, DEFAULT_REALM, Timestamp::now()).into_response();
        response
            .extensions_mut()
            .insert(HandlerError(Arc::new(Unanswered {
                error: self,
                answered: AtomicBool::new(false),
            })));
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
    let Some(HandlerError(unanswered)) = response.extensions_mut().remove::<HandlerError>() else {
        return response;
    };
    unanswered.answered.store(true, Ordering::Relaxed);
    let answer = guard.answer(Some(id), &unanswered.error, HANDLER_FAILED);
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
