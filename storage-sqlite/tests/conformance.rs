//! The shared Keyward store conformance suite, run against a fresh SQLite file per case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keyward::KeyStore;
use keyward::conformance::WithGuard;
use keyward_sqlite::SqliteStore;

/// A fresh file per case; the store owns its temporary directory (via [`WithGuard`]), so the
/// files live exactly as long as the store and are deleted after the case.
async fn make_store() -> Option<Arc<dyn KeyStore>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("keys.db"))
        .await
        .expect("open sqlite store");
    Some(Arc::new(WithGuard::new(Arc::new(store), dir)))
}

keyward::store_conformance_tests!(make_store);
