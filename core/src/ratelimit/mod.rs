//! Per-key rate limits (docs/ARCHITECTURE.md, "Rate limits across instances"): the
//! [`RateLimitMode`] a manager runs in, and the facade its verify pipeline calls.
//!
//! - `local`: [`RateLimitMode::PerProcess`], GCRA through `governor` in this process's memory;
//! - `cluster`: [`RateLimitMode::Cluster`], GCRA whose state lives in the store, with a local
//!   allotment of cells per key so that a warm verify decides without the store.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::invalid::{InvalidValue, ValueKind};
use crate::key::KeyId;
use crate::quota::RateLimit;
use crate::store::{KeyStore, StoreError};
use crate::throttle::LogThrottle;
use crate::time::Clock;

mod cluster;
mod local;

use cluster::ClusterLimiter;
use local::RateLimiters;

/// Where a key's [`RateLimit`] holds: in each process, or across every instance sharing the
/// store. Set with [`KeyManagerBuilder::rate_limits`](crate::KeyManagerBuilder::rate_limits);
/// the default is [`RateLimitMode::cluster`] on a shared store
/// ([`UsageStore::shared`](crate::UsageStore::shared): PostgreSQL) and
/// [`RateLimitMode::PerProcess`] otherwise (memory, SQLite).
///
/// - **Per process**: each instance runs its own GCRA per key, so N instances together admit
///   up to N times a key's rate. No store access at all.
/// - **Cluster**: the key's GCRA lives in the store (one number per key, its theoretical
///   arrival time). Each instance takes *cells* (permits) from it in chunks sized to its own
///   recent demand, about one sync interval's worth, and spends them locally: a warm verify
///   takes a cell from memory with no store call and no waiting. An instance asks the store
///   again when its cells run out (one task per key at a time; the others wait for its
///   answer), and when the store has none it refuses locally until the next sync, so a key
///   under overload costs about one store write per sync interval and instance, not one per
///   request. Unused cells go back to the store when a key sits idle and on
///   [`KeyManager::shutdown`](crate::KeyManager::shutdown). Over any run of T seconds the
///   cluster admits at most `burst + rate × T` (as one process would); it can admit less by
///   the cells instances hold unused, about one chunk per instance. While the store cannot
///   be reached, each instance falls back to per-process limits (with a throttled warning)
///   and asks the store again after a second.
///
/// The command-line form (`--rate-limits` of the example server) is `per-process` or
/// `cluster`:
///
/// ```
/// use std::time::Duration;
/// use keyward::RateLimitMode;
///
/// let mode: RateLimitMode = "cluster".parse()?;
/// assert_eq!(mode, RateLimitMode::cluster());
/// assert_eq!(mode, RateLimitMode::Cluster { sync_interval: Duration::from_millis(50) });
/// assert_eq!(mode.to_string(), "cluster");
/// assert_eq!("per-process".parse::<RateLimitMode>()?, RateLimitMode::PerProcess);
/// assert!("global".parse::<RateLimitMode>().is_err());
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
///
/// Two managers sharing one store in cluster mode hold a key's rate together:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keyward::{HashParams, IssueRequest, KeyLimits, KeyManager, RateLimit, RateLimitMode, Requirements};
///
/// let store = keyward_memory::MemoryStore::new(); // clones share the data
/// let instance = |store| {
///     KeyManager::builder(store)
///         .serve("dev".parse().unwrap())
///         .hash_params(HashParams::INSECURE_TEST_ONLY)
///         .rate_limits(RateLimitMode::cluster()) // the default on PostgreSQL
///         .build()
/// };
/// let (a, b) = (instance(store.clone())?, instance(store)?);
/// let limits = KeyLimits { rate_limit: Some(RateLimit { requests: 10, per_seconds: 60 }), ..KeyLimits::default() };
/// let issued = a.issue(IssueRequest::new("web-app".parse()?, "dev".parse()?).limits(limits)).await?;
/// let text = issued.key.expose_secret();
/// let mut accepted = 0;
/// for _ in 0..20 {
///     accepted += usize::from(a.verify(text, &Requirements::none()).await.is_ok());
///     accepted += usize::from(b.verify(text, &Requirements::none()).await.is_ok());
/// }
/// assert_eq!(accepted, 10); // per process, it would be 20
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitMode {
    /// Each process enforces a key's rate on its own: N instances admit up to N times it.
    PerProcess,
    /// A key's rate holds across every instance sharing the store.
    Cluster {
        /// About how long a chunk of cells taken from the store should last, from the
        /// instance's recent demand; also how long an instance refuses locally after the
        /// store had no cells, and the period of the sweep that gives idle cells back
        /// (default [`RateLimitMode::DEFAULT_SYNC_INTERVAL`]). Shorter: tighter sharing
        /// between instances and more store calls; longer: fewer store calls and more cells
        /// held per instance.
        sync_interval: Duration,
    },
}

impl RateLimitMode {
    /// The default sync interval of [`RateLimitMode::Cluster`]: 50 ms.
    pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(50);

    /// [`RateLimitMode::Cluster`] with the default sync interval.
    pub const fn cluster() -> Self {
        RateLimitMode::Cluster {
            sync_interval: Self::DEFAULT_SYNC_INTERVAL,
        }
    }

    /// The default for a store: cluster-wide when other processes share it
    /// ([`UsageStore::shared`](crate::UsageStore::shared)), per process otherwise.
    pub fn default_for(store: &dyn KeyStore) -> Self {
        if store.shared() {
            Self::cluster()
        } else {
            RateLimitMode::PerProcess
        }
    }

    /// The command-line word: `per-process` or `cluster`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RateLimitMode::PerProcess => "per-process",
            RateLimitMode::Cluster { .. } => "cluster",
        }
    }
}

impl fmt::Display for RateLimitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RateLimitMode {
    type Err = InvalidValue;

    /// `per-process` or `cluster` (with the default sync interval).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "per-process" => Ok(RateLimitMode::PerProcess),
            "cluster" => Ok(RateLimitMode::cluster()),
            other => Err(InvalidValue {
                kind: ValueKind::Config,
                reason: format!(
                    "unknown rate-limit mode {other:?}: use \"per-process\" or \"cluster\""
                ),
            }),
        }
    }
}

/// What the synchronous check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admitted.
    Allowed,
    /// Over the rate: retry after this long.
    Refused(Duration),
    /// The key's local cells ran out and the store may be asked: call
    /// [`RateLimits::check`].
    Ask,
}

/// The manager's rate limits, in the mode it was built with.
#[derive(Debug)]
pub(crate) enum RateLimits {
    PerProcess(RateLimiters),
    Cluster(Arc<ClusterLimiter>),
}

impl RateLimits {
    /// Limits in `mode` on the manager's clock; a cluster limiter takes its cells from
    /// `store` and logs its store failures through `log`.
    pub(crate) fn new(
        mode: RateLimitMode,
        clock: Arc<dyn Clock>,
        store: Arc<dyn KeyStore>,
        log: LogThrottle,
    ) -> Self {
        match mode {
            RateLimitMode::PerProcess => RateLimits::PerProcess(RateLimiters::new(clock)),
            RateLimitMode::Cluster { sync_interval } => RateLimits::Cluster(Arc::new(
                ClusterLimiter::new(sync_interval, clock, store, log),
            )),
        }
    }

    /// The mode these limits run in.
    pub(crate) fn mode(&self) -> RateLimitMode {
        match self {
            RateLimits::PerProcess(_) => RateLimitMode::PerProcess,
            RateLimits::Cluster(c) => RateLimitMode::Cluster {
                sync_interval: c.sync_interval(),
            },
        }
    }

    /// Decides without waiting and without the store (the warm verify's check): per process
    /// always; in cluster mode from the key's local cells, or [`Decision::Ask`] when they ran
    /// out and the store may be asked.
    #[inline]
    pub(crate) fn check_now(&self, id: KeyId, limit: RateLimit) -> Decision {
        match self {
            RateLimits::PerProcess(l) => match l.check(id, limit) {
                Ok(()) => Decision::Allowed,
                Err(retry_after) => Decision::Refused(retry_after),
            },
            RateLimits::Cluster(c) => c.check_now(id, limit),
        }
    }

    /// Decides, asking the store for cells if needed (cluster mode). `Err(retry_after)` when
    /// the key is over its rate. Never fails on a store error: see [`RateLimitMode::Cluster`].
    pub(crate) async fn check(&self, id: KeyId, limit: RateLimit) -> Result<(), Duration> {
        match self.check_now(id, limit) {
            Decision::Allowed => Ok(()),
            Decision::Refused(retry_after) => Err(retry_after),
            Decision::Ask => match self {
                RateLimits::PerProcess(_) => Ok(()),
                RateLimits::Cluster(c) => c.check_with_store(id, limit).await,
            },
        }
    }

    /// Starts the sweep that gives idle cells back (cluster mode; once, on the current Tokio
    /// runtime).
    pub(crate) fn start(&self) {
        if let RateLimits::Cluster(c) = self {
            ClusterLimiter::start_sweep(c);
        }
    }

    /// Stops the sweep and gives every unused cell back to the store (cluster mode).
    ///
    /// # Errors
    /// The last store error met while giving cells back (the others are given back anyway).
    pub(crate) async fn shutdown(&self) -> Result<(), StoreError> {
        match self {
            RateLimits::PerProcess(_) => Ok(()),
            RateLimits::Cluster(c) => {
                c.stop_sweep();
                c.give_back_all().await
            }
        }
    }
}
