//! The admin API's list of keys: pages in creation order, a cursor, and the environment and
//! status filters.

use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query, State};
use axum::response::Response;
use http::header::LINK;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use super::answer::json_response;
use super::extract::Caller;
use super::{AdminState, MAX_SCANNED_PAGES, NEXT_CURSOR};
use crate::axum::admin::error::AdminError;
use crate::axum::admin::model::{ErrorBody, KeyInfoSchema};
use crate::key::{Environment, KeyId};
use crate::manager::{KeyInfo, KeyStatus};
use crate::store::ListQuery;
use crate::time::Timestamp;

/// `GET /?limit=N&after=CURSOR&environment=E&status=S`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    limit: Option<u32>,
    after: Option<String>,
    environment: Option<String>,
    status: Option<String>,
}

/// The `status` filter of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusFilter {
    Key(KeyStatus),
    /// Replaced by a rotation (whether or not its grace period is over).
    Rotated,
}

impl StatusFilter {
    fn parse(text: &str) -> Result<Self, AdminError> {
        Ok(match text {
            "active" => Self::Key(KeyStatus::Active),
            "revoked" => Self::Key(KeyStatus::Revoked),
            "expired" => Self::Key(KeyStatus::Expired),
            "rotated" => Self::Rotated,
            _ => {
                return Err(AdminError::invalid_request(
                    "'status' must be one of active, revoked, expired, rotated",
                ));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Key(s) => s.as_str(),
            Self::Rotated => "rotated",
        }
    }

    fn matches(self, k: &KeyInfo) -> bool {
        match self {
            Self::Key(s) => k.status == s,
            Self::Rotated => k.rotated_to.is_some(),
        }
    }
}

/// A page position as text: the last key's creation time (Unix ms) and id,
/// `1764672000000.7Kq2mZ9xA1bC`.
fn cursor(k: &KeyInfo) -> String {
    format!("{}.{}", k.created_at.unix_millis(), k.id)
}

fn parse_cursor(text: &str) -> Option<(Timestamp, KeyId)> {
    let (ms, id) = text.split_once('.')?;
    Some((
        Timestamp::from_unix_millis(ms.parse().ok()?),
        id.parse().ok()?,
    ))
}

/// One page of the caller's keys, oldest first, with the filters applied. A page that may
/// not be the last carries `Link: <…?limit=N&after=CURSOR…>; rel="next"` (RFC 8288) and
/// `X-Next-Cursor: CURSOR`; the last page carries neither.
#[utoipa::path(
    get,
    path = "/",
    tag = "api-keys",
    params(
        ("limit" = Option<u32>, Query, description = "Keys per page, 1 to the maximum (default 100, maximum 1000)", minimum = 1, maximum = 1000),
        ("after" = Option<String>, Query, description = "Where the page starts: the cursor of the previous page", pattern = r"^[0-9]{1,15}\.[0-9A-Za-z]{12}$"),
        ("environment" = Option<String>, Query, description = "Only keys of this environment", pattern = r"^[a-z][a-z0-9]{1,9}$"),
        ("status" = Option<String>, Query, description = "Only keys in this state: active, revoked, expired, rotated", pattern = r"^(active|revoked|expired|rotated)$"),
    ),
    responses(
        (status = 200, description = "A page of keys", body = [KeyInfoSchema],
            headers(
                ("Link" = String, description = "The next page: `<...?limit=N&after=CURSOR>; rel=\"next\"`"),
                ("X-Next-Cursor" = String, description = "The next page's cursor"),
            )),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many failed attempts with the caller's key; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 403, description = "Not allowed to manage keys", body = ErrorBody),
        (status = 503, description = "The key store is down", body = ErrorBody),
    )
)]
pub(crate) async fn list_keys(
    State(state): State<AdminState>,
    Caller(caller): Caller,
    OriginalUri(uri): OriginalUri,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, AdminError> {
    let config = &state.config;
    let Query(params) = params.map_err(|e| {
        AdminError::invalid_request(format!(
            "{}; use ?limit=1..{}&after=<cursor>&environment=<environment>&status=<status>",
            e.body_text(),
            config.max_page
        ))
    })?;
    let limit = params.limit.unwrap_or(config.default_page);
    if !(1..=config.max_page).contains(&limit) {
        return Err(AdminError::invalid_request(format!(
            "'limit' must be 1 to {}, not {limit}",
            config.max_page
        )));
    }
    let after = match params.after.as_deref() {
        None => None,
        Some(text) => Some(parse_cursor(text).ok_or_else(|| {
            AdminError::invalid_request(
                "'after' is not a cursor: pass the X-Next-Cursor of the previous page",
            )
        })?),
    };
    let environment = params
        .environment
        .as_deref()
        .map(str::parse::<Environment>)
        .transpose()
        .map_err(|e| AdminError::invalid_request(format!("'environment': {e}")))?;
    let status = params
        .status
        .as_deref()
        .map(StatusFilter::parse)
        .transpose()?;

    let keys = state.keys(&caller);
    let mut query = ListQuery {
        project: None,
        environment,
        after,
        limit,
    };
    let mut page: Vec<KeyInfo> = Vec::new();
    let mut next: Option<String> = None;
    for scanned in 1..=MAX_SCANNED_PAGES {
        let batch = keys.list(&query).await.map_err(|e| state.fail(&e))?;
        let full = batch.len() >= limit as usize;
        let mut last_seen = None;
        let mut rest = batch.into_iter();
        for k in rest.by_ref() {
            last_seen = Some(cursor(&k));
            query.after = Some((k.created_at, k.id));
            if status.is_none_or(|s| s.matches(&k)) {
                page.push(k);
                if page.len() >= limit as usize {
                    break;
                }
            }
        }
        let more = full || rest.next().is_some();
        if page.len() >= limit as usize || (more && scanned == MAX_SCANNED_PAGES) {
            next = if more { last_seen } else { None };
            break;
        }
        if !more {
            break;
        }
    }
    let mut response = json_response(StatusCode::OK, &page);
    if let Some(next) = next {
        let mut link = format!("<{}?limit={limit}&after={next}", uri.path());
        if let Some(e) = environment {
            link.push_str(&format!("&environment={e}"));
        }
        if let Some(s) = status {
            link.push_str(&format!("&status={}", s.as_str()));
        }
        link.push_str(">; rel=\"next\"");
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.insert(LINK, v);
        }
        if let Ok(v) = HeaderValue::from_str(&next) {
            headers.insert(NEXT_CURSOR, v);
        }
    }
    Ok(response)
}
