//! [`Timed`]: a store wrapper that records the duration of every call in
//! `keyward_store_seconds{op,store}` (`keyward::metrics`). The manager wraps the store it is
//! given, so every store call it makes is timed, whatever the store.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::KeyStore;
use super::audit::AuditStore;
use super::error::StoreError;
use super::lease::{Lease, RateCells};
use super::record::{KeyChange, KeyRecord, ListQuery};
use super::records::{ChangeEvent, Changes, RecordStore, RotateOutcome};
use super::usage::{Consumption, UsageBucket, UsageStore};
use crate::audit::{AuditEntry, AuditQuery};
use crate::key::KeyId;
use crate::metrics::{StoreMetrics, StoreOp};
use crate::time::Timestamp;

/// Forwards every method to the inner store and records how long it took. Its `Debug` and
/// [`RecordStore::name`] are the inner store's.
pub(crate) struct Timed {
    inner: Arc<dyn KeyStore>,
    metrics: StoreMetrics,
}

impl Timed {
    /// Wraps `inner`; the histogram handles are resolved now, from the current recorder.
    pub(crate) fn wrap(inner: Arc<dyn KeyStore>) -> Self {
        let metrics = StoreMetrics::new(inner.name());
        Self { inner, metrics }
    }

    async fn timed<T>(&self, op: StoreOp, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.metrics.record(op, started.elapsed());
        out
    }
}

impl std::fmt::Debug for Timed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.inner, f)
    }
}

#[async_trait]
impl RecordStore for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn insert(&self, record: &KeyRecord, audit: &[AuditEntry]) -> Result<(), StoreError> {
        self.timed(StoreOp::Insert, self.inner.insert(record, audit))
            .await
    }

    async fn insert_many(
        &self,
        records: &[KeyRecord],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.timed(StoreOp::InsertMany, self.inner.insert_many(records, audit))
            .await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.timed(StoreOp::Get, self.inner.get(id)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        self.timed(StoreOp::List, self.inner.list(query)).await
    }

    async fn update(
        &self,
        id: &KeyId,
        change: &KeyChange,
        audit: &[AuditEntry],
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.timed(StoreOp::Update, self.inner.update(id, change, audit))
            .await
    }

    async fn rotate(
        &self,
        old: &KeyId,
        successor: &KeyRecord,
        grace_end: Timestamp,
        now: Timestamp,
        force: bool,
        audit: &[AuditEntry],
    ) -> Result<RotateOutcome, StoreError> {
        self.timed(
            StoreOp::Rotate,
            self.inner
                .rotate(old, successor, grace_end, now, force, audit),
        )
        .await
    }

    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        self.timed(StoreOp::RecordUsage, self.inner.record_usage(used))
            .await
    }

    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError> {
        self.timed(StoreOp::ChangesSince, self.inner.changes_since(revision))
            .await
    }

    async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<ChangeEvent>>, StoreError> {
        self.timed(StoreOp::Subscribe, self.inner.subscribe()).await
    }
}

#[async_trait]
impl UsageStore for Timed {
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError> {
        self.timed(StoreOp::Consume, self.inner.consume(bucket, amount, limit))
            .await
    }

    async fn release(&self, bucket: &UsageBucket, amount: u64) -> Result<(), StoreError> {
        self.timed(StoreOp::Release, self.inner.release(bucket, amount))
            .await
    }

    async fn lease(
        &self,
        bucket: &UsageBucket,
        want: u64,
        min: u64,
        limit: u64,
    ) -> Result<Lease, StoreError> {
        self.timed(StoreOp::Lease, self.inner.lease(bucket, want, min, limit))
            .await
    }

    async fn settle(
        &self,
        bucket: &UsageBucket,
        spent: u64,
        returned: u64,
    ) -> Result<Lease, StoreError> {
        self.timed(StoreOp::Settle, self.inner.settle(bucket, spent, returned))
            .await
    }

    async fn take_cells(&self, cells: &RateCells, want: u64) -> Result<u64, StoreError> {
        self.timed(StoreOp::TakeCells, self.inner.take_cells(cells, want))
            .await
    }

    async fn return_cells(&self, cells: &RateCells, n: u64) -> Result<(), StoreError> {
        self.timed(StoreOp::ReturnCells, self.inner.return_cells(cells, n))
            .await
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError> {
        self.timed(StoreOp::Usage, self.inner.usage(bucket)).await
    }

    async fn get_setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.timed(StoreOp::GetSetting, self.inner.get_setting(name))
            .await
    }

    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.timed(
            StoreOp::PutSetting,
            self.inner.put_setting(name, value, audit),
        )
        .await
    }
}

#[async_trait]
impl AuditStore for Timed {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        self.timed(StoreOp::AppendAudit, self.inner.append_audit(entry))
            .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.timed(StoreOp::Audit, self.inner.audit(query)).await
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.timed(StoreOp::PruneAudit, self.inner.prune_audit(before))
            .await
    }
}
