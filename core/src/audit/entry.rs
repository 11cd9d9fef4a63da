//! [`AuditAction`] and [`AuditEntry`]: one line of the audit trail, and the size rule every
//! store enforces on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::actor::Actor;
use crate::invalid::{InvalidValue, ValueKind};
use crate::key::{Environment, KeyId};
use crate::name::Project;
use crate::time::Timestamp;

/// The largest summary an audit entry may carry, as compact JSON, in bytes. Every store
/// refuses a larger one inside the transaction of the change it belongs to, so the change is
/// not applied either (SQL stores by a `CHECK` constraint on the column).
pub const MAX_AUDIT_SUMMARY_LEN: usize = 8 * 1024;

/// What kind of lifecycle change an [`AuditEntry`] records. Stored as its snake-case name
/// ([`AuditAction::as_str`]).
///
/// ```
/// use keyward::AuditAction;
/// assert_eq!(AuditAction::QuotaChanged.as_str(), "quota_changed");
/// assert_eq!("leak_reported".parse::<AuditAction>()?, AuditAction::LeakReported);
/// assert_eq!(serde_json::to_string(&AuditAction::Issued)?, "\"issued\"");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A key was issued.
    Issued,
    /// A key's name, scopes, metadata, expiry or limits changed.
    Updated,
    /// A key was replaced by a new one (the entry is the old key's; the summary names the
    /// new key).
    Rotated,
    /// A key was revoked.
    Revoked,
    /// A project's event quota was set or cleared.
    QuotaChanged,
    /// A leak of the key was reported (and the key revoked or flagged).
    LeakReported,
}

impl AuditAction {
    /// Every action, in declaration order.
    pub const ALL: [AuditAction; 6] = [
        AuditAction::Issued,
        AuditAction::Updated,
        AuditAction::Rotated,
        AuditAction::Revoked,
        AuditAction::QuotaChanged,
        AuditAction::LeakReported,
    ];

    /// The stored (and serialized) name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Issued => "issued",
            AuditAction::Updated => "updated",
            AuditAction::Rotated => "rotated",
            AuditAction::Revoked => "revoked",
            AuditAction::QuotaChanged => "quota_changed",
            AuditAction::LeakReported => "leak_reported",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| InvalidValue::new(ValueKind::AuditAction, "is not a known action"))
    }
}

/// An audit entry's summary is larger than [`MAX_AUDIT_SUMMARY_LEN`]: the store refuses it,
/// and the change it belongs to with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an audit entry's summary is {len} bytes; at most {MAX_AUDIT_SUMMARY_LEN} are stored")]
pub struct SummaryTooLarge {
    /// The summary's size as compact JSON.
    pub len: usize,
}

/// One line of the audit trail: a lifecycle change, who made it and what changed. Written by
/// the store in the same transaction as the change; never holds a secret or a hash.
///
/// ```
/// use keyward::{Actor, AuditAction, AuditEntry, Timestamp};
/// let entry = AuditEntry::new(
///     Timestamp::from_unix_millis(0),
///     Actor::new("user:alice")?,
///     AuditAction::Issued,
///     "web-app".parse()?,
/// )
/// .environment("prd".parse()?)
/// .key("7Kq2mZ9xA1bC".parse()?)
/// .summary(serde_json::json!({"name": "ingest"}));
/// assert_eq!(entry.seq, 0); // the store assigns it
/// assert!(entry.check_size().is_ok());
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The entry's position in the trail: assigned by the store, increasing; 0 before it is
    /// written.
    pub seq: u64,
    /// When the change was made.
    pub at: Timestamp,
    /// Who made it.
    pub actor: Actor,
    /// What kind of change it was.
    pub action: AuditAction,
    /// The project of the key (or the project whose quota changed).
    pub project: Project,
    /// The key's environment; `None` for a project-level change (a quota).
    pub environment: Option<Environment>,
    /// The key; `None` for a project-level change.
    pub key_id: Option<KeyId>,
    /// What changed: field names and new non-secret values (an object), e.g.
    /// `{"name": "ingest", "scopes": ["read"]}`. Never a secret or a hash.
    pub summary: serde_json::Value,
}

impl AuditEntry {
    /// An entry of `action` by `actor` on `project` at `at`, with no environment, key or
    /// summary (an empty object) yet.
    pub fn new(at: Timestamp, actor: Actor, action: AuditAction, project: Project) -> Self {
        Self {
            seq: 0,
            at,
            actor,
            action,
            project,
            environment: None,
            key_id: None,
            summary: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// Sets the environment.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Sets the key id.
    #[must_use]
    pub fn key(mut self, id: KeyId) -> Self {
        self.key_id = Some(id);
        self
    }

    /// Sets the summary.
    #[must_use]
    pub fn summary(mut self, summary: serde_json::Value) -> Self {
        self.summary = summary;
        self
    }

    /// The summary as the compact JSON text stores keep.
    pub fn summary_json(&self) -> String {
        self.summary.to_string()
    }

    /// Checks the size rule every store applies before it writes the entry.
    ///
    /// # Errors
    /// [`SummaryTooLarge`] when the summary is larger than [`MAX_AUDIT_SUMMARY_LEN`].
    pub fn check_size(&self) -> Result<(), SummaryTooLarge> {
        let len = self.summary_json().len();
        if len > MAX_AUDIT_SUMMARY_LEN {
            return Err(SummaryTooLarge { len });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_through_its_name_and_serde() {
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>().unwrap(), a);
            let json = serde_json::to_value(a).unwrap();
            assert_eq!(json, serde_json::Value::String(a.as_str().into()));
        }
        assert!("deleted".parse::<AuditAction>().is_err());
    }

    #[test]
    fn a_summary_over_the_limit_is_refused() {
        let entry = |n: usize| {
            AuditEntry::new(
                Timestamp::from_unix_millis(0),
                Actor::system(),
                AuditAction::Updated,
                "p".parse().unwrap(),
            )
            .summary(serde_json::Value::String("x".repeat(n)))
        };
        // A JSON string is its characters and two quotes.
        assert!(entry(MAX_AUDIT_SUMMARY_LEN - 2).check_size().is_ok());
        assert_eq!(
            entry(MAX_AUDIT_SUMMARY_LEN - 1).check_size(),
            Err(SummaryTooLarge {
                len: MAX_AUDIT_SUMMARY_LEN + 1
            })
        );
    }
}
