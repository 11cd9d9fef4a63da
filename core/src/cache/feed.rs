//! Cache coherence: the verify cache follows the store's change feed (a push feed, or
//! polling [`RecordStore::changes_since`]) so that changes made by other instances reach it
//! (docs/ARCHITECTURE.md, "The verify cache").
//!
//! **Feed trouble.** A lost feed (a push [`ChangeEvent::Lost`], the push channel ending, a
//! failed poll) marks the cache stale: entries are revalidated with a store read on use, none
//! is dropped. The feed then catches up from its *baseline*, a revision every change up to
//! which is known to have reached the cache, with [`RecordStore::changes_since`]: only the
//! ids changed since are invalidated, and everything is dropped only when the store answers
//! `resync` (the gap is longer than its change log).
//!
//! **The push feed's baseline.** Polling gets a baseline with every answer. A push feed does
//! not say which revision its last notification was, so one is read from the store:
//!
//! - once when the feed is established (after the subscription listens, before anything is
//!   cached: a change up to it either happened before caching started or is reported);
//! - then every [`BASELINE_REFRESH`], conservatively: a revision read at time T is only
//!   promoted to baseline at the next refresh, one period later, and only if the feed was
//!   live (no `Lost`, no `Resync`) the whole time. Every change up to that revision was
//!   committed by T, and its notification was sent at its commit; the period (15 s) is
//!   longer than a push feed takes to notice a dead or hung connection (PostgreSQL:
//!   heartbeat interval plus timeout, 8 s), so a notification that did not arrive within it
//!   means the feed reported `Lost`, which discards the candidate. Events are handled before the refresh
//!   (a biased select), so an arrived notification has also been applied. A revision read
//!   right after a catch-up is a candidate like any other.
//!
//! Catching up from an older baseline than necessary only invalidates a few ids twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::{ChangeEvent, Changes, KeyStore};

use super::VerifyCache;

/// How often the push feed's baseline revision is refreshed (see the module docs): longer,
/// with a margin, than a push feed takes to notice a lost connection (PostgreSQL: 8 s), and
/// short enough that a catch-up after a reconnect invalidates few keys that were in fact
/// notified already (those changed in the last one to two periods before the loss).
const BASELINE_REFRESH: Duration = Duration::from_secs(15);

/// Longest wait between catch-up attempts while the store cannot be read.
const CATCH_UP_MAX_DELAY: Duration = Duration::from_secs(5);

/// Where the change feed stands once a baseline is established.
pub(crate) enum Feed {
    /// A push feed (PostgreSQL `LISTEN/NOTIFY`) and the revision read once it listened
    /// (`None`: it could not be read, so a catch-up drops everything).
    Push {
        events: tokio::sync::mpsc::Receiver<ChangeEvent>,
        baseline: Option<u64>,
    },
    /// Polling from this revision (`None`: the baseline could not be read yet).
    Poll(Option<u64>),
}

/// Establishes the change-feed baseline; caching is allowed from here on.
pub(crate) async fn establish(store: &dyn KeyStore, cache: &VerifyCache) -> Feed {
    match store.subscribe().await {
        Ok(Some(events)) => {
            tracing::debug!("verify cache follows the store's push change feed");
            // After the subscription listens, before anything is cached.
            let baseline = match current_revision(store).await {
                Ok(revision) => Some(revision),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the store's revision; a reconnect of the change feed will drop the whole cache");
                    None
                }
            };
            cache.set_ready(true);
            return Feed::Push { events, baseline };
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not subscribe to the store's change feed; polling instead")
        }
    }
    match current_revision(store).await {
        Ok(revision) => {
            cache.set_ready(true);
            Feed::Poll(Some(revision))
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the store's revision; caching waits");
            Feed::Poll(None)
        }
    }
}

async fn current_revision(store: &dyn KeyStore) -> Result<u64, crate::StoreError> {
    Ok(store.changes_since(u64::MAX).await?.revision)
}

/// Keeps the cache coherent with changes made by other processes, until aborted.
pub(crate) async fn watch_changes(store: Arc<dyn KeyStore>, cache: Arc<VerifyCache>, feed: Feed) {
    let revision = match feed {
        Feed::Push { events, baseline } => follow_push(&*store, &cache, events, baseline).await,
        Feed::Poll(revision) => revision,
    };
    poll_changes(store, cache, revision).await;
}

/// Marks the cache stale (entries revalidated on use), logging once per change of state.
fn lose(cache: &VerifyCache, why: &str) {
    if cache.set_stale(true) {
        cache.metrics.feed_lost.increment(1);
        if let Ok(mut since) = cache.lost_since.lock() {
            *since = Some(Instant::now());
        }
        tracing::warn!(
            why,
            "change feed lost; cached keys are revalidated with the store until it catches up"
        );
    }
}

/// Applies a catch-up read: invalidates what changed (everything if the log no longer
/// reaches back), and serves from the cache again.
fn caught_up(cache: &VerifyCache, changes: &Changes, everything: bool) {
    if everything || changes.resync {
        if changes.resync {
            tracing::info!(
                "the change feed's gap is longer than the store's change log; the verify cache is dropped"
            );
        }
        let dropped = cache.invalidate_all();
        cache.metrics.invalidated.increment(dropped as u64);
    } else {
        for id in &changes.ids {
            invalidate(cache, id);
        }
    }
    if cache.set_stale(false) {
        cache.metrics.feed_recovered.increment(1);
        if let Some(since) = cache.lost_since.lock().ok().and_then(|mut s| s.take()) {
            cache.metrics.feed_lag.record(since.elapsed());
        }
        tracing::info!(
            changed = changes.ids.len(),
            "change feed caught up; cached keys are served again"
        );
    }
}

/// The push feed's baseline: the revision catch-ups start from, and the candidate read one
/// refresh earlier (see the module docs).
/// Drops a changed key's entry, counted in `keyward_cache_invalidated_total`.
fn invalidate(cache: &VerifyCache, id: &crate::key::KeyId) {
    if cache.invalidate(id) {
        cache.metrics.invalidated.increment(1);
    }
}

struct Baseline {
    known: Option<u64>,
    candidate: Option<u64>,
}

/// Follows a push feed until its channel ends; returns the baseline to poll from then.
async fn follow_push(
    store: &dyn KeyStore,
    cache: &VerifyCache,
    mut events: tokio::sync::mpsc::Receiver<ChangeEvent>,
    baseline: Option<u64>,
) -> Option<u64> {
    let mut base = Baseline {
        known: baseline,
        candidate: None,
    };
    let mut refresh = tokio::time::interval(BASELINE_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    // Set while a catch-up is owed (a Resync came); when the next attempt is due.
    let mut behind: Option<(Instant, Duration)> = None;
    let mut failing = false;
    loop {
        let retry_at = behind.map(|(at, _)| at);
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(ChangeEvent::Changed(id)) => invalidate(cache, &id),
                Some(ChangeEvent::Lost) => {
                    base.candidate = None;
                    lose(cache, "the push connection broke");
                }
                Some(ChangeEvent::Resync) => {
                    // Catch up now.
                    base.candidate = None;
                    lose(cache, "the push feed asked for a resync");
                    behind = Some((Instant::now(), cache.config().poll_interval));
                }
                None => {
                    lose(cache, "the push channel ended");
                    tracing::warn!("the store's change feed ended; falling back to polling");
                    return base.known;
                }
            },
            () = sleep_until(retry_at), if behind.is_some() => {
                let asked = base.known.unwrap_or(u64::MAX);
                match store.changes_since(asked).await {
                    Ok(changes) => {
                        if std::mem::take(&mut failing) {
                            tracing::info!("reading the change log works again");
                        }
                        caught_up(cache, &changes, base.known.is_none());
                        base.known = base.known.or(Some(changes.revision));
                        base.candidate = Some(changes.revision);
                        behind = None;
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e, "could not read the change log to catch up; retrying");
                        }
                        let delay = behind.map_or(CATCH_UP_MAX_DELAY, |(_, d)| d);
                        behind = Some((Instant::now() + delay, (delay * 2).min(CATCH_UP_MAX_DELAY)));
                    }
                }
            },
            _ = refresh.tick(), if behind.is_none() && !cache.is_stale() => {
                if let Some(candidate) = base.candidate.take() {
                    base.known = Some(candidate);
                }
                // A failed read leaves no candidate: the baseline just stays older.
                base.candidate = current_revision(store).await.ok();
            }
        }
    }
}

/// Sleeps until `at` (forever for `None`; the branch is disabled then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn poll_changes(
    store: Arc<dyn KeyStore>,
    cache: Arc<VerifyCache>,
    mut revision: Option<u64>,
) {
    let interval = cache.config().poll_interval;
    // While polling fails, one line when it starts failing, one a minute, one when it recovers:
    // not one per poll interval.
    let mut failing: Option<(Instant, u64)> = None;
    loop {
        tokio::time::sleep(interval).await;
        match store.changes_since(revision.unwrap_or(u64::MAX)).await {
            Ok(changes) => {
                if let Some((_, failures)) = failing.take() {
                    tracing::info!(failures, "polling the store for changes works again");
                }
                // No baseline yet: nothing can be cached, unless the push feed ended.
                caught_up(&cache, &changes, revision.is_none());
                cache.set_ready(true);
                revision = Some(changes.revision);
            }
            Err(e) => {
                // The next poll catches up from the same revision; meanwhile entries are
                // revalidated with the store on use.
                match &mut failing {
                    None => {
                        tracing::warn!(error = %e, "polling the store for changes failed");
                        failing = Some((Instant::now(), 1));
                    }
                    Some((logged, failures)) => {
                        *failures += 1;
                        if logged.elapsed() >= Duration::from_secs(60) {
                            tracing::warn!(error = %e, failures = *failures, "polling the store for changes still fails");
                            *logged = Instant::now();
                        }
                    }
                }
                lose(&cache, "polling the store failed");
            }
        }
    }
}
