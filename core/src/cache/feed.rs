//! Cache coherence: the verify cache follows the store's change feed (a push feed, or
//! polling [`RecordStore::changes_since`]) so that changes made by other instances reach it
//! (docs/ARCHITECTURE.md, "The verify cache").

use std::sync::Arc;

use crate::store::{ChangeEvent, KeyStore};

use super::VerifyCache;

/// Where the change feed stands once a baseline is established.
pub(crate) enum Feed {
    /// A push feed (PostgreSQL `LISTEN/NOTIFY`).
    Push(tokio::sync::mpsc::Receiver<ChangeEvent>),
    /// Polling from this revision (`None`: the baseline could not be read yet).
    Poll(Option<u64>),
}

/// Establishes the change-feed baseline; caching is allowed from here on.
pub(crate) async fn establish(store: &dyn KeyStore, cache: &VerifyCache) -> Feed {
    match store.subscribe().await {
        Ok(Some(feed)) => {
            tracing::debug!("verify cache follows the store's push change feed");
            cache.set_ready(true);
            return Feed::Push(feed);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not subscribe to the store's change feed; polling instead")
        }
    }
    match store.changes_since(u64::MAX).await {
        Ok(changes) => {
            cache.set_ready(true);
            Feed::Poll(Some(changes.revision))
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the store's revision; caching waits");
            Feed::Poll(None)
        }
    }
}

/// Keeps the cache coherent with changes made by other processes, until aborted.
pub(crate) async fn watch_changes(store: Arc<dyn KeyStore>, cache: Arc<VerifyCache>, feed: Feed) {
    let revision = match feed {
        Feed::Push(mut feed) => {
            while let Some(event) = feed.recv().await {
                match event {
                    ChangeEvent::Changed(id) => cache.invalidate(&id),
                    ChangeEvent::Resync => cache.invalidate_all(),
                }
            }
            tracing::warn!("the store's change feed ended; falling back to polling");
            cache.set_ready(false);
            None
        }
        Feed::Poll(revision) => revision,
    };
    poll_changes(store, cache, revision).await;
}

async fn poll_changes(
    store: Arc<dyn KeyStore>,
    cache: Arc<VerifyCache>,
    mut revision: Option<u64>,
) {
    let interval = cache.config().poll_interval;
    // While polling fails, one line when it starts failing, one a minute, one when it recovers:
    // not one per poll interval.
    let mut failing: Option<(std::time::Instant, u64)> = None;
    loop {
        tokio::time::sleep(interval).await;
        match store.changes_since(revision.unwrap_or(u64::MAX)).await {
            Ok(changes) => {
                if let Some((_, failures)) = failing.take() {
                    tracing::info!(failures, "polling the store for changes works again");
                }
                if revision.is_none() {
                    cache.set_ready(true);
                } else if changes.resync {
                    cache.invalidate_all();
                } else {
                    for id in &changes.ids {
                        cache.invalidate(id);
                    }
                }
                revision = Some(changes.revision);
            }
            Err(e) => {
                // Unknown what changed meanwhile: no caching until a new baseline.
                match &mut failing {
                    None => {
                        tracing::warn!(error = %e, "polling the store for changes failed; caching waits");
                        failing = Some((std::time::Instant::now(), 1));
                    }
                    Some((logged, failures)) => {
                        *failures += 1;
                        if logged.elapsed() >= std::time::Duration::from_secs(60) {
                            tracing::warn!(error = %e, failures = *failures, "polling the store for changes still fails");
                            *logged = std::time::Instant::now();
                        }
                    }
                }
                cache.set_ready(false);
                revision = None;
            }
        }
    }
}
