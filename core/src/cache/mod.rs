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
//! `LISTEN/NOTIFY` (a push; on reconnect the whole cache is dropped), or, for stores without a
//! push feed (SQLite, memory), [`RecordStore::changes_since`](crate::RecordStore::changes_since) polled every
//! [`CacheConfig::poll_interval`]. The staleness bound for a change made elsewhere is thus the
//! notification latency (PostgreSQL) or the poll interval plus one query (SQLite). Entries
//! also expire after [`CacheConfig::ttl`], which bounds staleness if the feed itself fails.
//!
//! **Expiry.** An expired entry is not served, but it is kept until evicted. When its key is
//! presented again with the same secret, one store read revalidates it, with no Argon2,
//! provided the stored hash is still the one that secret was verified against. The fresh
//! record then decides the state, scopes and binding. Otherwise (another hash, a hash due for
//! re-hashing, another secret) the verify is cold. A TTL refresh of an active key therefore
//! costs a store read, not an Argon2.
//!
//! **Races.** Every invalidation advances an epoch; a cold verify only caches its result if no
//! invalidation happened since it read the store, so a verify racing a revocation can never
//! re-insert the revoked key's old state.
//!
//! **The rules live here.** The verify path asks the cache's `lookup` and, on a miss, its
//! `cold`; what it gets back says what to do and carries the means to finish: a `Renewal`
//! caches a revalidated record, a `ColdGuard` holds the id's single-flight lock and the
//! epoch, and caches the verified record or counts the failure. Epochs, the
//! single-flight map and the failure counters are not reachable from outside this module.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::TryRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::key::{ApiKey, KeyId, RandomError};
use crate::store::KeyRecord;

mod feed;

pub(crate) use feed::{establish, watch_changes};

/// Verify cache settings.
///
/// ```
/// let c = keyward::CacheConfig::default();
/// assert_eq!(c.capacity, 100_000);
/// assert_eq!(c.poll_interval, std::time::Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most keys held (least recently used beyond this are evicted).
    pub capacity: u64,
    /// How long an entry is served without asking the store; bounds staleness if the change
    /// feed fails. After it, the key's next verify reads the store again (and runs Argon2 only
    /// if the stored hash changed).
    pub ttl: Duration,
    /// How often stores without a push feed are polled for changes made elsewhere.
    pub poll_interval: Duration,
    /// Failed cold attempts (wrong secret, Argon2 run) allowed per id per `failure_window`;
    /// beyond that, attempts are refused with [`AuthError::RateLimited`](crate::AuthError)
    /// without running Argon2. Trade-off: someone who knows a key's (public) id can keep it
    /// at the limit on instances that have not verified the key since they started (or since
    /// the key was changed), so the real key gets 429 there until the window passes. Where
    /// the key was verified once, it is served without this check, even after its entry
    /// expired (revalidated with a store read).
    pub max_failures: u32,
    /// The window of `max_failures`.
    pub failure_window: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(300),
            poll_interval: Duration::from_millis(250),
            max_failures: 10,
            failure_window: Duration::from_secs(60),
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
    expires: std::time::Instant,
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

/// Failed cold attempts of one id, in the window opened by the first of them.
struct Failures {
    since: std::time::Instant,
    count: AtomicU32,
}

pub(crate) struct VerifyCache {
    config: CacheConfig,
    key: Zeroizing<[u8; 32]>,
    /// Bounded (S3-FIFO eviction); entries carry their own expiry instant.
    entries: quick_cache::sync::Cache<KeyId, Arc<Entry>>,
    /// Failed cold attempts per id (quick_cache, as the entries: a lookup on every attempt
    /// against an uncached id, the hot path of a guessing flood).
    failures: quick_cache::sync::Cache<KeyId, Arc<Failures>>,
    /// Serialises inserts against invalidations (held for a map operation only, never across
    /// an await).
    epoch_lock: Mutex<()>,
    epoch: AtomicU64,
    /// False while no change-feed baseline is established: nothing is cached then, since a
    /// change made elsewhere could go unnoticed.
    ready: std::sync::atomic::AtomicBool,
    /// Per-id locks so concurrent cold verifies of one id run Argon2 once.
    inflight: Mutex<HashMap<KeyId, Arc<tokio::sync::Mutex<()>>>>,
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
    pub(crate) fn new(config: CacheConfig) -> Result<Self, RandomError> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut key[..])
            .map_err(RandomError::from_sys)?;
        let capacity = usize::try_from(config.capacity)
            .unwrap_or(usize::MAX)
            .max(1);
        Ok(Self {
            entries: quick_cache::sync::Cache::new(capacity),
            failures: quick_cache::sync::Cache::new(capacity),
            config,
            key,
            epoch_lock: Mutex::new(()),
            epoch: AtomicU64::new(0),
            ready: std::sync::atomic::AtomicBool::new(false),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub(crate) fn digest(&self, secret: &[u8]) -> Digest {
        Digest(*blake3::keyed_hash(&self.key, secret).as_bytes())
    }

    /// The entry of `id` if it is within its TTL.
    pub(crate) fn get(&self, id: &KeyId) -> Option<Arc<Entry>> {
        let entry = self.entries.get(id)?;
        (std::time::Instant::now() < entry.expires).then_some(entry)
    }

    /// What the cache knows of `id` for a verify that could not be decided by
    /// [`VerifyCache::get`]: a live entry, an expired one that a store read may renew, or
    /// nothing (then verify cold through [`VerifyCache::cold`]).
    ///
    /// An expired entry is not served, but it proves which secret was verified against which
    /// hash: if the store still holds that hash, a presented secret with the same digest
    /// needs a store read to be accepted again, not Argon2. Invalidations remove entries, so
    /// an expired entry has seen no change through the manager or the feed; the fresh record
    /// decides everything else. An entry whose hash was due for a re-hash is not renewed, so
    /// the cold verify re-hashes.
    pub(crate) fn lookup(&self, id: &KeyId, digest: &Digest) -> Lookup<'_> {
        if let Some(entry) = self.get(id) {
            return Lookup::Hit(entry);
        }
        match self.entries.peek(id) {
            Some(entry)
                if std::time::Instant::now() >= entry.expires
                    && entry.digest.matches(digest)
                    && !entry.obsolete =>
            {
                Lookup::Expired(Renewal {
                    cache: self,
                    // Read before the caller reads the store: a change after it forbids caching.
                    epoch: self.epoch(),
                    digest: digest.clone(),
                    entry,
                })
            }
            _ => Lookup::Miss,
        }
    }

    /// Admits a cold verify of `id` (store read and Argon2): refused while the id has used up
    /// its failed attempts; otherwise under the id's single-flight lock, so concurrent cold
    /// verifies of one id run Argon2 once (a verify that waited for the lock finds the entry
    /// the first one cached).
    pub(crate) async fn cold(&self, id: KeyId, digest: Digest) -> Cold<'_> {
        if self.too_many_failures(&id) {
            return Cold::Refused {
                retry_after: self.config.failure_window,
            };
        }
        let flight = self.lock_id(id).await;
        if let Some(entry) = self.get(&id) {
            return Cold::Hit(entry);
        }
        Cold::Verify(ColdGuard {
            epoch: self.epoch(),
            digest,
            flight,
        })
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a verified key unless an invalidation happened since `epoch` was read.
    fn insert_if_unchanged(&self, epoch: u64, digest: Digest, record: KeyRecord, obsolete: bool) {
        let Ok(_guard) = self.epoch_lock.lock() else {
            return;
        };
        if self.ready.load(Ordering::SeqCst) && self.epoch.load(Ordering::SeqCst) == epoch {
            let entry = Entry {
                digest,
                record,
                noted_at: std::sync::atomic::AtomicI64::new(i64::MIN),
                expires: std::time::Instant::now() + self.config.ttl,
                obsolete,
            };
            self.entries.insert(entry.record.id, Arc::new(entry));
        }
    }

    /// Drops the entry of `id`: a change made through this manager, or reported by the feed.
    pub(crate) fn invalidate(&self, id: &KeyId) {
        let _guard = self.epoch_lock.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(id);
    }

    /// Drops every entry: the feed may have missed changes.
    pub(crate) fn invalidate_all(&self) {
        let _guard = self.epoch_lock.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }

    /// Marks whether a change-feed baseline is established (caching allowed).
    fn set_ready(&self, ready: bool) {
        let _guard = self.epoch_lock.lock();
        self.ready.store(ready, Ordering::SeqCst);
        if !ready {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.entries.clear();
        }
    }

    /// The failures of `id` in a window that has not ended.
    fn current_failures(&self, id: &KeyId) -> Option<Arc<Failures>> {
        let failures = self.failures.get(id)?;
        (failures.since.elapsed() < self.config.failure_window).then_some(failures)
    }

    /// Whether this id has used up its failed cold attempts.
    fn too_many_failures(&self, id: &KeyId) -> bool {
        self.current_failures(id)
            .is_some_and(|f| f.count.load(Ordering::Relaxed) >= self.config.max_failures)
    }

    /// Counts a failed cold attempt. The caller holds the id's single-flight lock, so two
    /// failures of one id never race to open a window.
    fn record_failure(&self, id: &KeyId) {
        match self.current_failures(id) {
            Some(failures) => {
                failures.count.fetch_add(1, Ordering::Relaxed);
            }
            None => self.failures.insert(
                *id,
                Arc::new(Failures {
                    since: std::time::Instant::now(),
                    count: AtomicU32::new(1),
                }),
            ),
        }
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
        tracing::trace!(key.id = %record.id, "revalidated an expired cache entry");
        self.cache
            .insert_if_unchanged(self.epoch, self.digest, record.clone(), false);
        Some(record)
    }
}

/// The answer of [`VerifyCache::cold`].
pub(crate) enum Cold<'a> {
    /// Another verify of this id cached it while this one waited.
    Hit(Arc<Entry>),
    /// The id has used up its failed cold attempts in the current window.
    Refused {
        /// When the window ends.
        retry_after: Duration,
    },
    /// Verify cold (store read and Argon2) and report the outcome to the guard.
    Verify(ColdGuard<'a>),
}

/// Held while one cold verify of an id runs: the id's single-flight lock, and the epoch read
/// before the store was, so a result that raced an invalidation is not cached.
pub(crate) struct ColdGuard<'a> {
    epoch: u64,
    digest: Digest,
    flight: InflightGuard<'a>,
}

impl ColdGuard<'_> {
    /// The secret and binding were proven: cache the record (unless invalidated meanwhile).
    pub(crate) fn verified(self, record: KeyRecord, obsolete: bool) {
        self.flight
            .cache
            .insert_if_unchanged(self.epoch, self.digest, record, obsolete);
    }

    /// The id is unknown or the secret wrong: count a failed attempt.
    pub(crate) fn failed(self) {
        self.flight.cache.record_failure(&self.flight.id);
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
