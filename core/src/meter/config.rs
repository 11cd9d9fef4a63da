//! The metering settings: [`Metering`] and the lease tunables in [`LeaseConfig`].

use std::time::Duration;

/// How the manager counts quota and credit units (docs/ARCHITECTURE.md, "Metering").
///
/// ```
/// use keyward::{LeaseConfig, Metering};
/// use std::time::Duration;
/// let metering = Metering::Leased(LeaseConfig::default().settle_interval(Duration::from_millis(50)));
/// assert!(matches!(metering, Metering::Leased(c) if c.settle_every() == Duration::from_millis(50)));
/// assert!(matches!(Metering::default(), Metering::Leased(_)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Metering {
    /// Reserve chunks of the budget in the store and grant from them in memory (the
    /// default): no store write per request; what a crash can lose is bounded (see
    /// [`LeaseConfig`]).
    Leased(LeaseConfig),
    /// One atomic store write per request ([`UsageStore::consume`](crate::UsageStore::consume)):
    /// every answer follows a durable count, at the store's write rate.
    Direct,
}

impl Default for Metering {
    fn default() -> Self {
        Metering::Leased(LeaseConfig::default())
    }
}

/// The tunables of [`Metering::Leased`].
///
/// - Granted units are settled in the store every `settle_interval` (25 ms: other instances'
///   usage reports lag by at most that), and on
///   [`KeyManager::flush_usage`](crate::KeyManager::flush_usage) and
///   [`KeyManager::shutdown`](crate::KeyManager::shutdown).
/// - A chunk doubles while a lease lasts less than `horizon` and halves when it lasts more;
///   it never exceeds `max_chunk`, nor a sixteenth of the budget that was free at the last
///   lease (so near the limit chunks are single units).
/// - Unused units are given back after `idle_return` (250 ms) without grants, at shutdown
///   and when the period ends. A crash strands at most the unused part of one chunk per
///   bucket (reserved, so never granted twice: the budget shrinks by it until the period
///   ends) and loses at most one `settle_interval` of granted units from the usage reports
///   (they stay counted against the budget).
/// - At the edge, a request that does not fit the free budget waits up to `edge_wait`
///   (500 ms) for units other instances hold and give back, before it is refused.
///
/// ```
/// use keyward::LeaseConfig;
/// let config = LeaseConfig::default().max_chunk(1_000);
/// assert_eq!(config.max_chunk_units(), 1_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    settle_interval: Duration,
    idle_return: Duration,
    horizon: Duration,
    max_chunk: u64,
    edge_wait: Duration,
}

impl Default for LeaseConfig {
    /// Settle every 25 ms; give idle units back after 250 ms; chunks sized for 100 ms of
    /// traffic, at most 10,000 units; wait up to 500 ms at the edge.
    fn default() -> Self {
        Self {
            settle_interval: Duration::from_millis(25),
            idle_return: Duration::from_millis(250),
            horizon: Duration::from_millis(100),
            max_chunk: 10_000,
            edge_wait: Duration::from_millis(500),
        }
    }
}

impl LeaseConfig {
    /// How often granted units are settled and idle ones given back (at least 1 ms).
    #[must_use]
    pub fn settle_interval(mut self, every: Duration) -> Self {
        self.settle_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How long an allotment may hold units without granting any before it gives them back
    /// (at least 1 ms).
    #[must_use]
    pub fn idle_return(mut self, after: Duration) -> Self {
        self.idle_return = after.max(Duration::from_millis(1));
        self
    }

    /// How long a chunk should last at the recent rate (at least 1 ms).
    #[must_use]
    pub fn horizon(mut self, horizon: Duration) -> Self {
        self.horizon = horizon.max(Duration::from_millis(1));
        self
    }

    /// The largest chunk one lease reserves (at least 1): what a crash can strand per bucket.
    #[must_use]
    pub fn max_chunk(mut self, units: u64) -> Self {
        self.max_chunk = units.max(1);
        self
    }

    /// How long a request at the edge waits for units other instances hold.
    #[must_use]
    pub fn edge_wait(mut self, wait: Duration) -> Self {
        self.edge_wait = wait;
        self
    }

    /// The settle interval.
    pub fn settle_every(&self) -> Duration {
        self.settle_interval
    }

    /// How long idle units are held.
    pub fn idle_return_after(&self) -> Duration {
        self.idle_return
    }

    /// The horizon a chunk is sized for.
    pub fn horizon_length(&self) -> Duration {
        self.horizon
    }

    /// The largest chunk.
    pub fn max_chunk_units(&self) -> u64 {
        self.max_chunk
    }

    /// The edge wait.
    pub fn edge_wait_time(&self) -> Duration {
        self.edge_wait
    }
}
