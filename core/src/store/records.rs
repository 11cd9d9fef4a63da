//! The [`RecordStore`] contract: key records and the change feed that keeps every
//! instance's verify cache coherent (docs/ARCHITECTURE.md, "The store contract").

use async_trait::async_trait;
use std::fmt;

use super::error::StoreError;
use crate::audit::AuditEntry;
use crate::key::KeyId;
use crate::time::Timestamp;

use super::record::{KeyChange, KeyRecord, ListQuery, RotationConflict};

/// How many change-log entries a store keeps unless configured otherwise: a reader further
/// behind than this is told to resync (drop its whole cache) by
/// [`RecordStore::changes_since`].
pub const DEFAULT_CHANGE_LOG_LEN: u64 = 100_000;

/// Keys changed since a revision, for cache invalidation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The store's current revision; pass it to the next call.
    pub revision: u64,
    /// The ids inserted or changed after the revision asked for (possibly with repeats).
    pub ids: Vec<KeyId>,
    /// The store no longer knows all changes since that revision: drop every cached entry.
    pub resync: bool,
}

/// A message from a push-based change feed.
///
/// A feed whose connection breaks sends [`ChangeEvent::Lost`] at once and, once it listens
/// again, [`ChangeEvent::Resync`]. The manager's verify cache revalidates every entry with a
/// store read while the feed is lost, and on `Resync` catches up from the store's change log
/// ([`RecordStore::changes_since`] from the last revision it knows it has seen), so only keys
/// changed meanwhile are dropped (docs/ARCHITECTURE.md, "The verify cache").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeEvent {
    /// This key was inserted or changed (revoked, rotated, expiry, scopes, metadata…).
    Changed(KeyId),
    /// Changes may have been missed (the feed's connection dropped and is back, or the
    /// subscriber fell behind): what changed since the last revision known to be seen must be
    /// caught up from the store's change log (or, if that is not possible, every cached entry
    /// dropped).
    Resync,
    /// The feed's connection is lost (an error, or a heartbeat that timed out): changes may go
    /// unnoticed until a [`ChangeEvent::Resync`] follows, so cached entries must not be served
    /// without asking the store meanwhile.
    Lost,
}

impl Changes {
    /// The answer to `changes_since(asked)` of a store whose change log holds the ids
    /// `ids` changed after `asked`, whose current revision is `current`, and whose oldest
    /// logged revision is `oldest_logged` (`None` when the log is empty). The log holds every
    /// change after `oldest_logged - 1`; a reader that asks for an older revision may have
    /// missed changes and must resync. This is the one statement of that rule: every store
    /// answers through it.
    ///
    /// ```
    /// use keyward::Changes;
    /// // The log holds revisions 5..=9 (older entries were trimmed).
    /// assert!(!Changes::from_log(4, 9, Some(5), vec![]).resync); // 5..=9 are all logged
    /// assert!(Changes::from_log(3, 9, Some(5), vec![]).resync);  // revision 4 is gone
    /// assert!(!Changes::from_log(9, 9, None, vec![]).resync);    // nothing happened since
    /// assert!(Changes::from_log(2, 9, None, vec![]).resync);     // an empty log after trimming
    /// ```
    pub fn from_log(asked: u64, current: u64, oldest_logged: Option<u64>, ids: Vec<KeyId>) -> Self {
        let oldest_kept = oldest_logged.map_or(current, |oldest| oldest.saturating_sub(1));
        Changes {
            revision: current,
            ids,
            resync: asked < oldest_kept,
        }
    }
}

/// What [`RecordStore::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateOutcome {
    /// The successor was inserted; this is the old record as it is now (its expiry and
    /// `rotated_to` set).
    Rotated(Box<KeyRecord>),
    /// No record has the old id; nothing was written.
    NotFound,
    /// The old key's state refuses an unforced rotation; nothing was written.
    Refused(RotationConflict),
}

impl RotateOutcome {
    /// The decision every store makes inside its [`RecordStore::rotate`] transaction, given
    /// the old record as read under the transaction's lock: `Ok(record)` is the old record
    /// as the store must write it back (see [`KeyRecord::rotate_to`]) before inserting the
    /// successor; `Err(outcome)` ([`RotateOutcome::NotFound`] or
    /// [`RotateOutcome::Refused`]) is the answer, with nothing written.
    ///
    /// # Errors
    /// The outcome to return when nothing may be written.
    pub fn decide(
        old: Option<KeyRecord>,
        successor: KeyId,
        grace_end: Timestamp,
        now: Timestamp,
        force: bool,
    ) -> Result<KeyRecord, RotateOutcome> {
        let mut old = old.ok_or(RotateOutcome::NotFound)?;
        if !force && let Some(conflict) = old.rotation_conflict(now) {
            return Err(RotateOutcome::Refused(conflict));
        }
        old.rotate_to(successor, grace_end);
        Ok(old)
    }
}

/// Key records and their change feed. Implementations must make every method atomic with
/// respect to concurrent callers in any process sharing the backend. Part of [`KeyStore`](super::KeyStore).
///
/// The shared conformance suite (`keyward::conformance`, feature `test-util`) states the
/// contract as tests; every store runs it.
#[async_trait]
pub trait RecordStore: Send + Sync + fmt::Debug + 'static {
    /// Inserts a new record. A successful insert advances the store's revision and records
    /// the id as changed, like [`RecordStore::update`], in the same transaction: the change
    /// feed reports it, so a verify cache that remembers the id as unknown forgets that.
    ///
    /// The `audit` entries (normally one: the issue) are appended in the same transaction
    /// (see [`AuditStore`](super::AuditStore)); when one is refused, nothing is written.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the id is taken; otherwise the backend's failure.
    async fn insert(&self, record: &KeyRecord, audit: &[AuditEntry]) -> Result<(), StoreError>;

    /// Inserts many records (bulk loading, migrations between stores), in one transaction
    /// where the backend has them. Fails on the first duplicate id (a store with
    /// transactions inserts none of them then). Each inserted id advances the revision and is
    /// recorded as changed, as by [`RecordStore::insert`]; the `audit` entries are appended
    /// in the same transaction.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] for a taken id; otherwise the backend's failure.
    async fn insert_many(
        &self,
        records: &[KeyRecord],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError>;

    /// Fetches a record by id; `Ok(None)` when there is none.
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError>;

    /// Lists records matching the query, ordered by `(created_at, id)`, at most `limit`.
    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError>;

    /// Applies a change atomically and returns the updated record (`Ok(None)` if the id is
    /// unknown). Every successful update advances the store's revision and records the id as
    /// changed. The `audit` entries are appended in the same transaction when the id is
    /// known (none for a change that is no lifecycle change, such as a re-hash); when one is
    /// refused, the change is not applied.
    async fn update(
        &self,
        id: &KeyId,
        change: &KeyChange,
        audit: &[AuditEntry],
    ) -> Result<Option<KeyRecord>, StoreError>;

    /// Rotates a key in one transaction, serialized with every other change of the old
    /// key's record (a concurrent [`RecordStore::update`] that revokes it either comes
    /// first, and the rotation is refused, or after): reads the old record under a lock,
    /// decides with [`RotateOutcome::decide`] (unless `force`, a key revoked, expired at
    /// `now` or already rotated is refused), inserts `successor`, writes the old record's
    /// new expiry (at most `grace_end`) and `rotated_to`, advances the revision and records
    /// the old id as changed, as [`RecordStore::update`] does, and appends the `audit`
    /// entries; all in one transaction, of which nothing is written when the rotation is
    /// refused or an entry is.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the successor's id is taken (nothing is written);
    /// otherwise the backend's failure.
    async fn rotate(
        &self,
        old: &KeyId,
        successor: &KeyRecord,
        grace_end: Timestamp,
        now: Timestamp,
        force: bool,
        audit: &[AuditEntry],
    ) -> Result<RotateOutcome, StoreError>;

    /// Records last-used times in one batch; a time earlier than the stored one is ignored.
    /// Unknown ids are skipped. Does not advance the revision.
    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError>;

    /// The ids inserted or updated after `revision` and the current revision (last-used times
    /// are not changes). A store that keeps a
    /// bounded change log answers `resync: true` when `revision` is older than its log
    /// (build the answer with [`Changes::from_log`]).
    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError>;

    /// A push-based change feed: `Ok(Some(receiver))` from a backend that has one
    /// (PostgreSQL `LISTEN/NOTIFY`); `Ok(None)` from one that does not, whose changes the
    /// manager then polls with [`RecordStore::changes_since`]. Either answer is a working
    /// store: there is no default, so each store states which it is.
    async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<ChangeEvent>>, StoreError>;

    /// The store's name in metrics (`keyward_store_seconds{store}`): a short static label such
    /// as `memory`, `sqlite` or `postgres`, never a connection string or a path. The default,
    /// `custom`, suits any other store.
    ///
    /// ```
    /// use keyward::RecordStore;
    /// assert_eq!(keyward_memory::MemoryStore::new().name(), "memory");
    /// ```
    fn name(&self) -> &'static str {
        "custom"
    }
}
