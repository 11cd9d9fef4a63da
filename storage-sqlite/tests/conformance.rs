//! The shared Keyward store conformance suite, run against a fresh SQLite file per case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keyward::{
    ChangeEvent, Changes, Consumption, KeyChange, KeyId, KeyRecord, KeyStore, ListQuery,
    StoreError, Timestamp, UsageBucket, async_trait,
};
use keyward_sqlite::SqliteStore;
use tempfile::TempDir;

/// A store that owns its temporary directory, so the files live exactly as long as the store
/// and are deleted after the case.
#[derive(Debug)]
struct TempStore {
    store: SqliteStore,
    _dir: TempDir,
}

async fn make_store() -> Option<Arc<dyn KeyStore>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("keys.db"))
        .await
        .expect("open sqlite store");
    Some(Arc::new(TempStore { store, _dir: dir }))
}

keyward::store_conformance_tests!(make_store);

#[async_trait]
impl KeyStore for TempStore {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.store.insert(record).await
    }
    async fn insert_many(&self, records: &[KeyRecord]) -> Result<(), StoreError> {
        self.store.insert_many(records).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.store.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.list(query).await
    }
    async fn update(
        &self,
        id: &KeyId,
        change: &KeyChange,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.store.update(id, change).await
    }
    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        self.store.record_usage(used).await
    }
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError> {
        self.store.consume(bucket, amount, limit).await
    }
    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError> {
        self.store.usage(bucket).await
    }
    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError> {
        self.store.changes_since(revision).await
    }
    async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<ChangeEvent>>, StoreError> {
        self.store.subscribe().await
    }
}
