//! Timestamps and the injectable clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A UTC instant with millisecond precision (what every store keeps exactly).
///
/// `Display` and serde use RFC 3339 (`2026-11-23T10:00:00.000Z`); deserializing also accepts
/// a number of Unix milliseconds.
///
/// ```
/// let t = keyward::Timestamp::from_unix_millis(1_700_000_000_000);
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.000Z");
/// assert_eq!(t.unix_millis(), 1_700_000_000_000);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr<'a> {
            Millis(i64),
            Text(std::borrow::Cow<'a, str>),
        }
        match Repr::deserialize(d)? {
            Repr::Millis(ms) => Ok(Self(ms)),
            Repr::Text(s) => Self::parse_rfc3339(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// The current system time.
    pub fn now() -> Self {
        // `SystemTime` directly: no calendar conversion or i128 division on the hot path.
        let ms = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
        };
        Self(ms)
    }

    /// Parses an RFC 3339 date-time (any offset), truncating to milliseconds.
    ///
    /// ```
    /// let t = keyward::Timestamp::parse_rfc3339("2023-11-14T22:13:20.000Z")?;
    /// assert_eq!(t.unix_millis(), 1_700_000_000_000);
    /// # Ok::<(), keyward::InvalidValue>(())
    /// ```
    ///
    /// # Errors
    /// [`InvalidValue`](crate::InvalidValue) when the text is not RFC 3339.
    pub fn parse_rfc3339(s: &str) -> Result<Self, crate::InvalidValue> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                crate::InvalidValue::new(
                    crate::ValueKind::Config,
                    "is not an RFC 3339 date-time such as 2026-11-23T10:00:00Z",
                )
            })?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        Ok(Self(i64::try_from(ms).unwrap_or(i64::MAX)))
    }

    /// This instant plus `d` (saturating).
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// How long from `self` until `later` (zero when `later` is not later).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// As a `time::OffsetDateTime` in UTC.
    pub fn to_offset_date_time(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.to_offset_date_time();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// A source of the current time, injectable so tests never sleep.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to; clones share the time.
///
/// ```
/// use keyward::{Clock, ManualClock, Timestamp};
/// let clock = ManualClock::new(Timestamp::from_unix_millis(0));
/// clock.advance(std::time::Duration::from_secs(2));
/// assert_eq!(clock.now().unix_millis(), 2000);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.unix_millis())))
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.unix_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Parses a duration such as `90s`, `15m`, `24h`, `30d` or `2w`.
///
/// ```
/// assert_eq!(keyward::parse_duration("30d")?, std::time::Duration::from_secs(30 * 86400));
/// assert!(keyward::parse_duration("30").is_err());
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
///
/// # Errors
/// [`InvalidValue`](crate::InvalidValue) when the text is not a number followed by a unit.
pub fn parse_duration(s: &str) -> Result<Duration, crate::InvalidValue> {
    use crate::invalid::{InvalidValue, ValueKind};
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| InvalidValue::new(ValueKind::Duration, "must start with a whole number"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(InvalidValue::new(
                ValueKind::Duration,
                "must end with a unit: s, m, h, d or w",
            ));
        }
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| InvalidValue::new(ValueKind::Duration, "is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_serialize_as_rfc3339_and_read_back_from_text_or_millis() {
        let t = Timestamp::from_unix_millis(1_700_000_000_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert_eq!(
            serde_json::from_str::<Timestamp>("1700000000123").unwrap(),
            t
        );
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }
}
