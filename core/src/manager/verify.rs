//! The verify pipeline (docs/ARCHITECTURE.md, "The verify pipeline"): the key's text
//! (parse, checksum, prefix, environment), then the verify cache, and only on a miss the
//! store and Argon2; the state, project and scope outcomes only once the secret is proven;
//! then the per-key rate limit and credits. The cache's rules (single flight, epochs, unknown
//! ids, the failure limit and the failing share of the hashing pool) are the cache's own:
//! this file only acts on what it answers.

use crate::cache::{Cold, Entry, Lookup, VerifyCache};
use crate::error::{AuthError, Error};
use crate::key::ApiKey;
use crate::metrics::{CacheResult, HashPurpose, VerifyOutcome};
use crate::ratelimit::Decision;
use crate::store::{KeyChange, KeyRecord};
use crate::time::Timestamp;

use super::KeyManager;
use super::model::{Identity, Requirements};

impl KeyManager {
    /// Verifies a presented key against the requirements (docs/ARCHITECTURE.md, "The verify
    /// pipeline"): parse and checksum, prefix and environment (no store access), store
    /// lookup, constant-time Argon2 check, and only then revoked / expired / project / scope
    /// outcomes.
    ///
    /// # Errors
    /// [`Error::Auth`] with the credential's outcome; [`Error::Store`] when the store fails;
    /// [`Error::Overloaded`] when too many verifications are queued.
    pub async fn verify(&self, presented: &str, req: &Requirements) -> Result<Identity, Error> {
        let key = match ApiKey::parse(presented) {
            Ok(key) => key,
            Err(e) => {
                self.inner.verify_metrics.count(VerifyOutcome::Malformed);
                return Err(e.into());
            }
        };
        self.verify_key(&key, req).await
    }

    /// Like [`KeyManager::verify`] for an already parsed key.
    ///
    /// # Errors
    /// As [`KeyManager::verify`].
    pub async fn verify_key(&self, key: &ApiKey, req: &Requirements) -> Result<Identity, Error> {
        match self.decide_cached(key, req) {
            Warm::Decided(outcome) => {
                self.count_verify(&outcome);
                return outcome;
            }
            Warm::AskRateLimit(who) => {
                if let Some(cache) = &self.inner.cache {
                    cache.count(CacheResult::Hit);
                }
                // Boxed like the cold path: only a key whose cluster rate-limit cells ran
                // out comes here, about once per chunk of cells.
                let outcome = Box::pin(self.check_rate_limit(who)).await;
                self.count_verify(&outcome);
                return outcome;
            }
            Warm::Cold => {}
        }
        // Boxed: the cold path's state (store read, single flight, Argon2) is large, and
        // keeping it out of this future keeps every warm call small.
        let outcome = Box::pin(self.verify_uncached(key, req)).await;
        self.count_verify(&outcome);
        outcome
    }

    /// Counts a verification's outcome in `keyward_verify_total` (`keyward::metrics`): once
    /// per verification, where it is decided.
    #[inline]
    fn count_verify(&self, outcome: &Result<Identity, Error>) {
        self.inner.verify_metrics.count(match outcome {
            Ok(_) => VerifyOutcome::Ok,
            Err(e) => e.into(),
        });
    }

    /// Counts a verification refused before it reached the manager (the HTTP layer's
    /// extraction: no key, two keys, a key in the query string).
    #[cfg(feature = "http")]
    pub(crate) fn count_refused(&self, err: &Error) {
        self.inner.verify_metrics.count(err.into());
    }

    /// Verifies from the verify cache alone, without waiting for anything
    /// (docs/ARCHITECTURE.md, "The verify cache"): `Some(outcome)` when the key's text or
    /// the cache decides, `None` when the store is needed, i.e. the id is not cached (a cold
    /// verify), the key spends credits (charged in the store), or its cluster-wide rate
    /// limit's local cells ran out ([`RateLimitMode`](crate::RateLimitMode)). Call
    /// [`KeyManager::verify_key`] on `None`.
    ///
    /// The outcome is the one [`KeyManager::verify_key`] would give: a wrong prefix or
    /// environment, a wrong secret for a cached id (constant-time digest comparison, no
    /// Argon2), a revoked or expired key, missing scopes, the rate limit. This is for
    /// synchronous fast paths such as a tower layer that only allocates a future on a miss.
    ///
    /// An answer (`Some`) is counted in `keyward_verify_total` (`keyward::metrics`); `None` is
    /// not, since the verification goes on in [`KeyManager::verify_key`], which counts it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use keyward::{HashParams, IssueRequest, KeyManager, Requirements};
    /// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
    ///     .serve("dev".parse()?)
    ///     .hash_params(HashParams::INSECURE_TEST_ONLY)
    ///     .build()?;
    /// let issued = manager.issue(IssueRequest::new("web-app".parse()?, "dev".parse()?)).await?;
    /// let req = Requirements::none();
    /// assert!(manager.verify_cached(&issued.key, &req).is_none()); // not cached yet
    /// manager.verify_key(&issued.key, &req).await?;                 // cold: store + Argon2
    /// let outcome = manager.verify_cached(&issued.key, &req);       // warm: no waiting
    /// assert_eq!(outcome.transpose()?.map(|who| who.id), Some(issued.key.id()));
    /// # Ok(()) }
    /// ```
    pub fn verify_cached(
        &self,
        key: &ApiKey,
        req: &Requirements,
    ) -> Option<Result<Identity, Error>> {
        match self.decide_cached(key, req) {
            Warm::Decided(outcome) => {
                self.count_verify(&outcome);
                Some(outcome)
            }
            Warm::AskRateLimit(_) | Warm::Cold => None,
        }
    }

    /// [`KeyManager::verify_cached`] without counting.
    #[inline]
    fn decide_cached(&self, key: &ApiKey, req: &Requirements) -> Warm {
        if let Err(e) = self.check_format(key) {
            return Warm::Decided(Err(e.into()));
        }
        let Some(cache) = self.inner.cache.as_ref() else {
            return Warm::Cold;
        };
        let Some(entry) = cache.get(&key.id()) else {
            return Warm::Cold;
        };
        if entry.record().limits.credits.is_some() {
            return Warm::Cold;
        }
        let digest = cache.digest(key.secret_bytes());
        // rate limits (ratelimit/): decided here unless cluster cells must be asked for. The
        // hit is counted where the verification ends: here, or in `verify_key` after the ask
        // (so a `verify_cached` answering `None` and the `verify_key` after it count one).
        let outcome = match self.accept_warm(key, &entry, &digest, req) {
            Ok(who) => {
                let limit = who.limits.rate_limit;
                match limit.map(|limit| self.inner.rate_limiters.check_now(who.id, limit)) {
                    None | Some(Decision::Allowed) => Ok(who),
                    Some(Decision::Refused(retry_after)) => {
                        Err(AuthError::RateLimited { retry_after }.into())
                    }
                    Some(Decision::Ask) => return Warm::AskRateLimit(who),
                }
            }
            Err(e) => Err(e),
        };
        cache.count(CacheResult::Hit);
        Warm::Decided(outcome)
    }

    /// The checks that need only the key text: prefix and environment.
    ///
    /// # Errors
    /// [`AuthError::WrongPrefix`] or [`AuthError::WrongEnvironment`].
    pub fn check_format(&self, key: &ApiKey) -> Result<(), AuthError> {
        if !key.has_prefix(&self.inner.prefix) {
            return Err(AuthError::WrongPrefix {
                expected: self.inner.prefix,
                found: key.prefix(),
            });
        }
        if !self
            .inner
            .environments
            .iter()
            .any(|e| key.has_environment(e))
        {
            return Err(AuthError::WrongEnvironment {
                found: key.environment(),
                accepted: self.inner.environments.clone(),
            });
        }
        Ok(())
    }

    async fn verify_uncached(&self, key: &ApiKey, req: &Requirements) -> Result<Identity, Error> {
        let identity = self.authenticate(key, req).await?;
        let identity = self.check_rate_limit(identity).await?;
        if let Some(credits) = identity.limits.credits {
            self.spend_credit(&identity, credits).await?;
        }
        Ok(identity)
    }

    /// The rate limit of a proven key, per process or cluster-wide
    /// ([`RateLimitMode`](crate::RateLimitMode)); in cluster mode this may ask the store
    /// for cells.
    async fn check_rate_limit(&self, who: Identity) -> Result<Identity, Error> {
        if let Some(limit) = who.limits.rate_limit
            && let Err(retry_after) = self.inner.rate_limiters.check(who.id, limit).await
        {
            return Err(AuthError::RateLimited { retry_after }.into());
        }
        Ok(who)
    }

    /// Where keys' rate limits hold: per process or cluster-wide (set with
    /// [`KeyManagerBuilder::rate_limits`](super::KeyManagerBuilder::rate_limits)).
    pub fn rate_limit_mode(&self) -> crate::RateLimitMode {
        self.inner.rate_limiters.mode()
    }

    /// Authentication without usage limits, after [`KeyManager::verify_cached`] (which has
    /// checked the format) could not decide.
    async fn authenticate(&self, key: &ApiKey, req: &Requirements) -> Result<Identity, Error> {
        self.start_background().await;
        let Some(cache) = &self.inner.cache else {
            return match self.cold_verify(key).await? {
                ColdOutcome::Verified { record, obsolete } => {
                    self.accept(key, *record, obsolete, req).await
                }
                ColdOutcome::Unknown | ColdOutcome::Invalid => Err(invalid(key)),
            };
        };
        let id = key.id();
        let digest = cache.digest(key.secret_bytes());
        match cache.lookup(&id, &digest) {
            Lookup::Hit(entry) => {
                cache.count(CacheResult::Hit);
                return self.accept_warm(key, &entry, &digest, req);
            }
            Lookup::Expired(renewal) => {
                // One store read, no Argon2, if the stored hash is the one this secret was
                // verified against; otherwise verify cold. If the store cannot be read, the
                // entry is served only within `max_stale` of its last confirmation.
                let read = match self.inner.store.get(&id).await {
                    Ok(read) => read,
                    Err(e) => {
                        let Some(entry) = renewal.unconfirmed() else {
                            return Err(e.into());
                        };
                        tracing::debug!(key.id = %id, error = %e, "store unreachable; serving a cache entry within max_stale");
                        cache.count(CacheResult::Stale);
                        return self.accept_warm(key, &entry, &digest, req);
                    }
                };
                if let Some(record) = read
                    && let Some(record) = renewal.renew(key, record)
                {
                    cache.count(CacheResult::Revalidated);
                    return self.accept(key, record, false, req).await;
                }
            }
            Lookup::Miss => {}
        }
        self.authenticate_cold(cache, key, digest, req).await
    }

    /// Store read and Argon2, as the cache admits them.
    async fn authenticate_cold(
        &self,
        cache: &VerifyCache,
        key: &ApiKey,
        digest: crate::cache::Digest,
        req: &Requirements,
    ) -> Result<Identity, Error> {
        let guard = match cache.cold(key.id(), digest.clone()).await {
            Cold::Hit(entry) => {
                cache.count(CacheResult::Hit);
                return self.accept_warm(key, &entry, &digest, req);
            }
            Cold::Unknown => {
                cache.count(CacheResult::NegativeHit);
                return Err(invalid(key));
            }
            Cold::Refused { retry_after } => {
                return Err(AuthError::RateLimited { retry_after }.into());
            }
            Cold::Verify(guard) => {
                cache.count(CacheResult::Miss);
                guard
            }
        };
        match self.cold_verify(key).await? {
            ColdOutcome::Verified { record, obsolete } => {
                guard.verified((*record).clone(), obsolete);
                self.accept(key, *record, obsolete, req).await
            }
            ColdOutcome::Unknown => {
                guard.unknown();
                Err(invalid(key))
            }
            ColdOutcome::Invalid => {
                guard.failed();
                Err(invalid(key))
            }
        }
    }

    /// Store lookup and, for a known id, Argon2. An unknown id costs no Argon2: ids are
    /// public, and the caller answers it as a wrong secret (SECURITY.md, "Threat model").
    pub(super) async fn cold_verify(&self, key: &ApiKey) -> Result<ColdOutcome, Error> {
        let Some(record) = self.inner.store.get(&key.id()).await? else {
            return Ok(ColdOutcome::Unknown);
        };
        let verdict = self
            .inner
            .hasher
            .verify(key.secret_bytes(), &record.secret_hash)
            .await?;
        if !verdict.matches || !record.binds(key) {
            return Ok(ColdOutcome::Invalid);
        }
        Ok(ColdOutcome::Verified {
            record: Box::new(record),
            obsolete: verdict.obsolete,
        })
    }

    /// Decides from a live cache entry: the digest and binding, then the state.
    fn accept_warm(
        &self,
        key: &ApiKey,
        entry: &Entry,
        digest: &crate::cache::Digest,
        req: &Requirements,
    ) -> Result<Identity, Error> {
        let record = entry.record();
        if !entry.matches(digest) || !record.binds(key) {
            tracing::debug!(key.id = %record.id, "rejected API key: invalid (cached id)");
            return Err(AuthError::Invalid.into());
        }
        let now = self.now();
        check_state(record, now, req)?;
        // Queue the last-used time at most once per flush interval per key.
        let interval =
            i64::try_from(self.inner.usage_flush_interval.as_millis()).unwrap_or(i64::MAX);
        if entry.note_use(now.unix_millis(), interval) {
            self.inner.last_used.note(record.id, now);
        }
        Ok(Identity::of(record))
    }

    /// Decides from a record read from the store (secret and binding proven).
    async fn accept(
        &self,
        key: &ApiKey,
        record: KeyRecord,
        obsolete: bool,
        req: &Requirements,
    ) -> Result<Identity, Error> {
        let now = self.now();
        check_state(&record, now, req)?;
        if obsolete {
            self.upgrade_hash(key).await;
        }
        self.inner.last_used.note(record.id, now);
        tracing::debug!(key.id = %record.id, project = %record.project, "verified API key");
        Ok(Identity::from_record(record))
    }

    /// Re-hashes a proven key's secret with the current parameters.
    async fn upgrade_hash(&self, key: &ApiKey) {
        let result = async {
            let hash = self
                .inner
                .hasher
                .hash_for(key.secret_bytes(), HashPurpose::Rehash)
                .await?;
            let change = KeyChange {
                secret_hash: Some(hash),
                ..KeyChange::default()
            };
            // A re-hash is no lifecycle change: no audit entry.
            self.inner.store.update(&key.id(), &change, &[]).await?;
            self.invalidate(&key.id());
            Ok::<_, Error>(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(key.id = %key.id(), "re-hashed API key with current parameters")
            }
            Err(e) => tracing::warn!(key.id = %key.id(), error = %e, "could not re-hash API key"),
        }
    }
}

/// What the verify cache alone decided.
enum Warm {
    /// The outcome.
    Decided(Result<Identity, Error>),
    /// Proven, with a cluster rate limit whose local cells ran out: the store must be asked.
    AskRateLimit(Identity),
    /// Not cached, or charged in the store (credits): the cold path.
    Cold,
}

/// What a cold verify found.
pub(super) enum ColdOutcome {
    /// The secret and the binding match.
    Verified {
        /// Boxed: the other outcomes carry nothing (clippy `large_enum_variant`).
        record: Box<KeyRecord>,
        obsolete: bool,
    },
    /// The store does not hold the id.
    Unknown,
    /// A wrong secret, or a key relabelled to another prefix or environment.
    Invalid,
}

/// The one answer to an unknown id and a wrong secret alike.
fn invalid(key: &ApiKey) -> Error {
    tracing::debug!(key.id = %key.id(), "rejected API key: invalid");
    AuthError::Invalid.into()
}

/// The outcomes decided once the secret is proven: revoked, expired, project, scopes.
fn check_state(record: &KeyRecord, now: Timestamp, req: &Requirements) -> Result<(), AuthError> {
    if let Some(at) = record.revoked_at {
        return Err(AuthError::Revoked { id: record.id, at });
    }
    if let Some(at) = record.expires_at
        && now >= at
    {
        return Err(AuthError::Expired { id: record.id, at });
    }
    if let Some(expected) = &req.project
        && *expected != record.project
    {
        return Err(AuthError::WrongProject {
            id: record.id,
            expected: expected.clone(),
            found: record.project.clone(),
        });
    }
    // The common case (all scopes held) allocates nothing.
    if !record.scopes.contains_all(&req.scopes) {
        return Err(AuthError::InsufficientScope {
            id: record.id,
            missing: record.scopes.missing(&req.scopes),
        });
    }
    Ok(())
}
