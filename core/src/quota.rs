//! Usage limits: event quotas per project and per key, credits per key with refills, and
//! per-key rate limits.
//!
//! - **Event quotas** and **credits** are counted by the store ([`UsageStore::consume`](crate::UsageStore::consume)), so
//!   every instance sharing the store shares one budget, and concurrent consumers never
//!   over-spend. A batch that would cross the limit is refused whole.
//! - **Rate limits** (requests per interval, GCRA via `governor`) are enforced **per
//!   process**: with N instances a key gets up to N times its rate. Use an event quota for a
//!   cluster-wide limit.
//!
//! Periods are calendar periods in UTC (a day, a month) or fixed windows of seconds aligned to
//! the Unix epoch.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::invalid::{InvalidValue, ValueKind};
use crate::time::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// A counting period.
///
/// ```
/// use keyward::{Period, Timestamp};
/// let p: Period = "month".parse()?;
/// let now = Timestamp::parse_rfc3339("2026-02-14T09:30:00Z")?;
/// let (start, end) = p.window(now);
/// assert_eq!(start.to_string(), "2026-02-01T00:00:00.000Z");
/// assert_eq!(end.to_string(), "2026-03-01T00:00:00.000Z");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A calendar day, UTC.
    Day,
    /// A calendar month, UTC.
    Month,
    /// Fixed windows of this many seconds, aligned to the Unix epoch.
    Seconds(u64),
}

impl Period {
    /// The window containing `now`: `[start, end)`.
    pub fn window(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        let ms = now.unix_millis();
        match self {
            Period::Day => {
                let start = ms.div_euclid(DAY_MS) * DAY_MS;
                (
                    Timestamp::from_unix_millis(start),
                    Timestamp::from_unix_millis(start + DAY_MS),
                )
            }
            Period::Month => {
                let date = now.to_offset_date_time().date();
                let (y, m) = (date.year(), u8::from(date.month()));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (month_start(y, m), month_start(ny, nm))
            }
            Period::Seconds(s) => {
                let len = i64::try_from(s.saturating_mul(1000))
                    .unwrap_or(i64::MAX)
                    .max(1);
                let start = ms.div_euclid(len) * len;
                (
                    Timestamp::from_unix_millis(start),
                    Timestamp::from_unix_millis(start.saturating_add(len)),
                )
            }
        }
    }
}

fn month_start(year: i32, month: u8) -> Timestamp {
    let date = time::Month::try_from(month)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(year, m, 1).ok());
    match date {
        Some(d) => {
            let secs = d.midnight().assume_utc().unix_timestamp();
            Timestamp::from_unix_millis(secs.saturating_mul(1000))
        }
        None => Timestamp::from_unix_millis(i64::MAX),
    }
}

impl FromStr for Period {
    type Err = InvalidValue;

    /// `day`/`daily`, `month`/`monthly`, or a duration such as `1h` or `7d`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" | "daily" => Ok(Period::Day),
            "month" | "monthly" => Ok(Period::Month),
            other => {
                let d = crate::time::parse_duration(other).map_err(|_| {
                    InvalidValue::new(
                        ValueKind::Duration,
                        "a period is day, month, or a duration such as 1h or 7d",
                    )
                })?;
                if d.as_secs() == 0 {
                    return Err(InvalidValue::new(
                        ValueKind::Duration,
                        "a period cannot be zero",
                    ));
                }
                Ok(Period::Seconds(d.as_secs()))
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Day => f.write_str("day"),
            Period::Month => f.write_str("month"),
            Period::Seconds(s) => write!(f, "{s}s"),
        }
    }
}

/// A limit on events per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Events allowed per period.
    pub limit: u64,
    /// The period.
    pub period: Period,
}

/// Remaining uses of a key, consumed one per successful verify.
///
/// Without a refill, `amount` uses over the key's lifetime. With one, `amount` uses in the
/// period the key was issued, then `refill.amount` in each later period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credits {
    /// Uses granted at issue.
    pub amount: u64,
    /// Periodic refill, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
}

/// A periodic refill of credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    /// How often.
    pub period: Period,
    /// To how many uses.
    pub amount: u64,
}

impl FromStr for Refill {
    type Err = InvalidValue;

    /// `monthly:1000`, `daily:50`, `1h:10`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (period, amount) = s.split_once(':').ok_or_else(|| {
            InvalidValue::new(
                ValueKind::Config,
                "a refill is PERIOD:AMOUNT, e.g. monthly:1000",
            )
        })?;
        Ok(Refill {
            period: period.parse()?,
            amount: amount.parse().map_err(|_| {
                InvalidValue::new(ValueKind::Config, "a refill amount is a whole number")
            })?,
        })
    }
}

/// Requests allowed per interval (GCRA, with a burst of `requests`): per process or across
/// every instance sharing the store, as the manager's [`RateLimitMode`](crate::RateLimitMode)
/// says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per interval (also the burst size).
    pub requests: u32,
    /// The interval in seconds.
    pub per_seconds: u32,
}

/// Where a quota or credit budget stands in the current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaUsage {
    /// The limit for the period.
    pub limit: u64,
    /// Used in the period.
    pub used: u64,
    /// Left in the period.
    pub remaining: u64,
    /// When the period started.
    pub period_start: Timestamp,
    /// When it resets (`None`: never, e.g. credits without refill).
    pub resets_at: Option<Timestamp>,
}

impl QuotaUsage {
    pub(crate) fn new(
        limit: u64,
        used: u64,
        period_start: Timestamp,
        resets_at: Option<Timestamp>,
    ) -> Self {
        Self {
            limit,
            used,
            remaining: limit.saturating_sub(used),
            period_start,
            resets_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn calendar_windows_are_utc_days_and_months() {
        let (s, e) = Period::Day.window(ts("2026-11-23T23:59:59.999Z"));
        assert_eq!(
            (s, e),
            (ts("2026-11-23T00:00:00Z"), ts("2026-11-24T00:00:00Z"))
        );
        let (s, e) = Period::Month.window(ts("2026-12-31T23:59:59.999Z"));
        assert_eq!(
            (s, e),
            (ts("2026-12-01T00:00:00Z"), ts("2027-01-01T00:00:00Z"))
        );
        let (s, _) = Period::Month.window(ts("2027-01-01T00:00:00Z"));
        assert_eq!(s, ts("2027-01-01T00:00:00Z"));
        let (s, e) = Period::Seconds(3600).window(ts("2026-11-23T10:59:00Z"));
        assert_eq!(
            (s, e),
            (ts("2026-11-23T10:00:00Z"), ts("2026-11-23T11:00:00Z"))
        );
    }

    #[test]
    fn periods_and_refills_parse_from_text() {
        assert_eq!("monthly".parse::<Period>().unwrap(), Period::Month);
        assert_eq!("7d".parse::<Period>().unwrap(), Period::Seconds(7 * 86400));
        assert!("0s".parse::<Period>().is_err());
        assert_eq!(
            "daily:50".parse::<Refill>().unwrap(),
            Refill {
                period: Period::Day,
                amount: 50
            }
        );
        assert!("monthly".parse::<Refill>().is_err());
    }
}
