//! Key events in the example server ([`keyward::KeyEvent`]): every event is logged
//! ([`LogEvents`]) and, given `--webhook-url`, POSTed as JSON ([`WebhookSink`]). Both are
//! [`EventSink`]s, so each runs on a background task of its own: a slow or failing webhook
//! never delays a request.

use std::time::Duration;

use keyward::{EventSink, KeyEvent, KeyManagerBuilder, async_trait};
use reqwest::Url;

/// The header naming the event's kind (`key.issued`, `quota.threshold`, …) on each POST.
pub const EVENT_HEADER: &str = "x-keyward-event";

/// Logs each event at `info` with its JSON (which never holds a secret).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogEvents;

#[async_trait]
impl EventSink for LogEvents {
    async fn deliver(&self, event: &KeyEvent) {
        match serde_json::to_string(event) {
            Ok(json) => tracing::info!(
                kind = event.kind(),
                key.id = %event.key_id(),
                project = %event.project(),
                event = %json,
                "key event"
            ),
            Err(e) => {
                tracing::warn!(kind = event.kind(), error = %e, "cannot serialize a key event")
            }
        }
    }
}

/// POSTs each event as JSON to one URL, with [`EVENT_HEADER`] naming its kind. A failed POST
/// (a connection error, a timeout, any status but 2xx) is retried with exponential backoff,
/// `attempts` times in all (default 5, starting at 500 ms, each wait at most 30 s), then
/// dropped with an error log line. Events go out one at a time, in order; one stuck behind
/// retries waits, and past the manager's event buffer the oldest are dropped (logged).
///
/// This example is built without TLS: only `http://` URLs (e.g. a local relay) are accepted.
/// A webhook URL often carries a token (in its path, query or user info): it is never logged,
/// put in an error or shown by `Debug`, which prints only its host.
#[derive(Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    url: Url,
    attempts: u32,
    first_backoff: Duration,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("host", &self.url.host_str())
            .field("attempts", &self.attempts)
            .field("first_backoff", &self.first_backoff)
            .finish_non_exhaustive()
    }
}

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl WebhookSink {
    /// A sink posting to `url` (each POST times out after 10 s).
    ///
    /// # Errors
    /// A message when the URL is not `http://` or the HTTP client cannot be built.
    pub fn new(url: Url) -> Result<Self, String> {
        if url.scheme() != "http" {
            return Err(format!(
                "the webhook URL must be http:// (this example is built without TLS), not {}://",
                url.scheme()
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Self {
            client,
            url,
            attempts: 5,
            first_backoff: Duration::from_millis(500),
        })
    }

    /// How many attempts per event (at least 1), and the first wait between two.
    #[must_use]
    pub fn retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }

    /// One POST; `Err` says why it failed.
    async fn post(&self, event: &KeyEvent) -> Result<(), String> {
        let response = self
            .client
            .post(self.url.clone())
            .header(EVENT_HEADER, event.kind())
            .json(event)
            .send()
            .await
            // Without the URL, which may hold the receiver's token.
            .map_err(|e| e.without_url().to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    }
}

#[async_trait]
impl EventSink for WebhookSink {
    async fn deliver(&self, event: &KeyEvent) {
        let mut wait = self.first_backoff;
        for attempt in 1..=self.attempts {
            match self.post(event).await {
                Ok(()) => return,
                Err(e) if attempt < self.attempts => {
                    tracing::warn!(kind = event.kind(), key.id = %event.key_id(), attempt, error = %e, "webhook delivery failed; will retry");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(kind = event.kind(), key.id = %event.key_id(), attempts = self.attempts, error = %e, "webhook delivery failed; event dropped");
                }
            }
        }
    }
}

/// `builder` with the example server's sinks: [`LogEvents`], and a [`WebhookSink`] to
/// `webhook` when given.
///
/// # Errors
/// As [`WebhookSink::new`].
pub fn with_event_sinks(
    builder: KeyManagerBuilder,
    webhook: Option<Url>,
) -> Result<KeyManagerBuilder, String> {
    let builder = builder.event_sink(LogEvents);
    Ok(match webhook {
        Some(url) => builder.event_sink(WebhookSink::new(url)?),
        None => builder,
    })
}
