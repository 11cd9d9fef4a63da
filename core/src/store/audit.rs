//! The [`AuditStore`] contract: the append-only audit trail (docs/ARCHITECTURE.md, "The
//! audit trail").
//!
//! A lifecycle change and its entry are written together: [`RecordStore`]'s changing methods
//! and [`UsageStore::put_setting`] take the entries to append in the same transaction, so a
//! failed append applies nothing. This trait adds the entry with no record change (a leak
//! report that only flags a key), the keyset-paginated read and the pruning.
//!
//! [`RecordStore`]: super::RecordStore
//! [`UsageStore::put_setting`]: super::UsageStore::put_setting

use std::fmt;

use async_trait::async_trait;

use super::error::StoreError;
use crate::audit::{AuditEntry, AuditQuery};
use crate::time::Timestamp;

/// The audit trail. Part of [`KeyStore`](super::KeyStore).
///
/// Every store assigns each appended entry a `seq` larger than every `seq` it assigned
/// before, and refuses an entry whose summary breaks [`AuditEntry::check_size`] inside the
/// transaction of the change it belongs to (the conformance suite checks both).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::{Actor, AuditAction, AuditEntry, AuditQuery, AuditStore, Timestamp};
/// let store = keyward_memory::MemoryStore::new();
/// let project: keyward::Project = "web-app".parse()?;
/// let entry = AuditEntry::new(Timestamp::now(), Actor::system(), AuditAction::LeakReported, project.clone());
/// let seq = store.append_audit(&entry).await?;
/// let page = store.audit(&AuditQuery::new(project)).await?;
/// assert_eq!(page[0].seq, seq);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait AuditStore: Send + Sync + fmt::Debug + 'static {
    /// Appends one entry that goes with no record change (e.g. a leak report that only flags
    /// the key) and answers its `seq`. The entry's own `seq` is ignored.
    ///
    /// # Errors
    /// The backend's failure, or a refused entry (see [`AuditEntry::check_size`]).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError>;

    /// A page of entries matching the query, newest first (by `seq`, descending), at most
    /// [`AuditQuery::page_size`].
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// Deletes the entries made before `before` (their `at`); answers how many.
    async fn prune_audit(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Checks every entry's size, for stores that check in code (the memory store) rather than
/// in their schema.
///
/// # Errors
/// A backend error of `store` wrapping the first [`SummaryTooLarge`](crate::SummaryTooLarge).
pub fn check_entries(store: &'static str, entries: &[AuditEntry]) -> Result<(), StoreError> {
    for e in entries {
        e.check_size().map_err(|e| StoreError::backend(store, e))?;
    }
    Ok(())
}
