//! The verify cache: why Argon2 does not cost every request (docs/ARCHITECTURE.md, "The
//! verify cache").
//!
//! After a successful cold verify (store read + Argon2), the manager caches, per key id, a
//! keyed BLAKE3 digest of the secret (the key is random per process) together with the record.
//! A later request with that id is checked against the digest in constant time: the right
//! secret passes at hash speed, a wrong one is rejected at hash speed too, without Argon2.
//!
//! **Coherence.** Changes made through a manager invalidate its entry before the call returns.
//! Changes made by other processes arrive through the store's change feed: PostgreSQL
//! `LISTEN/NOTIFY` (a push), or, for stores without a push feed (SQLite, memory),
//! [`RecordStore::changes_since`](crate::RecordStore::changes_since) polled every
//! [`CacheConfig::poll_interval`]. The staleness bound for a change made elsewhere is thus the
//! notification latency (PostgreSQL) or the poll interval plus one query (SQLite). Entries
//! also expire after [`CacheConfig::ttl`].
//!
//! **Feed trouble.** When the feed is lost (the push connection broke or its heartbeat timed
//! out, the push channel ended, a poll failed), the cache is marked *stale*: no entry is
//! served without a store read (the revalidation below: no Argon2) until the feed has caught
//! up. Catching up reads the store's change log from the last revision the cache knows it has
//! seen (`feed.rs`) and invalidates only the ids changed since; only a gap longer than the log
//! drops everything. While the store cannot be read either, an entry is served for at most
//! [`CacheConfig::max_stale`] after the store last confirmed it, then the answer is the
//! store error (503).
//!
//! **Expiry.** An expired entry is not served, but it is kept until evicted. When its key is
//! presented again with the same secret, one store read revalidates it, with no Argon2,
//! provided the stored hash is still the one that secret was verified against. The fresh
//! record then decides the state, scopes and binding. Otherwise (another hash, a hash due for
//! re-hashing, another secret) the verify is cold. A TTL refresh of an active key therefore
//! costs a store read, not an Argon2.
//!
//! **Unknown ids.** An id the store does not hold costs one store read and no Argon2 (ids
//! are public; the answer is the same `AuthError::Invalid` as a wrong secret). The cache
//! then remembers it as unknown for [`CacheConfig::negative_ttl`] (as many ids as
//! [`CacheConfig::capacity`]), so repeating it costs no store read either. Stores report
//! inserts in their change feed, so an id inserted elsewhere is forgotten as unknown within
//! the feed's staleness bound, like any change.
//!
//! **Failing work.** Attempts that run Argon2 are counted per id before they run, under the
//! id's single-flight lock ([`CacheConfig::max_failures`] per
//! [`CacheConfig::failure_window`]; a successful one is given back), and attempts against
//! an id with failed attempts in its window may hold at most
//! [`CacheConfig::failing_share_percent`] of the hashing pool at once. Past either limit the
//! answer is `AuthError::RateLimited`, before Argon2. Ids without failures are not held to
//! the share, so a flood of failing attempts cannot starve a real key's first use.
//!
//! **Races.** Every invalidation advances an epoch; a cold verify only caches its result (a
//! verified key, or an unknown id) if no invalidation happened since it read the store, so a
//! verify racing a revocation can never re-insert the revoked key's old state, nor one
//! racing an insert remember the new id as unknown.
//!
//! **The rules live here.** The verify path asks the cache's `lookup` and, on a miss, its
//! `cold`; what it gets back says what to do and carries the means to finish: a `Renewal`
//! caches a revalidated record, a `ColdGuard` holds the id's single-flight lock, the epoch,
//! the counted attempt and the budget slot, and caches the verified record, remembers the
//! unknown id or keeps the failure counted. Epochs, the single-flight map, the unknown ids,
//! the failure counters and the budget are not reachable from outside this module.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::TryRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::key::{ApiKey, KeyId, RandomError};
use crate::metrics::{CacheMetrics, CacheResult};
use crate::store::KeyRecord;

mod evictions;
mod feed;
mod limits;

pub(crate) use feed::{establish, watch_changes};
use limits::{Budget, Failures, Reservation, Slot};

/// How long a caller refused because failing attempts hold their share of the hashing pool
/// is asked to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Verify cache settings.
///
/// ```
/// let c = keyward::CacheConfig::default();
/// assert_eq!(c.capacity, 100_000);
/// assert_eq!(c.poll_interval, std::time::Duration::from_millis(250));
/// assert_eq!((c.max_failures, c.failing_share_percent), (10, 50));
/// assert_eq!(c.max_stale, std::time::Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most keys held (least recently used beyond this are evicted); as many unknown ids and
    /// failure counters are held.
    pub capacity: u64,
    /// How long an entry is served without asking the store; bounds staleness if the change
    /// feed fails. After it, the key's next verify reads the store again (and runs Argon2 only
    /// if the stored hash changed).
    pub ttl: Duration,
    /// How often stores without a push feed are polled for changes made elsewhere.
    pub poll_interval: Duration,
    /// How long an id the store does not hold is answered as unknown without reading the
    /// store again. An insert of the id (reported by the change feed, like any change) ends
    /// it earlier; this bounds how long it lasts if the feed fails.
    pub negative_ttl: Duration,
    /// Failed cold attempts (wrong secret or unknown id) allowed per id per
    /// `failure_window`; beyond that, attempts are refused with
    /// [`AuthError::RateLimited`](crate::AuthError) without running Argon2. An attempt is
    /// counted before its Argon2 runs, under the id's single-flight lock, so concurrent
    /// attempts against one id run at most this many (a successful one is not counted).
    /// Trade-off: someone who knows a key's (public) id can keep it at the limit on
    /// instances that have not verified the key since they started (or since the key was
    /// changed), so the real key gets 429 there until the window passes. Where the key was
    /// verified once, it is served without this check, even after its entry expired
    /// (revalidated with a store read).
    pub max_failures: u32,
    /// The window of `max_failures`.
    pub failure_window: Duration,
    /// The share of the hashing pool (its workers, in percent; at least one worker) that cold
    /// verifies against ids with failed attempts in their window may use at once. Past it,
    /// such an attempt is refused with [`AuthError::RateLimited`](crate::AuthError) before
    /// Argon2, while ids without failures are not limited, so a flood of failing attempts
    /// cannot starve a real key's first use. Trade-off: during such a flood a real key whose
    /// holder mistyped it in the window may be refused until the flood or the window ends.
    pub failing_share_percent: u8,
    /// How long after the store last confirmed a cached key it may still be served while the
    /// store cannot be read (an outage): when the change feed is lost, or an entry's TTL has
    /// passed, a verify revalidates the entry with one store read; if that read fails, the
    /// entry is served only within this bound, and the answer is
    /// [`Error::Store`](crate::Error::Store) (503) after it. Trade-off: a revocation made
    /// elsewhere during an outage can be missed for this long; `Duration::ZERO` answers 503 as
    /// soon as a revalidation fails.
    pub max_stale: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(300),
            poll_interval: Duration::from_millis(250),
            negative_ttl: Duration::from_secs(60),
            max_failures: 10,
            failure_window: Duration::from_secs(60),
            failing_share_percent: 50,
            max_stale: Duration::from_secs(30),
        }
    }
}

/// A keyed digest of a secret, compared in constant time.
#[derive(Clone)]
pub(crate) struct Digest([u8; 32]);

impl Digest {
    /// Constant time: the four 64-bit words are XORed and ORed together without branching,
    /// and `subtle` decides on the result (a byte-wise `ct_eq` fences each of 32 bytes).
    pub(crate) fn matches(&self, other: &Digest) -> bool {
        let mut diff = 0u64;
        let (ours, theirs) = (self.0.as_chunks::<8>().0, other.0.as_chunks::<8>().0);
        for (a, b) in ours.iter().zip(theirs) {
            diff |= u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b);
        }
        bool::from(diff.ct_eq(&0))
    }
}

impl Drop for Digest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A verified key: the digest of the secret it was verified with, and its record.
pub(crate) struct Entry {
    digest: Digest,
    record: KeyRecord,
    /// When a use of this key was last queued for the last-used batch (unix ms).
    noted_at: std::sync::atomic::AtomicI64,
    /// When the entry stops being served ([`CacheConfig::ttl`] after it was cached).
    expires: Instant,
    /// When the store read that confirmed the entry started (for [`CacheConfig::max_stale`]).
    confirmed: Instant,
    /// The record's hash was weaker than the policy when verified (a re-hash was due): an
    /// expired entry like this is not revalidated, so the next verify re-hashes.
    obsolete: bool,
}

impl Entry {
    /// The record the key was verified against.
    pub(crate) fn record(&self) -> &KeyRecord {
        &self.record
    }

    /// Whether `digest` is of the secret this entry was verified with (constant time).
    pub(crate) fn matches(&self, digest: &Digest) -> bool {
        self.digest.matches(digest)
    }

    /// Whether a use at `now_ms` should be queued for the last-used batch: true at most once
    /// per `interval_ms` per entry (the caller queues it then).
    pub(crate) fn note_use(&self, now_ms: i64, interval_ms: i64) -> bool {
        let noted = self.noted_at.load(Ordering::Relaxed);
        if now_ms.saturating_sub(noted) >= interval_ms {
            self.noted_at.store(now_ms, Ordering::Relaxed);
            return true;
        }
        false
    }
}

pub(crate) struct VerifyCache {
    config: CacheConfig,
    key: Zeroizing<[u8; 32]>,
    /// Bounded (S3-FIFO eviction); entries carry their own expiry instant.
    entries: evictions::Entries,
    /// Ids the store did not hold, until when they are answered as unknown.
    unknown: quick_cache::sync::Cache<KeyId, Instant>,
    /// Counted cold attempts per id.
    failures: Failures,
    /// The share of the hashing pool for ids with failed attempts.
    budget: Budget,
    /// Serialises inserts against invalidations (held for a map operation only, never across
    /// an await).
    epoch_lock: Mutex<()>,
    epoch: AtomicU64,
    /// False while no change-feed baseline is established: nothing is cached then, since a
    /// change made elsewhere could go unnoticed.
    ready: std::sync::atomic::AtomicBool,
    /// True while the change feed is lost or has not caught up: entries are not served
    /// without a store read then (see "Feed trouble" above).
    stale: std::sync::atomic::AtomicBool,
    /// Per-id locks so concurrent cold verifies of one id run Argon2 once.
    inflight: Mutex<HashMap<KeyId, Arc<tokio::sync::Mutex<()>>>>,
    /// Resolved when the cache is built (`keyward::metrics`).
    metrics: CacheMetrics,
    /// When the change feed was lost, while it is (`keyward_feed_lag_seconds`).
    lost_since: Mutex<Option<Instant>>,
}

impl fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyCache")
            .field("config", &self.config)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl VerifyCache {
    /// A cache for a manager whose hasher has `hashing_workers` workers.
    pub(crate) fn new(config: CacheConfig, hashing_workers: usize) -> Result<Self, RandomError> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut key[..])
            .map_err(RandomError::from_sys)?;
        let capacity = usize::try_from(config.capacity)
            .unwrap_or(usize::MAX)
            .max(1);
        let metrics = CacheMetrics::new();
        Ok(Self {
            entries: evictions::entries(capacity, metrics.evicted.clone()),
            unknown: quick_cache::sync::Cache::new(capacity),
            failures: Failures::new(config.max_failures, config.failure_window, capacity),
            budget: Budget::new(hashing_workers, config.failing_share_percent),
            config,
            key,
            epoch_lock: Mutex::new(()),
            epoch: AtomicU64::new(0),
            ready: std::sync::atomic::AtomicBool::new(false),
            stale: std::sync::atomic::AtomicBool::new(false),
            inflight: Mutex::new(HashMap::new()),
            metrics,
            lost_since: Mutex::new(None),
        })
    }

    fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub(crate) fn digest(&self, secret: &[u8]) -> Digest {
        Digest(*blake3::keyed_hash(&self.key, secret).as_bytes())
    }

    /// The entry of `id` if it is within its TTL and the change feed is live (the warm
    /// path: one atomic load more than the map lookup).
    pub(crate) fn get(&self, id: &KeyId) -> Option<Arc<Entry>> {
        if self.is_stale() {
            return None;
        }
        let entry = self.entries.get(id)?;
        (Instant::now() < entry.expires).then_some(entry)
    }

    /// Whether the feed is lost or has not caught up (entries are revalidated on use).
    fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Marks the feed lost (`true`: entries are revalidated on use) or caught up again.
    /// Returns whether this changed the state, so that callers log once per change.
    fn set_stale(&self, stale: bool) -> bool {
        self.stale.swap(stale, Ordering::AcqRel) != stale
    }

    /// What the cache knows of `id` for a verify that could not be decided by
    /// [`VerifyCache::get`]: a live entry, an expired one that a store read may renew, or
    /// nothing (then verify cold through [`VerifyCache::cold`]).
    ///
    /// An expired entry (or any entry while the feed is lost) is not served, but it proves
    /// which secret was verified against which hash: if the store still holds that hash, a
    /// presented secret with the same digest needs a store read to be accepted again, not
    /// Argon2. Invalidations remove entries, so such an entry has seen no change through the
    /// manager or the feed; the fresh record decides everything else. An entry whose hash was
    /// due for a re-hash is not renewed, so the cold verify re-hashes.
    pub(crate) fn lookup(&self, id: &KeyId, digest: &Digest) -> Lookup<'_> {
        if let Some(entry) = self.get(id) {
            return Lookup::Hit(entry);
        }
        match self.entries.peek(id) {
            Some(entry) if entry.digest.matches(digest) && !entry.obsolete => {
                Lookup::Expired(Renewal {
                    cache: self,
                    // Read before the caller reads the store: a change after it forbids caching.
                    epoch: self.epoch(),
                    read_at: Instant::now(),
                    digest: digest.clone(),
                    entry,
                })
            }
            _ => Lookup::Miss,
        }
    }

    /// Admits a cold verify of `id` (store read and Argon2), or answers without one:
    ///
    /// - `Refused` while the id has used up its failed attempts, checked before waiting for
    ///   the id's single-flight lock and again under it, where the attempt is counted before
    ///   its Argon2 runs (so concurrent attempts against one id run at most `max_failures`);
    ///   also when the id has failed attempts and failing attempts hold their share of the
    ///   hashing pool;
    /// - `Unknown` for an id the store did not hold lately (counted as a failed attempt);
    /// - `Hit` when the verify that held the lock before this one cached the id;
    /// - otherwise `Verify`, under the id's single-flight lock.
    pub(crate) async fn cold(&self, id: KeyId, digest: Digest) -> Cold<'_> {
        if let Some(answer) = self.unknown_or_refused(&id) {
            return answer;
        }
        let flight = self.lock_id(id).await;
        if let Some(entry) = self.get(&id) {
            return Cold::Hit(entry);
        }
        // What the verifies that held the lock before this one found out.
        if let Some(answer) = self.unknown_or_refused(&id) {
            return answer;
        }
        let (epoch, read_at) = (self.epoch(), Instant::now());
        let Some(attempt) = self.failures.reserve(&id) else {
            return self.refused(&id);
        };
        let slot = if attempt.had_history() {
            match self.budget.take() {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(key.id = %id, "failing attempts hold their share of the hashing pool");
                    return Cold::Refused {
                        retry_after: BUSY_RETRY_AFTER,
                    };
                }
            }
        } else {
            None
        };
        Cold::Verify(ColdGuard {
            epoch,
            read_at,
            digest,
            flight,
            attempt,
            _slot: slot,
        })
    }

    /// `Refused` when `id` has used up its attempts, `Unknown` (counted) when it is known to
    /// be unknown; `None` when a cold verify should decide.
    fn unknown_or_refused(&self, id: &KeyId) -> Option<Cold<'_>> {
        if self.failures.exhausted(id) {
            return Some(self.refused(id));
        }
        // While the feed is lost, an insert made elsewhere could go unnoticed: ask the store.
        let known_unknown = !self.is_stale()
            && self
                .unknown
                .get(id)
                .is_some_and(|until| Instant::now() < until);
        if !known_unknown {
            return None;
        }
        Some(match self.failures.reserve(id) {
            Some(attempt) => {
                attempt.keep();
                Cold::Unknown
            }
            None => self.refused(id),
        })
    }

    fn refused(&self, id: &KeyId) -> Cold<'_> {
        tracing::debug!(key.id = %id, "too many failed attempts");
        Cold::Refused {
            retry_after: self.failures.window(),
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Runs `cache` under the epoch lock if a change-feed baseline is established and no
    /// invalidation happened since `epoch` was read.
    fn if_unchanged(&self, epoch: u64, cache: impl FnOnce()) {
        let Ok(_guard) = self.epoch_lock.lock() else {
            return;
        };
        if self.ready.load(Ordering::SeqCst) && self.epoch.load(Ordering::SeqCst) == epoch {
            cache();
        }
    }

    /// Caches a verified key, confirmed by a store read started at `read_at`, unless an
    /// invalidation happened since `epoch` was read.
    fn insert_if_unchanged(
        &self,
        epoch: u64,
        read_at: Instant,
        digest: Digest,
        record: KeyRecord,
        obsolete: bool,
    ) {
        self.if_unchanged(epoch, || {
            let entry = Entry {
                digest,
                record,
                noted_at: std::sync::atomic::AtomicI64::new(i64::MIN),
                expires: Instant::now() + self.config.ttl,
                confirmed: read_at,
                obsolete,
            };
            self.entries.insert(entry.record.id, Arc::new(entry));
        });
    }

    /// Drops what is cached of `id` (its entry, or that it is unknown): a change made
    /// through this manager, or reported by the feed (an update or an insert). Whether an
    /// entry was dropped.
    pub(crate) fn invalidate(&self, id: &KeyId) -> bool {
        let _guard = self.epoch_lock.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.unknown.remove(id);
        self.entries.remove(id).is_some()
    }

    /// Drops everything cached: the feed may have missed changes. How many entries it held.
    pub(crate) fn invalidate_all(&self) -> usize {
        let _guard = self.epoch_lock.lock();
        let held = self.entries.len();
        self.clear();
        held
    }

    /// Counts one answer in `keyward_cache_total` (`keyward::metrics`).
    #[inline]
    pub(crate) fn count(&self, result: CacheResult) {
        self.metrics.count(result);
    }

    /// Marks whether a change-feed baseline is established (caching allowed).
    fn set_ready(&self, ready: bool) {
        let _guard = self.epoch_lock.lock();
        self.ready.store(ready, Ordering::SeqCst);
        if !ready {
            self.clear();
        }
    }

    /// Advances the epoch and drops every entry and unknown id; under the epoch lock.
    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
        self.unknown.clear();
    }

    /// The single-flight lock of one id.
    async fn lock_id(&self, id: KeyId) -> InflightGuard<'_> {
        let lock = match self.inflight.lock() {
            Ok(mut map) => Arc::clone(map.entry(id).or_default()),
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        };
        let guard = Arc::clone(&lock).lock_owned().await;
        InflightGuard {
            cache: self,
            id,
            lock,
            _guard: guard,
        }
    }
}

/// The answer of [`VerifyCache::lookup`].
pub(crate) enum Lookup<'a> {
    /// A live entry: decide from it.
    Hit(Arc<Entry>),
    /// An expired entry verified with the presented secret: read the record from the store
    /// and pass it to [`Renewal::renew`]; if that declines, verify cold.
    Expired(Renewal<'a>),
    /// Nothing usable: verify cold through [`VerifyCache::cold`].
    Miss,
}

/// An expired entry that one store read may renew (see [`VerifyCache::lookup`]).
pub(crate) struct Renewal<'a> {
    cache: &'a VerifyCache,
    epoch: u64,
    read_at: Instant,
    digest: Digest,
    entry: Arc<Entry>,
}

impl Renewal<'_> {
    /// Renews the entry with the fresh `record` if it still holds the hash the secret was
    /// verified against (same PHC string: same salt, parameters and output) and binds `key`.
    /// Returns the record to decide from (cached again unless an invalidation came between),
    /// or `None`: the hash changed or the binding does not hold, so verify cold.
    pub(crate) fn renew(self, key: &ApiKey, record: KeyRecord) -> Option<KeyRecord> {
        if record.secret_hash != self.entry.record.secret_hash || !record.binds(key) {
            return None;
        }
        tracing::trace!(key.id = %record.id, "revalidated a cache entry");
        self.cache.insert_if_unchanged(
            self.epoch,
            self.read_at,
            self.digest,
            record.clone(),
            false,
        );
        Some(record)
    }

    /// The store could not be read: the entry to decide from if the store confirmed it less
    /// than [`CacheConfig::max_stale`] ago (the outage bound), else `None` (answer the store
    /// error).
    pub(crate) fn unconfirmed(self) -> Option<Arc<Entry>> {
        let within = self
            .entry
            .confirmed
            .checked_add(self.cache.config.max_stale)
            .is_some_and(|until| Instant::now() < until);
        within.then_some(self.entry)
    }
}

/// The answer of [`VerifyCache::cold`].
pub(crate) enum Cold<'a> {
    /// Another verify of this id cached it while this one waited.
    Hit(Arc<Entry>),
    /// The store did not hold the id lately: answer as to a wrong secret.
    Unknown,
    /// The id has used up its failed cold attempts in the current window, or has failed
    /// attempts while failing attempts hold their share of the hashing pool.
    Refused {
        /// When to try again.
        retry_after: Duration,
    },
    /// Verify cold (store read and Argon2) and report the outcome to the guard.
    Verify(ColdGuard<'a>),
}

/// Held while one cold verify of an id runs: the id's single-flight lock, the epoch read
/// before the store was (a result that raced an invalidation is not cached), the attempt
/// counted against the id and, for an id with failed attempts, a slot of the failing share
/// of the hashing pool. Dropped without an outcome (the store or the hasher failed), the
/// attempt is given back.
pub(crate) struct ColdGuard<'a> {
    // Dropped in this order: the attempt and the slot are settled before the lock is released,
    // so the verify waiting for the lock sees them settled.
    attempt: Reservation,
    _slot: Option<Slot<'a>>,
    epoch: u64,
    read_at: Instant,
    digest: Digest,
    flight: InflightGuard<'a>,
}

impl ColdGuard<'_> {
    /// The secret and binding were proven: cache the record (unless invalidated meanwhile);
    /// the attempt is given back.
    pub(crate) fn verified(self, record: KeyRecord, obsolete: bool) {
        let ColdGuard {
            attempt,
            _slot: slot,
            epoch,
            read_at,
            digest,
            flight,
        } = self;
        flight
            .cache
            .insert_if_unchanged(epoch, read_at, digest, record, obsolete);
        drop(attempt);
        drop(slot);
        drop(flight);
    }

    /// The secret is wrong: the attempt stays counted.
    pub(crate) fn failed(self) {
        self.finish(|_| {});
    }

    /// The store does not hold the id: remember it as unknown (unless an invalidation came
    /// in meanwhile, e.g. its insert); the attempt stays counted.
    pub(crate) fn unknown(self) {
        self.finish(|guard| {
            let cache = guard.flight.cache;
            let until = Instant::now() + cache.config.negative_ttl;
            cache.if_unchanged(guard.epoch, || cache.unknown.insert(guard.flight.id, until));
        });
    }

    /// Runs `record` for a failed attempt, keeps the attempt counted, then releases the slot
    /// and the lock, in that order.
    fn finish(self, record: impl FnOnce(&Self)) {
        record(&self);
        let ColdGuard {
            attempt,
            _slot: slot,
            flight,
            ..
        } = self;
        attempt.keep();
        drop(slot);
        drop(flight);
    }
}

pub(crate) struct InflightGuard<'a> {
    cache: &'a VerifyCache,
    id: KeyId,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.cache.inflight.lock() {
            // The map, this guard and the held lock hold 3 references when no one waits.
            if Arc::strong_count(&self.lock) <= 3 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// What `cold` answers for `id` on `cache`, by name.
    async fn answer(cache: &VerifyCache, id: KeyId) -> &'static str {
        match cache.cold(id, cache.digest(b"s")).await {
            Cold::Hit(_) => "hit",
            Cold::Unknown => "unknown",
            Cold::Refused { .. } => "refused",
            Cold::Verify(_) => "verify",
        }
    }

    /// A cache with a change-feed baseline, an id, and `outcome` run on its first cold
    /// attempt's guard with the cache: returns the next answer for the id.
    fn after_first_attempt(
        outcome: impl FnOnce(&VerifyCache, KeyId, ColdGuard<'_>),
    ) -> &'static str {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let cache = VerifyCache::new(CacheConfig::default(), 2).unwrap();
            cache.set_ready(true);
            let id = KeyId::generate().unwrap();
            let Cold::Verify(guard) = cache.cold(id, cache.digest(b"s")).await else {
                panic!("a first attempt verifies cold");
            };
            outcome(&cache, id, guard);
            let next = answer(&cache, id).await;
            if next == "unknown" {
                cache.invalidate(&id); // the feed reports its insert
                assert_eq!(
                    answer(&cache, id).await,
                    "verify",
                    "forgotten when invalidated"
                );
            }
            next
        })
    }

    #[test]
    fn an_unknown_id_is_remembered_until_it_is_invalidated() {
        assert_eq!(
            after_first_attempt(|_, _, guard| guard.unknown()),
            "unknown"
        );
    }

    #[test]
    fn an_unknown_id_read_before_an_invalidation_is_not_remembered() {
        // The insert is reported between the store read and the outcome.
        let answer = after_first_attempt(|cache, id, guard| {
            cache.invalidate(&id);
            guard.unknown();
        });
        assert_eq!(answer, "verify");
    }
}
