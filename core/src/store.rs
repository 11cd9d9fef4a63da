//! The [`KeyStore`] trait: a small, object-safe, id-keyed interface every backend implements.
//!
//! Policy (scopes, expiry, environments, caching, quota periods) lives in core; a store only
//! stores. "Not found" is `Ok(None)`; `Err` always means the backend failed.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::hash::SecretHash;
use crate::key::{Environment, KeyId, Prefix, Project};
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
    /// Requests per interval, enforced per process.
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
}

impl KeyRecord {
    /// Whether the key is usable at `now` (not revoked, not expired).
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
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

/// Keys changed since a revision, for cache invalidation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The store's current revision; pass it to the next call.
    pub revision: u64,
    /// The ids changed after the revision asked for (possibly with repeats).
    pub ids: Vec<KeyId>,
    /// The store no longer knows all changes since that revision: drop every cached entry.
    pub resync: bool,
}

/// A message from a push-based change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// This key changed (revoked, rotated, expiry, scopes, metadata…).
    Changed(KeyId),
    /// Changes may have been missed (e.g. the feed's connection dropped): drop every cached
    /// entry.
    Resync,
}

/// A usage counter: a named bucket (e.g. a project's monthly events) in one period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageBucket {
    /// The counter's name, e.g. `project:web-app:events`.
    pub counter: String,
    /// The start of the period; a new period starts a new count at zero.
    pub period_start: Timestamp,
}

/// The result of [`KeyStore::consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumption {
    /// The amount was added; `used` is the new total for the period.
    Granted {
        /// Total used in the period, including this amount.
        used: u64,
    },
    /// Adding the amount would exceed the limit; nothing was added.
    Refused {
        /// Total used in the period (unchanged).
        used: u64,
    },
}

/// A key store. Implementations must make every method atomic with respect to concurrent
/// callers in any process sharing the backend.
///
/// The shared conformance suite (`keyward::conformance`, feature `test-util`) states the
/// contract as tests; every store runs it.
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug + 'static {
    /// Inserts a new record.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the id is taken; otherwise the backend's failure.
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError>;

    /// Inserts many records (bulk loading, migrations between stores). Stores should do it in
    /// one transaction; the default inserts one by one. Fails on the first duplicate id
    /// (a store with transactions inserts none of them then).
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] for a taken id; otherwise the backend's failure.
    async fn insert_many(&self, records: &[KeyRecord]) -> Result<(), StoreError> {
        for r in records {
            self.insert(r).await?;
        }
        Ok(())
    }

    /// Fetches a record by id; `Ok(None)` when there is none.
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError>;

    /// Lists records matching the query, ordered by `(created_at, id)`, at most `limit`.
    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError>;

    /// Applies a change atomically and returns the updated record (`Ok(None)` if the id is
    /// unknown). Every successful update advances the store's revision and records the id as
    /// changed.
    async fn update(&self, id: &KeyId, change: &KeyChange)
    -> Result<Option<KeyRecord>, StoreError>;

    /// Records last-used times in one batch; a time earlier than the stored one is ignored.
    /// Unknown ids are skipped. Does not advance the revision.
    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError>;

    /// Atomically adds `amount` to the bucket's count if the result stays within `limit`;
    /// otherwise adds nothing. Never over-spends under concurrency. SQL stores keep counts as
    /// signed 64-bit integers: a total above `i64::MAX` is refused like one above the limit.
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError>;

    /// Atomically subtracts up to `amount` from the bucket's count (never below zero): gives
    /// back units consumed for a request that was then refused by another limit.
    async fn release(&self, bucket: &UsageBucket, amount: u64) -> Result<(), StoreError> {
        let _ = (bucket, amount);
        Err(StoreError::Unsupported("release"))
    }

    /// The bucket's count (zero when it has none).
    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError>;

    /// Reads a named setting (e.g. a project's quota), `Ok(None)` when unset.
    async fn get_setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let _ = name;
        Err(StoreError::Unsupported("get_setting"))
    }

    /// Writes (`Some`) or deletes (`None`) a named setting.
    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let _ = (name, value);
        Err(StoreError::Unsupported("put_setting"))
    }

    /// The ids changed after `revision` and the current revision. A store that keeps a
    /// bounded change log answers `resync: true` when `revision` is older than its log.
    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError>;

    /// A push-based change feed, if the backend has one (PostgreSQL `LISTEN/NOTIFY`).
    /// `Ok(None)` means: poll [`KeyStore::changes_since`] instead.
    async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<ChangeEvent>>, StoreError> {
        Ok(None)
    }
}
