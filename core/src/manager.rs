//! The [`KeyManager`]: issue, verify, revoke, rotate, list and expire keys over any
//! [`KeyStore`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::task::AbortHandle;

use crate::cache::{CacheConfig, Entry, VerifyCache, establish, watch_changes};
use crate::quota::{Quota, QuotaUsage, RateLimiters};
use crate::store::{Consumption, UsageBucket};

use crate::error::{AuthError, Error, InvalidValue, ValueKind};
use crate::hash::{HashParams, Hasher, SecretHash};
use crate::key::{ApiKey, Environment, KeyId, MaskedKey, Prefix, Project};
use crate::scope::ScopeSet;
use crate::store::{KeyChange, KeyLimits, KeyRecord, KeyStore, ListQuery};
use crate::time::{Clock, SystemClock, Timestamp};

const MAX_NAME_LEN: usize = 128;
const MAX_METADATA_LEN: usize = 16 * 1024;

/// What an endpoint requires of a key beyond being valid.
///
/// ```
/// let req = keyward::Requirements::scopes(["write"])?.with_project("web-app".parse()?);
/// assert_eq!(req.scopes.to_string(), "write");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Scopes the key must all hold.
    pub scopes: ScopeSet,
    /// The project the key must belong to, if the endpoint is project-specific.
    pub project: Option<Project>,
}

impl Requirements {
    /// No scope and no project required: any valid key passes.
    pub fn none() -> Self {
        Self::default()
    }

    /// Requires these scopes.
    ///
    /// # Errors
    /// [`InvalidValue`] for an invalid scope name.
    pub fn scopes<I, S>(names: I) -> Result<Self, InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self {
            scopes: ScopeSet::parse(names)?,
            project: None,
        })
    }

    /// Also requires this project.
    pub fn with_project(mut self, project: Project) -> Self {
        self.project = Some(project);
        self
    }
}

/// Who a verified key belongs to and what it may do. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The key's public id.
    pub id: KeyId,
    /// The key's prefix.
    pub prefix: Prefix,
    /// The project the key is bound to: where its data belongs.
    pub project: Project,
    /// The environment the key is bound to.
    pub environment: Environment,
    /// The scopes the key holds.
    pub scopes: ScopeSet,
    /// The key's name.
    pub name: String,
    /// The key's metadata.
    pub metadata: Option<serde_json::Value>,
    /// When the key expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// The key's usage limits.
    pub limits: KeyLimits,
    /// When the key was issued.
    pub created_at: Timestamp,
}

impl Identity {
    /// The identity of a record, copying only what it exposes (not the hash).
    fn of(r: &KeyRecord) -> Self {
        Self {
            created_at: r.created_at,
            id: r.id,
            prefix: r.prefix,
            project: r.project.clone(),
            environment: r.environment,
            scopes: r.scopes.clone(),
            name: r.name.clone(),
            metadata: r.metadata.clone(),
            expires_at: r.expires_at,
            limits: r.limits.clone(),
        }
    }

    fn from_record(r: KeyRecord) -> Self {
        Self {
            created_at: r.created_at,
            id: r.id,
            prefix: r.prefix,
            project: r.project,
            environment: r.environment,
            scopes: r.scopes,
            name: r.name,
            metadata: r.metadata,
            expires_at: r.expires_at,
            limits: r.limits,
        }
    }
}

/// The public view of a key for lists and dashboards: masked, with no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The public id.
    pub id: KeyId,
    /// The masked key, e.g. `av_prd_7Kq2mZ9xA1bC_…`.
    pub masked: String,
    /// The project.
    pub project: Project,
    /// The environment.
    pub environment: Environment,
    /// The scopes.
    pub scopes: ScopeSet,
    /// The name.
    pub name: String,
    /// The metadata.
    pub metadata: Option<serde_json::Value>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    /// When issued.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
    /// When last used.
    pub last_used_at: Option<Timestamp>,
    /// The key it replaced by rotation.
    pub rotated_from: Option<KeyId>,
    /// Usage limits.
    pub limits: KeyLimits,
}

impl KeyInfo {
    /// The public view of `r` at `now`.
    pub fn from_record(r: &KeyRecord, now: Timestamp) -> Self {
        let status = if r.revoked_at.is_some() {
            "revoked"
        } else if r.is_active(now) {
            "active"
        } else {
            "expired"
        };
        Self {
            id: r.id,
            masked: MaskedKey {
                prefix: r.prefix,
                environment: r.environment,
                id: r.id,
            }
            .to_string(),
            project: r.project.clone(),
            environment: r.environment,
            scopes: r.scopes.clone(),
            name: r.name.clone(),
            metadata: r.metadata.clone(),
            status,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
            rotated_from: r.rotated_from,
            limits: r.limits.clone(),
        }
    }
}

/// What to issue.
///
/// ```
/// use keyward::IssueRequest;
/// let req = IssueRequest::new("web-app".parse()?, "dev".parse()?)
///     .scopes(["write"])?
///     .name("ingestion")
///     .expires_in(std::time::Duration::from_secs(30 * 86400));
/// assert_eq!(req.scopes.to_string(), "write");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IssueRequest {
    /// The project to bind the key to.
    pub project: Project,
    /// The environment to bind the key to.
    pub environment: Environment,
    /// The scopes to grant.
    pub scopes: ScopeSet,
    /// A human-readable name (at most 128 characters, no control characters).
    pub name: String,
    /// Free-form JSON metadata (at most 16 KiB).
    pub metadata: Option<serde_json::Value>,
    /// How long until the key expires.
    pub expires_in: Option<Duration>,
    /// Usage limits.
    pub limits: KeyLimits,
}

impl IssueRequest {
    /// A key for `project` in `environment`, with no scopes, no name and no expiry.
    pub fn new(project: Project, environment: Environment) -> Self {
        Self {
            project,
            environment,
            scopes: ScopeSet::new(),
            name: String::new(),
            metadata: None,
            expires_in: None,
            limits: KeyLimits::default(),
        }
    }

    /// Grants these scopes.
    ///
    /// # Errors
    /// [`InvalidValue`] for an invalid scope name.
    pub fn scopes<I, S>(mut self, names: I) -> Result<Self, InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.scopes = ScopeSet::parse(names)?;
        Ok(self)
    }

    /// Names the key.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Attaches metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Expires the key this long after issue.
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = Some(d);
        self
    }

    /// Sets usage limits.
    pub fn limits(mut self, limits: KeyLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// A newly issued key: the full key, to be shown once, and its record.
pub struct IssuedKey {
    /// The full key. Show it to the user once; it cannot be recovered later.
    pub key: ApiKey,
    /// The stored record (hash only).
    pub record: KeyRecord,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key", &self.key)
            .field("record", &self.record)
            .finish()
    }
}

/// Builds a [`KeyManager`].
#[derive(Debug)]
pub struct KeyManagerBuilder {
    store: Arc<dyn KeyStore>,
    prefix: Prefix,
    environments: Vec<Environment>,
    hash_params: HashParams,
    clock: Arc<dyn Clock>,
    hasher: Option<Hasher>,
    cache: Option<CacheConfig>,
    usage_flush_interval: Duration,
}

impl KeyManagerBuilder {
    /// Verify cache settings (the cache is on by default with [`CacheConfig::default`]).
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Turns the verify cache off: every verify reads the store and runs Argon2.
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// How often last-used times are written to the store in one batch (default 5 s). Call
    /// [`KeyManager::shutdown`] on graceful shutdown to write the last batch.
    pub fn usage_flush_interval(mut self, interval: Duration) -> Self {
        self.usage_flush_interval = interval;
        self
    }

    /// The prefix new keys get and verified keys must have (default `kw`).
    pub fn prefix(mut self, prefix: Prefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// An environment this service serves: keys of other environments are rejected before
    /// any store access. Call once per environment. With none, every key is rejected.
    pub fn serve(mut self, environment: Environment) -> Self {
        if !self.environments.contains(&environment) {
            self.environments.push(environment);
        }
        self
    }

    /// Argon2id parameters for new hashes (default: OWASP minimum). Keys hashed with weaker
    /// parameters are re-hashed on their next successful verify.
    pub fn hash_params(mut self, params: HashParams) -> Self {
        self.hash_params = params;
        self
    }

    /// Shares a [`Hasher`] (its worker pool) between managers.
    pub fn hasher(mut self, hasher: Hasher) -> Self {
        self.hasher = Some(hasher);
        self
    }

    /// The clock (default: system time). Inject a [`ManualClock`](crate::ManualClock) in tests.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the manager. Background tasks (cache coherence, last-used flushing) start on
    /// the first verify, on the Tokio runtime it runs on.
    ///
    /// # Errors
    /// [`InvalidValue`] when the hash parameters are invalid or the random generator fails.
    pub fn build(self) -> Result<KeyManager, InvalidValue> {
        let hasher = match self.hasher {
            Some(h) => h,
            None => Hasher::new(self.hash_params)?,
        };
        let rate_limiters = RateLimiters::new(Arc::clone(&self.clock));
        let cache = match self.cache {
            Some(config) => Some(Arc::new(VerifyCache::new(config).map_err(|e| {
                InvalidValue {
                    kind: ValueKind::Config,
                    reason: e.to_string(),
                }
            })?)),
            None => None,
        };
        Ok(KeyManager {
            inner: Arc::new(Inner {
                store: self.store,
                prefix: self.prefix,
                environments: self.environments,
                hasher,
                clock: self.clock,
                decoy: OnceCell::new(),
                cache,
                usage: Arc::new(UsageBatch::default()),
                usage_flush_interval: self.usage_flush_interval,
                started: OnceCell::new(),
                tasks: Mutex::new(Vec::new()),
                rate_limiters,
                project_quotas: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(QUOTA_SETTING_TTL)
                    .build(),
            }),
        })
    }
}

/// Issues, verifies, revokes, rotates and lists keys. Cheap to clone (an `Arc` inside).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::{HashParams, IssueRequest, KeyManager, Requirements, AuthError, Error};
///
/// let store = keyward_memory::MemoryStore::new(); // or keyward-sqlite, keyward-postgres
/// let manager = KeyManager::builder(store)
///     .prefix("av".parse()?)
///     .serve("dev".parse()?)
///     .hash_params(HashParams::INSECURE_TEST_ONLY) // tests only: the default is OWASP's
///     .build()?;
///
/// let issued = manager
///     .issue(IssueRequest::new("web-app".parse()?, "dev".parse()?).scopes(["write"])?)
///     .await?;
/// let text = issued.key.expose_secret(); // show once
///
/// let who = manager.verify(text, &Requirements::scopes(["write"])?).await?;
/// assert_eq!(who.project.as_str(), "web-app");
///
/// let err = manager.verify(text, &Requirements::scopes(["read"])?).await.unwrap_err();
/// assert!(matches!(err, Error::Auth(AuthError::InsufficientScope { .. })));
///
/// manager.revoke(&who.id).await?;
/// assert!(matches!(
///     manager.verify(text, &Requirements::none()).await,
///     Err(Error::Auth(AuthError::Revoked { .. }))
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct KeyManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    prefix: Prefix,
    environments: Vec<Environment>,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    /// A hash of a random secret, verified against when the id is unknown, so an unknown id
    /// costs the same Argon2 work as a wrong secret.
    decoy: OnceCell<SecretHash>,
    cache: Option<Arc<VerifyCache>>,
    usage: Arc<UsageBatch>,
    usage_flush_interval: Duration,
    started: OnceCell<()>,
    tasks: Mutex<Vec<AbortHandle>>,
    rate_limiters: RateLimiters,
    /// Project quotas read from the store, kept for [`QUOTA_SETTING_TTL`].
    project_quotas: moka::sync::Cache<Project, Option<Quota>>,
}

/// How long a project's quota setting is cached: a changed limit takes effect within this
/// time in every instance (at once in the instance that changed it).
pub const QUOTA_SETTING_TTL: Duration = Duration::from_secs(10);

/// The events a batch was counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventsAccepted {
    /// Events counted.
    pub accepted: u64,
    /// The project's quota after counting, if it has one.
    pub project: Option<QuotaUsage>,
    /// The key's own quota after counting, if it has one.
    pub key: Option<QuotaUsage>,
}

/// Usage of a project, or of one key, in the current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// The project.
    pub project: Project,
    /// The project's event quota, if set.
    pub project_quota: Option<QuotaUsage>,
    /// Per key: its own event quota and credits, where set.
    pub keys: Vec<KeyUsage>,
}

/// One key's usage in the current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    /// The key's id.
    pub id: KeyId,
    /// The key's own event quota.
    pub quota: Option<QuotaUsage>,
    /// The key's credits.
    pub credits: Option<QuotaUsage>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

/// Last-used times waiting to be written in one batch.
#[derive(Debug, Default)]
struct UsageBatch {
    pending: Mutex<HashMap<KeyId, Timestamp>>,
}

impl UsageBatch {
    fn note(&self, id: KeyId, at: Timestamp) {
        if let Ok(mut p) = self.pending.lock() {
            let slot = p.entry(id).or_insert(at);
            *slot = (*slot).max(at);
        }
    }

    async fn flush(&self, store: &dyn KeyStore) -> Result<(), crate::StoreError> {
        let batch: Vec<(KeyId, Timestamp)> = match self.pending.lock() {
            Ok(mut p) => p.drain().collect(),
            Err(_) => return Ok(()),
        };
        if batch.is_empty() {
            return Ok(());
        }
        let result = store.record_usage(&batch).await;
        if result.is_err() {
            // Keep them for the next flush.
            for (id, at) in batch {
                self.note(id, at);
            }
        }
        result
    }
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("store", &self.inner.store)
            .field("prefix", &self.inner.prefix)
            .field("environments", &self.inner.environments)
            .field("hasher", &self.inner.hasher)
            .finish()
    }
}

impl KeyManager {
    /// Starts building a manager over `store`.
    pub fn builder<S: KeyStore>(store: S) -> KeyManagerBuilder {
        Self::builder_arc(Arc::new(store))
    }

    /// Starts building a manager over a shared store.
    pub fn builder_arc(store: Arc<dyn KeyStore>) -> KeyManagerBuilder {
        KeyManagerBuilder {
            store,
            prefix: Prefix::default(),
            environments: Vec::new(),
            hash_params: HashParams::default(),
            clock: Arc::new(SystemClock),
            hasher: None,
            cache: Some(CacheConfig::default()),
            usage_flush_interval: Duration::from_secs(5),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    /// The prefix this manager issues and accepts.
    pub fn prefix(&self) -> Prefix {
        self.inner.prefix
    }

    /// The environments this manager accepts at verify.
    pub fn environments(&self) -> &[Environment] {
        &self.inner.environments
    }

    /// The hasher (its [`Hasher::runs`] counts Argon2 computations).
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The current time on the manager's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Issues a new key. The returned [`IssuedKey::key`] is the only copy of the secret.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name or metadata; [`Error::Store`] when the store fails.
    #[tracing::instrument(skip_all, fields(project = %req.project, environment = %req.environment))]
    pub async fn issue(&self, req: IssueRequest) -> Result<IssuedKey, Error> {
        validate_key_name(&req.name)?;
        validate_metadata(req.metadata.as_ref())?;
        let now = self.now();
        // A 72-bit random id colliding is rare but possible: retry with a fresh one.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let key = ApiKey::generate(self.inner.prefix, req.environment)?;
            let secret_hash = self.inner.hasher.hash(key.secret_bytes()).await?;
            let record = KeyRecord {
                id: key.id(),
                prefix: self.inner.prefix,
                project: req.project.clone(),
                environment: req.environment,
                scopes: req.scopes.clone(),
                name: req.name.clone(),
                metadata: req.metadata.clone(),
                created_at: now,
                expires_at: req.expires_in.map(|d| now.saturating_add(d)),
                revoked_at: None,
                last_used_at: None,
                secret_hash,
                rotated_from: None,
                limits: req.limits.clone(),
            };
            match self.inner.store.insert(&record).await {
                Ok(()) => {
                    tracing::info!(key.id = %record.id, "issued API key");
                    return Ok(IssuedKey { key, record });
                }
                Err(crate::StoreError::AlreadyExists(_)) if attempts < 3 => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Verifies a presented key against the requirements (DESIGN §4): parse and checksum,
    /// prefix and environment (no store access), store lookup, constant-time Argon2 check, and
    /// only then revoked / expired / project / scope outcomes.
    ///
    /// # Errors
    /// [`Error::Auth`] with the credential's outcome; [`Error::Store`] when the store fails;
    /// [`Error::Overloaded`] when too many verifications are queued.
    pub async fn verify(&self, presented: &str, req: &Requirements) -> Result<Identity, Error> {
        let key = ApiKey::parse(presented)?;
        self.verify_key(&key, req).await
    }

    /// Like [`KeyManager::verify`] for an already parsed key.
    ///
    /// # Errors
    /// As [`KeyManager::verify`].
    pub async fn verify_key(&self, key: &ApiKey, req: &Requirements) -> Result<Identity, Error> {
        if let Some(outcome) = self.verify_cached(key, req) {
            return outcome;
        }
        // Boxed: the cold path's state (store read, single flight, Argon2) is large, and
        // keeping it out of this future keeps every warm call small.
        Box::pin(self.verify_uncached(key, req)).await
    }

    /// Verifies from the verify cache alone, without waiting for anything (DESIGN §5):
    /// `Some(outcome)` when the key's text or the cache decides, `None` when the store is
    /// needed, i.e. the id is not cached (a cold verify) or the key spends credits (charged
    /// in the store). Call [`KeyManager::verify_key`] on `None`.
    ///
    /// The outcome is the one [`KeyManager::verify_key`] would give: a wrong prefix or
    /// environment, a wrong secret for a cached id (constant-time digest comparison, no
    /// Argon2), a revoked or expired key, missing scopes, the rate limit. This is for
    /// synchronous fast paths such as a tower layer that only allocates a future on a miss.
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
        if let Err(e) = self.check_format(key) {
            return Some(Err(e.into()));
        }
        let cache = self.inner.cache.as_ref()?;
        let entry = cache.get(&key.id())?;
        if entry.record.limits.credits.is_some() {
            return None;
        }
        let digest = cache.digest(key.secret_bytes());
        Some(
            self.accept_warm(key, &entry, &digest, req)
                .and_then(|who| self.check_rate_limit(&who).map(|()| who)),
        )
    }

    async fn verify_uncached(&self, key: &ApiKey, req: &Requirements) -> Result<Identity, Error> {
        let identity = self.authenticate(key, req).await?;
        self.enforce_limits(&identity).await?;
        Ok(identity)
    }

    /// The per-process rate limit of a proven key.
    fn check_rate_limit(&self, who: &Identity) -> Result<(), Error> {
        if let Some(limit) = who.limits.rate_limit
            && let Err(retry_after) = self.inner.rate_limiters.check(who.id, limit)
        {
            return Err(AuthError::RateLimited { retry_after }.into());
        }
        Ok(())
    }

    /// Rate limit (per process), then credits (in the store): only for a proven key.
    async fn enforce_limits(&self, who: &Identity) -> Result<(), Error> {
        self.check_rate_limit(who)?;
        if let Some(credits) = who.limits.credits {
            let (bucket, limit, resets_at) = self.credit_bucket(who.id, who.created_at, credits);
            if let Consumption::Refused { .. } = self.inner.store.consume(&bucket, 1, limit).await?
            {
                return Err(AuthError::CreditsExhausted {
                    id: who.id,
                    resets_at,
                }
                .into());
            }
        }
        Ok(())
    }

    fn credit_bucket(
        &self,
        id: KeyId,
        created_at: Timestamp,
        credits: crate::quota::Credits,
    ) -> (UsageBucket, u64, Option<Timestamp>) {
        let counter = format!("key:{id}:credits");
        match credits.refill {
            None => (
                UsageBucket {
                    counter,
                    period_start: Timestamp::from_unix_millis(0),
                },
                credits.amount,
                None,
            ),
            Some(refill) => {
                let (start, end) = refill.period.window(self.now());
                let limit = if created_at >= start {
                    credits.amount
                } else {
                    refill.amount
                };
                (
                    UsageBucket {
                        counter,
                        period_start: start,
                    },
                    limit,
                    Some(end),
                )
            }
        }
    }

    fn event_bucket(&self, counter: String, quota: Quota) -> (UsageBucket, Timestamp) {
        let (start, end) = quota.period.window(self.now());
        (
            UsageBucket {
                counter,
                period_start: start,
            },
            end,
        )
    }

    /// Counts `events` against the key's own quota and its project's quota (both atomic in
    /// the store, shared by every instance). A batch that would cross either limit is refused
    /// whole with [`AuthError::QuotaExceeded`] (HTTP 429), and nothing of it is counted.
    ///
    /// # Errors
    /// [`Error::Auth`] with `QuotaExceeded`; [`Error::Store`] when the store fails.
    pub async fn consume_events(
        &self,
        who: &Identity,
        events: u64,
    ) -> Result<EventsAccepted, Error> {
        let mut accepted = EventsAccepted {
            accepted: events,
            project: None,
            key: None,
        };
        if events == 0 {
            return Ok(accepted);
        }
        let mut key_bucket = None;
        if let Some(quota) = who.limits.quota {
            let (bucket, end) = self.event_bucket(format!("key:{}:events", who.id), quota);
            match self
                .inner
                .store
                .consume(&bucket, events, quota.limit)
                .await?
            {
                Consumption::Granted { used } => {
                    accepted.key = Some(QuotaUsage::new(
                        quota.limit,
                        used,
                        bucket.period_start,
                        Some(end),
                    ));
                    key_bucket = Some(bucket);
                }
                Consumption::Refused { used } => {
                    return Err(AuthError::QuotaExceeded {
                        scope: "key",
                        limit: quota.limit,
                        used,
                        requested: events,
                        resets_at: end,
                    }
                    .into());
                }
            }
        }
        if let Some(quota) = self.project_quota(&who.project).await? {
            let (bucket, end) = self.event_bucket(format!("project:{}:events", who.project), quota);
            match self.inner.store.consume(&bucket, events, quota.limit).await {
                Ok(Consumption::Granted { used }) => {
                    accepted.project = Some(QuotaUsage::new(
                        quota.limit,
                        used,
                        bucket.period_start,
                        Some(end),
                    ));
                }
                refused_or_failed => {
                    // Give the key's units back: the batch is refused whole.
                    if let Some(kb) = &key_bucket
                        && let Err(e) = self.inner.store.release(kb, events).await
                    {
                        tracing::warn!(key.id = %who.id, error = %e, "could not give back key quota units");
                    }
                    return match refused_or_failed? {
                        Consumption::Refused { used } => Err(AuthError::QuotaExceeded {
                            scope: "project",
                            limit: quota.limit,
                            used,
                            requested: events,
                            resets_at: end,
                        }
                        .into()),
                        Consumption::Granted { .. } => Ok(accepted),
                    };
                }
            }
        }
        Ok(accepted)
    }

    fn quota_setting(project: &Project) -> String {
        format!("quota:project:{project}")
    }

    /// Sets (or, with `None`, removes) a project's event quota, shared by all its keys.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn set_project_quota(
        &self,
        project: &Project,
        quota: Option<Quota>,
    ) -> Result<(), Error> {
        let value = quota
            .map(|q| serde_json::to_value(q).map_err(|e| crate::StoreError::corrupt("settings", e)))
            .transpose()?;
        self.inner
            .store
            .put_setting(&Self::quota_setting(project), value.as_ref())
            .await?;
        self.inner.project_quotas.insert(project.clone(), quota);
        Ok(())
    }

    /// A project's event quota (cached for [`QUOTA_SETTING_TTL`]).
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails or the setting is unreadable.
    pub async fn project_quota(&self, project: &Project) -> Result<Option<Quota>, Error> {
        if let Some(q) = self.inner.project_quotas.get(project) {
            return Ok(q);
        }
        let quota = match self
            .inner
            .store
            .get_setting(&Self::quota_setting(project))
            .await?
        {
            Some(v) => Some(
                serde_json::from_value::<Quota>(v)
                    .map_err(|e| crate::StoreError::corrupt("settings", e))?,
            ),
            None => None,
        };
        self.inner.project_quotas.insert(project.clone(), quota);
        Ok(quota)
    }

    /// Usage in the current period of a project's quota and of its keys' quotas and credits.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn usage(&self, project: &Project) -> Result<UsageReport, Error> {
        let project_quota = match self.project_quota(project).await? {
            Some(q) => {
                let (bucket, end) = self.event_bucket(format!("project:{project}:events"), q);
                let used = self.inner.store.usage(&bucket).await?;
                Some(QuotaUsage::new(
                    q.limit,
                    used,
                    bucket.period_start,
                    Some(end),
                ))
            }
            None => None,
        };
        let mut keys = Vec::new();
        let mut query = ListQuery {
            project: Some(project.clone()),
            limit: 500,
            ..ListQuery::default()
        };
        loop {
            let page = self.inner.store.list(&query).await?;
            let Some(last) = page.last() else { break };
            query.after = Some((last.created_at, last.id));
            for r in &page {
                if r.limits.quota.is_none() && r.limits.credits.is_none() {
                    continue;
                }
                keys.push(self.key_usage_of(r).await?);
            }
        }
        Ok(UsageReport {
            project: project.clone(),
            project_quota,
            keys,
        })
    }

    async fn key_usage_of(&self, r: &KeyRecord) -> Result<KeyUsage, Error> {
        let quota = match r.limits.quota {
            Some(q) => {
                let (bucket, end) = self.event_bucket(format!("key:{}:events", r.id), q);
                Some(QuotaUsage::new(
                    q.limit,
                    self.inner.store.usage(&bucket).await?,
                    bucket.period_start,
                    Some(end),
                ))
            }
            None => None,
        };
        let credits = match r.limits.credits {
            Some(c) => {
                let (bucket, limit, resets_at) = self.credit_bucket(r.id, r.created_at, c);
                Some(QuotaUsage::new(
                    limit,
                    self.inner.store.usage(&bucket).await?,
                    bucket.period_start,
                    resets_at,
                ))
            }
            None => None,
        };
        Ok(KeyUsage {
            id: r.id,
            quota,
            credits,
        })
    }

    /// Authentication without usage limits, after [`KeyManager::verify_cached`] (which has
    /// checked the format) could not decide.
    async fn authenticate(&self, key: &ApiKey, req: &Requirements) -> Result<Identity, Error> {
        self.inner
            .started
            .get_or_init(|| self.start_background())
            .await;
        let Some(cache) = &self.inner.cache else {
            let (record, obsolete) = self.cold_verify(key).await?;
            return self.accept(key, record, obsolete, req).await;
        };
        let id = key.id();
        let digest = cache.digest(key.secret_bytes());
        if let Some(entry) = cache.get(&id) {
            return self.accept_warm(key, &entry, &digest, req);
        }
        if let Some(expired) = cache.get_expired(&id)
            && expired.digest.matches(&digest)
            && let Some(outcome) = self
                .revalidate(cache, key, &expired, digest.clone(), req)
                .await
        {
            return outcome;
        }
        if cache.too_many_failures(&id) {
            tracing::debug!(key.id = %id, "rejected API key: too many failed attempts");
            return Err(AuthError::RateLimited {
                retry_after: cache.config().failure_window,
            }
            .into());
        }
        // Single flight: concurrent cold verifies of one id run Argon2 once.
        let _flight = cache.lock_id(id).await;
        if let Some(entry) = cache.get(&id) {
            return self.accept_warm(key, &entry, &digest, req);
        }
        let epoch = cache.epoch();
        match self.cold_verify(key).await {
            Ok((record, obsolete)) => {
                cache.insert_if_unchanged(epoch, digest, record.clone(), obsolete);
                self.accept(key, record, obsolete, req).await
            }
            Err(Error::Auth(AuthError::Invalid)) => {
                cache.record_failure(&id);
                Err(AuthError::Invalid.into())
            }
            Err(e) => Err(e),
        }
    }

    /// A key whose cache entry outlived its TTL, presented with the secret that entry was
    /// verified with: one store read, and no Argon2 if the stored hash is still the one that
    /// secret was verified against (same PHC string: same salt, parameters and output). The
    /// fresh record decides the binding and the state; it is cached again. `None` when the hash
    /// changed, was due for a re-hash, or the key is gone: the caller verifies cold.
    ///
    /// So a TTL refresh costs a store read rather than an Argon2 per active key, and a key
    /// whose id someone floods with wrong secrets (the failed-attempt limit) keeps working
    /// for its holder on instances that cached it once.
    async fn revalidate(
        &self,
        cache: &VerifyCache,
        key: &ApiKey,
        expired: &Entry,
        digest: crate::cache::Digest,
        req: &Requirements,
    ) -> Option<Result<Identity, Error>> {
        if expired.obsolete {
            return None; // a re-hash is due: verify cold, which re-hashes
        }
        let epoch = cache.epoch();
        let record = match self.inner.store.get(&key.id()).await {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(e) => return Some(Err(e.into())),
        };
        if record.secret_hash != expired.record.secret_hash
            || !key.has_prefix(&record.prefix)
            || !key.has_environment(&record.environment)
        {
            return None;
        }
        tracing::trace!(key.id = %record.id, "revalidated an expired cache entry");
        cache.insert_if_unchanged(epoch, digest, record.clone(), false);
        Some(self.accept(key, record, false, req).await)
    }

    /// Store lookup and Argon2: the record if the secret and the binding match.
    async fn cold_verify(&self, key: &ApiKey) -> Result<(KeyRecord, bool), Error> {
        let id = key.id();
        let record = self.inner.store.get(&id).await?;
        let Some(record) = record else {
            // The same Argon2 work as a wrong secret. What remains is the store lookup itself
            // (a hit decodes a record): about 0.2% of a verify with test parameters, far less
            // with real ones (SECURITY.md, Timing). Ids are public in any case.
            let decoy = self.decoy().await?;
            let _ = self.inner.hasher.verify(key.secret_bytes(), decoy).await?;
            tracing::debug!(key.id = %id, "rejected API key: invalid");
            return Err(AuthError::Invalid.into());
        };
        let verdict = self
            .inner
            .hasher
            .verify(key.secret_bytes(), &record.secret_hash)
            .await?;
        // The checksum is no MAC: someone could rewrite the prefix or environment of a key
        // and fix the checksum. The record's binding is authoritative.
        if !verdict.matches
            || !key.has_prefix(&record.prefix)
            || !key.has_environment(&record.environment)
        {
            tracing::debug!(key.id = %id, "rejected API key: invalid");
            return Err(AuthError::Invalid.into());
        }
        Ok((record, verdict.obsolete))
    }

    fn accept_warm(
        &self,
        key: &ApiKey,
        entry: &Entry,
        digest: &crate::cache::Digest,
        req: &Requirements,
    ) -> Result<Identity, Error> {
        let record = &entry.record;
        if !entry.digest.matches(digest)
            || !key.has_prefix(&record.prefix)
            || !key.has_environment(&record.environment)
        {
            tracing::debug!(key.id = %record.id, "rejected API key: invalid (cached id)");
            return Err(AuthError::Invalid.into());
        }
        let now = self.now();
        check_state(record, now, req)?;
        // Queue the last-used time at most once per flush interval per key.
        let interval =
            i64::try_from(self.inner.usage_flush_interval.as_millis()).unwrap_or(i64::MAX);
        let noted = entry.noted_at.load(Ordering::Relaxed);
        if now.unix_millis().saturating_sub(noted) >= interval {
            entry.noted_at.store(now.unix_millis(), Ordering::Relaxed);
            self.inner.usage.note(record.id, now);
        }
        Ok(Identity::of(record))
    }

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
        self.inner.usage.note(record.id, now);
        tracing::debug!(key.id = %record.id, project = %record.project, "verified API key");
        Ok(Identity::from_record(record))
    }

    /// Starts the background tasks (once, on the current Tokio runtime): establishes the
    /// change-feed baseline before anything is cached, then follows the feed.
    async fn start_background(&self) {
        let mut handles = Vec::new();
        if let Some(cache) = &self.inner.cache {
            let feed = establish(self.inner.store.as_ref(), cache).await;
            let task = tokio::spawn(watch_changes(
                Arc::clone(&self.inner.store),
                Arc::clone(cache),
                feed,
            ));
            handles.push(task.abort_handle());
        }
        let (usage, store, every) = (
            Arc::clone(&self.inner.usage),
            Arc::clone(&self.inner.store),
            self.inner.usage_flush_interval,
        );
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = usage.flush(store.as_ref()).await {
                    tracing::warn!(error = %e, "could not record last-used times; will retry");
                }
            }
        });
        handles.push(task.abort_handle());
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.extend(handles);
        }
    }

    /// Writes pending last-used times to the store now.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails (the times are kept for the next flush).
    pub async fn flush_usage(&self) -> Result<(), Error> {
        Ok(self.inner.usage.flush(self.inner.store.as_ref()).await?)
    }

    /// Graceful shutdown: writes pending last-used times and stops background tasks.
    ///
    /// # Errors
    /// [`Error::Store`] when the final flush fails.
    pub async fn shutdown(&self) -> Result<(), Error> {
        if let Ok(tasks) = self.inner.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
        self.flush_usage().await
    }

    fn invalidate(&self, id: &KeyId) {
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(id);
        }
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

    async fn decoy(&self) -> Result<&SecretHash, Error> {
        self.inner
            .decoy
            .get_or_try_init(|| async {
                let key = ApiKey::generate(self.inner.prefix, Environment::new("decoy")?)?;
                self.inner.hasher.hash(key.secret_bytes()).await
            })
            .await
    }

    async fn upgrade_hash(&self, key: &ApiKey) {
        let result = async {
            let hash = self.inner.hasher.hash(key.secret_bytes()).await?;
            let change = KeyChange {
                secret_hash: Some(hash),
                ..KeyChange::default()
            };
            self.inner.store.update(&key.id(), &change).await?;
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

    /// Revokes a key, effective for every verify that starts after this returns. Idempotent:
    /// revoking a revoked key keeps the first revocation time.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Store`] when the store fails.
    #[tracing::instrument(skip_all, fields(key.id = %id))]
    pub async fn revoke(&self, id: &KeyId) -> Result<KeyInfo, Error> {
        let change = KeyChange {
            revoke_at: Some(self.now()),
            ..KeyChange::default()
        };
        let record = self.update(id, &change).await?;
        tracing::info!("revoked API key");
        Ok(KeyInfo::from_record(&record, self.now()))
    }

    /// Sets (or clears, with `None`) a key's expiry.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Store`] when the store fails.
    #[tracing::instrument(skip_all, fields(key.id = %id))]
    pub async fn set_expiry(&self, id: &KeyId, at: Option<Timestamp>) -> Result<KeyInfo, Error> {
        let change = KeyChange {
            expires_at: Some(at),
            ..KeyChange::default()
        };
        let record = self.update(id, &change).await?;
        Ok(KeyInfo::from_record(&record, self.now()))
    }

    /// Applies a change (scopes, name, metadata, limits…) to a key.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Invalid`] for a bad name or metadata;
    /// [`Error::Store`] when the store fails.
    pub async fn update(&self, id: &KeyId, change: &KeyChange) -> Result<KeyRecord, Error> {
        if let Some(name) = &change.name {
            validate_key_name(name)?;
        }
        if let Some(m) = &change.metadata {
            validate_metadata(m.as_ref())?;
        }
        let updated = self.inner.store.update(id, change).await;
        // Invalidate even on error: the change may have been applied before the failure.
        self.invalidate(id);
        updated?.ok_or(Error::NotFound(*id))
    }

    /// Rotates a key: issues a new key with the same binding, scopes, name, metadata, limits
    /// and expiry, and lets the old key work for `grace` longer (never longer than it would
    /// have). Rotating a revoked or expired key fails.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidState`] for a revoked or expired key,
    /// [`Error::Store`] when the store fails.
    #[tracing::instrument(skip_all, fields(key.id = %id))]
    pub async fn rotate(&self, id: &KeyId, grace: Duration) -> Result<IssuedKey, Error> {
        let old = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(Error::NotFound(*id))?;
        let now = self.now();
        if old.revoked_at.is_some() {
            return Err(Error::InvalidState {
                id: *id,
                reason: "it is revoked; issue a new key instead",
            });
        }
        if !old.is_active(now) {
            return Err(Error::InvalidState {
                id: *id,
                reason: "it has expired; issue a new key instead",
            });
        }
        let mut attempts = 0;
        let issued = loop {
            attempts += 1;
            let key = ApiKey::generate(old.prefix, old.environment)?;
            let record = KeyRecord {
                id: key.id(),
                created_at: now,
                revoked_at: None,
                last_used_at: None,
                secret_hash: self.inner.hasher.hash(key.secret_bytes()).await?,
                rotated_from: Some(old.id),
                ..old.clone()
            };
            match self.inner.store.insert(&record).await {
                Ok(()) => break IssuedKey { key, record },
                Err(crate::StoreError::AlreadyExists(_)) if attempts < 3 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let grace_end = now.saturating_add(grace);
        let old_expiry = old.expires_at.map_or(grace_end, |e| e.min(grace_end));
        let change = KeyChange {
            expires_at: Some(Some(old_expiry)),
            ..KeyChange::default()
        };
        self.update(id, &change).await?;
        tracing::info!(new_key.id = %issued.record.id, grace_end = %old_expiry, "rotated API key");
        Ok(issued)
    }

    /// Fetches one key's public view.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn get(&self, id: &KeyId) -> Result<Option<KeyInfo>, Error> {
        let now = self.now();
        Ok(self
            .inner
            .store
            .get(id)
            .await?
            .map(|r| KeyInfo::from_record(&r, now)))
    }

    /// Lists keys (masked, no hashes), one page at a time. Pass the last item's
    /// `(created_at, id)` as `query.after` for the next page.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<KeyInfo>, Error> {
        let now = self.now();
        Ok(self
            .inner
            .store
            .list(query)
            .await?
            .iter()
            .map(|r| KeyInfo::from_record(r, now))
            .collect())
    }
}

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

fn validate_key_name(name: &str) -> Result<(), InvalidValue> {
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidValue::too_long(ValueKind::Name, MAX_NAME_LEN));
    }
    if let Some(i) = name.bytes().position(|b| b.is_ascii_control()) {
        return Err(InvalidValue::bad_char(ValueKind::Name, name.as_bytes(), i));
    }
    Ok(())
}

fn validate_metadata(m: Option<&serde_json::Value>) -> Result<(), InvalidValue> {
    if let Some(m) = m {
        let len = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
        if len > MAX_METADATA_LEN {
            return Err(InvalidValue::too_long(
                ValueKind::Metadata,
                MAX_METADATA_LEN,
            ));
        }
    }
    Ok(())
}
