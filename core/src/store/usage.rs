//! The [`UsageStore`] contract: usage counters (quotas, credits) and named settings, and the
//! one place where the persisted names of counters and settings are built.

use std::fmt;

use async_trait::async_trait;

use super::error::StoreError;
use super::lease::{Lease, RateCells};
use crate::audit::AuditEntry;
use crate::key::KeyId;
use crate::name::Project;
use crate::time::Timestamp;

/// Which usage counter: the persisted name of each is built by [`Counter::name`] and nowhere
/// else, so a counter can never be split by a misspelt name.
///
/// ```
/// use keyward::{Counter, Timestamp};
/// let project = "web-app".parse()?;
/// assert_eq!(Counter::ProjectEvents(&project).name(), "project:web-app:events");
/// let bucket = Counter::ProjectEvents(&project).bucket(Timestamp::from_unix_millis(0));
/// assert_eq!(bucket.counter, "project:web-app:events");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counter<'a> {
    /// Events counted against a project's quota.
    ProjectEvents(&'a Project),
    /// Events counted against a key's own quota.
    KeyEvents(KeyId),
    /// Credits a key has spent.
    KeyCredits(KeyId),
    /// A key's cluster-wide rate limiter (a name for [`UsageStore::take_cells`], not a
    /// bucket).
    KeyRate(KeyId),
    /// A once-only claim of an event (events, docs/ARCHITECTURE.md): consumed with limit 1,
    /// so of every instance sharing the store exactly one is granted it and emits the event.
    EventClaim(EventClaim<'a>),
}

/// Which event a [`Counter::EventClaim`] claims; the bucket's period start tells which period
/// (or, for an expiring key, which expiry instant).
///
/// ```
/// use keyward::{Counter, EventClaim};
/// let project = "web-app".parse()?;
/// let claim = EventClaim::ProjectQuota { project: &project, percent: 80 };
/// assert_eq!(Counter::EventClaim(claim).name(), "event:project:web-app:quota:80");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventClaim<'a> {
    /// A project's event quota reached `percent` % of its limit.
    ProjectQuota {
        /// The project.
        project: &'a Project,
        /// The threshold, in percent of the limit.
        percent: u8,
    },
    /// A key's own event quota reached `percent` % of its limit.
    KeyQuota {
        /// The key.
        id: KeyId,
        /// The threshold, in percent of the limit.
        percent: u8,
    },
    /// A key's credits fell to the configured low level.
    KeyCreditsLow(KeyId),
    /// A key is about to expire.
    KeyExpiring(KeyId),
}

impl Counter<'_> {
    /// The persisted name, e.g. `project:web-app:events` or `key:7Kq2mZ9xA1bC:credits`.
    pub fn name(&self) -> String {
        match self {
            Counter::ProjectEvents(project) => format!("project:{project}:events"),
            Counter::KeyEvents(id) => format!("key:{id}:events"),
            Counter::KeyCredits(id) => format!("key:{id}:credits"),
            Counter::KeyRate(id) => format!("key:{id}:rate"),
            Counter::EventClaim(EventClaim::ProjectQuota { project, percent }) => {
                format!("event:project:{project}:quota:{percent}")
            }
            Counter::EventClaim(EventClaim::KeyQuota { id, percent }) => {
                format!("event:key:{id}:quota:{percent}")
            }
            Counter::EventClaim(EventClaim::KeyCreditsLow(id)) => {
                format!("event:key:{id}:credits-low")
            }
            Counter::EventClaim(EventClaim::KeyExpiring(id)) => format!("event:key:{id}:expiring"),
        }
    }

    /// This counter in the period that starts at `period_start`.
    pub fn bucket(&self, period_start: Timestamp) -> UsageBucket {
        UsageBucket {
            counter: self.name(),
            period_start,
        }
    }
}

/// Which named setting: the persisted name of each is built by [`Setting::name`] and nowhere
/// else.
///
/// ```
/// let project = "web-app".parse()?;
/// assert_eq!(keyward::Setting::ProjectQuota(&project).name(), "quota:project:web-app");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting<'a> {
    /// A project's event quota (a JSON [`Quota`](crate::Quota)).
    ProjectQuota(&'a Project),
}

impl Setting<'_> {
    /// The persisted name, e.g. `quota:project:web-app`.
    pub fn name(&self) -> String {
        match self {
            Setting::ProjectQuota(project) => format!("quota:project:{project}"),
        }
    }
}

/// A usage counter: a named bucket (e.g. a project's monthly events) in one period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageBucket {
    /// The counter's name, e.g. `project:web-app:events`.
    pub counter: String,
    /// The start of the period; a new period starts a new count at zero.
    pub period_start: Timestamp,
}

/// The result of [`UsageStore::consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumption {
    /// The amount was added; `used` is the new total for the period.
    Granted {
        /// Total used in the period, including this amount.
        used: u64,
    },
    /// Adding the amount would exceed the limit; nothing was added.
    Refused {
        /// Total used in the period (unchanged).
        used: u64,
    },
}

/// Usage counters and named settings. Implementations must make every method atomic with
/// respect to concurrent callers in any process sharing the backend. Part of
/// [`KeyStore`](super::KeyStore).
#[async_trait]
pub trait UsageStore: Send + Sync + fmt::Debug + 'static {
    /// Atomically adds `amount` to the bucket's count if the result stays within `limit`;
    /// otherwise adds nothing. Never over-spends under concurrency. Units reserved by
    /// [`UsageStore::lease`] count against the limit too: the check is
    /// `used + leased + amount ≤ limit`. SQL stores keep counts as signed 64-bit integers: a
    /// total above `i64::MAX` is refused like one above the limit.
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError>;

    /// Atomically subtracts up to `amount` from the bucket's count (never below zero): gives
    /// back units consumed for a request that was then refused by another limit.
    async fn release(&self, bucket: &UsageBucket, amount: u64) -> Result<(), StoreError>;

    /// Atomically reserves `want` units of the bucket's budget (`limit − used − leased`), or
    /// as many as are free if that is fewer but at least `min` (`min ≤ want`), or none; adds
    /// them to `leased`. Never over-reserves under concurrency: the sum of everything granted
    /// and leased stays within the limit. The caller later [`settle`](UsageStore::settle)s
    /// the units. `want == 0` only reads the counts.
    async fn lease(
        &self,
        bucket: &UsageBucket,
        want: u64,
        min: u64,
        limit: u64,
    ) -> Result<Lease, StoreError>;

    /// Atomically settles leased units: `spent` are added to `used` and `returned` freed; both
    /// leave `leased` (which never goes below zero). Answers the counts after the call.
    async fn settle(
        &self,
        bucket: &UsageBucket,
        spent: u64,
        returned: u64,
    ) -> Result<Lease, StoreError>;

    /// Atomically takes up to `want` cells from the cluster-wide rate limiter `cells.name`
    /// (see [`RateCells`]): as many as are free, at most `want`; answers how many it took.
    async fn take_cells(&self, cells: &RateCells, want: u64) -> Result<u64, StoreError>;

    /// Atomically gives back `n` unused cells to the rate limiter `cells.name`.
    async fn return_cells(&self, cells: &RateCells, n: u64) -> Result<(), StoreError>;

    /// Whether other processes serve traffic from this store's counters (a server database,
    /// not a file or memory): rate limits are cluster-wide by default then.
    fn shared(&self) -> bool;

    /// The bucket's settled count, `used` (zero when it has none); units leased and not
    /// settled are not in it.
    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError>;

    /// Reads a named setting (e.g. a project's quota), `Ok(None)` when unset.
    async fn get_setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Writes (`Some`) or deletes (`None`) a named setting, and appends the `audit` entries
    /// in the same transaction (a refused entry writes nothing).
    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError>;
}
