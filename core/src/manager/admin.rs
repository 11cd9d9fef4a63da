//! Issuing and the admin operations: issue, rotate, revoke, set an expiry, update, get and
//! list. Every change made here invalidates this manager's cache entry before it returns;
//! other instances learn of it through the store's change feed.

use std::time::Duration;

use crate::error::{Error, StoreError};
use crate::hash::SecretHash;
use crate::invalid::{InvalidValue, ValueKind};
use crate::key::{ApiKey, Environment, KeyId, Prefix};
use crate::name::validate_key_name;
use crate::scope::validate_key_scopes;
use crate::store::{KeyChange, KeyRecord, ListQuery};
use crate::time::{Timestamp, validate_expires_at, validate_expires_in, validate_grace};

use super::KeyManager;
use super::model::{IssueRequest, IssuedKey, KeyInfo};

/// The largest metadata document a key may carry, serialized, in bytes.
const MAX_METADATA_LEN: usize = 16 * 1024;

/// How many fresh ids an issue tries before giving up on id collisions.
const ISSUE_ATTEMPTS: u32 = 3;

impl KeyManager {
    /// Issues a new key. The returned [`IssuedKey::key`] is the only copy of the secret.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name or metadata, more than
    /// [`MAX_SCOPES`](crate::MAX_SCOPES) scopes, or an expiry of zero or beyond
    /// [`MAX_EXPIRY`](crate::MAX_EXPIRY); [`Error::Store`] when the store fails.
    #[tracing::instrument(skip_all, fields(project = %req.project, environment = %req.environment))]
    pub async fn issue(&self, req: IssueRequest) -> Result<IssuedKey, Error> {
        validate_key_name(&req.name)?;
        validate_metadata(req.metadata.as_ref())?;
        validate_key_scopes(&req.scopes)?;
        if let Some(d) = req.expires_in {
            validate_expires_in(d)?;
        }
        let now = self.now();
        let issued = self
            .insert_new_key(self.inner.prefix, req.environment, |id, secret_hash| {
                KeyRecord {
                    id,
                    prefix: self.inner.prefix,
                    project: req.project.clone(),
                    environment: req.environment,
                    scopes: req.scopes.clone(),
                    name: req.name.clone(),
                    metadata: req.metadata.clone(),
                    created_at: now,
                    expires_at: req.expires_in.map(|d| now.saturating_add(d)),
                    revoked_at: None,
                    last_used_at: None,
                    secret_hash,
                    rotated_from: None,
                    limits: req.limits.clone(),
                }
            })
            .await?;
        tracing::info!(key.id = %issued.record.id, "issued API key");
        Ok(issued)
    }

    /// Generates a key, hashes its secret and inserts the record `record(id, hash)` builds.
    /// A 72-bit random id colliding is rare but possible: a taken id is retried with a fresh
    /// key, [`ISSUE_ATTEMPTS`] times in all.
    async fn insert_new_key(
        &self,
        prefix: Prefix,
        environment: Environment,
        record: impl Fn(KeyId, SecretHash) -> KeyRecord,
    ) -> Result<IssuedKey, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let key = ApiKey::generate(prefix, environment)?;
            let secret_hash = self.inner.hasher.hash(key.secret_bytes()).await?;
            let record = record(key.id(), secret_hash);
            match self.inner.store.insert(&record).await {
                Ok(()) => return Ok(IssuedKey { key, record }),
                Err(StoreError::AlreadyExists(_)) if attempts < ISSUE_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Revokes a key, effective for every verify that starts after this returns. Idempotent:
    /// revoking a revoked key keeps the first revocation time.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Store`] when the store fails.
    #[tracing::instrument(skip_all, fields(key.id = %id))]
    pub async fn revoke(&self, id: &KeyId) -> Result<KeyInfo, Error> {
        let change = KeyChange {
            revoke_at: Some(self.now()),
            ..KeyChange::default()
        };
        let record = self.update(id, &change).await?;
        tracing::info!("revoked API key");
        Ok(KeyInfo::from_record(&record, self.now()))
    }

    /// Sets (or clears, with `None`) a key's expiry. An instant in the past expires the key at
    /// once.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an instant more than [`MAX_EXPIRY`](crate::MAX_EXPIRY) from
    /// now; [`Error::NotFound`] for an unknown id; [`Error::Store`] when the store fails.
    #[tracing::instrument(skip_all, fields(key.id = %id))]
    pub async fn set_expiry(&self, id: &KeyId, at: Option<Timestamp>) -> Result<KeyInfo, Error> {
        let change = KeyChange {
            expires_at: Some(at),
            ..KeyChange::default()
        };
        let record = self.update(id, &change).await?;
        Ok(KeyInfo::from_record(&record, self.now()))
    }

    /// Applies a change (scopes, name, metadata, limits…) to a key.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Invalid`] for a bad name or metadata,
    /// more than [`MAX_SCOPES`](crate::MAX_SCOPES) scopes or an expiry more than
    /// [`MAX_EXPIRY`](crate::MAX_EXPIRY) from now; [`Error::Store`] when the store fails.
    pub async fn update(&self, id: &KeyId, change: &KeyChange) -> Result<KeyRecord, Error> {
        if let Some(name) = &change.name {
            validate_key_name(name)?;
        }
        if let Some(scopes) = &change.scopes {
            validate_key_scopes(scopes)?;
        }
        if let Some(Some(at)) = change.expires_at {
            validate_expires_at(at, self.now())?;
        }
        if let Some(m) = &change.metadata {
            validate_metadata(m.as_ref())?;
        }
        let updated = self.inner.store.update(id, change).await;
        // Invalidate even on error: the change may have been applied before the failure.
        self.invalidate(id);
        updated?.ok_or(Error::NotFound(*id))
    }

    /// Rotates a key: issues a new key with the same binding, scopes, name, metadata, limits
    /// and expiry, and lets the old key work for `grace` longer (never longer than it would
    /// have). Rotating a revoked or expired key fails.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a grace longer than [`MAX_GRACE`](crate::MAX_GRACE);
    /// [`Error::NotFound`], [`Error::InvalidState`] for a revoked or expired key,
    /// [`Error::Store`] when the store fails.
    #[tracing::instrument(skip_all, fields(key.id = %id))]
    pub async fn rotate(&self, id: &KeyId, grace: Duration) -> Result<IssuedKey, Error> {
        validate_grace(grace)?;
        let old = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(Error::NotFound(*id))?;
        let now = self.now();
        if old.revoked_at.is_some() {
            return Err(Error::InvalidState {
                id: *id,
                reason: "it is revoked; issue a new key instead",
            });
        }
        if !old.is_active(now) {
            return Err(Error::InvalidState {
                id: *id,
                reason: "it has expired; issue a new key instead",
            });
        }
        let issued = self
            .insert_new_key(old.prefix, old.environment, |id, secret_hash| KeyRecord {
                id,
                created_at: now,
                revoked_at: None,
                last_used_at: None,
                secret_hash,
                rotated_from: Some(old.id),
                ..old.clone()
            })
            .await?;
        let grace_end = now.saturating_add(grace);
        let old_expiry = old.expires_at.map_or(grace_end, |e| e.min(grace_end));
        let change = KeyChange {
            expires_at: Some(Some(old_expiry)),
            ..KeyChange::default()
        };
        self.update(id, &change).await?;
        tracing::info!(new_key.id = %issued.record.id, grace_end = %old_expiry, "rotated API key");
        Ok(issued)
    }

    /// Fetches one key's public view.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn get(&self, id: &KeyId) -> Result<Option<KeyInfo>, Error> {
        let now = self.now();
        Ok(self
            .inner
            .store
            .get(id)
            .await?
            .map(|r| KeyInfo::from_record(&r, now)))
    }

    /// Lists keys (masked, no hashes), one page at a time. Pass the last item's
    /// `(created_at, id)` as `query.after` for the next page.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<KeyInfo>, Error> {
        let now = self.now();
        Ok(self
            .inner
            .store
            .list(query)
            .await?
            .iter()
            .map(|r| KeyInfo::from_record(r, now))
            .collect())
    }
}

/// Checks a key's metadata: at most [`MAX_METADATA_LEN`] bytes as JSON.
fn validate_metadata(m: Option<&serde_json::Value>) -> Result<(), InvalidValue> {
    if let Some(m) = m {
        let len = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
        if len > MAX_METADATA_LEN {
            return Err(InvalidValue::too_long(
                ValueKind::Metadata,
                MAX_METADATA_LEN,
            ));
        }
    }
    Ok(())
}
