//! [`EventConfig`]: which thresholds produce events, how far ahead expiring keys are reported,
//! and how often they are looked for; and the level arithmetic the hot path runs (integer
//! comparisons only).

use std::time::Duration;

use crate::invalid::{InvalidValue, ValueKind};

/// When the credits of a key count as low ([`EventConfig::credits_low`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreditsLevel {
    /// At most this many credits left in the period.
    Remaining(u64),
    /// At most this percentage (0..=100) of the period's credits left.
    Percent(u8),
}

impl CreditsLevel {
    /// The count of spent credits at which a budget of `limit` is low (at least 1, at most
    /// `limit`).
    pub(crate) fn used_level(self, limit: u64) -> u64 {
        let left = match self {
            CreditsLevel::Remaining(n) => n,
            CreditsLevel::Percent(p) => mul_div(limit, u64::from(p), false),
        };
        limit.saturating_sub(left).clamp(1, limit.max(1))
    }
}

/// Event settings, set with [`KeyManagerBuilder::events`](crate::KeyManagerBuilder::events).
///
/// ```
/// use std::time::Duration;
/// use keyward::{CreditsLevel, EventConfig};
/// let config = EventConfig::default()
///     .quota_thresholds([50, 80, 100])
///     .credits_low(Some(CreditsLevel::Remaining(100)))
///     .expiring_within(Some(Duration::from_secs(3 * 24 * 3600)))
///     .sweep_interval(Duration::from_secs(600));
/// assert_eq!(config.thresholds(), &[50, 80, 100]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventConfig {
    thresholds: Vec<u8>,
    credits_low: Option<CreditsLevel>,
    expiring_within: Option<Duration>,
    sweep_interval: Duration,
    capacity: usize,
}

impl Default for EventConfig {
    /// Quota thresholds 80 % and 100 %, credits low at 20 % left, keys reported 7 days before
    /// they expire, looked for every hour, 1,024 events buffered per subscriber.
    fn default() -> Self {
        Self {
            thresholds: vec![80, 100],
            credits_low: Some(CreditsLevel::Percent(20)),
            expiring_within: Some(Duration::from_secs(7 * 24 * 3600)),
            sweep_interval: Duration::from_secs(3600),
            capacity: 1024,
        }
    }
}

impl EventConfig {
    /// The quota thresholds, in percent of the limit (each 1..=100; default 80 and 100).
    /// Checked by [`KeyManagerBuilder::build`](crate::KeyManagerBuilder::build).
    #[must_use]
    pub fn quota_thresholds(mut self, percents: impl IntoIterator<Item = u8>) -> Self {
        let mut t: Vec<u8> = percents.into_iter().collect();
        t.sort_unstable();
        t.dedup();
        self.thresholds = t;
        self
    }

    /// When a key's credits count as low (`None`: no `credits.low` events; default 20 % left).
    #[must_use]
    pub fn credits_low(mut self, level: Option<CreditsLevel>) -> Self {
        self.credits_low = level;
        self
    }

    /// How long before its expiry a key is reported as expiring (`None`: never; default 7
    /// days).
    #[must_use]
    pub fn expiring_within(mut self, within: Option<Duration>) -> Self {
        self.expiring_within = within;
        self
    }

    /// How often the store is searched for expiring keys (default 1 hour; at least 1 s).
    #[must_use]
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }

    /// How many events each subscriber (and each sink) may fall behind before it loses the
    /// oldest (default 1,024).
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The quota thresholds, ascending.
    pub fn thresholds(&self) -> &[u8] {
        &self.thresholds
    }

    /// The credits level, if `credits.low` events are on.
    pub fn credits_level(&self) -> Option<CreditsLevel> {
        self.credits_low
    }

    /// How far ahead expiring keys are reported, if they are.
    pub fn expiring_window(&self) -> Option<Duration> {
        self.expiring_within
    }

    /// How often expiring keys are looked for.
    pub fn sweep_every(&self) -> Duration {
        self.sweep_interval
    }

    /// The per-subscriber buffer.
    pub fn buffer(&self) -> usize {
        self.capacity
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`InvalidValue`] (a configuration value) for a threshold outside 1..=100, a credits
    /// percentage over 100, a sweep interval under 1 s or a buffer of 0.
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        let bad = |reason: &str| Err(InvalidValue::new(ValueKind::Config, reason));
        if self.thresholds.iter().any(|p| !(1..=100).contains(p)) {
            return bad("event quota thresholds must be percentages from 1 to 100");
        }
        if let Some(CreditsLevel::Percent(p)) = self.credits_low
            && p > 100
        {
            return bad("the credits-low percentage must be at most 100");
        }
        if self.sweep_interval < Duration::from_secs(1) {
            return bad("the expiring-key sweep interval must be at least 1 second");
        }
        if self.capacity == 0 {
            return bad("the event buffer must hold at least one event");
        }
        Ok(())
    }
}

/// The count at which `percent` % of `limit` is reached (rounded up, at least 1).
pub(crate) fn quota_level(limit: u64, percent: u8) -> u64 {
    mul_div(limit, u64::from(percent), true).max(1)
}

/// Whether a count going from `before` to `after` reached `level` (`before < level ≤ after`).
pub(crate) fn crossed(before: u64, after: u64, level: u64) -> bool {
    before < level && level <= after
}

/// `a * percent / 100`, rounded up or down, without overflow.
fn mul_div(a: u64, percent: u64, up: bool) -> u64 {
    let n = u128::from(a) * u128::from(percent);
    let q = if up { n.div_ceil(100) } else { n / 100 };
    u64::try_from(q).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_levels_round_up_and_never_reach_zero() {
        assert_eq!(quota_level(100, 80), 80);
        assert_eq!(quota_level(10, 85), 9);
        assert_eq!(quota_level(3, 10), 1);
        assert_eq!(quota_level(u64::MAX, 100), u64::MAX);
    }

    #[test]
    fn a_level_is_crossed_once_on_the_way_up() {
        assert!(crossed(79, 80, 80));
        assert!(crossed(0, 100, 80));
        assert!(!crossed(80, 81, 80));
        assert!(!crossed(70, 79, 80));
    }

    #[test]
    fn credits_levels_count_spent_credits() {
        assert_eq!(CreditsLevel::Remaining(10).used_level(100), 90);
        assert_eq!(CreditsLevel::Percent(20).used_level(100), 80);
        assert_eq!(CreditsLevel::Remaining(500).used_level(100), 1);
        assert_eq!(CreditsLevel::Percent(0).used_level(100), 100);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(EventConfig::default().validate().is_ok());
        assert!(
            EventConfig::default()
                .quota_thresholds([0])
                .validate()
                .is_err()
        );
        assert!(
            EventConfig::default()
                .quota_thresholds([101])
                .validate()
                .is_err()
        );
        let c = EventConfig::default().credits_low(Some(CreditsLevel::Percent(101)));
        assert!(c.validate().is_err());
        let c = EventConfig::default().sweep_interval(Duration::from_millis(10));
        assert!(c.validate().is_err());
        assert!(EventConfig::default().capacity(0).validate().is_err());
    }
}
