//! Delivery: a Tokio broadcast channel to every subscriber, and one background task per
//! [`EventSink`], so a slow subscriber or sink never slows the verify or consume that
//! produced an event.

use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::event::KeyEvent;

/// A host's callback for events, set with
/// [`KeyManagerBuilder::event_sink`](crate::KeyManagerBuilder::event_sink).
///
/// Each sink runs on its own background task, one event after another, in the order they
/// were emitted; a sink slower than the events lose the oldest once it falls
/// [`EventConfig::capacity`](crate::EventConfig::capacity) behind (logged with the count).
/// A sink handles its own failures (retries, logging): nothing is returned.
///
/// ```
/// use keyward::{EventSink, KeyEvent, async_trait};
///
/// #[derive(Debug)]
/// struct LogSink;
///
/// #[async_trait]
/// impl EventSink for LogSink {
///     async fn deliver(&self, event: &KeyEvent) {
///         tracing::info!(kind = event.kind(), key.id = %event.key_id(), "key event");
///     }
/// }
/// # let store = keyward_memory::MemoryStore::new();
/// let manager = keyward::KeyManager::builder(store).event_sink(LogSink).build()?;
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[async_trait]
pub trait EventSink: Send + Sync + fmt::Debug + 'static {
    /// Delivers one event.
    async fn deliver(&self, event: &KeyEvent);
}

/// Where emitted events go: the broadcast channel, and the sinks' tasks (started on the
/// first event, on the runtime that emits it; each ends when the bus is dropped, after
/// delivering what it holds).
pub(crate) struct EventBus {
    tx: broadcast::Sender<KeyEvent>,
    sinks: Vec<Arc<dyn EventSink>>,
    started: OnceLock<()>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("sinks", &self.sinks)
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

impl EventBus {
    pub(crate) fn new(capacity: usize, sinks: Vec<Arc<dyn EventSink>>) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            tx,
            sinks,
            started: OnceLock::new(),
        }
    }

    /// A new subscriber: it receives every event emitted from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<KeyEvent> {
        self.tx.subscribe()
    }

    /// Whether anyone listens (a sink or a live subscriber). An instance nobody listens to
    /// claims nothing, so it never takes a once-only event away from one that listens.
    pub(crate) fn listening(&self) -> bool {
        !self.sinks.is_empty() || self.tx.receiver_count() > 0
    }

    /// Hands `event` to every subscriber and sink without waiting.
    pub(crate) fn emit(&self, event: KeyEvent) {
        self.start_sinks();
        tracing::debug!(kind = event.kind(), key.id = %event.key_id(), project = %event.project(), "key event");
        // Err: nobody subscribed, which is no failure.
        let _ = self.tx.send(event);
    }

    /// Starts one task per sink, once, subscribed before the first event is sent.
    fn start_sinks(&self) {
        if self.sinks.is_empty() {
            return;
        }
        self.started.get_or_init(|| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::warn!("key events emitted outside a Tokio runtime: the sinks get none");
                return;
            };
            for sink in &self.sinks {
                runtime.spawn(run_sink(Arc::clone(sink), self.tx.subscribe()));
            }
        });
    }
}

/// Feeds one sink until the bus is dropped.
async fn run_sink(sink: Arc<dyn EventSink>, mut rx: broadcast::Receiver<KeyEvent>) {
    loop {
        match rx.recv().await {
            Ok(event) => sink.deliver(&event).await,
            Err(broadcast::error::RecvError::Lagged(lost)) => {
                tracing::warn!(
                    ?sink,
                    lost,
                    "an event sink fell behind; the oldest events were dropped"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
