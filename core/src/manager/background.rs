//! The manager's background tasks: following the store's change feed (cache coherence) and
//! writing last-used times in batches. They are started in one place
//! ([`Background::start_once`], on the first verify) and stopped in one place
//! ([`Background::stop`], from [`KeyManager::shutdown`] or when the last manager clone drops).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::task::AbortHandle;

use crate::cache::{VerifyCache, establish, watch_changes};
use crate::error::Error;
use crate::key::KeyId;
use crate::meter::Returning;
use crate::store::StoreError;
use crate::store::{KeyStore, detached};
use crate::time::Timestamp;

use super::KeyManager;

/// Last-used times waiting to be written in one batch.
#[derive(Debug, Default)]
pub(super) struct LastUsedBatch {
    pending: Mutex<HashMap<KeyId, Timestamp>>,
    /// Held from taking the queued times until the store has them: a flush (at shutdown)
    /// waits for the one on its way, and returns after the times are written.
    flushing: tokio::sync::Mutex<()>,
}

impl LastUsedBatch {
    /// Queues a use of `id` at `at` (the latest time per key is kept).
    pub(super) fn note(&self, id: KeyId, at: Timestamp) {
        if let Ok(mut p) = self.pending.lock() {
            let slot = p.entry(id).or_insert(at);
            *slot = (*slot).max(at);
        }
    }

    /// Writes the queued times in one store call; on failure they are kept for the next.
    /// Runs on its own task ([`detached`]): a flush stopped half way (the timer, at shutdown)
    /// still writes the times it took.
    async fn flush(self: &Arc<Self>, store: &Arc<dyn KeyStore>) -> Result<(), StoreError> {
        let (batch, store) = (Arc::clone(self), Arc::clone(store));
        detached(async move { batch.flush_now(store.as_ref()).await }).await
    }

    async fn flush_now(&self, store: &dyn KeyStore) -> Result<(), StoreError> {
        let _flushing = self.flushing.lock().await;
        let batch: Vec<(KeyId, Timestamp)> = match self.pending.lock() {
            Ok(mut p) => p.drain().collect(),
            Err(_) => return Ok(()),
        };
        if batch.is_empty() {
            return Ok(());
        }
        let result = store.record_usage(&batch).await;
        if result.is_err() {
            for (id, at) in batch {
                self.note(id, at);
            }
        }
        result
    }
}

/// A manager that does not keep its shared state alive (a background task's handle).
pub(super) struct WeakManager(std::sync::Weak<super::Inner>);

impl WeakManager {
    fn of(manager: &KeyManager) -> Self {
        Self(Arc::downgrade(&manager.inner))
    }

    fn upgrade(&self) -> Option<KeyManager> {
        self.0.upgrade().map(|inner| KeyManager {
            inner,
            actor: crate::audit::Actor::system(),
        })
    }
}

/// The running background tasks of one manager.
#[derive(Debug, Default)]
pub(super) struct Background {
    started: OnceCell<()>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Background {
    /// Starts the tasks once, on the current Tokio runtime: establishes the change-feed
    /// baseline before anything is cached, then follows the feed; and flushes last-used times
    /// every `every`.
    async fn start_once(
        &self,
        store: &Arc<dyn KeyStore>,
        cache: Option<&Arc<VerifyCache>>,
        last_used: &Arc<LastUsedBatch>,
        every: Duration,
        pruner: Option<WeakManager>,
    ) {
        self.started
            .get_or_init(|| async {
                let mut handles = Vec::new();
                if let Some(cache) = cache {
                    let feed = establish(store.as_ref(), cache).await;
                    let task =
                        tokio::spawn(watch_changes(Arc::clone(store), Arc::clone(cache), feed));
                    handles.push(task.abort_handle());
                }
                let (last_used, store) = (Arc::clone(last_used), Arc::clone(store));
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        if let Err(e) = last_used.flush(&store).await {
                            tracing::warn!(error = %e, "could not record last-used times; will retry");
                        }
                    }
                });
                handles.push(task.abort_handle());
                if let Some(manager) = pruner {
                    handles.push(tokio::spawn(prune_audit_every_hour(manager)).abort_handle());
                }
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.extend(handles);
                }
            })
            .await;
    }

    /// Stops every task (idempotent).
    fn stop(&self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How often the audit trail is pruned when a retention is set.
const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Prunes the audit trail now and then every [`AUDIT_PRUNE_INTERVAL`]. Holds a weak
/// reference, so that it does not keep the manager (and itself) alive.
async fn prune_audit_every_hour(manager: WeakManager) {
    let mut tick = tokio::time::interval(AUDIT_PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(manager) = manager.upgrade() else {
            return;
        };
        match manager.prune_audit().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned the audit trail"),
            Err(e) => tracing::warn!(error = %e, "could not prune the audit trail; will retry"),
        }
    }
}

impl KeyManager {
    /// Starts the background tasks if this is the first verify.
    pub(super) async fn start_background(&self) {
        let inner = &self.inner;
        let pruner = inner.audit_retention.map(|_| WeakManager::of(self));
        inner
            .background
            .start_once(
                &inner.store,
                inner.cache.as_ref(),
                &inner.last_used,
                inner.usage_flush_interval,
                pruner,
            )
            .await;
        self.start_event_sweep();
        // rate limits (ratelimit/): the sweep that gives idle cluster cells back.
        inner.rate_limiters.start();
    }

    /// Writes pending last-used times and settles the quota and credit units this instance
    /// granted from its leases (docs/ARCHITECTURE.md, "Metering"), now: other instances' usage
    /// reports then include them.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails (the times and units are kept for the next
    /// flush).
    pub async fn flush_usage(&self) -> Result<(), Error> {
        let settled = self
            .inner
            .meter
            .settle(&self.inner.store, Returning::Nothing)
            .await;
        self.inner.last_used.flush(&self.inner.store).await?;
        Ok(settled?)
    }

    /// Graceful shutdown: stops background tasks, settles every granted quota and credit unit
    /// and gives back every leased unit not granted (later takes go to the store directly, one
    /// write each), gives unused cluster rate-limit cells back to the store
    /// ([`RateLimitMode`](crate::RateLimitMode)), and writes pending last-used times. Nothing
    /// granted is lost.
    ///
    /// # Errors
    /// [`Error::Store`] when the final writes fail.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.inner.background.stop();
        self.inner.events.stop();
        let returned = self.inner.meter.close(&self.inner.store).await;
        // rate limits (ratelimit/)
        let cells = self.inner.rate_limiters.shutdown().await;
        self.flush_usage().await?;
        returned?;
        Ok(cells?)
    }
}
