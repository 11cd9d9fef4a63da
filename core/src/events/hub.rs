//! [`EventHub`]: a manager's event state — the delivery bus, the settings, and the claims
//! that make threshold and expiry events once-only across every instance sharing a store.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::task::AbortHandle;

use crate::store::{Consumption, KeyStore, StoreError, UsageBucket, UsageStore};
use crate::time::Clock;

use super::bus::{EventBus, EventSink};
use super::config::EventConfig;
use super::event::KeyEvent;
use super::sweep::run_sweeps;

/// How many claims an instance remembers having seen decided (granted to it or to another).
const CLAIM_MEMO: usize = 100_000;

/// What the spawned claim tasks and the sweep share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) bus: EventBus,
    pub(crate) config: EventConfig,
    /// Claim buckets known to be taken: skipped without a store call.
    claimed: quick_cache::sync::Cache<UsageBucket, ()>,
}

impl Shared {
    /// Claims `bucket` (once-only: limit 1 in the store); emits `event` if this instance got
    /// it, and then answers `true`. A store failure loses the event (logged): events are
    /// delivered at most once.
    pub(crate) async fn claim_and_emit(
        &self,
        store: &dyn UsageStore,
        bucket: UsageBucket,
        event: KeyEvent,
    ) -> bool {
        if self.claimed.get(&bucket).is_some() {
            return false;
        }
        match store.consume(&bucket, 1, 1).await {
            Ok(outcome) => {
                self.claimed.insert(bucket, ());
                if let Consumption::Granted { .. } = outcome {
                    self.bus.emit(event);
                    return true;
                }
                false
            }
            Err(e) => {
                report_claim_failure(&e, &event);
                false
            }
        }
    }

    /// Whether `bucket` is known to be claimed already.
    pub(crate) fn known(&self, bucket: &UsageBucket) -> bool {
        self.claimed.get(bucket).is_some()
    }
}

fn report_claim_failure(e: &StoreError, event: &KeyEvent) {
    tracing::warn!(error = %e, kind = event.kind(), key.id = %event.key_id(), "could not claim a key event in the store; it is not delivered");
}

/// A manager's events: see the module docs of [`crate::events`].
#[derive(Debug)]
pub(crate) struct EventHub {
    shared: Arc<Shared>,
    sweep: OnceLock<()>,
    sweep_task: Mutex<Option<AbortHandle>>,
}

impl EventHub {
    pub(crate) fn new(config: EventConfig, sinks: Vec<Arc<dyn EventSink>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                bus: EventBus::new(config.buffer(), sinks),
                config,
                claimed: quick_cache::sync::Cache::new(CLAIM_MEMO),
            }),
            sweep: OnceLock::new(),
            sweep_task: Mutex::new(None),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether anyone listens: nothing is detected or claimed otherwise.
    pub(crate) fn listening(&self) -> bool {
        self.shared.bus.listening()
    }

    /// Emits an event that needs no claim (a lifecycle change made through this manager).
    pub(crate) fn emit(&self, event: KeyEvent) {
        if self.listening() {
            self.shared.bus.emit(event);
        }
    }

    /// Claims and emits on a spawned task, so the caller (a verify, a consume) does not wait
    /// for the claim's store call.
    pub(crate) fn claim_later(
        &self,
        store: &Arc<dyn KeyStore>,
        bucket: UsageBucket,
        event: KeyEvent,
    ) {
        if !self.listening() || self.shared.known(&bucket) {
            return;
        }
        let (shared, store) = (Arc::clone(&self.shared), Arc::clone(store));
        tokio::spawn(async move {
            shared.claim_and_emit(store.as_ref(), bucket, event).await;
        });
    }

    /// Starts the expiring-key sweep once, on the current Tokio runtime (no-op outside one or
    /// when expiring events are off).
    pub(crate) fn start_sweep(&self, store: &Arc<dyn KeyStore>, clock: &Arc<dyn Clock>) {
        if self.shared.config.expiring_window().is_none() || self.sweep.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.sweep.get_or_init(|| {
            let task = runtime.spawn(run_sweeps(
                Arc::clone(&self.shared),
                Arc::clone(store),
                Arc::clone(clock),
            ));
            if let Ok(mut slot) = self.sweep_task.lock() {
                *slot = Some(task.abort_handle());
            }
        });
    }

    /// Stops the sweep (idempotent).
    pub(crate) fn stop(&self) {
        if let Ok(slot) = self.sweep_task.lock()
            && let Some(task) = slot.as_ref()
        {
            task.abort();
        }
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        self.stop();
    }
}
