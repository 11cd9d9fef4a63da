//! The audit trail seen from the manager (docs/ARCHITECTURE.md, "The audit trail"): the
//! actor changes are attributed to ([`KeyManager::acting_as`]), the entries and summaries
//! the admin operations hand to the store with their change, reading the trail, and its
//! retention.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::audit::{Actor, AuditAction, AuditEntry, AuditQuery};
use crate::error::Error;
use crate::key::KeyId;
use crate::name::Project;
use crate::quota::Quota;
use crate::store::{KeyChange, KeyRecord};
use crate::time::Timestamp;

use super::KeyManager;

impl KeyManager {
    /// A handle on the same manager (same store, cache and background tasks) whose changes
    /// are attributed to `actor` in the audit trail. A manager built by
    /// [`KeyManagerBuilder::build`](crate::KeyManagerBuilder::build) acts as
    /// [`Actor::system`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::{Actor, AuditQuery, HashParams, IssueRequest, KeyManager};
    /// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
    ///     .hash_params(HashParams::INSECURE_TEST_ONLY)
    ///     .build()?;
    /// assert_eq!(manager.actor(), &Actor::system());
    /// let alice = manager.acting_as(Actor::new("user:alice")?);
    /// let issued = alice.issue(IssueRequest::new("web-app".parse()?, "dev".parse()?)).await?;
    /// let trail = manager.audit(&AuditQuery::new("web-app".parse()?)).await?;
    /// assert_eq!(trail[0].actor.as_str(), "user:alice");
    /// assert_eq!(trail[0].key_id, Some(issued.record.id));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn acting_as(&self, actor: Actor) -> KeyManager {
        KeyManager {
            inner: std::sync::Arc::clone(&self.inner),
            actor,
        }
    }

    /// Who this handle's changes are attributed to.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// A page of a project's audit trail, newest first (see [`AuditQuery`]).
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, Error> {
        Ok(self.inner.store.audit(query).await?)
    }

    /// Deletes audit entries older than the retention set with
    /// [`KeyManagerBuilder::audit_retention`](crate::KeyManagerBuilder::audit_retention) and
    /// answers how many; with none set (the default: keep forever) it deletes nothing. The
    /// background tasks call it every hour once started (on the first verify).
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn prune_audit(&self) -> Result<u64, Error> {
        let Some(retention) = self.inner.audit_retention else {
            return Ok(0);
        };
        Ok(self
            .inner
            .store
            .prune_audit(retention_cutoff(self.now(), retention))
            .await?)
    }

    /// An entry of `action` on `record`'s key, by this handle's actor, now.
    pub(crate) fn audit_entry(
        &self,
        action: AuditAction,
        record: &KeyRecord,
        summary: Value,
    ) -> AuditEntry {
        AuditEntry::new(
            self.now(),
            self.actor.clone(),
            action,
            record.project.clone(),
        )
        .environment(record.environment)
        .key(record.id)
        .summary(summary)
    }

    /// Appends an entry that goes with no record change (a leak report that only flags a
    /// key); answers its `seq`.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails or refuses the entry.
    pub(crate) async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, Error> {
        Ok(self.inner.store.append_audit(entry).await?)
    }

    /// Applies `change` to the key `id` and appends an entry of `action` with `summary` in
    /// the same store transaction. The key's project and environment (which never change)
    /// are read first for the entry.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Store`] when the store fails or
    /// refuses the entry (the change is not applied then).
    pub(crate) async fn update_audited(
        &self,
        id: &KeyId,
        change: &KeyChange,
        action: AuditAction,
        summary: Value,
    ) -> Result<KeyRecord, Error> {
        let record = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(Error::NotFound(*id))?;
        let entry = self.audit_entry(action, &record, summary);
        let updated = self
            .inner
            .store
            .update(id, change, std::slice::from_ref(&entry))
            .await;
        // Invalidate even on error: the change may have been applied before the failure.
        self.invalidate(id);
        let updated = updated?.ok_or(Error::NotFound(*id))?;
        self.emit_updated(change, &updated);
        Ok(updated)
    }

    /// The entry of a project's quota being set (`Some`) or cleared (`None`).
    pub(super) fn quota_entry(&self, project: &Project, quota: Option<&Quota>) -> AuditEntry {
        AuditEntry::new(
            self.now(),
            self.actor.clone(),
            AuditAction::QuotaChanged,
            project.clone(),
        )
        .summary(json!({ "quota": quota }))
    }
}

/// The instant before which entries are pruned.
fn retention_cutoff(now: Timestamp, retention: Duration) -> Timestamp {
    let ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_unix_millis(now.unix_millis().saturating_sub(ms))
}

/// The action of a change: a revocation, or an update.
pub(super) fn change_action(change: &KeyChange) -> AuditAction {
    if change.revoke_at.is_some() {
        AuditAction::Revoked
    } else {
        AuditAction::Updated
    }
}

/// What a change sets, as an audit summary: each field it touches with its new value, except
/// the metadata (free-form and possibly large or personal: only `"set"` or `"cleared"`) and
/// the secret hash (only `"replaced"`).
///
/// ```text
/// {"name": "ingest", "scopes": ["read"], "expires_at": null, "metadata": "set"}
/// ```
pub(super) fn change_summary(change: &KeyChange) -> Value {
    let mut m = Map::new();
    if let Some(at) = change.revoke_at {
        m.insert("revoked_at".into(), json!(at));
    }
    if let Some(e) = change.expires_at {
        m.insert("expires_at".into(), json!(e));
    }
    if let Some(s) = &change.scopes {
        m.insert("scopes".into(), json!(s));
    }
    if let Some(n) = &change.name {
        m.insert("name".into(), json!(n));
    }
    if let Some(md) = &change.metadata {
        let state = if md.is_some() { "set" } else { "cleared" };
        m.insert("metadata".into(), json!(state));
    }
    if change.secret_hash.is_some() {
        m.insert("secret_hash".into(), json!("replaced"));
    }
    if let Some(l) = &change.limits {
        m.insert("limits".into(), json!(l));
    }
    Value::Object(m)
}

/// What an issued key is, as an audit summary (the metadata only as `"set"`).
pub(super) fn issue_summary(record: &KeyRecord) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(record.name));
    m.insert("scopes".into(), json!(record.scopes));
    m.insert("expires_at".into(), json!(record.expires_at));
    if record.metadata.is_some() {
        m.insert("metadata".into(), json!("set"));
    }
    if !record.limits.is_empty() {
        m.insert("limits".into(), json!(record.limits));
    }
    Value::Object(m)
}

/// A rotation, as an audit summary of the old key's entry: the new key and when the old one
/// stops working.
pub(super) fn rotation_summary(
    successor: &KeyId,
    grace_end: Option<Timestamp>,
    force: bool,
) -> Value {
    json!({ "new_key_id": successor, "grace_end": grace_end, "forced": force })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHC: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$X34BrkThJYMu+rIISZMN1uQlJp94vR8NMk4ILKRmdLY";

    #[test]
    fn a_change_summary_names_each_field_and_never_the_hash_or_metadata() {
        let change = KeyChange {
            name: Some("ingest".into()),
            metadata: Some(Some(json!({"secret-ish": "value"}))),
            secret_hash: Some(crate::SecretHash::from_phc(PHC).unwrap()),
            ..KeyChange::default()
        };
        let s = change_summary(&change).to_string();
        assert_eq!(
            s,
            r#"{"metadata":"set","name":"ingest","secret_hash":"replaced"}"#
        );
        assert_eq!(change_action(&change), AuditAction::Updated);
    }

    #[test]
    fn retention_cuts_at_now_minus_the_retention() {
        let now = Timestamp::from_unix_millis(10_000);
        assert_eq!(
            retention_cutoff(now, Duration::from_secs(3)),
            Timestamp::from_unix_millis(7_000)
        );
        assert_eq!(
            retention_cutoff(now, Duration::MAX),
            Timestamp::from_unix_millis(10_000 - i64::MAX)
        );
    }
}
