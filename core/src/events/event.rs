//! [`KeyEvent`]: what the manager tells the host about keys and usage. Every field is public
//! information (ids, names of projects and environments, instants, counts): an event never
//! carries a secret, a hash or a key's metadata.

use serde::Serialize;

use crate::key::{Environment, KeyId};
use crate::name::Project;
use crate::time::Timestamp;

/// A lifecycle or threshold event (see [`KeyManager::subscribe_events`](crate::KeyManager::subscribe_events)).
///
/// Serialized as JSON with a `"type"` tag naming the kind (`key.issued`, `key.revoked`,
/// `key.rotated`, `key.expiring`, `quota.threshold`, `credits.low`) beside the fields.
///
/// Every variant is `#[non_exhaustive]`: match with `..`, as fields may be added.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use keyward::{HashParams, IssueRequest, KeyEvent, KeyManager};
/// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
///     .hash_params(HashParams::INSECURE_TEST_ONLY)
///     .build()?;
/// let mut events = manager.subscribe_events();
/// let issued = manager.issue(IssueRequest::new("web-app".parse()?, "prd".parse()?)).await?;
/// manager.revoke(&issued.record.id).await?;
///
/// let _issued = events.recv().await?;
/// let event = events.recv().await?;
/// assert!(matches!(&event, KeyEvent::Revoked { key_id, .. } if *key_id == issued.record.id));
/// let json = serde_json::to_value(&event)?;
/// assert_eq!(json["type"], "key.revoked");
/// assert_eq!(json["key_id"], issued.record.id.to_string());
/// assert_eq!(json["project"], "web-app");
/// assert_eq!(event.kind(), "key.revoked");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum KeyEvent {
    /// A key was issued through this manager.
    #[serde(rename = "key.issued")]
    #[non_exhaustive]
    Issued {
        /// The new key's id.
        key_id: KeyId,
        /// Its project.
        project: Project,
        /// Its environment.
        environment: Environment,
        /// Its display name.
        name: String,
        /// When it was issued.
        created_at: Timestamp,
        /// When it expires, if it does.
        expires_at: Option<Timestamp>,
    },
    /// A key was revoked through this manager (by `revoke`, or an `update` that revokes).
    /// Revoking a revoked key keeps its first revocation and emits nothing, unless both
    /// revocations fall in the same millisecond (the change is recognised by its instant).
    #[serde(rename = "key.revoked")]
    #[non_exhaustive]
    Revoked {
        /// The key's id.
        key_id: KeyId,
        /// Its project.
        project: Project,
        /// Its environment.
        environment: Environment,
        /// When it was revoked.
        revoked_at: Timestamp,
    },
    /// A key was rotated through this manager: `new_key_id` replaces `key_id`, which works
    /// until `grace_end`.
    #[serde(rename = "key.rotated")]
    #[non_exhaustive]
    Rotated {
        /// The old key's id.
        key_id: KeyId,
        /// The new key's id.
        new_key_id: KeyId,
        /// The project of both.
        project: Project,
        /// The environment of both.
        environment: Environment,
        /// When the rotation happened.
        rotated_at: Timestamp,
        /// When the old key stops working.
        grace_end: Timestamp,
        /// When the new key expires, if it does.
        new_expires_at: Option<Timestamp>,
    },
    /// A live key expires within the configured window
    /// ([`EventConfig::expiring_within`](crate::EventConfig::expiring_within)).
    #[serde(rename = "key.expiring")]
    #[non_exhaustive]
    Expiring {
        /// The key's id.
        key_id: KeyId,
        /// Its project.
        project: Project,
        /// Its environment.
        environment: Environment,
        /// When it expires.
        expires_at: Timestamp,
    },
    /// An event quota reached a threshold in its current period.
    #[serde(rename = "quota.threshold")]
    #[non_exhaustive]
    QuotaThreshold {
        /// Whose quota: the project's or the key's own.
        scope: QuotaScope,
        /// The project.
        project: Project,
        /// The environment of the key whose consumption reached the threshold.
        environment: Environment,
        /// The key whose consumption reached the threshold (for a project quota, one of the
        /// project's keys).
        key_id: KeyId,
        /// The threshold, in percent of the limit. 100 also reports a batch refused for
        /// crossing the limit: `used` then tells how much is used.
        percent: u8,
        /// Events counted in the period when the threshold was reached.
        used: u64,
        /// The quota's limit.
        limit: u64,
        /// When the period started.
        period_start: Timestamp,
        /// When the period ends (and the quota resets).
        resets_at: Timestamp,
    },
    /// A key's credits fell to the configured level
    /// ([`EventConfig::credits_low`](crate::EventConfig::credits_low)) in the current period.
    #[serde(rename = "credits.low")]
    #[non_exhaustive]
    CreditsLow {
        /// The key's id.
        key_id: KeyId,
        /// Its project.
        project: Project,
        /// Its environment.
        environment: Environment,
        /// Credits left in the period.
        remaining: u64,
        /// Credits spent in the period.
        used: u64,
        /// The period's credits.
        limit: u64,
        /// When the period started (the Unix epoch for credits without refill).
        period_start: Timestamp,
        /// When the credits refill, if they do.
        resets_at: Option<Timestamp>,
    },
}

/// Whose quota a [`KeyEvent::QuotaThreshold`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QuotaScope {
    /// The project's quota, shared by its keys.
    Project,
    /// The key's own quota.
    Key,
}

impl KeyEvent {
    /// The kind, as in the JSON `"type"` tag: `key.issued`, `key.revoked`, `key.rotated`,
    /// `key.expiring`, `quota.threshold` or `credits.low`.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyEvent::Issued { .. } => "key.issued",
            KeyEvent::Revoked { .. } => "key.revoked",
            KeyEvent::Rotated { .. } => "key.rotated",
            KeyEvent::Expiring { .. } => "key.expiring",
            KeyEvent::QuotaThreshold { .. } => "quota.threshold",
            KeyEvent::CreditsLow { .. } => "credits.low",
        }
    }

    /// The key the event is about (for a project quota, the key whose consumption reached
    /// the threshold; for a rotation, the old key).
    pub fn key_id(&self) -> KeyId {
        match self {
            KeyEvent::Issued { key_id, .. }
            | KeyEvent::Revoked { key_id, .. }
            | KeyEvent::Rotated { key_id, .. }
            | KeyEvent::Expiring { key_id, .. }
            | KeyEvent::QuotaThreshold { key_id, .. }
            | KeyEvent::CreditsLow { key_id, .. } => *key_id,
        }
    }

    /// The project the event is about.
    pub fn project(&self) -> &Project {
        match self {
            KeyEvent::Issued { project, .. }
            | KeyEvent::Revoked { project, .. }
            | KeyEvent::Rotated { project, .. }
            | KeyEvent::Expiring { project, .. }
            | KeyEvent::QuotaThreshold { project, .. }
            | KeyEvent::CreditsLow { project, .. } => project,
        }
    }
}
