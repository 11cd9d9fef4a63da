//! The admin API's audit trail: `GET /audit`, a page of the caller's tenant's entries,
//! newest first (docs/ARCHITECTURE.md, "The audit trail").

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::answer::json_response;
use super::extract::Caller;
use super::input::path_id;
use crate::audit::AuditEntry;
use crate::axum::admin::error::AdminError;
use crate::axum::admin::model::{AuditPageSchema, ErrorBody};

/// Entries per page when `limit` is not given.
pub(crate) const AUDIT_DEFAULT_PAGE: u32 = 50;
/// The largest `limit`.
pub(crate) const AUDIT_MAX_PAGE: u32 = 200;

/// `GET /audit?key_id=ID&before=SEQ&limit=N`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    key_id: Option<String>,
    before: Option<u64>,
    limit: Option<u32>,
}

/// A page as answered.
#[derive(Serialize)]
struct AuditPage<'a> {
    items: &'a [AuditEntry],
    next: Option<u64>,
}

/// The audit trail of the caller's tenant (its project; only its environment's entries for a
/// tenant of one environment), newest first: who issued, changed, rotated or revoked which key,
/// and quota changes. `next` is the `before` of the next page, `null` on the last.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "api-keys",
    params(
        ("key_id" = Option<String>, Query, description = "Only this key's entries", pattern = r"^[0-9A-Za-z]{12}$"),
        ("before" = Option<u64>, Query, description = "Only entries older than this `seq`: the `next` of the previous page", minimum = 0),
        ("limit" = Option<u32>, Query, description = "Entries per page, 1 to 200 (default 50)", minimum = 1, maximum = 200),
    ),
    responses(
        (status = 200, description = "A page of the audit trail", body = AuditPageSchema),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn audit_trail(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(params) = params.map_err(|e| {
        AdminError::invalid_request(format!(
            "{}; use ?key_id=<id>&before=<seq>&limit=1..{AUDIT_MAX_PAGE}",
            e.body_text()
        ))
    })?;
    let limit = params.limit.unwrap_or(AUDIT_DEFAULT_PAGE);
    if !(1..=AUDIT_MAX_PAGE).contains(&limit) {
        return Err(AdminError::invalid_request(format!(
            "'limit' must be 1 to {AUDIT_MAX_PAGE}, not {limit}"
        )));
    }
    let key_id = params.key_id.as_deref().map(path_id).transpose()?;
    let items = state
        .keys(&caller)
        .audit(key_id, params.before, limit)
        .await
        .map_err(|e| state.fail(&e))?;
    let next = if items.len() >= limit as usize {
        items.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(json_response(
        StatusCode::OK,
        &AuditPage {
            items: &items,
            next,
        },
    ))
}
