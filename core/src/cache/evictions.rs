//! Counting the verify cache's evictions (`keyward_cache_evicted_total`, `keyward::metrics`):
//! a quick_cache lifecycle that increments a counter when an entry is evicted for capacity.
//! Removals (invalidations) and replacements are not evictions.

use std::sync::Arc;

use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};

use crate::key::KeyId;

use super::Entry;

/// The entries map of the verify cache, counting its evictions.
pub(super) type Entries =
    quick_cache::sync::Cache<KeyId, Arc<Entry>, UnitWeighter, DefaultHashBuilder, CountEvictions>;

/// Builds the entries map for `capacity` entries.
pub(super) fn entries(capacity: usize, evicted: metrics::Counter) -> Entries {
    quick_cache::sync::Cache::with(
        capacity,
        capacity as u64,
        UnitWeighter,
        DefaultHashBuilder::default(),
        CountEvictions(evicted),
    )
}

/// Increments its counter for each evicted entry. The entry is kept in the request's state
/// and dropped when the request ends, outside the cache's lock (as quick_cache's default
/// lifecycle does).
#[derive(Clone)]
pub(super) struct CountEvictions(metrics::Counter);

impl Lifecycle<KeyId, Arc<Entry>> for CountEvictions {
    type RequestState = Vec<Arc<Entry>>;

    fn on_evict(&self, evicted: &mut Self::RequestState, _key: KeyId, entry: Arc<Entry>) {
        self.0.increment(1);
        evicted.push(entry);
    }
}
