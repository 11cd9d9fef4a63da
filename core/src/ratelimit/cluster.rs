//! [`RateLimitMode::Cluster`](super::RateLimitMode::Cluster): a key's GCRA lives in the store
//! ([`UsageStore::take_cells`](crate::UsageStore::take_cells) on the limiter named
//! [`Counter::KeyRate`]), and each instance spends a local allotment of its cells
//! (docs/ARCHITECTURE.md, "Rate limits across instances").
//!
//! Per key and instance, a [`KeyCells`]:
//!
//! - **hot path** ([`ClusterLimiter::check_now`]): take one cell from the allotment (one
//!   atomic compare-and-swap; no clock read, no await, no store call). When it is empty: refuse
//!   locally if the store had no cells at the last ask and the next sync time has not come,
//!   else answer [`Decision::Ask`];
//! - **ask** ([`ClusterLimiter::check_with_store`]): one task per key at a time (an async
//!   mutex; the others wait for its answer and then spend what it brought) takes a chunk from
//!   the store, sized from the demand seen since the previous ask, scaled to one sync interval
//!   (doubling while chunks last less than an interval), between 1 and the burst. Fewer cells than asked means the store is drained: after
//!   spending them the instance refuses locally until the next sync time (longer, up to a
//!   second, when the store had none and one cell takes longer than an interval to come
//!   back), so overload costs about one store call per sync interval, not one per request;
//! - **give back**: a sweep every sync interval returns the cells of keys that took none for two
//!   intervals ([`UsageStore::return_cells`](crate::UsageStore::return_cells)); shutdown
//!   returns all of them;
//! - **store down**: an ask that fails falls back to the per-process limiter for this
//!   instance, for a second, with a throttled warning; refusals never turn into errors.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::Decision;
use super::local::RateLimiters;
use crate::key::KeyId;
use crate::quota::RateLimit;
use crate::store::{Counter, KeyStore, RateCells, StoreError, detached};
use crate::throttle::{Cause, LogThrottle};
use crate::time::Clock;

/// How long an instance enforces per-process limits after the store failed an ask.
const STORE_RETRY: i64 = 1_000_000;
/// The longest an instance refuses locally after the store had no cells.
const MAX_REFUSE: i64 = 1_000_000;
/// Keys idle for this many sync intervals give their cells back.
const IDLE_INTERVALS: i64 = 2;

/// Cluster-wide per-key rate limits (see the module's documentation).
pub(crate) struct ClusterLimiter {
    sync_interval: Duration,
    /// The sync interval in microseconds (at least 1 ms).
    sync_micros: i64,
    clock: Arc<dyn Clock>,
    store: Arc<dyn KeyStore>,
    /// Bounded like the per-process limiters; an evicted entry holding cells stays in `held`
    /// until its cells are given back.
    keys: quick_cache::sync::Cache<KeyId, Arc<KeyCells>>,
    held: Mutex<Held>,
    /// Per-process limits while the store cannot be reached.
    fallback: RateLimiters,
    /// Until when (µs) the store is taken as unreachable; 0: reachable.
    down_until: AtomicI64,
    log: LogThrottle,
    sweep: Mutex<Sweep>,
}

/// The allotments that may hold cells.
#[derive(Default)]
struct Held {
    keys: HashMap<KeyId, Arc<KeyCells>>,
    /// Allotments replaced by another for the same key (the key's limit changed, or its entry
    /// was evicted and made again): given back at the next sweep.
    replaced: Vec<Arc<KeyCells>>,
}

/// One key's allotment in this instance.
struct KeyCells {
    limit: RateLimit,
    /// The store's limiter, `key:<id>:rate`.
    name: String,
    emission: i64,
    tolerance: i64,
    burst: u64,
    /// Cells this instance may spend.
    available: AtomicU64,
    /// When (µs) the store may be asked again once `available` is empty (0: now).
    next_ask_at: AtomicI64,
    /// When (µs) a cell is expected to be free again, for `retry_after`.
    retry_at: AtomicI64,
    /// Requests that found no cell (refused locally or asking) since the last ask: demand.
    missed: AtomicU64,
    /// Held by the one task asking the store (single flight), and by the sweep.
    ask: tokio::sync::Mutex<AskState>,
}

/// Bookkeeping of the asks, under [`KeyCells::ask`].
#[derive(Default)]
struct AskState {
    /// `available` right after the last ask (to count what was spent since).
    allotted: u64,
    /// When (µs) the store was last asked, for how many cells, and whether it gave them all.
    asked_at: i64,
    last_want: u64,
    granted_all: bool,
    /// `available` at the last sweep, and when it last changed (µs): idle detection.
    seen: u64,
    active_at: i64,
}

impl KeyCells {
    /// An empty allotment; `None` for a limit that admits nothing (zero requests or period),
    /// which the per-process limiter refuses without state.
    fn new(id: KeyId, limit: RateLimit) -> Option<Self> {
        if limit.requests == 0 || limit.per_seconds == 0 {
            return None;
        }
        let emission =
            (i64::from(limit.per_seconds) * 1_000_000 / i64::from(limit.requests)).max(1);
        Some(Self {
            limit,
            name: Counter::KeyRate(id).name(),
            emission,
            tolerance: (i64::from(limit.requests) - 1).saturating_mul(emission),
            burst: u64::from(limit.requests),
            available: AtomicU64::new(0),
            next_ask_at: AtomicI64::new(0),
            retry_at: AtomicI64::new(0),
            missed: AtomicU64::new(0),
            ask: tokio::sync::Mutex::new(AskState::default()),
        })
    }

    /// Takes one local cell, if any.
    #[inline]
    fn take_one(&self) -> bool {
        self.available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| a.checked_sub(1))
            .is_ok()
    }

    /// The store call's arguments at `now` (µs).
    fn rate_cells(&self, now: i64) -> RateCells {
        RateCells::new(self.name.clone(), now, self.emission, self.tolerance)
    }

    /// How long a request refused at `now` should wait.
    fn retry_after(&self, now: i64) -> Duration {
        let at = self
            .retry_at
            .load(Ordering::Acquire)
            .max(self.next_ask_at.load(Ordering::Acquire));
        Duration::from_micros(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
            .max(Duration::from_millis(1))
    }
}

/// How many cells to ask for: the demand since the last ask (`demand` requests over
/// `elapsed` µs), scaled to one sync interval, between 1 and the burst. Demand seen over less
/// than an interval is asked for whole (and the caller at least doubles the last chunk if it
/// lasted less than an interval, so chunks grow geometrically while demand outruns them).
fn chunk(demand: u64, elapsed: i64, sync: i64, burst: u64) -> u64 {
    let want = if elapsed > sync {
        let (d, e, s) = (
            u128::from(demand),
            elapsed.unsigned_abs(),
            sync.unsigned_abs(),
        );
        u64::try_from((d * u128::from(s)).div_ceil(u128::from(e))).unwrap_or(u64::MAX)
    } else {
        demand
    };
    want.clamp(1, burst.max(1))
}

impl fmt::Debug for ClusterLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterLimiter")
            .field("sync_interval", &self.sync_interval)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl ClusterLimiter {
    pub(super) fn new(
        sync_interval: Duration,
        clock: Arc<dyn Clock>,
        store: Arc<dyn KeyStore>,
        log: LogThrottle,
    ) -> Self {
        let sync_interval = sync_interval.max(Duration::from_millis(1));
        Self {
            sync_interval,
            sync_micros: i64::try_from(sync_interval.as_micros()).unwrap_or(i64::MAX),
            fallback: RateLimiters::new(Arc::clone(&clock)),
            clock,
            store,
            keys: quick_cache::sync::Cache::new(100_000),
            held: Mutex::new(Held::default()),
            down_until: AtomicI64::new(0),
            log,
            sweep: Mutex::new(Sweep::NotStarted),
        }
    }

    pub(super) fn sync_interval(&self) -> Duration {
        self.sync_interval
    }

    fn now_micros(&self) -> i64 {
        self.clock.now().unix_millis().saturating_mul(1000)
    }

    /// The key's allotment for `limit` (a new, empty one when the limit changed).
    #[inline]
    fn entry(&self, id: KeyId, limit: RateLimit) -> Option<Arc<KeyCells>> {
        if let Some(cells) = self.keys.get(&id)
            && cells.limit == limit
        {
            return Some(cells);
        }
        let fresh = Arc::new(KeyCells::new(id, limit)?);
        self.keys.insert(id, Arc::clone(&fresh));
        Some(fresh)
    }

    /// The hot path: a local cell, a local refusal, or [`Decision::Ask`].
    #[inline]
    pub(super) fn check_now(&self, id: KeyId, limit: RateLimit) -> Decision {
        let Some(cells) = self.entry(id, limit) else {
            return fallback(&self.fallback, id, limit);
        };
        if cells.take_one() {
            return Decision::Allowed;
        }
        cells.missed.fetch_add(1, Ordering::Relaxed);
        self.without_cells(&cells, id, limit, self.now_micros())
    }

    /// The allotment is empty at `now`: per process while the store is down, a local refusal
    /// until the next sync time, or ask.
    fn without_cells(&self, cells: &KeyCells, id: KeyId, limit: RateLimit, now: i64) -> Decision {
        if now < self.down_until.load(Ordering::Acquire) {
            return fallback(&self.fallback, id, limit);
        }
        if now < cells.next_ask_at.load(Ordering::Acquire) {
            return Decision::Refused(cells.retry_after(now));
        }
        Decision::Ask
    }

    /// Decides after [`ClusterLimiter::check_now`] answered [`Decision::Ask`]: waits for the
    /// key's ask in flight, or asks the store itself.
    pub(super) async fn check_with_store(
        &self,
        id: KeyId,
        limit: RateLimit,
    ) -> Result<(), Duration> {
        let Some(cells) = self.entry(id, limit) else {
            return self.fallback.check(id, limit);
        };
        let mut ask = cells.ask.lock().await;
        // Another task's ask may have brought cells, or found none, while this one waited.
        if cells.take_one() {
            return Ok(());
        }
        let now = self.now_micros();
        match self.without_cells(&cells, id, limit, now) {
            Decision::Allowed => return Ok(()),
            Decision::Refused(retry_after) => return Err(retry_after),
            Decision::Ask => {}
        }
        let spent = ask
            .allotted
            .saturating_sub(cells.available.load(Ordering::Acquire));
        let demand = spent.saturating_add(cells.missed.swap(0, Ordering::Relaxed));
        let elapsed = now.saturating_sub(ask.asked_at);
        let mut want = chunk(demand, elapsed, self.sync_micros, cells.burst);
        if elapsed < self.sync_micros && ask.granted_all {
            // The last chunk lasted less than an interval: at least double it.
            want = want.max(ask.last_want.saturating_mul(2)).min(cells.burst);
        }
        let taken = match self.store.take_cells(&cells.rate_cells(now), want).await {
            Ok(taken) => taken.min(want),
            Err(e) => {
                self.store_failed(now, &e);
                return self.fallback.check(id, limit);
            }
        };
        ask.asked_at = now;
        ask.last_want = want;
        ask.granted_all = taken == want;
        if taken < want {
            // The store is drained: after these cells, refuse locally until the next sync.
            // With none at all, the next cell is free within one emission interval.
            // The sync time is jittered (± half an interval), so that no instance keeps the
            // phase that reaches the store's new cells first.
            let sync = jittered(self.sync_micros);
            let (wait, retry) = if taken == 0 {
                let wait = sync.max(cells.emission.min(MAX_REFUSE));
                (wait, cells.emission.max(wait))
            } else {
                (sync, sync)
            };
            cells
                .next_ask_at
                .store(now.saturating_add(wait), Ordering::Release);
            cells
                .retry_at
                .store(now.saturating_add(retry), Ordering::Release);
        } else {
            cells.next_ask_at.store(0, Ordering::Release);
            cells.retry_at.store(0, Ordering::Release);
        }
        if taken == 0 {
            ask.allotted = cells.available.load(Ordering::Acquire);
            return Err(cells.retry_after(now));
        }
        // One cell for this request, the rest for the allotment.
        let after = cells.available.fetch_add(taken - 1, Ordering::AcqRel) + (taken - 1);
        ask.allotted = after;
        ask.seen = after;
        ask.active_at = now;
        self.hold(id, &cells);
        Ok(())
    }

    /// Lists `cells` among the allotments holding cells (under its ask lock).
    fn hold(&self, id: KeyId, cells: &Arc<KeyCells>) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        if let Some(old) = held.keys.insert(id, Arc::clone(cells))
            && !Arc::ptr_eq(&old, cells)
        {
            held.replaced.push(old);
        }
    }

    /// Takes the store as unreachable for [`STORE_RETRY`] and warns (throttled).
    fn store_failed(&self, now: i64, e: &StoreError) {
        self.down_until
            .store(now.saturating_add(STORE_RETRY), Ordering::Release);
        if let Some(suppressed) = self.log.admit(Cause::Store) {
            tracing::warn!(
                error = %e,
                suppressed,
                "cannot take rate-limit cells from the store; enforcing rate limits per process until it answers"
            );
        }
    }

    /// Starts the sweep that gives idle cells back, once, on the current Tokio runtime (not
    /// after [`ClusterLimiter::stop_sweep`]).
    pub(super) fn start_sweep(this: &Arc<Self>) {
        let Ok(mut sweep) = this.sweep.lock() else {
            return;
        };
        if !matches!(*sweep, Sweep::NotStarted) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(this);
        let every = this.sync_interval;
        let task = runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else {
                    return;
                };
                limiter.give_back_idle().await;
            }
        });
        *sweep = Sweep::Running(task.abort_handle());
    }

    /// Stops the sweep for good (idempotent).
    pub(super) fn stop_sweep(&self) {
        if let Ok(mut sweep) = self.sweep.lock()
            && let Sweep::Running(task) = std::mem::replace(&mut *sweep, Sweep::Stopped)
        {
            task.abort();
        }
    }

    /// Gives back the cells of keys that took none for [`IDLE_INTERVALS`] sync intervals, and
    /// of replaced allotments.
    async fn give_back_idle(&self) {
        let now = self.now_micros();
        let idle_after = self.sync_micros.saturating_mul(IDLE_INTERVALS);
        let (candidates, replaced) = match self.held.lock() {
            Ok(mut held) => (
                held.keys
                    .iter()
                    .map(|(id, c)| (*id, Arc::clone(c)))
                    .collect::<Vec<_>>(),
                std::mem::take(&mut held.replaced),
            ),
            Err(_) => return,
        };
        let mut back = Vec::new();
        for (id, cells) in candidates {
            // A key being asked for is not idle.
            let Ok(mut ask) = cells.ask.try_lock() else {
                continue;
            };
            let available = cells.available.load(Ordering::Acquire);
            if available != 0 && available != ask.seen {
                ask.seen = available;
                ask.active_at = now;
                continue;
            }
            if available != 0 && now.saturating_sub(ask.active_at) < idle_after {
                continue;
            }
            let n = cells.available.swap(0, Ordering::AcqRel);
            ask.allotted = 0;
            ask.seen = 0;
            self.release(id, &cells);
            if n > 0 {
                back.push((Arc::clone(&cells), n));
            }
        }
        for cells in replaced {
            let n = cells.available.swap(0, Ordering::AcqRel);
            if n > 0 {
                back.push((cells, n));
            }
        }
        for e in self.return_all(back, now).await {
            self.return_failed(&e);
        }
    }

    /// Gives `back` (cells taken out of their allotments) to the store, on its own task: a
    /// sweep stopped half way (at shutdown) still returns them. Answers the failures.
    async fn return_all(&self, back: Vec<(Arc<KeyCells>, u64)>, now: i64) -> Vec<StoreError> {
        if back.is_empty() {
            return Vec::new();
        }
        let store = Arc::clone(&self.store);
        let returned = detached(async move {
            let mut failed = Vec::new();
            for (cells, n) in back {
                if let Err(e) = store.return_cells(&cells.rate_cells(now), n).await {
                    failed.push(e);
                }
            }
            Ok(failed)
        })
        .await;
        returned.unwrap_or_else(|e| vec![e])
    }

    /// Drops `cells` from the held list if it is still the key's.
    fn release(&self, id: KeyId, cells: &Arc<KeyCells>) {
        if let Ok(mut held) = self.held.lock()
            && held.keys.get(&id).is_some_and(|c| Arc::ptr_eq(c, cells))
        {
            held.keys.remove(&id);
        }
    }

    /// Gives every unused cell back (shutdown).
    ///
    /// # Errors
    /// The last store error; the other allotments are given back anyway.
    pub(super) async fn give_back_all(&self) -> Result<(), StoreError> {
        let all: Vec<Arc<KeyCells>> = match self.held.lock() {
            Ok(mut held) => {
                let mut all: Vec<_> = held.keys.drain().map(|(_, c)| c).collect();
                all.append(&mut held.replaced);
                all
            }
            Err(_) => return Ok(()),
        };
        let now = self.now_micros();
        let back = all
            .into_iter()
            .map(|cells| {
                let n = cells.available.swap(0, Ordering::AcqRel);
                (cells, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let mut result = Ok(());
        for e in self.return_all(back, now).await {
            self.return_failed(&e);
            result = Err(e);
        }
        result
    }

    /// Cells that could not be given back are lost to the cluster until the limiter's time
    /// passes them: fewer admitted, never more.
    fn return_failed(&self, e: &StoreError) {
        if let Some(suppressed) = self.log.admit(Cause::Store) {
            tracing::warn!(
                error = %e,
                suppressed,
                "cannot give unused rate-limit cells back to the store; they are lost until the limiter's time passes them"
            );
        }
    }
}

impl Drop for ClusterLimiter {
    fn drop(&mut self) {
        self.stop_sweep();
    }
}

/// The idle sweep's task.
enum Sweep {
    NotStarted,
    Running(AbortHandle),
    Stopped,
}

/// `micros` ± half of it, uniformly.
fn jittered(micros: i64) -> i64 {
    let half = (micros / 2).max(1);
    micros - half + rand::random_range(0..=2 * half)
}

/// The per-process limiter's decision.
fn fallback(local: &RateLimiters, id: KeyId, limit: RateLimit) -> Decision {
    match local.check(id, limit) {
        Ok(()) => Decision::Allowed,
        Err(retry_after) => Decision::Refused(retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::chunk;

    #[test]
    fn chunk_is_the_demand_of_one_sync_interval_between_one_and_the_burst() {
        // 20 requests over 200 ms, 50 ms interval: 5.
        assert_eq!(chunk(20, 200_000, 50_000, 100), 5);
        // Over less than an interval: all of it.
        assert_eq!(chunk(7, 10_000, 50_000, 100), 7);
        // At least one, at most the burst.
        assert_eq!(chunk(0, 1_000_000, 50_000, 100), 1);
        assert_eq!(chunk(1, i64::MAX, 50_000, 100), 1);
        assert_eq!(chunk(1_000, 10_000, 50_000, 100), 100);
        // Rounded up.
        assert_eq!(chunk(3, 100_000, 50_000, 100), 2);
    }
}
