//! Leak reports: a key found in public (GitHub's secret scanning, a scanner of the host's own)
//! is proven to be one of this store's keys, then revoked or only flagged. The proof is the
//! verify pipeline's (docs/ARCHITECTURE.md, "The verify pipeline", steps 4 and 5) without its
//! limits: a live cache entry decides by its digest with no Argon2, an unknown id costs one
//! store read and no Argon2, and only a known id runs Argon2, on the manager's bounded hasher.
//! A look-alike (a real id with a wrong secret, or a relabelled key) changes nothing.

use crate::audit::AuditAction;
use crate::error::Error;
use crate::key::ApiKey;
use crate::store::{KeyChange, KeyRecord};

use super::KeyManager;
use super::model::KeyInfo;
use super::verify::ColdOutcome;

/// What [`KeyManager::report_leak`] does with a key proven to have leaked.
///
/// ```
/// assert_eq!(keyward::LeakAction::default(), keyward::LeakAction::Revoke);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeakAction {
    /// Revoke the key at once (the default): every verify that starts after the report
    /// returns refuses it.
    #[default]
    Revoke,
    /// Leave the key working and only record the report (a warning in the log and an audit
    /// entry), for hosts that warn their customers first.
    Flag,
}

/// Where a leaked key was found. Neither field is a secret: both are logged.
///
/// ```
/// let report = keyward::LeakReport {
///     url: Some("https://github.com/octo/app/blob/abc/config.toml".into()),
///     source: Some("content".into()),
/// };
/// assert_eq!(report.source.as_deref(), Some("content"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakReport {
    /// The public URL where the key was found (GitHub may send none).
    pub url: Option<String>,
    /// What kind of place it was found in (GitHub: `content`, `commit`, `issue_comment`…).
    pub source: Option<String>,
}

/// The most of a report's URL or source an audit entry keeps, in characters (the summary has
/// a size limit, and a URL longer than this says nothing more useful).
const MAX_REPORT_FIELD_CHARS: usize = 2048;

/// `text`, cut to [`MAX_REPORT_FIELD_CHARS`] characters.
fn bounded(text: &str) -> &str {
    text.char_indices()
        .nth(MAX_REPORT_FIELD_CHARS)
        .map_or(text, |(end, _)| &text[..end])
}

impl KeyManager {
    /// Handles a report that `key` leaked: proves that it is one of this store's keys (the
    /// prefix this manager issues, a known id, the secret matching the stored hash, the
    /// record binding it), then applies `action`. Answers the key's public view after the
    /// action, or `Ok(None)` when the key is not one of this store's: another prefix, an
    /// unknown id, or a wrong secret for a real id. Then nothing changes, so a look-alike
    /// posted in public cannot revoke someone else's key.
    ///
    /// Every proven report is in the audit trail as `leak_reported`, by this handle's actor
    /// ([`KeyManager::acting_as`]; `keyward::secret_scanning` acts as
    /// `github-secret-scanning`), with the URL, the source and the outcome (`revoked`,
    /// `already_revoked`, `flagged`); a revocation and its entry are one store transaction.
    /// A key that is already revoked or expired is still a leaked key of this store: it is
    /// answered (not revoked again). Cost: one store read; no Argon2 for an unknown id or a
    /// key the verify cache holds with this secret; otherwise one Argon2 verification on the
    /// manager's bounded hasher (so callers with many keys should report a few at a time, as
    /// `keyward::secret_scanning` does).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use keyward::{HashParams, IssueRequest, KeyManager, KeyStatus, LeakAction, LeakReport};
    /// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
    ///     .serve("dev".parse()?)
    ///     .hash_params(HashParams::INSECURE_TEST_ONLY)
    ///     .build()?;
    /// let issued = manager.issue(IssueRequest::new("web-app".parse()?, "dev".parse()?)).await?;
    /// let report = LeakReport { url: Some("https://example.com/paste/1".into()), source: None };
    ///
    /// let info = manager.report_leak(&issued.key, &report, LeakAction::Revoke).await?;
    /// assert_eq!(info.map(|i| i.status), Some(KeyStatus::Revoked));
    ///
    /// // A key this store never issued: nothing happens.
    /// let stranger = keyward::ApiKey::generate(manager.prefix(), "dev".parse()?)?;
    /// assert!(manager.report_leak(&stranger, &report, LeakAction::Revoke).await?.is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails; [`Error::Overloaded`] when the hasher's queue
    /// is full; nothing was changed unless the revocation itself was under way.
    #[tracing::instrument(skip_all, fields(key.id = %key.id()))]
    pub async fn report_leak(
        &self,
        key: &ApiKey,
        report: &LeakReport,
        action: LeakAction,
    ) -> Result<Option<KeyInfo>, Error> {
        let Some(record) = self.prove_key(key).await? else {
            tracing::debug!("leak report of a key this store does not hold: ignored");
            return Ok(None);
        };
        let url = report.url.as_deref().unwrap_or("");
        let source = report.source.as_deref().unwrap_or("");
        // The audit entry names where the key was found; in the same transaction as the
        // revocation, or alone when nothing else changes.
        let summary = |outcome: &str| {
            serde_json::json!({
                "url": bounded(url),
                "source": bounded(source),
                "outcome": outcome,
            })
        };
        let info = match action {
            LeakAction::Revoke if record.revoked_at.is_none() => {
                let change = KeyChange {
                    revoke_at: Some(self.now()),
                    ..KeyChange::default()
                };
                let revoked = self
                    .update_audited(
                        &record.id,
                        &change,
                        AuditAction::LeakReported,
                        summary("revoked"),
                    )
                    .await?;
                tracing::warn!(url, source, "leaked API key reported: revoked");
                KeyInfo::from_record(&revoked, self.now())
            }
            LeakAction::Revoke => {
                let entry = self.audit_entry(
                    AuditAction::LeakReported,
                    &record,
                    summary("already_revoked"),
                );
                self.append_audit(&entry).await?;
                tracing::warn!(url, source, "leaked API key reported: already revoked");
                KeyInfo::from_record(&record, self.now())
            }
            LeakAction::Flag => {
                let entry =
                    self.audit_entry(AuditAction::LeakReported, &record, summary("flagged"));
                self.append_audit(&entry).await?;
                tracing::warn!(url, source, "leaked API key reported: flagged, not revoked");
                KeyInfo::from_record(&record, self.now())
            }
        };
        Ok(Some(info))
    }

    /// The record of `key` if the secret is proven to be its: from a live verify-cache entry
    /// (digest, no Argon2), else a store read and, for a known id, Argon2. `None` for another
    /// prefix, an unknown id, a wrong secret or a record that does not bind the key.
    async fn prove_key(&self, key: &ApiKey) -> Result<Option<KeyRecord>, Error> {
        if !key.has_prefix(&self.inner.prefix) {
            return Ok(None);
        }
        let id = key.id();
        if let Some(cache) = &self.inner.cache
            && let Some(entry) = cache.get(&id)
            && entry.matches(&cache.digest(key.secret_bytes()))
            && entry.record().binds(key)
        {
            return Ok(Some(entry.record().clone()));
        }
        // The verify pipeline's own cold step: one store read, Argon2 for a known id only.
        Ok(match self.cold_verify(key).await? {
            ColdOutcome::Verified { record, .. } => Some(*record),
            ColdOutcome::Unknown | ColdOutcome::Invalid => None,
        })
    }
}
