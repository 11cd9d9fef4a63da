//! The admin API's extractors: the authorized caller and the JSON body.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http::request::Parts;

use super::AdminState;
use crate::axum::admin::auth::AdminCaller;
use crate::axum::admin::csrf;
use crate::axum::admin::error::AdminError;

/// The authorized caller: [`AdminAuth::authorize`], then the CSRF check.
pub(crate) struct Caller(pub(super) AdminCaller);

impl FromRequestParts<AdminState> for Caller {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let caller = state.auth.authorize_boxed(parts).await?;
        csrf::check(&caller, &parts.method, &parts.headers)?;
        Ok(Self(caller))
    }
}

/// A JSON body, its rejections answered as [`AdminError`]s (400, 413, 415).
pub(crate) struct JsonBody<T>(pub(super) T);

impl<T> FromRequest<AdminState> for JsonBody<T>
where
    Json<T>: FromRequest<AdminState, Rejection = axum::extract::rejection::JsonRejection>,
{
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &AdminState) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(r) => Err(AdminError::from_json_rejection(&r, state.config.max_body)),
        }
    }
}

/// Whether the request says its body is JSON (`application/json`, or `application/*+json`).
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}
