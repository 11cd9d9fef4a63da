//! The shared Keyward store conformance suite against `SqliteStore::in_memory()` (one
//! connection, no WAL).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keyward::KeyStore;
use keyward_sqlite::SqliteStore;

async fn make_store() -> Option<Arc<dyn KeyStore>> {
    Some(Arc::new(
        SqliteStore::in_memory().await.expect("in-memory store"),
    ))
}

keyward::store_conformance_tests!(make_store);
