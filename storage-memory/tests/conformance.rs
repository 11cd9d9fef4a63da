//! The memory store passes the whole shared conformance suite.

use std::sync::Arc;

use keyward::KeyStore;
use keyward_memory::MemoryStore;

async fn make_store() -> Option<Arc<dyn KeyStore>> {
    Some(Arc::new(MemoryStore::new()))
}

keyward::store_conformance_tests!(make_store);
