//! Argon2id hashing of key secrets into standard PHC strings.
//!
//! The hash is computed over the secret's 43 ASCII bytes with no pepper, so standard tools
//! (argon2-cffi, libargon2) verify it. Hashing runs on a bounded set of blocking workers that
//! reuse their memory blocks: memory stays at `workers × m_cost` KiB however many requests
//! arrive, and a full queue is [`HashError::Overloaded`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::TryRng;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::invalid::{InvalidValue, ValueKind};
use crate::metrics::{HashMetrics, HashPurpose};

/// Argon2id cost parameters.
///
/// The default is OWASP's minimum for Argon2id: m = 19456 KiB, t = 2, p = 1 (about 29 ms per
/// hash on a 2-core x86-64 server, release build).
///
/// ```
/// let p = keyward::HashParams::default();
/// assert_eq!((p.m_cost, p.t_cost, p.p_cost), (19456, 2, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism (lanes).
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP's minimum recommendation for Argon2id (the default).
    pub const OWASP_MINIMUM: Self = Self {
        m_cost: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// A deliberately weak set **for tests only** (m = 64 KiB, t = 1, p = 1): it keeps test
    /// suites fast while running the same code paths. Never use it in production: a hash
    /// this cheap can be brute-forced offline far faster.
    pub const INSECURE_TEST_ONLY: Self = Self {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn to_argon2(self) -> Result<Params, InvalidValue> {
        Params::new(self.m_cost, self.t_cost, self.p_cost, Some(OUTPUT_LEN)).map_err(|e| {
            InvalidValue {
                kind: ValueKind::Config,
                reason: format!(
                    "Argon2 parameters m={}, t={}, p={} are invalid: {e}",
                    self.m_cost, self.t_cost, self.p_cost
                ),
            }
        })
    }

    /// Whether a hash made with `other` is weaker than this policy.
    pub fn is_stronger_than(&self, other: &HashParams) -> bool {
        other.m_cost < self.m_cost || other.t_cost < self.t_cost
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP_MINIMUM
    }
}

const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;

/// A stored secret hash: a PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
///
/// Not secret in itself, but `Debug` shows only the algorithm and parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(String);

impl SecretHash {
    /// Wraps a PHC string read from a store, checking that it parses as one.
    ///
    /// # Errors
    /// [`HashError::Unreadable`] when it is not a PHC string with a salt and a hash.
    pub fn from_phc(s: impl Into<String>) -> Result<Self, HashError> {
        let s = s.into();
        let parsed = PasswordHash::new(&s).map_err(|e| HashError::Unreadable(e.to_string()))?;
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err(HashError::Unreadable(
                "the PHC string has no salt or no hash".into(),
            ));
        }
        Ok(Self(s))
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Argon2 parameters the hash was made with.
    ///
    /// # Errors
    /// [`HashError::Unreadable`] when the string holds no Argon2 parameters.
    pub fn params(&self) -> Result<HashParams, HashError> {
        let parsed =
            PasswordHash::new(&self.0).map_err(|e| HashError::Unreadable(e.to_string()))?;
        let p = Params::try_from(&parsed).map_err(|e| HashError::Unreadable(e.to_string()))?;
        Ok(HashParams {
            m_cost: p.m_cost(),
            t_cost: p.t_cost(),
            p_cost: p.p_cost(),
        })
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Algorithm, version and parameters only: salt and digest are elided.
        let head: Vec<&str> = self.0.split('$').take(4).collect();
        write!(f, "SecretHash({:?}$…)", head.join("$"))
    }
}

/// Hashing failed, or a stored hash cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The stored hash is not a readable Argon2 PHC string.
    #[error("the stored key hash is not a readable Argon2 PHC string: {0}")]
    Unreadable(String),
    /// Argon2 itself failed.
    #[error("Argon2 failed: {0}")]
    Argon2(String),
    /// A hashing worker stopped unexpectedly.
    #[error("a hashing worker stopped unexpectedly")]
    Worker,
    /// Too much hashing work is queued; try again shortly (the manager reports it as
    /// `Error::Overloaded`, HTTP 503).
    #[error("the server is overloaded with key verifications; retry shortly")]
    Overloaded,
}

/// The result of checking a secret against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The secret matches.
    pub matches: bool,
    /// The hash was made with weaker parameters (or another Argon2 variant) than the current
    /// policy and should be re-hashed.
    pub obsolete: bool,
}

/// Runs Argon2id on a bounded pool of blocking workers with reused memory.
///
/// ```
/// # tokio_test();
/// # fn tokio_test() { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::{Hasher, HashParams};
/// let hasher = Hasher::new(HashParams::INSECURE_TEST_ONLY).unwrap();
/// let secret = b"0123456789012345678901234567890123456789abc";
/// let phc = hasher.hash(secret).await.unwrap();
/// assert!(phc.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
/// assert!(hasher.verify(secret, &phc).await.unwrap().matches);
/// assert!(!hasher.verify(b"wrong", &phc).await.unwrap().matches);
/// # }) }
/// ```
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<HasherInner>,
}

struct HasherInner {
    params: HashParams,
    argon_params: Params,
    workers: Arc<Semaphore>,
    worker_count: usize,
    buffers: Mutex<Vec<Vec<Block>>>,
    queued: AtomicUsize,
    max_queued: usize,
    runs: AtomicUsize,
    /// Resolved when the hasher is built (`keyward::metrics`).
    metrics: HashMetrics,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.inner.params)
            .field("workers", &self.inner.worker_count)
            .field("max_queued", &self.inner.max_queued)
            .finish()
    }
}

impl Hasher {
    /// A hasher with one worker per core and a queue of 64 waiting jobs per worker.
    ///
    /// # Errors
    /// [`InvalidValue`] when the parameters are not valid Argon2 parameters.
    pub fn new(params: HashParams) -> Result<Self, InvalidValue> {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_workers(params, workers, workers * 64)
    }

    /// A hasher with `workers` concurrent Argon2 computations and at most `max_queued` jobs
    /// waiting; beyond that, calls fail fast with [`HashError::Overloaded`].
    ///
    /// # Errors
    /// [`InvalidValue`] when the parameters are invalid or `workers` is zero.
    pub fn with_workers(
        params: HashParams,
        workers: usize,
        max_queued: usize,
    ) -> Result<Self, InvalidValue> {
        if workers == 0 {
            return Err(InvalidValue::new(
                ValueKind::Config,
                "the hasher needs at least one worker",
            ));
        }
        let argon_params = params.to_argon2()?;
        Ok(Self {
            inner: Arc::new(HasherInner {
                params,
                argon_params,
                workers: Arc::new(Semaphore::new(workers)),
                worker_count: workers,
                buffers: Mutex::new(Vec::new()),
                queued: AtomicUsize::new(0),
                max_queued,
                runs: AtomicUsize::new(0),
                metrics: HashMetrics::new(),
            }),
        })
    }

    /// How many Argon2 computations this hasher has run (a metric, and how tests prove a
    /// path runs no Argon2).
    pub fn runs(&self) -> usize {
        self.inner.runs.load(Ordering::Relaxed)
    }

    /// How many Argon2 computations run at once (the size of the hashing pool).
    pub fn workers(&self) -> usize {
        self.inner.worker_count
    }

    /// The policy parameters new hashes are made with.
    pub fn params(&self) -> HashParams {
        self.inner.params
    }

    /// Hashes a secret into a PHC string with a fresh random salt.
    ///
    /// # Errors
    /// [`HashError::Overloaded`] when the queue is full; another [`HashError`] when
    /// hashing fails.
    pub async fn hash(&self, secret: &[u8]) -> Result<SecretHash, HashError> {
        self.hash_for(secret, HashPurpose::Issue).await
    }

    /// [`Hasher::hash`], counted under `purpose` in the hashing metrics.
    pub(crate) async fn hash_for(
        &self,
        secret: &[u8],
        purpose: HashPurpose,
    ) -> Result<SecretHash, HashError> {
        let mut salt = [0u8; SALT_LEN];
        rand::rngs::SysRng
            .try_fill_bytes(&mut salt)
            .map_err(|e| HashError::Argon2(format!("salt generation failed: {e}")))?;
        let params = self.inner.argon_params.clone();
        let secret = Zeroizing::new(secret.to_vec());
        let out = self
            .run(purpose, params.clone(), move |argon, blocks| {
                let mut out = Zeroizing::new([0u8; OUTPUT_LEN]);
                argon
                    .hash_password_into_with_memory(&secret, &salt, &mut out[..], blocks)
                    .map_err(|e| HashError::Argon2(e.to_string()))?;
                Ok((salt, *out))
            })
            .await?;
        let (salt, digest) = out;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)
                .map_err(|e| HashError::Argon2(e.to_string()))?,
            salt: Some(Salt::new(&salt).map_err(|e| HashError::Argon2(e.to_string()))?),
            hash: Some(Output::new(&digest).map_err(|e| HashError::Argon2(e.to_string()))?),
        };
        Ok(SecretHash(phc.to_string()))
    }

    /// Checks a secret against a stored PHC string, in constant time, with the parameters the
    /// string names; reports whether the hash is obsolete under the current policy.
    ///
    /// # Errors
    /// [`HashError::Overloaded`] when the queue is full; another [`HashError`] when the stored string is
    /// unreadable or hashing fails.
    pub async fn verify(&self, secret: &[u8], stored: &SecretHash) -> Result<Verdict, HashError> {
        let parsed =
            PasswordHash::new(stored.as_str()).map_err(|e| HashError::Unreadable(e.to_string()))?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
            .map_err(|e| HashError::Unreadable(e.to_string()))?;
        let version = Version::try_from(parsed.version.unwrap_or(0x13))
            .map_err(|e| HashError::Unreadable(e.to_string()))?;
        let params = Params::try_from(&parsed).map_err(|e| HashError::Unreadable(e.to_string()))?;
        let salt = parsed
            .salt
            .ok_or_else(|| HashError::Unreadable("no salt".into()))?;
        let expected = parsed
            .hash
            .ok_or_else(|| HashError::Unreadable("no hash".into()))?;
        let used = HashParams {
            m_cost: params.m_cost(),
            t_cost: params.t_cost(),
            p_cost: params.p_cost(),
        };
        let obsolete = algorithm != Algorithm::Argon2id
            || version != Version::V0x13
            || self.inner.params.is_stronger_than(&used);
        let secret = Zeroizing::new(secret.to_vec());
        let matches = self
            .run_with(
                HashPurpose::Verify,
                algorithm,
                version,
                params,
                move |argon, blocks| {
                    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
                    argon
                        .hash_password_into_with_memory(&secret, salt.as_ref(), &mut out, blocks)
                        .map_err(|e| HashError::Argon2(e.to_string()))?;
                    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
                },
            )
            .await?;
        Ok(Verdict { matches, obsolete })
    }

    async fn run<T, F>(&self, purpose: HashPurpose, params: Params, job: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce(&Argon2<'static>, &mut [Block]) -> Result<T, HashError> + Send + 'static,
    {
        self.run_with(purpose, Algorithm::Argon2id, Version::V0x13, params, job)
            .await
    }

    async fn run_with<T, F>(
        &self,
        purpose: HashPurpose,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        job: F,
    ) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce(&Argon2<'static>, &mut [Block]) -> Result<T, HashError> + Send + 'static,
    {
        let inner = &self.inner;
        if inner.queued.fetch_add(1, Ordering::AcqRel) >= inner.max_queued + inner.worker_count {
            inner.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Overloaded);
        }
        inner.metrics.queue_depth.increment(1.0);
        let permit = inner.workers.clone().acquire_owned().await;
        let Ok(permit) = permit else {
            inner.queued.fetch_sub(1, Ordering::AcqRel);
            inner.metrics.queue_depth.decrement(1.0);
            return Err(HashError::Worker);
        };
        let blocks_needed = params.block_count();
        let pooled = blocks_needed == inner.argon_params.block_count();
        let mut blocks = if pooled {
            inner
                .buffers
                .lock()
                .ok()
                .and_then(|mut b| b.pop())
                .unwrap_or_else(|| vec![Block::default(); blocks_needed])
        } else {
            vec![Block::default(); blocks_needed]
        };
        let this = self.clone();
        inner.runs.fetch_add(1, Ordering::Relaxed);
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let argon = Argon2::new(algorithm, version, params);
            let started = std::time::Instant::now();
            let out = job(&argon, &mut blocks);
            this.inner.metrics.ran(purpose, started.elapsed());
            if pooled && let Ok(mut pool) = this.inner.buffers.lock() {
                pool.push(blocks);
            }
            out
        })
        .await;
        inner.queued.fetch_sub(1, Ordering::AcqRel);
        inner.metrics.queue_depth.decrement(1.0);
        match result {
            Ok(r) => r,
            Err(_) => Err(HashError::Worker),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 43] = b"abcdefghijABCDEFGHIJ0123456789abcdefghijXYZ";

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    /// Known answers made by argon2-cffi 25.1 (the reference C library):
    /// `argon2.low_level.hash_secret(SECRET, b"saltsaltsaltsalt", time_cost=t,
    /// memory_cost=m, parallelism=1, hash_len=32, type=Type.ID)`.
    const REFERENCE_LIGHT: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$X34BrkThJYMu+rIISZMN1uQlJp94vR8NMk4ILKRmdLY";
    const REFERENCE_OWASP: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$0JfuRsWbkw4dtE5IBewAFGIYb+MHjIL4t/gSiBL5PtE";

    #[test]
    fn verifies_hashes_made_by_the_reference_implementation() {
        rt().block_on(async {
            let h = Hasher::new(HashParams::default()).unwrap();
            for phc in [REFERENCE_LIGHT, REFERENCE_OWASP] {
                let stored = SecretHash::from_phc(phc).unwrap();
                assert!(h.verify(SECRET, &stored).await.unwrap().matches, "{phc}");
                assert!(!h.verify(&SECRET[..42], &stored).await.unwrap().matches);
            }
            let light = SecretHash::from_phc(REFERENCE_LIGHT).unwrap();
            assert!(h.verify(SECRET, &light).await.unwrap().obsolete);
            let owasp = SecretHash::from_phc(REFERENCE_OWASP).unwrap();
            assert!(!h.verify(SECRET, &owasp).await.unwrap().obsolete);
        });
    }

    #[test]
    fn overload_is_reported_not_queued_without_bound() {
        rt().block_on(async {
            let h = Hasher::with_workers(HashParams::INSECURE_TEST_ONLY, 1, 0).unwrap();
            // With one worker and no queue, a second concurrent job is refused.
            let blocker = h.inner.workers.clone().acquire_owned().await.unwrap();
            h.inner.queued.fetch_add(1, Ordering::AcqRel);
            assert!(matches!(h.hash(SECRET).await, Err(HashError::Overloaded)));
            h.inner.queued.fetch_sub(1, Ordering::AcqRel);
            drop(blocker);
            assert!(h.hash(SECRET).await.is_ok());
        });
    }

    #[test]
    fn hashes_are_phc_strings_that_verify_and_reject_other_secrets() {
        rt().block_on(async {
            let h = Hasher::new(HashParams::INSECURE_TEST_ONLY).unwrap();
            let phc = h.hash(SECRET).await.unwrap();
            assert!(phc.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
            assert_eq!(phc.as_str().split('$').count(), 6);
            assert!(h.verify(SECRET, &phc).await.unwrap().matches);
            let mut other = *SECRET;
            other[42] = b'Q';
            assert!(!h.verify(&other, &phc).await.unwrap().matches);
            let again = h.hash(SECRET).await.unwrap();
            assert_ne!(again, phc, "each hash gets a fresh salt");
        });
    }

    #[test]
    fn weaker_stored_parameters_are_reported_obsolete() {
        rt().block_on(async {
            let weak = Hasher::new(HashParams::INSECURE_TEST_ONLY).unwrap();
            let phc = weak.hash(SECRET).await.unwrap();
            let strong = Hasher::new(HashParams {
                m_cost: 128,
                t_cost: 2,
                p_cost: 1,
            })
            .unwrap();
            let v = strong.verify(SECRET, &phc).await.unwrap();
            assert!(v.matches);
            assert!(v.obsolete);
            assert!(!weak.verify(SECRET, &phc).await.unwrap().obsolete);
        });
    }

    #[test]
    fn unreadable_stored_hash_is_a_typed_error() {
        assert!(matches!(
            SecretHash::from_phc("not a hash"),
            Err(HashError::Unreadable(_))
        ));
    }

    #[test]
    fn debug_of_a_hash_shows_parameters_only() {
        rt().block_on(async {
            let h = Hasher::new(HashParams::INSECURE_TEST_ONLY).unwrap();
            let phc = h.hash(SECRET).await.unwrap();
            let dbg = format!("{phc:?}");
            assert!(dbg.contains("m=64,t=1,p=1"));
            let digest = phc.as_str().rsplit('$').next().unwrap();
            assert!(!dbg.contains(digest));
        });
    }
}
