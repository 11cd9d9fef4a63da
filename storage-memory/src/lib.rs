#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use keyward::store::check_entries;
use keyward::{
    AuditEntry, AuditQuery, AuditStore, ChangeEvent, Changes, Consumption, DEFAULT_CHANGE_LOG_LEN,
    KeyChange, KeyId, KeyRecord, Lease, ListQuery, RateCells, RecordStore, RotateOutcome,
    StoreError, Timestamp, UsageBucket, UsageStore, async_trait,
};

const STORE: &str = "memory";

/// A [`KeyStore`](keyward::KeyStore) in process memory. Clones share the same data. Its
/// change log keeps the last [`DEFAULT_CHANGE_LOG_LEN`] changes (see
/// [`MemoryStore::with_change_log_len`]).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::RecordStore;
/// let store = keyward_memory::MemoryStore::new();
/// assert!(store.get(&"7Kq2mZ9xA1bC".parse()?).await?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<KeyId, KeyRecord>,
    revision: u64,
    log: VecDeque<(u64, KeyId)>,
    /// Most entries kept in `log` (`None`: [`DEFAULT_CHANGE_LOG_LEN`]).
    log_len: Option<u64>,
    /// Per bucket: `(used, leased)`.
    usage: HashMap<UsageBucket, (u64, u64)>,
    /// Per cluster rate limiter: its theoretical arrival time (µs).
    rate_tats: HashMap<String, i64>,
    settings: HashMap<String, serde_json::Value>,
    /// The audit trail, oldest first; `seq`s increase.
    audit: VecDeque<AuditEntry>,
    /// The last `seq` handed out.
    audit_seq: u64,
}

impl State {
    /// Advances the revision and logs `id` as changed (an insert or an update), keeping the
    /// last `log_len` entries.
    fn log_change(&mut self, id: KeyId) {
        self.revision += 1;
        self.log.push_back((self.revision, id));
        if self.log.len() as u64 > self.log_len.unwrap_or(DEFAULT_CHANGE_LOG_LEN) {
            self.log.pop_front();
        }
    }

    /// Appends entries checked beforehand with [`check_entries`] (under the same lock as the
    /// change they go with); answers the last `seq`.
    fn append(&mut self, entries: &[AuditEntry]) -> u64 {
        for e in entries {
            self.audit_seq += 1;
            self.audit.push_back(AuditEntry {
                seq: self.audit_seq,
                ..e.clone()
            });
        }
        self.audit_seq
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose change log keeps the last `n` changes (at least one): a reader
    /// further behind is told to resync by
    /// [`RecordStore::changes_since`].
    pub fn with_change_log_len(n: u64) -> Self {
        let store = Self::default();
        if let Ok(mut state) = store.state.lock() {
            state.log_len = Some(n.max(1));
        }
        store
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::corrupt(STORE, "a thread panicked while holding the store"))
    }
}

#[async_trait]
impl RecordStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn insert(&self, record: &KeyRecord, audit: &[AuditEntry]) -> Result<(), StoreError> {
        check_entries(STORE, audit)?;
        let mut s = self.lock()?;
        if s.records.contains_key(&record.id) {
            return Err(StoreError::AlreadyExists(record.id));
        }
        s.records.insert(record.id, record.clone());
        s.log_change(record.id);
        s.append(audit);
        Ok(())
    }

    async fn insert_many(
        &self,
        records: &[KeyRecord],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        check_entries(STORE, audit)?;
        let mut s = self.lock()?;
        let mut batch = std::collections::HashSet::new();
        if let Some(dup) = records
            .iter()
            .find(|r| s.records.contains_key(&r.id) || !batch.insert(r.id))
        {
            return Err(StoreError::AlreadyExists(dup.id));
        }
        for r in records {
            s.records.insert(r.id, r.clone());
            s.log_change(r.id);
        }
        s.append(audit);
        Ok(())
    }

    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.lock()?.records.get(id).cloned())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let s = self.lock()?;
        let mut out: Vec<&KeyRecord> = s
            .records
            .values()
            .filter(|r| query.matches(r))
            .filter(|r| query.after.is_none_or(|after| (r.created_at, r.id) > after))
            .collect();
        out.sort_by_key(|r| (r.created_at, r.id));
        Ok(out
            .into_iter()
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn update(
        &self,
        id: &KeyId,
        change: &KeyChange,
        audit: &[AuditEntry],
    ) -> Result<Option<KeyRecord>, StoreError> {
        check_entries(STORE, audit)?;
        let mut s = self.lock()?;
        let Some(record) = s.records.get_mut(id) else {
            return Ok(None);
        };
        change.apply_to(record);
        let updated = record.clone();
        s.log_change(*id);
        s.append(audit);
        Ok(Some(updated))
    }

    /// Under the store's one lock, so it serializes with every update.
    async fn rotate(
        &self,
        old: &KeyId,
        successor: &KeyRecord,
        grace_end: Timestamp,
        now: Timestamp,
        force: bool,
        audit: &[AuditEntry],
    ) -> Result<RotateOutcome, StoreError> {
        check_entries(STORE, audit)?;
        let mut s = self.lock()?;
        let current = s.records.get(old).cloned();
        let replaced = match RotateOutcome::decide(current, successor.id, grace_end, now, force) {
            Ok(replaced) => replaced,
            Err(outcome) => return Ok(outcome),
        };
        if s.records.contains_key(&successor.id) {
            return Err(StoreError::AlreadyExists(successor.id));
        }
        s.records.insert(successor.id, successor.clone());
        s.records.insert(*old, replaced.clone());
        // The successor's insert and the old key's change, as `insert` and `update` log them.
        s.log_change(successor.id);
        s.log_change(*old);
        s.append(audit);
        Ok(RotateOutcome::Rotated(Box::new(replaced)))
    }

    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        let mut s = self.lock()?;
        for (id, at) in used {
            if let Some(r) = s.records.get_mut(id) {
                r.last_used_at = Some(r.last_used_at.map_or(*at, |prev| prev.max(*at)));
            }
        }
        Ok(())
    }

    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError> {
        let s = self.lock()?;
        let ids = s
            .log
            .iter()
            .filter(|(rev, _)| *rev > revision)
            .map(|(_, id)| *id)
            .collect();
        let oldest = s.log.front().map(|(rev, _)| *rev);
        Ok(Changes::from_log(revision, s.revision, oldest, ids))
    }

    /// No push feed: the manager polls [`RecordStore::changes_since`].
    async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<ChangeEvent>>, StoreError> {
        Ok(None)
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError> {
        let mut s = self.lock()?;
        let (used, leased) = s.usage.entry(bucket.clone()).or_insert((0, 0));
        match used.checked_add(amount) {
            Some(total) if total.checked_add(*leased).is_some_and(|t| t <= limit) => {
                *used = total;
                Ok(Consumption::Granted { used: total })
            }
            _ => Ok(Consumption::Refused { used: *used }),
        }
    }

    async fn release(&self, bucket: &UsageBucket, amount: u64) -> Result<(), StoreError> {
        if let Some((used, _)) = self.lock()?.usage.get_mut(bucket) {
            *used = used.saturating_sub(amount);
        }
        Ok(())
    }

    async fn lease(
        &self,
        bucket: &UsageBucket,
        want: u64,
        min: u64,
        limit: u64,
    ) -> Result<Lease, StoreError> {
        let mut s = self.lock()?;
        let (used, leased) = s.usage.entry(bucket.clone()).or_insert((0, 0));
        let lease = Lease::grant(limit, *used, *leased, want, min);
        *leased = lease.leased;
        Ok(lease)
    }

    async fn settle(
        &self,
        bucket: &UsageBucket,
        spent: u64,
        returned: u64,
    ) -> Result<Lease, StoreError> {
        let mut s = self.lock()?;
        let (used, leased) = s.usage.entry(bucket.clone()).or_insert((0, 0));
        *used = used.saturating_add(spent);
        *leased = leased.saturating_sub(spent.saturating_add(returned));
        Ok(Lease {
            granted: 0,
            used: *used,
            leased: *leased,
        })
    }

    async fn take_cells(&self, cells: &RateCells, want: u64) -> Result<u64, StoreError> {
        let mut s = self.lock()?;
        let tat = s.rate_tats.get(&cells.name).copied();
        let n = cells.free_at(tat).min(want);
        s.rate_tats
            .insert(cells.name.clone(), cells.tat_after_taking(tat, n));
        Ok(n)
    }

    async fn return_cells(&self, cells: &RateCells, n: u64) -> Result<(), StoreError> {
        let mut s = self.lock()?;
        let tat = s.rate_tats.get(&cells.name).copied();
        if tat.is_some() {
            s.rate_tats
                .insert(cells.name.clone(), cells.tat_after_returning(tat, n));
        }
        Ok(())
    }

    /// One process's memory: never shared.
    fn shared(&self) -> bool {
        false
    }

    async fn get_setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self.lock()?.settings.get(name).cloned())
    }

    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        check_entries(STORE, audit)?;
        let mut s = self.lock()?;
        match value {
            Some(v) => s.settings.insert(name.to_owned(), v.clone()),
            None => s.settings.remove(name),
        };
        s.append(audit);
        Ok(())
    }

    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError> {
        Ok(self.lock()?.usage.get(bucket).map_or(0, |(used, _)| *used))
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        check_entries(STORE, std::slice::from_ref(entry))?;
        Ok(self.lock()?.append(std::slice::from_ref(entry)))
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let s = self.lock()?;
        Ok(s.audit
            .iter()
            .rev()
            .filter(|e| query.matches(e))
            .take(query.page_size() as usize)
            .cloned()
            .collect())
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut s = self.lock()?;
        let was = s.audit.len();
        s.audit.retain(|e| e.at >= before);
        Ok((was - s.audit.len()) as u64)
    }
}
