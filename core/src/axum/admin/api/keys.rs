//! The admin API's operations on one key, and the caller's session.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::AdminState;
use super::answer::{json_response, secret_response};
use super::extract::{Caller, JsonBody, is_json};
use super::input::{metadata, path_id, scopes};
use crate::axum::admin::auth::AdminCaller;
use crate::axum::admin::error::AdminError;
use crate::axum::admin::model::{
    CreateKeyRequest, CreatedKey, ErrorBody, KeyIdPath, KeyInfoSchema, KeyUsageSchema, ReplacedKey,
    RotateKeyRequest, RotatedKeyBody, SHOWN_ONCE, Session, UpdateKeyRequest,
};
use crate::error::Error;
use crate::key::Environment;
use crate::manager::{IssueRequest, RotateOptions};
use crate::store::KeyChange;
use crate::time::{Timestamp, parse_duration};

/// Who is signed in, which keys they manage, the scopes offered and the CSRF token.
#[utoipa::path(
    get,
    path = "/session",
    tag = "api-keys",
    responses(
        (status = 200, description = "The caller's session", body = Session),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn session(State(state): State<AdminState>, Caller(caller): Caller) -> Response {
    let body = Session {
        actor: caller.actor,
        project: caller.tenant.project.to_string(),
        environments: caller
            .tenant
            .environment
            .iter()
            .map(ToString::to_string)
            .collect(),
        scopes: state
            .config
            .offered
            .iter()
            .map(ToString::to_string)
            .collect(),
        csrf_token: caller.csrf_token,
    };
    json_response(StatusCode::OK, &body)
}

/// Issues a key in the caller's tenant; the full key is in this answer only.
#[utoipa::path(
    post,
    path = "/",
    tag = "api-keys",
    request_body(content = CreateKeyRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key, shown this once (`Cache-Control: no-store`)", body = CreatedKey,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "A bad field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn create_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateKeyRequest>,
) -> Result<Response, AdminError> {
    let config = &state.config;
    let scopes = scopes(config, &body.scopes)?;
    let environment = match body.environment.as_deref() {
        Some(text) => text
            .parse::<Environment>()
            .map_err(|e| AdminError::invalid_request(format!("'environment': {e}")))?,
        None => caller.tenant.environment.ok_or_else(|| {
            AdminError::invalid_request(
                "'environment' is missing: you manage every environment of the project, so name the key's",
            )
        })?,
    };
    if let Some(own) = caller.tenant.environment
        && own != environment
    {
        return Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "you manage the keys of environment '{own}' only and cannot issue a key of \
                 '{environment}'; sign in with an admin key of '{environment}'"
            ),
        ));
    }
    let mut req = IssueRequest::new(caller.tenant.project.clone(), environment).name(body.name);
    req.scopes = scopes;
    if let Some(text) = body.expires_in {
        let d = parse_duration(&text)
            .map_err(|e| AdminError::invalid_request(format!("'expires_in': {e}")))?;
        req = req.expires_in(d);
    }
    if let Some(m) = metadata(body.metadata)? {
        req = req.metadata(m);
    }
    let issued = state
        .keys(&caller)
        .issue(req)
        .await
        .map_err(|e| state.fail(&e))?;
    tracing::info!(actor = %caller.actor, key.id = %issued.record.id, "issued an API key");
    Ok(secret_response(&CreatedKey {
        key: issued.key.expose_secret(),
        info: state.info(&issued.record),
        warning: SHOWN_ONCE,
    }))
}

/// One key of the caller's tenant.
#[utoipa::path(
    get,
    path = "/{key_id}/",
    tag = "api-keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "The key", body = KeyInfoSchema),
        (status = 400, description = "Not a key id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn get_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Response, AdminError> {
    let id = path_id(&key_id)?;
    match state
        .keys(&caller)
        .get(&id)
        .await
        .map_err(|e| state.fail(&e))?
    {
        Some(info) => Ok(json_response(StatusCode::OK, &info)),
        None => Err(state.fail(&Error::NotFound(id))),
    }
}

/// Changes a key's name, scopes, metadata or expiry; absent fields stay as they are.
#[utoipa::path(
    patch,
    path = "/{key_id}/",
    tag = "api-keys",
    params(KeyIdPath),
    request_body(content = UpdateKeyRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed key", body = KeyInfoSchema),
        (status = 400, description = "Not a key id, or a bad field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn update_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
    JsonBody(body): JsonBody<UpdateKeyRequest>,
) -> Result<Response, AdminError> {
    let id = path_id(&key_id)?;
    let mut change = KeyChange::default();
    if let Some(name) = body.name {
        change.name = Some(name);
    }
    if let Some(names) = &body.scopes {
        change.scopes = Some(scopes(&state.config, names)?);
    }
    if let Some(m) = body.metadata {
        change.metadata = Some(metadata(m)?);
    }
    if let Some(at) = body.expires_at {
        change.expires_at = Some(
            at.as_deref()
                .map(Timestamp::parse_rfc3339)
                .transpose()
                .map_err(|e| AdminError::invalid_request(format!("'expires_at': {e}")))?,
        );
    }
    if change == KeyChange::default() {
        return Err(AdminError::invalid_request(
            "the body changes nothing: send at least one of name, scopes, metadata, expires_at",
        ));
    }
    let record = state
        .keys(&caller)
        .update(&id, &change)
        .await
        .map_err(|e| state.fail(&e))?;
    tracing::info!(actor = %caller.actor, key.id = %id, "changed an API key");
    Ok(json_response(StatusCode::OK, &state.info(&record)))
}

/// Revokes a key at once (repeating it changes nothing), as `POST /{key_id}/revoke/` does:
/// the key stays readable, with status `revoked`.
#[utoipa::path(
    delete,
    description = "Revokes the key, as `POST /{key_id}/revoke/` does (kept for clients of the \
                   example server's earlier API). The key is not deleted: it stays readable, \
                   with status `revoked`.",
    path = "/{key_id}/",
    tag = "api-keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "The revoked key", body = KeyInfoSchema),
        (status = 400, description = "Not a key id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Response, AdminError> {
    revoke(&state, &caller, &key_id).await
}

/// Revokes a key at once (repeating it changes nothing): the same as `DELETE /{key_id}/`.
#[utoipa::path(
    post,
    path = "/{key_id}/revoke/",
    tag = "api-keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "The revoked key", body = KeyInfoSchema),
        (status = 400, description = "Not a key id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_key_post(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Response, AdminError> {
    revoke(&state, &caller, &key_id).await
}

async fn revoke(
    state: &AdminState,
    caller: &AdminCaller,
    key_id: &str,
) -> Result<Response, AdminError> {
    let id = path_id(key_id)?;
    let info = state
        .keys(caller)
        .revoke(&id)
        .await
        .map_err(|e| state.fail(&e))?;
    tracing::info!(actor = %caller.actor, key.id = %id, "revoked an API key");
    Ok(json_response(StatusCode::OK, &info))
}

/// Issues a replacement key; the old one keeps working for the grace period. The full new
/// key is in this answer only.
#[utoipa::path(
    post,
    path = "/{key_id}/rotate/",
    tag = "api-keys",
    params(KeyIdPath),
    request_body(content = Option<RotateKeyRequest>, content_type = "application/json",
        description = "Optional: `{\"grace\": \"24h\", \"force\": false}`"),
    responses(
        (status = 201, description = "The new key, shown this once (`Cache-Control: no-store`)", body = RotatedKeyBody,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Not a key id, or a bad field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys, or a missing CSRF token", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 409, description = "The key is revoked, expired or already rotated, and `force` is not set", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_key(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let body = body.map_err(|r| AdminError::from_bytes_rejection(&r, state.config.max_body))?;
    let id = path_id(&key_id)?;
    let body: RotateKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKeyRequest::default()
    } else {
        if !is_json(&headers) {
            return Err(AdminError::unsupported_media_type());
        }
        // `null` is no body too.
        serde_json::from_slice::<Option<RotateKeyRequest>>(&body)
            .map_err(|e| {
                AdminError::invalid_request(format!(
                    "invalid JSON body: {e}; send nothing, or {{\"grace\": \"24h\", \"force\": false}}"
                ))
            })?
            .unwrap_or_default()
    };
    let grace = match body.grace {
        Some(text) => parse_duration(&text)
            .map_err(|e| AdminError::invalid_request(format!("'grace': {e}")))?,
        None => state.config.default_grace,
    };
    let mut options = RotateOptions::grace(grace);
    if body.force {
        options = options.force();
    }
    let rotated = state
        .keys(&caller)
        .rotate_with(&id, options)
        .await
        .map_err(|e| state.fail(&e))?;
    tracing::info!(actor = %caller.actor, key.id = %id, new_key.id = %rotated.record.id, "rotated an API key");
    Ok(secret_response(&RotatedKeyBody {
        key: rotated.key.expose_secret(),
        info: state.info(&rotated.record),
        replaces: ReplacedKey {
            id,
            expires_at: rotated.grace_end,
        },
        warning: SHOWN_ONCE,
    }))
}

/// A key's own event quota and credits in the current period.
#[utoipa::path(
    get,
    path = "/{key_id}/usage/",
    tag = "api-keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "The key's usage", body = KeyUsageSchema),
        (status = 400, description = "Not a key id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn key_usage(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    Path(key_id): Path<String>,
) -> Result<Response, AdminError> {
    let id = path_id(&key_id)?;
    let usage = state
        .keys(&caller)
        .key_usage(&id)
        .await
        .map_err(|e| state.fail(&e))?;
    Ok(json_response(StatusCode::OK, &usage))
}
