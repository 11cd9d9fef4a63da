//! [`KeyManagerBuilder`]: a manager's settings, with their defaults.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheConfig, VerifyCache};
use crate::events::{EventConfig, EventHub, EventSink};
use crate::hash::{HashParams, Hasher};
use crate::invalid::{InvalidValue, ValueKind};
use crate::key::{Environment, Prefix};
use crate::meter::{Meter, Metering};
use crate::metrics::{UsageMetrics, VerifyMetrics};
use crate::ratelimit::{RateLimitMode, RateLimits};
use crate::store::{KeyStore, Timed};
use crate::throttle::LogThrottle;
use crate::time::{Clock, SystemClock};

use super::background::{Background, LastUsedBatch};
use super::usage::ProjectQuotas;
use super::{Inner, KeyManager};

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
    failure_log_interval: Duration,
    audit_retention: Option<Duration>,
    // events (manager/events.rs)
    events: EventConfig,
    event_sinks: Vec<Arc<dyn EventSink>>,
    // metering (core/src/meter/)
    metering: Metering,
    // rate limits (ratelimit/): `None` is the store's default.
    rate_limits: Option<RateLimitMode>,
}

impl KeyManagerBuilder {
    /// The defaults: prefix `kw`, no environment served, OWASP-minimum hashing, the system
    /// clock, the verify cache with [`CacheConfig::default`], last-used times written every 5 s.
    pub(super) fn new(store: Arc<dyn KeyStore>) -> Self {
        Self {
            store,
            prefix: Prefix::default(),
            environments: Vec::new(),
            hash_params: HashParams::default(),
            clock: Arc::new(SystemClock),
            hasher: None,
            cache: Some(CacheConfig::default()),
            usage_flush_interval: Duration::from_secs(5),
            failure_log_interval: Duration::from_secs(10),
            audit_retention: None,
            events: EventConfig::default(),
            event_sinks: Vec::new(),
            metering: Metering::default(),
            rate_limits: None,
        }
    }

    /// Where keys' rate limits hold: per process or across every instance sharing the store
    /// (see [`RateLimitMode`]). The default is [`RateLimitMode::cluster`] when the store is
    /// shared ([`UsageStore::shared`](crate::UsageStore::shared): PostgreSQL) and
    /// [`RateLimitMode::PerProcess`] otherwise.
    ///
    /// ```
    /// # fn main() -> Result<(), keyward::InvalidValue> {
    /// use keyward::{KeyManager, RateLimitMode};
    /// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
    ///     .rate_limits(RateLimitMode::cluster())
    ///     .build()?;
    /// assert_eq!(manager.rate_limit_mode(), RateLimitMode::cluster());
    /// # Ok(()) }
    /// ```
    pub fn rate_limits(mut self, mode: RateLimitMode) -> Self {
        self.rate_limits = Some(mode);
        self
    }

    /// Verify cache settings (the cache is on by default with [`CacheConfig::default`]).
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Turns the verify cache off: every verify reads the store and, for a known id, runs
    /// Argon2.
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

    /// How often an infrastructure failure of one cause (the store, hashing overload) is
    /// logged at most (default 10 s); the next line counts the ones suppressed meanwhile. See
    /// [`KeyManager::log_failure`].
    pub fn failure_log_interval(mut self, interval: Duration) -> Self {
        self.failure_log_interval = interval;
        self
    }

    /// How long audit entries are kept (default: forever). Older entries are deleted every
    /// hour by the background tasks (started on the first verify) and by
    /// [`KeyManager::prune_audit`].
    ///
    /// ```
    /// # fn main() -> Result<(), keyward::InvalidValue> {
    /// use std::time::Duration;
    /// let manager = keyward::KeyManager::builder(keyward_memory::MemoryStore::new())
    ///     .audit_retention(Duration::from_secs(400 * 86_400))
    ///     .build()?;
    /// # drop(manager); Ok(()) }
    /// ```
    pub fn audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = Some(retention);
        self
    }

    /// How quota and credit units are counted (default: [`Metering::Leased`] with
    /// [`LeaseConfig::default`](crate::LeaseConfig::default); see docs/ARCHITECTURE.md,
    /// "Metering").
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use keyward::{KeyManager, Metering};
    /// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
    ///     .metering(Metering::Direct)
    ///     .build()?;
    /// # drop(manager); Ok(()) }
    /// ```
    pub fn metering(mut self, metering: Metering) -> Self {
        self.metering = metering;
        self
    }

    /// Event settings (default: [`EventConfig::default`]). See
    /// [`KeyManager::subscribe_events`].
    pub fn events(mut self, config: EventConfig) -> Self {
        self.events = config;
        self
    }

    /// Delivers every event to `sink` as well, on a background task of its own (call once
    /// per sink). See [`EventSink`].
    pub fn event_sink(mut self, sink: impl EventSink) -> Self {
        self.event_sinks.push(Arc::new(sink));
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
    /// Metrics: the manager takes its metric handles from the recorder installed when it is
    /// built (`keyward::metrics`), so install a recorder (an exporter) before building it.
    ///
    /// # Errors
    /// [`InvalidValue`] when the hash parameters or the event settings are invalid, or the
    /// random generator fails.
    pub fn build(self) -> Result<KeyManager, InvalidValue> {
        self.events.validate()?;
        let hasher = match self.hasher {
            Some(h) => h,
            None => Hasher::new(self.hash_params)?,
        };
        // Each part throttles its own failure log lines.
        let log_throttle = || LogThrottle::new(self.failure_log_interval, Arc::clone(&self.clock));
        let failure_log = log_throttle();
        let meter = Arc::new(Meter::new(self.metering, log_throttle()));
        let cache = match self.cache {
            Some(config) => Some(Arc::new(
                VerifyCache::new(config, hasher.workers()).map_err(|e| InvalidValue {
                    kind: ValueKind::Config,
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        // Metrics (issue 16): the handles come from the recorder installed now.
        crate::metrics::describe();
        let rate_mode = self
            .rate_limits
            .unwrap_or_else(|| RateLimitMode::default_for(self.store.as_ref()));
        let store: Arc<dyn KeyStore> = Arc::new(Timed::wrap(self.store));
        let rate_limiters = RateLimits::new(
            rate_mode,
            Arc::clone(&self.clock),
            Arc::clone(&store),
            log_throttle(),
        );
        Ok(KeyManager {
            inner: Arc::new(Inner {
                store,
                prefix: self.prefix,
                environments: self.environments,
                hasher,
                clock: self.clock,
                cache,
                last_used: Arc::new(LastUsedBatch::default()),
                usage_flush_interval: self.usage_flush_interval,
                background: Background::default(),
                rate_limiters,
                project_quotas: ProjectQuotas::new(),
                failure_log,
                audit_retention: self.audit_retention,
                verify_metrics: VerifyMetrics::new(),
                usage_metrics: UsageMetrics::new(),
                events: EventHub::new(self.events, self.event_sinks),
                meter,
            }),
            actor: crate::audit::Actor::system(),
        })
    }
}
