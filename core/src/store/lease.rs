//! The values of the store's lease operations (docs/ARCHITECTURE.md, "Metering"): a
//! [`Lease`] of units reserved from a bucket's budget, and the [`RateCells`] of a
//! cluster-wide rate limiter (GCRA whose one state, the theoretical arrival time, lives in
//! the store).

/// The result of [`UsageStore::lease`](super::UsageStore::lease): units reserved from a
/// bucket's budget and the bucket's counts after the call.
///
/// A bucket's budget is `limit − used − leased`: `used` counts units settled as spent (what
/// usage reports show), `leased` units reserved by some instance and not settled yet.
///
/// ```
/// let lease = keyward::Lease { granted: 10, used: 30, leased: 15 };
/// assert_eq!(lease.reserved(), 45);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    /// Units reserved by this call (zero when fewer than the asked minimum were free).
    pub granted: u64,
    /// Units settled as spent in the bucket's period, after this call.
    pub used: u64,
    /// Units reserved by every holder and not settled, after this call (including `granted`).
    pub leased: u64,
}

impl Lease {
    /// The one rule of how much a lease grants, for stores: with `used` and `leased` read
    /// under the bucket's lock, reserves `want` units if that many of `limit − used − leased`
    /// are free, else all that are free if that is at least `min`, else none. Answers the
    /// lease with the counts to write back (`leased` grows by `granted`, and `used + leased`
    /// stays within `limit`).
    ///
    /// ```
    /// use keyward::Lease;
    /// assert_eq!(Lease::grant(100, 50, 40, 5, 1), Lease { granted: 5, used: 50, leased: 45 });
    /// assert_eq!(Lease::grant(100, 50, 46, 10, 1).granted, 4);
    /// assert_eq!(Lease::grant(100, 50, 46, 10, 5).granted, 0);
    /// ```
    pub fn grant(limit: u64, used: u64, leased: u64, want: u64, min: u64) -> Lease {
        let free = limit.saturating_sub(used.saturating_add(leased));
        let granted = if free >= want {
            want
        } else if free >= min {
            free
        } else {
            0
        };
        Lease {
            granted,
            used,
            leased: leased + granted,
        }
    }

    /// `used + leased`: how much of the budget is spent or reserved.
    pub fn reserved(&self) -> u64 {
        self.used.saturating_add(self.leased)
    }
}

/// One call to [`UsageStore::take_cells`](super::UsageStore::take_cells) on a cluster-wide
/// rate limiter: GCRA with the emission interval `emission_micros` (the limit's period divided
/// by its requests) and the burst tolerance `tolerance_micros` (`(burst − 1) × emission`).
///
/// The store keeps one number per limiter, its theoretical arrival time (TAT, in
/// microseconds since the Unix epoch). Taking `n` cells at `now` is allowed while
/// `max(TAT, now) + n × emission − now ≤ tolerance + emission`, and moves the TAT to
/// `max(TAT, now) + n × emission`.
///
/// ```
/// let cells = keyward::RateCells::new("key:7Kq2mZ9xA1bC:rate", 1_000_000, 10_000, 90_000);
/// // At a fresh limiter, up to ten cells (the burst) are free at once.
/// assert_eq!(cells.free_at(None), 10);
/// // With the TAT 50 ms ahead, five are.
/// assert_eq!(cells.free_at(Some(1_050_000)), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCells {
    /// The limiter's name (built by [`Counter::name`](super::Counter::name), e.g.
    /// `key:7Kq2mZ9xA1bC:rate`).
    pub name: String,
    /// Now, in microseconds since the Unix epoch (the caller's clock).
    pub now_micros: i64,
    /// The emission interval in microseconds (at least 1).
    pub emission_micros: i64,
    /// The burst tolerance in microseconds.
    pub tolerance_micros: i64,
}

impl RateCells {
    /// A call at `now_micros` with the given emission interval (raised to at least 1 µs) and
    /// tolerance (at least 0).
    pub fn new(
        name: impl Into<String>,
        now_micros: i64,
        emission_micros: i64,
        tolerance_micros: i64,
    ) -> Self {
        Self {
            name: name.into(),
            now_micros,
            emission_micros: emission_micros.max(1),
            tolerance_micros: tolerance_micros.max(0),
        }
    }

    /// How many cells are free at `now_micros` for a limiter whose TAT is `tat` (`None`: a
    /// limiter never used, or one whose TAT is in the past).
    pub fn free_at(&self, tat: Option<i64>) -> u64 {
        let base = tat.map_or(self.now_micros, |t| t.max(self.now_micros));
        let room = self
            .now_micros
            .saturating_add(self.tolerance_micros)
            .saturating_add(self.emission_micros)
            .saturating_sub(base);
        u64::try_from(room / self.emission_micros).unwrap_or(0)
    }

    /// The TAT after taking `n` cells from a limiter whose TAT is `tat` (store
    /// implementations write this).
    pub fn tat_after_taking(&self, tat: Option<i64>, n: u64) -> i64 {
        let base = tat.map_or(self.now_micros, |t| t.max(self.now_micros));
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        base.saturating_add(n.saturating_mul(self.emission_micros))
    }

    /// The TAT after giving back `n` unused cells to a limiter whose TAT is `tat`: earlier by
    /// `n` emissions, but never before now.
    pub fn tat_after_returning(&self, tat: Option<i64>, n: u64) -> i64 {
        let base = tat.unwrap_or(self.now_micros);
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        base.saturating_sub(n.saturating_mul(self.emission_micros))
            .max(self.now_micros)
    }
}
