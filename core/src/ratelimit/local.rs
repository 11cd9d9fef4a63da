//! The per-process limiter ([`RateLimitMode::PerProcess`](super::RateLimitMode::PerProcess)):
//! per-key GCRA through `governor`, on the manager's clock, in this process's memory only.
//! Also the cluster mode's fallback while the store cannot be reached.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::key::KeyId;
use crate::quota::RateLimit;
use crate::time::Clock;

/// Per-process, per-key rate limiters (GCRA) on the manager's clock.
pub(crate) struct RateLimiters {
    clock: GovernorClock,
    /// Bounded, as the verify cache is, with quick_cache: a read takes a shard's read lock and
    /// nothing else (moka's reads queue bookkeeping that did not scale over cores). An
    /// evicted limiter comes back fresh, as a long-idle one would be.
    limiters: quick_cache::sync::Cache<KeyId, Arc<(RateLimit, Limiter)>>,
}

type Limiter = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    GovernorClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// The manager's injectable clock, as governor's clock (time since the Unix epoch).
#[derive(Clone)]
struct GovernorClock(Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now().unix_millis()).unwrap_or(0))
    }
}

impl fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiters")
            .field("keys", &self.limiters.len())
            .finish()
    }
}

impl RateLimiters {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock: GovernorClock(clock),
            limiters: quick_cache::sync::Cache::new(100_000),
        }
    }

    /// `Err(retry_after)` when the key is over its rate.
    pub(crate) fn check(&self, id: KeyId, limit: RateLimit) -> Result<(), Duration> {
        let (Some(requests), Some(per)) = (
            NonZeroU32::new(limit.requests),
            NonZeroU32::new(limit.per_seconds),
        ) else {
            return Err(Duration::from_secs(u64::from(limit.per_seconds.max(1))));
        };
        let mut entry = self.limiters.get(&id);
        if entry.as_ref().is_none_or(|e| e.0 != limit) {
            let period = Duration::from_secs(u64::from(per.get())) / requests.get();
            let quota = governor::Quota::with_period(period.max(Duration::from_nanos(1)))
                .map(|q| q.allow_burst(requests));
            let Some(quota) = quota else {
                return Ok(());
            };
            let fresh = Arc::new((
                limit,
                governor::RateLimiter::direct_with_clock(quota, self.clock.clone()),
            ));
            self.limiters.insert(id, Arc::clone(&fresh));
            entry = Some(fresh);
        }
        let Some(entry) = entry else {
            return Ok(());
        };
        entry
            .1
            .check()
            .map_err(|not_until| not_until.wait_time_from(governor::clock::Clock::now(&self.clock)))
    }
}
