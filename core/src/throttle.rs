//! Log lines that cannot flood: an infrastructure failure (the store down, hashing
//! overloaded) is logged at most once per interval per cause, and the next line it logs says
//! how many were suppressed meanwhile. A store outage under load would otherwise write one
//! ERROR line per request (docs/ARCHITECTURE.md, "Errors").

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::time::Clock;

/// Why an operation failed, as far as logging is concerned: one budget of log lines each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The store failed (connection, I/O, a corrupt record).
    Store,
    /// Too much hashing work was queued.
    Overloaded,
    /// Anything else (hashing failed, the random generator failed, …).
    Other,
}

impl Cause {
    const ALL: [Cause; 3] = [Cause::Store, Cause::Overloaded, Cause::Other];

    fn index(self) -> usize {
        match self {
            Cause::Store => 0,
            Cause::Overloaded => 1,
            Cause::Other => 2,
        }
    }

    /// The cause as a short, stable word (`store`, `overloaded`, `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Store => "store",
            Cause::Overloaded => "overloaded",
            Cause::Other => "other",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cause's budget: when it last logged, and how many it suppressed since.
#[derive(Debug)]
struct Slot {
    last_ms: AtomicI64,
    suppressed: AtomicU64,
}

/// Decides which failures are logged: the first of each [`Cause`] in an interval, with the
/// count of those suppressed since the previous line. Lock-free; cheap to call on every
/// failure.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use keyward::{Cause, ManualClock, Timestamp, LogThrottle};
/// let clock = ManualClock::new(Timestamp::from_unix_millis(0));
/// let throttle = LogThrottle::new(Duration::from_secs(10), Arc::new(clock.clone()));
/// assert_eq!(throttle.admit(Cause::Store), Some(0));    // logged
/// assert_eq!(throttle.admit(Cause::Store), None);       // suppressed
/// assert_eq!(throttle.admit(Cause::Overloaded), Some(0)); // another cause: its own budget
/// clock.advance(Duration::from_secs(10));
/// assert_eq!(throttle.admit(Cause::Store), Some(1));    // logged, 1 suppressed meanwhile
/// ```
pub struct LogThrottle {
    interval_ms: i64,
    clock: Arc<dyn Clock>,
    slots: [Slot; 3],
}

impl fmt::Debug for LogThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogThrottle")
            .field("interval_ms", &self.interval_ms)
            .finish_non_exhaustive()
    }
}

impl LogThrottle {
    /// At most one line per `interval` per cause, on `clock`.
    pub fn new(interval: Duration, clock: Arc<dyn Clock>) -> Self {
        let slot = || Slot {
            last_ms: AtomicI64::new(i64::MIN),
            suppressed: AtomicU64::new(0),
        };
        Self {
            interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            clock,
            slots: Cause::ALL.map(|_| slot()),
        }
    }

    /// `Some(suppressed)` when a failure of `cause` should be logged now, with how many were
    /// suppressed since the last line; `None` when it is suppressed (and counted).
    pub fn admit(&self, cause: Cause) -> Option<u64> {
        let slot = &self.slots[cause.index()];
        let now = self.clock.now().unix_millis();
        let last = slot.last_ms.load(Ordering::Acquire);
        let due = last == i64::MIN || now.saturating_sub(last) >= self.interval_ms;
        if due
            && slot
                .last_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(slot.suppressed.swap(0, Ordering::AcqRel));
        }
        slot.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}
