//! What a store keeps: [`KeyRecord`] with its [`KeyLimits`], the field-wise [`KeyChange`]
//! and the [`ListQuery`] of a page.

use serde::{Deserialize, Serialize};

use crate::hash::SecretHash;
use crate::key::{ApiKey, Environment, KeyId, Prefix};
use crate::name::Project;
use crate::quota::{Credits, Quota, RateLimit};
use crate::scope::ScopeSet;
use crate::time::Timestamp;

/// Per-key usage limits. Stores keep this as an opaque JSON document, so new fields never
/// change a store's schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyLimits {
    /// Remaining uses, consumed one per successful verify, with an optional refill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    /// An event quota of this key alone (the project's quota applies as well).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Requests per interval, per process or cluster-wide
    /// ([`RateLimitMode`](crate::RateLimitMode)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl KeyLimits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Everything a store keeps about one key. The secret itself is never here, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The public id (store lookup key).
    pub id: KeyId,
    /// The prefix the key was issued with.
    pub prefix: Prefix,
    /// The project the key is bound to.
    pub project: Project,
    /// The environment the key is bound to.
    pub environment: Environment,
    /// The scopes granted.
    pub scopes: ScopeSet,
    /// A human-readable name.
    pub name: String,
    /// Free-form metadata.
    pub metadata: Option<serde_json::Value>,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// When it was last used (updated in batches, so it may lag a little).
    pub last_used_at: Option<Timestamp>,
    /// The Argon2id PHC string of the secret.
    pub secret_hash: SecretHash,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<KeyId>,
    /// Usage limits.
    pub limits: KeyLimits,
    /// The key that replaced this one by rotation (the latest, after a forced second
    /// rotation). Set by [`RecordStore::rotate`](super::RecordStore::rotate) only.
    pub rotated_to: Option<KeyId>,
}

impl KeyRecord {
    /// Whether the key is usable at `now` (not revoked, not expired).
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    /// Whether `key` carries this record's prefix and environment. The checksum is no MAC:
    /// someone could relabel a key's prefix or environment and fix the checksum, so the
    /// record's binding is authoritative and every accepted key must pass this.
    pub fn binds(&self, key: &ApiKey) -> bool {
        key.has_prefix(&self.prefix) && key.has_environment(&self.environment)
    }

    /// Why an unforced rotation of this key at `now` is refused: it is revoked, expired or
    /// already rotated; `None` when it may be rotated. The one statement of the rule, which
    /// every store checks inside its [`RecordStore::rotate`](super::RecordStore::rotate)
    /// transaction.
    pub fn rotation_conflict(&self, now: Timestamp) -> Option<RotationConflict> {
        if let Some(at) = self.revoked_at {
            return Some(RotationConflict::Revoked { at });
        }
        if let Some(at) = self.expires_at
            && now >= at
        {
            return Some(RotationConflict::Expired { at });
        }
        self.rotated_to
            .map(|successor| RotationConflict::AlreadyRotated { successor })
    }

    /// Marks this record as replaced by `successor`: it expires at `grace_end`, or earlier
    /// if it would have (a rotation never extends a key's life).
    pub fn rotate_to(&mut self, successor: KeyId, grace_end: Timestamp) {
        self.expires_at = Some(self.expires_at.map_or(grace_end, |e| e.min(grace_end)));
        self.rotated_to = Some(successor);
    }
}

/// Why a key cannot be rotated unless the rotation is forced (HTTP 409 Conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationConflict {
    /// The key is revoked.
    #[error(
        "it was revoked at {at}; issue a new key, or force the rotation to get a replacement with the same settings"
    )]
    Revoked {
        /// When it was revoked.
        at: Timestamp,
    },
    /// The key has expired.
    #[error(
        "it expired at {at}; issue a new key, or force the rotation to get a replacement with the same settings"
    )]
    Expired {
        /// When it expired.
        at: Timestamp,
    },
    /// The key was rotated already: a second rotation would make a second replacement.
    #[error(
        "it was already rotated to key {successor}; rotate that key instead, or force a second replacement"
    )]
    AlreadyRotated {
        /// The key that replaced it.
        successor: KeyId,
    },
}

/// A field-wise change to a key. Fields left `None` are untouched, so concurrent changes to
/// different fields never undo each other. Applying the same change twice has the same
/// effect as once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    /// Revoke at this instant, unless already revoked (the first revocation time is kept).
    pub revoke_at: Option<Timestamp>,
    /// Set (`Some(Some(t))`) or clear (`Some(None)`) the expiry.
    pub expires_at: Option<Option<Timestamp>>,
    /// Replace the scopes.
    pub scopes: Option<ScopeSet>,
    /// Replace the name.
    pub name: Option<String>,
    /// Set or clear the metadata.
    pub metadata: Option<Option<serde_json::Value>>,
    /// Replace the secret hash (re-hashing with stronger parameters).
    pub secret_hash: Option<SecretHash>,
    /// Replace the limits.
    pub limits: Option<KeyLimits>,
}

impl KeyChange {
    /// Applies the change to a record in memory (stores may use this to stay consistent with
    /// the documented semantics).
    pub fn apply_to(&self, r: &mut KeyRecord) {
        if let Some(at) = self.revoke_at
            && r.revoked_at.is_none()
        {
            r.revoked_at = Some(at);
        }
        if let Some(e) = self.expires_at {
            r.expires_at = e;
        }
        if let Some(s) = &self.scopes {
            r.scopes = s.clone();
        }
        if let Some(n) = &self.name {
            r.name = n.clone();
        }
        if let Some(m) = &self.metadata {
            r.metadata = m.clone();
        }
        if let Some(h) = &self.secret_hash {
            r.secret_hash = h.clone();
        }
        if let Some(l) = &self.limits {
            r.limits = l.clone();
        }
    }
}

/// Which keys to list, one page at a time, in `(created_at, id)` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys of this project.
    pub project: Option<Project>,
    /// Only keys of this environment.
    pub environment: Option<Environment>,
    /// Start after this position (the last record of the previous page).
    pub after: Option<(Timestamp, KeyId)>,
    /// At most this many records.
    pub limit: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            project: None,
            environment: None,
            after: None,
            limit: 100,
        }
    }
}

impl ListQuery {
    /// Whether `r` passes the project and environment filters (not the paging).
    pub fn matches(&self, r: &KeyRecord) -> bool {
        self.project.as_ref().is_none_or(|p| *p == r.project)
            && self.environment.is_none_or(|e| e == r.environment)
    }
}
