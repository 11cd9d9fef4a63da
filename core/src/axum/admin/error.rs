//! [`AdminError`]: every refusal of the admin API, as `{"error": code, "message": text}`.

use std::fmt;

use axum::body::Body;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

use crate::error::Error;
use crate::http::auth_rejection;
use crate::manager::KeyManager;

use super::auth::AdminDenied;

/// An error answer of the admin API: a status and the JSON body
/// `{"error": "<code>", "message": "<text>"}`, with one of the codes `unauthenticated` (401),
/// `forbidden` (403), `csrf` (403), `not_found` (404), `invalid_request` (400), `conflict`
/// (409), `payload_too_large` (413), `unsupported_media_type` (415) and
/// `temporarily_unavailable` (503). No message contains a key.
///
/// ```
/// use axum::response::IntoResponse;
/// use keyward::axum::admin::AdminError;
/// let e = AdminError::invalid_request("'limit' must be 1 to 1000, not 0");
/// assert_eq!(e.code(), "invalid_request");
/// assert_eq!(e.into_response().status(), 400);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl AdminError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`: the one answer for an unknown id and for a key of another tenant.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 403 `csrf`.
    pub fn csrf(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "csrf", message)
    }

    /// 503 `temporarily_unavailable`.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the key service is temporarily unavailable; retry shortly",
        )
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The `message` of the body.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The answer to a failed key operation, logging a store or hashing failure through
    /// [`KeyManager::log_failure`] (the 503's message is for clients; the log is for
    /// operators).
    pub(crate) fn from_key_error(manager: &KeyManager, err: &Error) -> Self {
        manager.log_failure(err, None, "an admin request failed");
        match err {
            Error::NotFound(id) => Self::not_found(format!(
                "no key with id {id} in your project and environment: list your keys with GET on the API's root"
            )),
            Error::Invalid(v) => Self::invalid_request(v.to_string()),
            Error::RotationConflict { .. } | Error::InvalidState { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            Error::Overloaded => Self {
                retry_after: Some(1),
                ..Self::unavailable()
            },
            Error::Store(_) | Error::Hash(_) => Self::unavailable(),
            Error::Auth(a) => {
                let r = auth_rejection(a, super::REALM, manager.now());
                let code = match r.status {
                    StatusCode::UNAUTHORIZED => "unauthenticated",
                    StatusCode::FORBIDDEN => "forbidden",
                    StatusCode::BAD_REQUEST => "invalid_request",
                    _ => "too_many_requests",
                };
                Self::new(r.status, code, a.to_string())
            }
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            ),
        }
    }

    /// A JSON body the API could not take: 400 for JSON that does not parse or fit, 415
    /// without a JSON content type, 413 over the body limit.
    pub(crate) fn from_json_rejection(r: &JsonRejection, max_body: usize) -> Self {
        match r {
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                Self::invalid_request(format!("invalid JSON body: {}", r.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => Self::unsupported_media_type(),
            _ => Self::unreadable_body(r.status(), &r.body_text(), max_body),
        }
    }

    /// 415 `unsupported_media_type`.
    pub(crate) fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with 'Content-Type: application/json'",
        )
    }

    /// A body that could not be read: 413 over the limit, else 400.
    pub(crate) fn from_bytes_rejection(r: &BytesRejection, max_body: usize) -> Self {
        Self::unreadable_body(r.status(), &r.body_text(), max_body)
    }

    fn unreadable_body(status: StatusCode, explanation: &str, max_body: usize) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                status,
                "payload_too_large",
                format!("the request body is larger than {max_body} bytes; send less"),
            )
        } else {
            Self::invalid_request(format!("cannot read the request body: {explanation}"))
        }
    }

    /// The JSON body.
    fn body(&self) -> String {
        serde_json::json!({ "error": self.code, "message": self.message }).to_string()
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for AdminError {}

impl From<AdminDenied> for AdminError {
    fn from(d: AdminDenied) -> Self {
        match d {
            AdminDenied::Unauthenticated(m) => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", m)
            }
            AdminDenied::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "forbidden", m),
            AdminDenied::Invalid(m) => Self::invalid_request(m),
            AdminDenied::Unavailable => Self::unavailable(),
            AdminDenied::TooManyRequests {
                message,
                retry_after,
            } => Self {
                retry_after: Some(retry_after.max(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            },
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
