//! Timestamps and the injectable clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The longest a key may live from the moment its expiry is set: 100 years (36,525 days).
/// [`IssueRequest::expires_in`](crate::IssueRequest::expires_in) and
/// [`KeyManager::set_expiry`](crate::KeyManager::set_expiry) refuse anything later with an
/// [`InvalidValue`](crate::InvalidValue) of kind [`Expiry`](crate::ValueKind::Expiry); for a
/// key that never expires, give no expiry.
pub const MAX_EXPIRY: Duration = Duration::from_secs(36_525 * 86_400);

/// The longest grace period a rotation may give the old key: 100 years, as [`MAX_EXPIRY`].
/// [`KeyManager::rotate`](crate::KeyManager::rotate) refuses a longer one with an
/// [`InvalidValue`](crate::InvalidValue) of kind [`Grace`](crate::ValueKind::Grace).
pub const MAX_GRACE: Duration = MAX_EXPIRY;

/// A UTC instant with millisecond precision (what every store keeps exactly).
///
/// `Display` and serde use RFC 3339 (`2026-11-23T10:00:00.000Z`); deserializing also accepts
/// a number of Unix milliseconds. Arithmetic saturates at [`Timestamp::MAX`]
/// (9999-12-31T23:59:59.999Z), the last instant RFC 3339 can write, so a far-future time never
/// wraps or prints as 1970.
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
    /// The latest instant a timestamp reaches by arithmetic: 9999-12-31T23:59:59.999Z.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);
    /// The earliest instant that prints in RFC 3339: 0000-01-01T00:00:00.000Z.
    pub const MIN: Timestamp = Timestamp(-62_167_219_200_000);

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

    /// This instant plus `d`, saturating at [`Timestamp::MAX`] (an instant already past it,
    /// read from a store, is left as it is).
    ///
    /// ```
    /// use keyward::Timestamp;
    /// let t = Timestamp::from_unix_millis(0).saturating_add(std::time::Duration::MAX);
    /// assert_eq!(t, Timestamp::MAX);
    /// assert_eq!(t.to_string(), "9999-12-31T23:59:59.999Z");
    /// ```
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms).min(Self::MAX.0.max(self.0)))
    }

    /// How long from `self` until `later` (zero when `later` is not later).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// As a `time::OffsetDateTime` in UTC. An instant outside [`Timestamp::MIN`] ..=
    /// [`Timestamp::MAX`] (only a store value written by other software can be) is clamped to
    /// that range, never replaced by the Unix epoch.
    pub fn to_offset_date_time(self) -> time::OffsetDateTime {
        let ms = self.0.clamp(Self::MIN.0, Self::MAX.0);
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
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

/// Checks a key's lifetime from now (issue's `expires_in`): more than zero (a key born
/// expired is a mistake) and at most [`MAX_EXPIRY`].
pub(crate) fn validate_expires_in(d: Duration) -> Result<(), crate::InvalidValue> {
    use crate::invalid::{InvalidValue, ValueKind};
    if d.is_zero() {
        return Err(InvalidValue::new(
            ValueKind::Expiry,
            "is zero, so the key would be expired when issued; give a positive duration such as 30d, or none for a key that does not expire",
        ));
    }
    at_most(ValueKind::Expiry, d, MAX_EXPIRY, "MAX_EXPIRY")
}

/// Checks an expiry instant set on an existing key: at most [`MAX_EXPIRY`] after `now` (an
/// instant in the past is allowed: it expires the key at once).
pub(crate) fn validate_expires_at(
    at: Timestamp,
    now: Timestamp,
) -> Result<(), crate::InvalidValue> {
    at_most(
        crate::ValueKind::Expiry,
        now.until(at),
        MAX_EXPIRY,
        "MAX_EXPIRY",
    )
}

/// Checks a rotation's grace period: at most [`MAX_GRACE`] (zero ends the old key at once).
pub(crate) fn validate_grace(d: Duration) -> Result<(), crate::InvalidValue> {
    at_most(crate::ValueKind::Grace, d, MAX_GRACE, "MAX_GRACE")
}

fn at_most(
    kind: crate::ValueKind,
    d: Duration,
    max: Duration,
    name: &str,
) -> Result<(), crate::InvalidValue> {
    if d <= max {
        return Ok(());
    }
    Err(crate::InvalidValue::with_reason(
        kind,
        format!(
            "is longer than the limit of {} days (100 years, keyward::{name}); give a shorter duration",
            max.as_secs() / 86_400
        ),
    ))
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

    #[test]
    fn a_far_future_instant_saturates_at_year_9999_and_never_prints_as_1970() {
        let now = Timestamp::from_unix_millis(1_800_000_000_000);
        // 999999999w, and a grace of u64::MAX seconds: the inputs of issue 13's D7.
        let weeks = parse_duration("999999999w").unwrap();
        let secs = parse_duration("18446744073709551615s").unwrap();
        for d in [weeks, secs, Duration::MAX] {
            let t = now.saturating_add(d);
            assert_eq!(t, Timestamp::MAX, "{d:?}");
            assert_eq!(t.to_string(), "9999-12-31T23:59:59.999Z");
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        }
        // A value beyond the range (written by other software) prints clamped, not as 1970.
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(i64::MIN).to_string(),
            "0000-01-01T00:00:00.000Z"
        );
        assert_eq!(Timestamp::MIN.to_string(), "0000-01-01T00:00:00.000Z");
        // Adding to an instant already past the range never moves it back.
        let beyond = Timestamp::from_unix_millis(i64::MAX - 5);
        assert_eq!(beyond.saturating_add(Duration::from_secs(1)), beyond);
    }

    #[test]
    fn expiries_and_graces_over_100_years_are_refused_naming_the_limit() {
        use crate::ValueKind;
        let now = Timestamp::from_unix_millis(1_800_000_000_000);
        assert_eq!(MAX_EXPIRY, Duration::from_secs(36_525 * 86_400));
        assert!(validate_expires_in(MAX_EXPIRY).is_ok());
        assert!(validate_expires_in(Duration::from_secs(1)).is_ok());
        let e = validate_expires_in(MAX_EXPIRY + Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind, ValueKind::Expiry);
        assert_eq!(
            e.to_string(),
            "invalid expiry (more than zero and at most 100 years ahead): is longer than the limit of 36525 days (100 years, keyward::MAX_EXPIRY); give a shorter duration"
        );
        let e = validate_expires_in(parse_duration("999999999w").unwrap()).unwrap_err();
        assert_eq!(e.kind, ValueKind::Expiry);
        let e = validate_expires_in(Duration::ZERO).unwrap_err();
        assert_eq!(e.kind, ValueKind::Expiry);
        assert!(e.to_string().contains("is zero"), "{e}");

        assert!(validate_expires_at(now.saturating_add(MAX_EXPIRY), now).is_ok());
        assert!(validate_expires_at(Timestamp::from_unix_millis(0), now).is_ok());
        let e = validate_expires_at(Timestamp::MAX, now).unwrap_err();
        assert_eq!(e.kind, ValueKind::Expiry);

        assert!(validate_grace(Duration::ZERO).is_ok());
        assert!(validate_grace(MAX_GRACE).is_ok());
        let e = validate_grace(Duration::from_secs(u64::MAX)).unwrap_err();
        assert_eq!(e.kind, ValueKind::Grace);
        assert!(e.to_string().contains("keyward::MAX_GRACE"), "{e}");
    }
}
