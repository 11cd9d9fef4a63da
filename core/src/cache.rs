//! The verify cache: why Argon2 does not cost every request (DESIGN §5).
//!
//! After a successful cold verify (store read + Argon2), the manager caches, per key id, a
//! keyed BLAKE3 digest of the secret (the key is random per process) together with the record.
//! A later request with that id is checked against the digest in constant time: the right
//! secret passes at hash speed, a wrong one is rejected at hash speed too, without Argon2.
//!
//! **Coherence.** Changes made through a manager invalidate its entry before the call returns.
//! Changes made by other processes arrive through the store's change feed: PostgreSQL
//! `LISTEN/NOTIFY` (a push; on reconnect the whole cache is dropped), or, for stores without a
//! push feed (SQLite, memory), [`KeyStore::changes_since`] polled every
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

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::TryRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::key::KeyId;
use crate::store::{ChangeEvent, KeyRecord, KeyStore};

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

pub(crate) struct Entry {
    pub(crate) digest: Digest,
    pub(crate) record: KeyRecord,
    /// When a use of this key was last queued for the last-used batch (unix ms).
    pub(crate) noted_at: std::sync::atomic::AtomicI64,
    /// When the entry stops being served ([`CacheConfig::ttl`] after it was cached).
    expires: std::time::Instant,
    /// The record's hash was weaker than the policy when verified (a re-hash was due): an
    /// expired entry like this is not revalidated, so the next verify re-hashes.
    pub(crate) obsolete: bool,
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
    pub(crate) fn new(config: CacheConfig) -> Result<Self, crate::RandomError> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut key[..])
            .map_err(crate::key::RandomError::from_sys)?;
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

    pub(crate) fn config(&self) -> &CacheConfig {
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

    /// The entry of `id` if it is past its TTL. It is not served, but it proves which secret
    /// was verified against which hash: if the store still holds that hash, a presented secret
    /// with the same digest needs a store read to be accepted again, not Argon2.
    /// Invalidations remove entries, so an expired entry has seen no change through the
    /// manager or the feed; the fresh record decides everything else.
    pub(crate) fn get_expired(&self, id: &KeyId) -> Option<Arc<Entry>> {
        self.entries
            .peek(id)
            .filter(|entry| std::time::Instant::now() >= entry.expires)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a verified key unless an invalidation happened since `epoch` was read.
    pub(crate) fn insert_if_unchanged(
        &self,
        epoch: u64,
        digest: Digest,
        record: KeyRecord,
        obsolete: bool,
    ) {
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

    pub(crate) fn invalidate(&self, id: &KeyId) {
        let _guard = self.epoch_lock.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(id);
    }

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
    pub(crate) fn too_many_failures(&self, id: &KeyId) -> bool {
        self.current_failures(id)
            .is_some_and(|f| f.count.load(Ordering::Relaxed) >= self.config.max_failures)
    }

    /// Counts a failed cold attempt. The caller holds the id's single-flight lock, so two
    /// failures of one id never race to open a window.
    pub(crate) fn record_failure(&self, id: &KeyId) {
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
    pub(crate) async fn lock_id(&self, id: KeyId) -> InflightGuard<'_> {
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
    loop {
        tokio::time::sleep(interval).await;
        match store.changes_since(revision.unwrap_or(u64::MAX)).await {
            Ok(changes) => {
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
                tracing::warn!(error = %e, "polling the store for changes failed");
                cache.set_ready(false);
                revision = None;
            }
        }
    }
}
