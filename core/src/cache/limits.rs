//! The cache's limits on failing cold work (docs/ARCHITECTURE.md, "The verify cache"): the
//! failed attempts of each id, counted before their Argon2 runs, and the share of the hashing
//! pool that attempts against ids with a failure history may hold at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::key::KeyId;

/// The attempts of one id counted in the window opened by the first of them: the failed
/// ones, and those running (reserved; given back if they succeed).
struct Window {
    since: Instant,
    count: u32,
}

type Counter = Arc<Mutex<Window>>;

/// Counted attempts per id: at most `max` per `window`.
pub(super) struct Failures {
    max: u32,
    window: Duration,
    /// Bounded like the entries (quick_cache): a lookup on every attempt against an uncached
    /// id, the hot path of a guessing flood.
    counters: quick_cache::sync::Cache<KeyId, Counter>,
}

impl Failures {
    pub(super) fn new(max: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max,
            window,
            counters: quick_cache::sync::Cache::new(capacity),
        }
    }

    /// The window of the limit (how long a refused caller should wait at most).
    pub(super) fn window(&self) -> Duration {
        self.window
    }

    /// Whether `id` has used up its attempts in a window that has not ended.
    pub(super) fn exhausted(&self, id: &KeyId) -> bool {
        self.counters
            .get(id)
            .is_some_and(|counter| self.current(&counter).count >= self.max)
    }

    /// Counts an attempt against `id` before its work runs, or `None` when the id has used
    /// up its attempts. Atomic per id: two callers never both take the last attempt.
    pub(super) fn reserve(&self, id: &KeyId) -> Option<Reservation> {
        let counter = self
            .counters
            .get_or_insert_with(id, || {
                Ok::<_, std::convert::Infallible>(Arc::new(Mutex::new(Window {
                    since: Instant::now(),
                    count: 0,
                })))
            })
            .ok()?;
        let mut window = self.current(&counter);
        if window.count >= self.max {
            return None;
        }
        let had_history = window.count > 0;
        window.count += 1;
        let since = window.since;
        drop(window);
        Some(Reservation {
            counter,
            since,
            had_history,
            kept: false,
        })
    }

    /// The counter's window, restarted if it has ended.
    fn current<'c>(&self, counter: &'c Counter) -> MutexGuard<'c, Window> {
        let mut window = counter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.since.elapsed() >= self.window {
            *window = Window {
                since: Instant::now(),
                count: 0,
            };
        }
        window
    }
}

/// One counted attempt. Dropped without [`Reservation::keep`] (the attempt succeeded, or
/// failed for another reason than the credential), it is given back.
pub(super) struct Reservation {
    counter: Counter,
    since: Instant,
    had_history: bool,
    kept: bool,
}

impl Reservation {
    /// Whether the id had counted attempts in this window before this one.
    pub(super) fn had_history(&self) -> bool {
        self.had_history
    }

    /// The attempt failed: it stays counted.
    pub(super) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut window = self
            .counter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A window that restarted meanwhile does not hold this attempt.
        if window.since == self.since {
            window.count = window.count.saturating_sub(1);
        }
    }
}

/// How many cold verifies against ids with a failure history may run at once: a share of
/// the hashing pool, so that a flood of failing attempts leaves the rest to keys without one.
pub(super) struct Budget {
    limit: usize,
    in_use: AtomicUsize,
}

impl Budget {
    /// `share_percent` of `workers`, at least one.
    pub(super) fn new(workers: usize, share_percent: u8) -> Self {
        let share = usize::from(share_percent.min(100));
        Self {
            limit: (workers.saturating_mul(share) / 100).max(1),
            in_use: AtomicUsize::new(0),
        }
    }

    /// A slot, or `None` when the share is in use.
    pub(super) fn take(&self) -> Option<Slot<'_>> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }
}

/// A slot of the [`Budget`], given back on drop.
pub(super) struct Slot<'a>(&'a Budget);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> KeyId {
        KeyId::generate().expect("random id")
    }

    #[test]
    fn reservations_are_counted_until_given_back_and_kept_failures_stay() {
        let f = Failures::new(2, Duration::from_secs(60), 10);
        let id = id();
        let first = f.reserve(&id).expect("first");
        assert!(!first.had_history());
        let second = f.reserve(&id).expect("second");
        assert!(second.had_history());
        assert!(
            f.reserve(&id).is_none(),
            "two running attempts use up the limit"
        );
        drop(second);
        let again = f.reserve(&id).expect("a given-back attempt is free again");
        again.keep();
        first.keep();
        assert!(f.exhausted(&id));
    }

    #[test]
    fn the_budget_is_a_share_of_the_pool_and_at_least_one() {
        let b = Budget::new(4, 50);
        let (s1, s2) = (b.take().expect("1"), b.take().expect("2"));
        assert!(b.take().is_none());
        drop(s1);
        assert!(b.take().is_some());
        drop(s2);
        let tiny = Budget::new(1, 10);
        let _only = tiny.take().expect("at least one");
        assert!(tiny.take().is_none());
    }
}
