//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: Keyward records, a service
//! picks the exporter (Prometheus, StatsD, OpenTelemetry…) by installing a recorder. Without a
//! recorder every metric is a no-op.
//!
//! This module imports nothing from the crate (layer 0 in docs/ARCHITECTURE.md, "Layers"), so
//! the hasher, the store wrapper, the cache and the manager all record through it.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `keyward_verify_total` | counter | `outcome` | verifications by outcome: `ok`, `missing`, `malformed`, `wrong_prefix`, `wrong_environment`, `invalid`, `revoked`, `expired`, `wrong_project`, `insufficient_scope`, `quota`, `rate_limited`, `overloaded`, `store_error`, `internal_error` ([`VerifyOutcome`]) |
//! | `keyward_cache_total` | counter | `result` | verifications that reached the verify cache: `hit`, `miss` (a cold verify: store read and Argon2), `revalidated` (an expired entry renewed with one store read, no Argon2), `stale` (served unconfirmed within `max_stale` while the store is unreachable), `negative_hit` (an id remembered as unknown: no store read) ([`CacheResult`]) |
//! | `keyward_cache_invalidated_total` | counter | — | cache entries dropped because the change feed reported their key changed (or a resync dropped the whole cache) |
//! | `keyward_cache_evicted_total` | counter | — | cache entries evicted to stay within `CacheConfig::capacity` |
//! | `keyward_hash_runs_total` | counter | `purpose` | Argon2 runs: `issue`, `verify` (a cold verify), `rehash` (an upgrade to stronger parameters) ([`HashPurpose`]) |
//! | `keyward_hash_seconds` | histogram | `purpose` | the time one Argon2 run takes on its worker (not the wait for a worker) |
//! | `keyward_hash_queue_depth` | gauge | — | hashing jobs queued or running; at `workers + max_queued` a verify is refused as `overloaded` |
//! | `keyward_store_seconds` | histogram | `op`, `store` | the time of each store call, by method ([`StoreOp`]) and store (`memory`, `sqlite`, `postgres`, or `custom`: [`RecordStore::name`](crate::RecordStore::name)) |
//! | `keyward_feed_lost_total` | counter | — | times the change feed was lost (push connection broken or heartbeat failed, push channel ended, a poll failed) |
//! | `keyward_feed_recovered_total` | counter | — | times the change feed caught up again after a loss |
//! | `keyward_feed_lag_seconds` | histogram | — | how long the feed was lost, observed when it has caught up: the time during which changes made elsewhere reached this instance only through revalidation (see below) |
//! | `keyward_consumed_events_total` | counter | — | events accepted by `KeyManager::consume_events` |
//! | `keyward_credits_spent_total` | counter | — | credits spent by verifications of keys with credits |
//! | `keyward_quota_refusals_total` | counter | `kind` | refusals: `project_quota`, `key_quota` (from `consume_events`), `credits` (a verify of a key whose credits are spent) ([`QuotaKind`]) |
//!
//! **Label values are bounded.** Every label value is one of the static strings above: never a
//! key, a key id, a project or an environment name, so the number of series is fixed whatever
//! the traffic.
//!
//! **Feed lag.** A store's change feed does not carry a change's commit time, so the lag of a
//! single notification is not observable from here (PostgreSQL's `LISTEN/NOTIFY` latency was
//! measured at p99 12 ms: docs/ARCHITECTURE.md, "The verify cache"). What an operator can act
//! on is how long the feed was *behind*: from the loss (every cached key then costs a store
//! read) to the catch-up through `changes_since`. A healthy feed records nothing;
//! `keyward_feed_lost_total` minus `keyward_feed_recovered_total` is 1 while it is lost.
//!
//! **Handles are resolved when they are built.** A verify increments a pre-registered
//! [`metrics::Counter`] handle (an atomic add in most recorders), never a registry lookup by
//! name and labels, which keeps a warm verify within a few nanoseconds of its cost without a
//! recorder (BENCHMARKS.md). The handles are taken from the recorder installed when the
//! [`Hasher`](crate::Hasher) and the [`KeyManager`](crate::KeyManager) are built, so **install
//! the recorder first**, then build the manager; a manager built before any recorder records
//! nothing.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use keyward::{HashParams, KeyManager};
//! use metrics_util::debugging::DebuggingRecorder;
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! // A service calls its exporter's install instead (e.g. metrics-exporter-prometheus).
//! let manager = metrics::with_local_recorder(&recorder, || {
//!     KeyManager::builder(keyward_memory::MemoryStore::new())
//!         .serve("live".parse()?)
//!         .hash_params(HashParams::INSECURE_TEST_ONLY)
//!         .build()
//! })?;
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! # rt.block_on(async {
//! let _ = manager.verify("not a key", &keyward::Requirements::none()).await;
//! # });
//! let counted = snapshotter.snapshot().into_vec().into_iter().any(|(key, _, _, _)| {
//!     key.key().name() == keyward::metrics::VERIFY_TOTAL
//!         && key.key().labels().any(|l| l.value() == "malformed")
//! });
//! assert!(counted);
//! # Ok(()) }
//! ```

use ::metrics::{Counter, Gauge, Histogram, Unit};

/// `keyward_verify_total{outcome}`: verifications by [`VerifyOutcome`].
pub const VERIFY_TOTAL: &str = "keyward_verify_total";
/// `keyward_cache_total{result}`: verifications that reached the verify cache, by [`CacheResult`].
pub const CACHE_TOTAL: &str = "keyward_cache_total";
/// `keyward_cache_invalidated_total`: cache entries dropped because the change feed reported them.
pub const CACHE_INVALIDATED_TOTAL: &str = "keyward_cache_invalidated_total";
/// `keyward_cache_evicted_total`: cache entries evicted for capacity.
pub const CACHE_EVICTED_TOTAL: &str = "keyward_cache_evicted_total";
/// `keyward_hash_runs_total{purpose}`: Argon2 runs by [`HashPurpose`].
pub const HASH_RUNS_TOTAL: &str = "keyward_hash_runs_total";
/// `keyward_hash_seconds{purpose}`: the duration of one Argon2 run, by [`HashPurpose`].
pub const HASH_SECONDS: &str = "keyward_hash_seconds";
/// `keyward_hash_queue_depth`: hashing jobs queued or running.
pub const HASH_QUEUE_DEPTH: &str = "keyward_hash_queue_depth";
/// `keyward_store_seconds{op,store}`: the duration of a store call, by [`StoreOp`] and store name.
pub const STORE_SECONDS: &str = "keyward_store_seconds";
/// `keyward_feed_lost_total`: times the change feed was lost.
pub const FEED_LOST_TOTAL: &str = "keyward_feed_lost_total";
/// `keyward_feed_recovered_total`: times the change feed caught up after a loss.
pub const FEED_RECOVERED_TOTAL: &str = "keyward_feed_recovered_total";
/// `keyward_feed_lag_seconds`: how long the change feed was lost, observed at its catch-up.
pub const FEED_LAG_SECONDS: &str = "keyward_feed_lag_seconds";
/// `keyward_consumed_events_total`: events accepted by `consume_events`.
pub const CONSUMED_EVENTS_TOTAL: &str = "keyward_consumed_events_total";
/// `keyward_credits_spent_total`: credits spent by verifications.
pub const CREDITS_SPENT_TOTAL: &str = "keyward_credits_spent_total";
/// `keyward_quota_refusals_total{kind}`: quota and credit refusals by [`QuotaKind`].
pub const QUOTA_REFUSALS_TOTAL: &str = "keyward_quota_refusals_total";

/// Every metric Keyward records, by name.
///
/// ```
/// assert!(keyward::metrics::ALL.contains(&"keyward_verify_total"));
/// assert!(keyward::metrics::ALL.iter().all(|name| name.starts_with("keyward_")));
/// ```
pub const ALL: [&str; 14] = [
    VERIFY_TOTAL,
    CACHE_TOTAL,
    CACHE_INVALIDATED_TOTAL,
    CACHE_EVICTED_TOTAL,
    HASH_RUNS_TOTAL,
    HASH_SECONDS,
    HASH_QUEUE_DEPTH,
    STORE_SECONDS,
    FEED_LOST_TOTAL,
    FEED_RECOVERED_TOTAL,
    FEED_LAG_SECONDS,
    CONSUMED_EVENTS_TOTAL,
    CREDITS_SPENT_TOTAL,
    QUOTA_REFUSALS_TOTAL,
];

/// Declares a label enum: its variants, their label values, `ALL` and `as_str`.
macro_rules! labels {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

labels! {
    /// The `outcome` label of `keyward_verify_total`: how one verification ended.
    ///
    /// ```
    /// use keyward::metrics::VerifyOutcome;
    /// assert_eq!(VerifyOutcome::WrongPrefix.as_str(), "wrong_prefix");
    /// assert_eq!(VerifyOutcome::ALL.len(), 15);
    /// ```
    VerifyOutcome {
        /// Accepted.
        Ok => "ok",
        /// No credential was presented (HTTP only: `keyward::http::Guard` and the axum layer).
        Missing => "missing",
        /// Not a well-formed key (length, grammar, checksum), or a badly presented one (two
        /// credentials, a key in the query string, an unsupported `Authorization` scheme).
        Malformed => "malformed",
        /// Another deployment's or product's prefix.
        WrongPrefix => "wrong_prefix",
        /// An environment this service does not serve.
        WrongEnvironment => "wrong_environment",
        /// An unknown id or a wrong secret.
        Invalid => "invalid",
        /// A revoked key.
        Revoked => "revoked",
        /// An expired key.
        Expired => "expired",
        /// A key of another project than the one required.
        WrongProject => "wrong_project",
        /// A key without the scopes required.
        InsufficientScope => "insufficient_scope",
        /// A key whose credits (or an event quota) are used up.
        Quota => "quota",
        /// The per-key rate limit, or too many failed attempts with one id.
        RateLimited => "rate_limited",
        /// The hashing queue is full.
        Overloaded => "overloaded",
        /// The store failed.
        StoreError => "store_error",
        /// Anything else failed (a stored hash that cannot be read, a hashing worker).
        InternalError => "internal_error",
    }
}

labels! {
    /// The `result` label of `keyward_cache_total`: what the verify cache answered.
    ///
    /// ```
    /// assert_eq!(keyward::metrics::CacheResult::NegativeHit.as_str(), "negative_hit");
    /// ```
    CacheResult {
        /// A live entry decided, with no store read.
        Hit => "hit",
        /// No usable entry: a cold verify (store read and Argon2).
        Miss => "miss",
        /// An expired entry (or any entry while the feed is lost) renewed with one store read.
        Revalidated => "revalidated",
        /// An entry served unconfirmed, within `CacheConfig::max_stale`, while the store is down.
        Stale => "stale",
        /// An id remembered as unknown: answered with no store read.
        NegativeHit => "negative_hit",
    }
}

labels! {
    /// The `purpose` label of the hashing metrics: why Argon2 ran.
    ///
    /// ```
    /// assert_eq!(keyward::metrics::HashPurpose::Rehash.as_str(), "rehash");
    /// ```
    HashPurpose {
        /// Hashing a new key's secret.
        Issue => "issue",
        /// Checking a presented secret (a cold verify).
        Verify => "verify",
        /// Re-hashing a proven secret with stronger parameters.
        Rehash => "rehash",
    }
}

labels! {
    /// The `op` label of `keyward_store_seconds`: the store method called.
    ///
    /// ```
    /// assert_eq!(keyward::metrics::StoreOp::ChangesSince.as_str(), "changes_since");
    /// ```
    StoreOp {
        /// `RecordStore::insert`.
        Insert => "insert",
        /// `RecordStore::insert_many`.
        InsertMany => "insert_many",
        /// `RecordStore::get`.
        Get => "get",
        /// `RecordStore::list`.
        List => "list",
        /// `RecordStore::update`.
        Update => "update",
        /// `RecordStore::rotate`.
        Rotate => "rotate",
        /// `RecordStore::record_usage`.
        RecordUsage => "record_usage",
        /// `RecordStore::changes_since`.
        ChangesSince => "changes_since",
        /// `RecordStore::subscribe`.
        Subscribe => "subscribe",
        /// `UsageStore::consume`.
        Consume => "consume",
        /// `UsageStore::release`.
        Release => "release",
        /// `UsageStore::lease`.
        Lease => "lease",
        /// `UsageStore::settle`.
        Settle => "settle",
        /// `UsageStore::take_cells`.
        TakeCells => "take_cells",
        /// `UsageStore::return_cells`.
        ReturnCells => "return_cells",
        /// `UsageStore::usage`.
        Usage => "usage",
        /// `UsageStore::get_setting`.
        GetSetting => "get_setting",
        /// `UsageStore::put_setting`.
        PutSetting => "put_setting",
        /// `AuditStore::append_audit`.
        AppendAudit => "append_audit",
        /// `AuditStore::audit`.
        Audit => "audit",
        /// `AuditStore::prune_audit`.
        PruneAudit => "prune_audit",
    }
}

labels! {
    /// The `kind` label of `keyward_quota_refusals_total`: which limit refused.
    ///
    /// ```
    /// assert_eq!(keyward::metrics::QuotaKind::KeyQuota.as_str(), "key_quota");
    /// ```
    QuotaKind {
        /// A project's event quota (`consume_events`).
        ProjectQuota => "project_quota",
        /// A key's event quota (`consume_events`).
        KeyQuota => "key_quota",
        /// A key's credits (a verify).
        Credits => "credits",
    }
}

/// One counter per label value, resolved once.
fn counters<L>(name: &'static str, label: &'static str, values: &[L]) -> Vec<Counter>
where
    L: Copy + Into<&'static str>,
{
    values
        .iter()
        .map(|v| ::metrics::counter!(name, label => (*v).into()))
        .collect()
}

macro_rules! into_str {
    ($($name:ident),+) => {$(
        impl From<$name> for &'static str {
            fn from(v: $name) -> &'static str {
                v.as_str()
            }
        }
    )+};
}
into_str!(VerifyOutcome, CacheResult, HashPurpose, StoreOp, QuotaKind);

/// Describes every metric to the current recorder (units and help texts, e.g. Prometheus'
/// `# HELP`). Called when a manager is built; describing twice is harmless.
pub(crate) fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(VERIFY_TOTAL, "API key verifications by outcome");
    describe_counter!(
        CACHE_TOTAL,
        "verifications that reached the verify cache, by result"
    );
    describe_counter!(
        CACHE_INVALIDATED_TOTAL,
        "verify cache entries dropped because the change feed reported a change"
    );
    describe_counter!(
        CACHE_EVICTED_TOTAL,
        "verify cache entries evicted for capacity"
    );
    describe_counter!(HASH_RUNS_TOTAL, "Argon2 runs by purpose");
    describe_histogram!(
        HASH_SECONDS,
        Unit::Seconds,
        "duration of one Argon2 run on its worker"
    );
    describe_gauge!(HASH_QUEUE_DEPTH, "hashing jobs queued or running");
    describe_histogram!(
        STORE_SECONDS,
        Unit::Seconds,
        "duration of a key store call by operation and store"
    );
    describe_counter!(FEED_LOST_TOTAL, "times the change feed was lost");
    describe_counter!(
        FEED_RECOVERED_TOTAL,
        "times the change feed caught up after a loss"
    );
    describe_histogram!(
        FEED_LAG_SECONDS,
        Unit::Seconds,
        "how long the change feed was lost, observed when it caught up"
    );
    describe_counter!(CONSUMED_EVENTS_TOTAL, "events accepted by consume_events");
    describe_counter!(CREDITS_SPENT_TOTAL, "credits spent by verifications");
    describe_counter!(QUOTA_REFUSALS_TOTAL, "quota and credit refusals by kind");
}

/// The handles of `keyward_verify_total`, one per outcome.
#[derive(Debug, Clone)]
pub(crate) struct VerifyMetrics {
    outcomes: Vec<Counter>,
}

impl VerifyMetrics {
    pub(crate) fn new() -> Self {
        Self {
            outcomes: counters(VERIFY_TOTAL, "outcome", VerifyOutcome::ALL),
        }
    }

    /// Counts one verification.
    #[inline]
    pub(crate) fn count(&self, outcome: VerifyOutcome) {
        if let Some(counter) = self.outcomes.get(outcome as usize) {
            counter.increment(1);
        }
    }
}

/// The handles of the verify cache and its change feed.
#[derive(Debug, Clone)]
pub(crate) struct CacheMetrics {
    results: Vec<Counter>,
    pub(crate) invalidated: Counter,
    pub(crate) evicted: Counter,
    pub(crate) feed_lost: Counter,
    pub(crate) feed_recovered: Counter,
    pub(crate) feed_lag: Histogram,
}

impl CacheMetrics {
    pub(crate) fn new() -> Self {
        Self {
            results: counters(CACHE_TOTAL, "result", CacheResult::ALL),
            invalidated: ::metrics::counter!(CACHE_INVALIDATED_TOTAL),
            evicted: ::metrics::counter!(CACHE_EVICTED_TOTAL),
            feed_lost: ::metrics::counter!(FEED_LOST_TOTAL),
            feed_recovered: ::metrics::counter!(FEED_RECOVERED_TOTAL),
            feed_lag: ::metrics::histogram!(FEED_LAG_SECONDS),
        }
    }

    /// Counts one answer of the cache.
    #[inline]
    pub(crate) fn count(&self, result: CacheResult) {
        if let Some(counter) = self.results.get(result as usize) {
            counter.increment(1);
        }
    }
}

/// The handles of the hasher.
#[derive(Debug, Clone)]
pub(crate) struct HashMetrics {
    runs: Vec<Counter>,
    seconds: Vec<Histogram>,
    pub(crate) queue_depth: Gauge,
}

impl HashMetrics {
    pub(crate) fn new() -> Self {
        Self {
            runs: counters(HASH_RUNS_TOTAL, "purpose", HashPurpose::ALL),
            seconds: HashPurpose::ALL
                .iter()
                .map(|p| ::metrics::histogram!(HASH_SECONDS, "purpose" => p.as_str()))
                .collect(),
            queue_depth: ::metrics::gauge!(HASH_QUEUE_DEPTH),
        }
    }

    /// Counts one Argon2 run and records how long it took.
    pub(crate) fn ran(&self, purpose: HashPurpose, took: std::time::Duration) {
        if let Some(counter) = self.runs.get(purpose as usize) {
            counter.increment(1);
        }
        if let Some(histogram) = self.seconds.get(purpose as usize) {
            histogram.record(took);
        }
    }
}

/// The handles of `keyward_store_seconds` for one store, one per operation.
#[derive(Debug, Clone)]
pub(crate) struct StoreMetrics {
    seconds: Vec<Histogram>,
}

impl StoreMetrics {
    /// `store` is the store's [`RecordStore::name`](crate::RecordStore::name).
    pub(crate) fn new(store: &'static str) -> Self {
        Self {
            seconds: StoreOp::ALL
                .iter()
                .map(|op| ::metrics::histogram!(STORE_SECONDS, "op" => op.as_str(), "store" => store))
                .collect(),
        }
    }

    /// Records the duration of one call.
    #[inline]
    pub(crate) fn record(&self, op: StoreOp, took: std::time::Duration) {
        if let Some(histogram) = self.seconds.get(op as usize) {
            histogram.record(took);
        }
    }
}

/// The handles of usage limits: events consumed, credits spent, refusals.
#[derive(Debug, Clone)]
pub(crate) struct UsageMetrics {
    pub(crate) consumed_events: Counter,
    pub(crate) credits_spent: Counter,
    refusals: Vec<Counter>,
}

impl UsageMetrics {
    pub(crate) fn new() -> Self {
        Self {
            consumed_events: ::metrics::counter!(CONSUMED_EVENTS_TOTAL),
            credits_spent: ::metrics::counter!(CREDITS_SPENT_TOTAL),
            refusals: counters(QUOTA_REFUSALS_TOTAL, "kind", QuotaKind::ALL),
        }
    }

    /// Counts one refusal.
    pub(crate) fn refused(&self, kind: QuotaKind) {
        if let Some(counter) = self.refusals.get(kind as usize) {
            counter.increment(1);
        }
    }
}
