//! The change feed: a task holding one `LISTEN` connection that forwards notifications to a
//! subscriber. When the connection breaks, or its heartbeat fails or times out, it sends
//! [`ChangeEvent::Lost`] at once, reconnects with backoff and, once it listens again, sends
//! [`ChangeEvent::Resync`] (the subscriber catches up from the change log).
//!
//! **It cannot hang.** Every connection gets a one-connection pool of its own, so a connection
//! that hangs can never block the next one (a shared one-connection pool whose only connection
//! was stuck made every reconnect fail with "pool timed out"). Connecting plus `LISTEN` is
//! bounded by [`CONNECT_TIMEOUT`], the heartbeat by [`HEARTBEAT_TIMEOUT`]. On any failure or
//! timeout the connection is abandoned, not cleaned up: sqlx's listener still sends
//! `UNLISTEN *` from a detached task when dropped, which on a hung connection waits until the
//! operating system closes the socket, but it holds only the abandoned connection and its pool.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use keyward::{ChangeEvent, KeyId, StoreError};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::Instrument;

use crate::STORE;

/// Events a subscriber may leave unread before the feed stops queueing and owes it a
/// [`ChangeEvent::Resync`] instead.
pub const FEED_CAPACITY: usize = 1024;
/// First wait before retrying a failed reconnect; doubles up to [`RECONNECT_MAX_DELAY`].
pub const RECONNECT_INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between reconnect attempts.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// How often an idle listener checks its connection with `SELECT 1`, so a silently dead or
/// hung one (a network partition sends no FIN; a stopped server answers nothing) is noticed
/// within this plus [`HEARTBEAT_TIMEOUT`].
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long the heartbeat query may take before the connection is deemed lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening a connection and running `LISTEN` may take before the attempt is
/// abandoned (and retried after the backoff).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a listener on a connection of its own and spawns the task that feeds `tx`.
/// `LISTEN` has run when this returns, so every change committed afterwards is delivered.
pub(crate) async fn spawn(
    options: PgConnectOptions,
    channel: String,
) -> Result<mpsc::Receiver<ChangeEvent>, StoreError> {
    let listening = open(&options, &channel)
        .await
        .map_err(|e| StoreError::backend(STORE, e))?;
    let (tx, rx) = mpsc::channel(FEED_CAPACITY);
    let span = tracing::info_span!("keyward_listener", channel = %channel);
    tokio::spawn(
        Feed {
            options,
            channel,
            tx,
            owes_resync: false,
        }
        .run(listening)
        .instrument(span),
    );
    tracing::debug!("change feed listening");
    Ok(rx)
}

/// A listening connection and the one-connection pool that is its own.
struct Listening {
    listener: PgListener,
    pool: PgPool,
}

/// Opens a connection of its own and runs `LISTEN`, within [`CONNECT_TIMEOUT`].
async fn open(options: &PgConnectOptions, channel: &str) -> Result<Listening, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options.clone());
    let listen = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        // Reconnection is ours (a new pool, backoff, Lost and Resync), not the listener's
        // silent one on the same pool.
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener.listen(channel).await?;
        Ok(listener)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, listen).await {
        Ok(Ok(listener)) => Ok(Listening { listener, pool }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

struct Feed {
    /// Connect options of every connection (each gets a pool of its own).
    options: PgConnectOptions,
    channel: String,
    tx: mpsc::Sender<ChangeEvent>,
    /// An event could not be queued (the subscriber lags): a Resync must reach it.
    owes_resync: bool,
}

/// Why the receive loop stopped.
enum Stop {
    /// The subscriber dropped its receiver.
    Closed,
    /// The connection is gone; notifications may have been missed.
    Lost,
}

impl Feed {
    async fn run(mut self, listening: Listening) {
        let mut current = Some(listening);
        while let Some(Listening { mut listener, pool }) = current.take() {
            match self.receive(&mut listener).await {
                Stop::Lost => {
                    tracing::warn!(
                        "change feed connection lost; reconnecting (changes made meanwhile are caught up after a resync)"
                    );
                    // Abandoned, not cleaned up (see the module docs): the next connection
                    // has a pool of its own.
                    drop(listener);
                    drop(pool);
                    if !self.deliver(ChangeEvent::Lost) {
                        break;
                    }
                    current = self.reconnect().await;
                    // LISTEN is active again: whatever happened before it is covered by this.
                    if current.is_some() && !self.deliver(ChangeEvent::Resync) {
                        current = None;
                    }
                }
                Stop::Closed => {
                    // The listener returns its connection (after UNLISTEN) to its pool, which
                    // close() then ends; bounded, in case the connection hangs.
                    drop(listener);
                    if tokio::time::timeout(CONNECT_TIMEOUT, pool.close())
                        .await
                        .is_err()
                    {
                        tracing::debug!("change feed connection did not close in time; abandoned");
                    }
                }
            }
        }
        tracing::debug!("change feed closed by its subscriber");
    }

    async fn receive(&mut self, listener: &mut PgListener) -> Stop {
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let tx = self.tx.clone();
        loop {
            // Every branch is cancel-safe: `PgListener::try_recv` only consumes whole
            // messages, and a won `reserve` is used at once.
            tokio::select! {
                biased;
                () = tx.closed() => return Stop::Closed,
                permit = tx.reserve(), if self.owes_resync => match permit {
                    Ok(p) => {
                        p.send(ChangeEvent::Resync);
                        self.owes_resync = false;
                    }
                    Err(_) => return Stop::Closed,
                },
                got = listener.try_recv() => match got {
                    Ok(Some(n)) => {
                        let ev = match KeyId::new(n.payload()) {
                            Ok(id) => ChangeEvent::Changed(id),
                            Err(e) => {
                                tracing::warn!(error = %e, "unreadable change notification; asking for a resync");
                                ChangeEvent::Resync
                            }
                        };
                        if !self.deliver(ev) {
                            return Stop::Closed;
                        }
                    }
                    Ok(None) => return Stop::Lost,
                    Err(e) => {
                        tracing::warn!(error = %e, "change feed receive failed");
                        return Stop::Lost;
                    }
                },
                _ = heartbeat.tick() => {
                    let ping = sqlx::query("SELECT 1").execute(&mut *listener);
                    match tokio::time::timeout(HEARTBEAT_TIMEOUT, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "change feed heartbeat failed");
                            return Stop::Lost;
                        }
                        Err(_) => {
                            tracing::warn!(timeout = ?HEARTBEAT_TIMEOUT, "change feed heartbeat timed out");
                            return Stop::Lost;
                        }
                    }
                }
            }
        }
    }

    /// Queues an event without waiting; `false` when the subscriber is gone.
    fn deliver(&mut self, ev: ChangeEvent) -> bool {
        if self.owes_resync {
            match self.tx.try_send(ChangeEvent::Resync) {
                Ok(()) => self.owes_resync = false,
                Err(TrySendError::Full(_)) => return true,
                Err(TrySendError::Closed(_)) => return false,
            }
            if ev == ChangeEvent::Resync {
                return true;
            }
        }
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    capacity = FEED_CAPACITY,
                    "change feed subscriber lags; an event was dropped and a resync is owed"
                );
                self.owes_resync = true;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Opens a new listener, retrying with jittered exponential backoff; `None` when the
    /// subscriber went away meanwhile. Logs the first failure and the recovery, not every
    /// attempt.
    async fn reconnect(&self) -> Option<Listening> {
        let mut delay = RECONNECT_INITIAL_DELAY;
        let mut attempt: u32 = 1;
        loop {
            let opened = tokio::select! {
                () = self.tx.closed() => return None,
                r = open(&self.options, &self.channel) => r,
            };
            match opened {
                Ok(listening) => {
                    tracing::info!(attempt, "change feed reconnected");
                    return Some(listening);
                }
                Err(e) if attempt == 1 => {
                    tracing::warn!(error = %e, "change feed reconnect failed; retrying with backoff");
                }
                Err(e) => {
                    tracing::debug!(attempt, error = %e, retry_in = ?delay, "change feed reconnect failed");
                }
            }
            tokio::select! {
                () = self.tx.closed() => return None,
                () = tokio::time::sleep(jitter(delay)) => {}
            }
            delay = (delay * 2).min(RECONNECT_MAX_DELAY);
            attempt = attempt.saturating_add(1);
        }
    }
}

/// A random duration in `[d/2, d]`, so instances that lost the database together do not
/// reconnect in lockstep. (`RandomState` is randomly seeded per instance.)
fn jitter(d: Duration) -> Duration {
    let r = RandomState::new().hash_one(0u8) % 1024;
    let half = d / 2;
    half + half.mul_f64(r as f64 / 1023.0)
}
