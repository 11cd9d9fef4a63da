//! Values the admin API reads from a request: key ids, scopes and metadata.

use crate::axum::admin::AdminConfig;
use crate::axum::admin::error::AdminError;
use crate::axum::admin::model::ScopeName;
use crate::key::{ApiKey, KeyId};
use crate::scope::{Scope, ScopeSet};

/// The key id in a path, or a 400 that says what is wrong with it (and, for a whole key
/// pasted into the URL, that it may have leaked).
pub(super) fn path_id(raw: &str) -> Result<KeyId, AdminError> {
    KeyId::new(raw).map_err(|e| {
        if ApiKey::parse(raw).is_ok() {
            AdminError::invalid_request(
                "that is a whole API key, not its id: put only the 12-character id in the URL \
                 (URLs end up in logs), and revoke this key, since it may have leaked",
            )
        } else {
            AdminError::invalid_request(e.to_string())
        }
    })
}

/// Scopes for a new or changed key: at least one, each valid and, when the service restricts
/// them, offered.
pub(super) fn scopes(config: &AdminConfig, names: &[ScopeName]) -> Result<ScopeSet, AdminError> {
    if names.is_empty() {
        return Err(AdminError::invalid_request(
            "'scopes' is empty: grant at least one scope, e.g. [\"read\"]",
        ));
    }
    let mut parsed = Vec::with_capacity(names.len());
    for ScopeName(name) in names {
        let scope =
            Scope::new(name).map_err(|e| AdminError::invalid_request(format!("'scopes': {e}")))?;
        if !config.offered.is_empty() && !config.offered.contains(&scope) {
            return Err(AdminError::invalid_request(format!(
                "'scopes': '{scope}' is not offered here; choose from {}",
                offered_list(config)
            )));
        }
        parsed.push(scope);
    }
    ScopeSet::parse(parsed.iter().map(Scope::as_str))
        .map_err(|e| AdminError::invalid_request(format!("'scopes': {e}")))
}

fn offered_list(config: &AdminConfig) -> String {
    config
        .offered
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Metadata must be a JSON object (or `null`: none).
pub(super) fn metadata(
    value: Option<serde_json::Value>,
) -> Result<Option<serde_json::Value>, AdminError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(m @ serde_json::Value::Object(_)) => Ok(Some(m)),
        Some(_) => Err(AdminError::invalid_request(
            "'metadata' must be a JSON object, e.g. {\"team\": \"data\"}",
        )),
    }
}
