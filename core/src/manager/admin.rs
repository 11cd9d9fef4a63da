//! Issuing and the admin operations: issue, rotate, revoke, set an expiry, update, get and
//! list. Every change made here invalidates this manager's cache entry before it returns;
//! other instances learn of it through the store's change feed.

use std::time::Duration;

use crate::audit::{AuditAction, AuditEntry};
use crate::error::Error;
use crate::hash::SecretHash;
use crate::invalid::{InvalidValue, ValueKind};
use crate::key::{ApiKey, Environment, KeyId, Prefix};
use crate::name::validate_key_name;
use crate::scope::validate_key_scopes;
use crate::store::StoreError;
use crate::store::{KeyChange, KeyRecord, ListQuery, RotateOutcome};
use crate::time::{Timestamp, validate_expires_at, validate_expires_in, validate_grace};

use super::KeyManager;
use super::audit::{change_action, change_summary, issue_summary, rotation_summary};
use super::model::{IssueRequest, IssuedKey, KeyInfo, RotateOptions, RotatedKey};

/// The largest metadata document a key may carry, serialized, in bytes.
const MAX_METADATA_LEN: usize = 16 * 1024;

/// How many fresh ids an issue tries before giving up on id collisions.
const ISSUE_ATTEMPTS: u32 = 3;

/// Where a new key's record goes: a fresh key, or the successor of a rotated key.
enum Placement {
    /// [`RecordStore::insert`](crate::RecordStore::insert).
    New,
    /// [`RecordStore::rotate`](crate::RecordStore::rotate) of `old`.
    Successor {
        old: KeyId,
        grace_end: Timestamp,
        now: Timestamp,
        force: bool,
    },
}

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
        let (issued, _) = self
            .insert_new_key(
                self.inner.prefix,
                req.environment,
                &Placement::New,
                |id, secret_hash| KeyRecord {
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
                    rotated_to: None,
                },
                |record| self.audit_entry(AuditAction::Issued, record, issue_summary(record)),
            )
            .await?;
        tracing::info!(key.id = %issued.record.id, "issued API key");
        self.emit_issued(&issued.record);
        Ok(issued)
    }

    /// Generates a key, hashes its secret and places the record `record(id, hash)` builds:
    /// inserts it, or rotates to it in one store step, with the audit entry `audit(record)`
    /// builds in the same store transaction. Returns the new key and, for a
    /// rotation, the old record as the store left it. A 72-bit random id colliding is rare
    /// but possible: a taken id is retried with a fresh key, [`ISSUE_ATTEMPTS`] times in all.
    async fn insert_new_key(
        &self,
        prefix: Prefix,
        environment: Environment,
        placement: &Placement,
        record: impl Fn(KeyId, SecretHash) -> KeyRecord,
        audit: impl Fn(&KeyRecord) -> AuditEntry,
    ) -> Result<(IssuedKey, Option<KeyRecord>), Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let key = ApiKey::generate(prefix, environment)?;
            let secret_hash = self.inner.hasher.hash(key.secret_bytes()).await?;
            let record = record(key.id(), secret_hash);
            let entry = [audit(&record)];
            let placed = match placement {
                Placement::New => self
                    .inner
                    .store
                    .insert(&record, &entry)
                    .await
                    .map(|()| None),
                Placement::Successor {
                    old,
                    grace_end,
                    now,
                    force,
                } => {
                    let outcome = self
                        .inner
                        .store
                        .rotate(old, &record, *grace_end, *now, *force, &entry)
                        .await;
                    // Invalidate even on error: the change may have been applied before the
                    // failure.
                    self.invalidate(old);
                    match outcome {
                        Ok(RotateOutcome::Rotated(replaced)) => Ok(Some(*replaced)),
                        Ok(RotateOutcome::Refused(conflict)) => {
                            return Err(Error::RotationConflict { id: *old, conflict });
                        }
                        Ok(RotateOutcome::NotFound) => return Err(Error::NotFound(*old)),
                        Err(e) => Err(e),
                    }
                }
            };
            match placed {
                Ok(replaced) => {
                    // The id may be remembered as unknown (negative cache): forget it now,
                    // before the feed reports the insert.
                    self.invalidate(&record.id);
                    return Ok((IssuedKey { key, record }, replaced));
                }
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
        let record = self
            .update_audited(id, &change, AuditAction::Revoked, change_summary(&change))
            .await?;
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

    /// Applies a change (scopes, name, metadata, limits…) to a key, with an audit entry in
    /// the same store transaction: `revoked` when the change revokes, `updated` otherwise,
    /// its summary naming each field changed (the metadata only as set or cleared).
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
        self.update_audited(id, change, change_action(change), change_summary(change))
            .await
    }

    /// Rotates a key: issues a new key with the same binding, scopes, name, metadata, limits
    /// and expiry, and lets the old key work for `grace` longer (never longer than it would
    /// have). A key that is revoked, expired or already rotated is refused: see
    /// [`KeyManager::rotate_with`] to force it.
    ///
    /// # Errors
    /// As [`KeyManager::rotate_with`].
    pub async fn rotate(&self, id: &KeyId, grace: Duration) -> Result<RotatedKey, Error> {
        self.rotate_with(id, RotateOptions::grace(grace)).await
    }

    /// Rotates a key as [`KeyManager::rotate`] does, with options. The check of the old key's
    /// state, the insert of the new key and the old key's new expiry are one store step
    /// ([`RecordStore::rotate`](crate::RecordStore::rotate)), serialized with a concurrent
    /// revoke: a key revoked before the rotation is never replaced, and concurrent rotations
    /// of one key make one replacement. Forced ([`RotateOptions::force`]), a revoked, expired
    /// or already rotated key is replaced too; the old key is never given a longer life. The
    /// new key keeps the old key's expiry; for an already rotated key that is the expiry of
    /// the key that replaced it (the old key's own was cut to its grace end), and for an
    /// expired key its lifetime counted from now. The answer says when the new key expires and when the old one
    /// stops working.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a grace longer than [`MAX_GRACE`](crate::MAX_GRACE);
    /// [`Error::NotFound`]; [`Error::RotationConflict`] for a revoked, expired or already
    /// rotated key when not forced (nothing is changed); [`Error::Store`] when the store
    /// fails.
    #[tracing::instrument(skip_all, fields(key.id = %id, force = options.force))]
    pub async fn rotate_with(
        &self,
        id: &KeyId,
        options: RotateOptions,
    ) -> Result<RotatedKey, Error> {
        validate_grace(options.grace)?;
        let old = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(Error::NotFound(*id))?;
        let now = self.now();
        // Checked here to spare the hashing; the store checks again in its transaction.
        if !options.force
            && let Some(conflict) = old.rotation_conflict(now)
        {
            return Err(Error::RotationConflict { id: *id, conflict });
        }
        // A rotated key's expiry was cut to its grace end; the life it had lives on in its
        // successor, so a forced second rotation takes it from there.
        let previous = match old.rotated_to {
            Some(successor) => self.inner.store.get(&successor).await?,
            None => None,
        };
        let expires_at = successor_expiry(previous.as_ref().unwrap_or(&old), now);
        let grace_end = now.saturating_add(options.grace);
        let placement = Placement::Successor {
            old: *id,
            grace_end,
            now,
            force: options.force,
        };
        // The old key's entry: the store applies the same rule (`KeyRecord::rotate_to`).
        let rotated_entry = |successor: &KeyRecord| {
            let mut after = old.clone();
            after.rotate_to(successor.id, grace_end);
            let summary = rotation_summary(&successor.id, after.expires_at, options.force);
            self.audit_entry(AuditAction::Rotated, &old, summary)
        };
        let (issued, replaced) = self
            .insert_new_key(
                old.prefix,
                old.environment,
                &placement,
                |id, secret_hash| KeyRecord {
                    id,
                    created_at: now,
                    expires_at,
                    revoked_at: None,
                    last_used_at: None,
                    secret_hash,
                    rotated_from: Some(old.id),
                    rotated_to: None,
                    ..old.clone()
                },
                rotated_entry,
            )
            .await?;
        let grace_end = replaced
            .and_then(|r| r.expires_at)
            .unwrap_or(now.saturating_add(options.grace));
        tracing::info!(
            new_key.id = %issued.record.id,
            new_key.expires_at = ?issued.record.expires_at,
            grace_end = %grace_end,
            "rotated API key"
        );
        self.emit_rotated(*id, &issued.record, now, grace_end);
        Ok(RotatedKey {
            key: issued.key,
            record: issued.record,
            grace_end,
        })
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

/// The expiry of a key that replaces `source` at `now`: the same instant while it is ahead,
/// otherwise (a forced rotation of an expired key) `source`'s lifetime counted from `now`.
fn successor_expiry(source: &KeyRecord, now: Timestamp) -> Option<Timestamp> {
    source.expires_at.map(|e| {
        if e > now {
            e
        } else {
            now.saturating_add(source.created_at.until(e))
        }
    })
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
