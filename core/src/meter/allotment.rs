//! One bucket's allotment in one instance: the units it holds, what it granted and has not
//! settled, and how big its next chunk should be. Plain arithmetic, no I/O.

use std::time::{Duration, Instant};

use crate::store::Lease;

/// A bucket's leased units in this instance.
#[derive(Debug)]
pub(super) struct Allotment {
    /// The limit the held units were leased under (a changed limit gives them back first).
    pub(super) limit: u64,
    /// Units leased and not granted yet.
    pub(super) have: u64,
    /// Units granted and not settled yet.
    pub(super) unsettled: u64,
    /// The ordinal the next granted unit gets: its position in the bucket's reserved count.
    next: u64,
    /// The highest ordinal granted here: a threshold is reached by the first grant above it.
    high: u64,
    /// The size of the last chunk asked for.
    chunk: u64,
    /// When the last lease arrived.
    leased_at: Option<Instant>,
    /// When a unit was last granted (or the allotment made).
    pub(super) last_grant: Instant,
    /// The budget free after the last lease (`limit − used − leased` then).
    free: u64,
    /// The store's `leased` count when waiting at the edge last gave up: while it has not
    /// changed, another wait would give up again (units stranded by a crashed instance).
    pub(super) stalled_at: Option<u64>,
    /// The free budget when a request was last refused with no units held anywhere, and
    /// when: until `idle_return` later, a larger request is refused without a store
    /// call (a refused flood does not become a write per request).
    pub(super) known_free: Option<(u64, Instant)>,
}

/// A grant's place in the bucket's count: `used` is its ordinal, `before` the highest ordinal
/// granted before it in this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ordinal {
    pub(super) before: u64,
    pub(super) used: u64,
}

impl Allotment {
    pub(super) fn new(limit: u64, now: Instant) -> Self {
        Self {
            limit,
            have: 0,
            unsettled: 0,
            next: 1,
            high: 0,
            chunk: 0,
            leased_at: None,
            last_grant: now,
            free: limit,
            stalled_at: None,
            known_free: None,
        }
    }

    /// Grants `amount` held units, if there are that many under `limit`.
    pub(super) fn grant(&mut self, amount: u64, limit: u64, now: Instant) -> Option<Ordinal> {
        if self.limit != limit || self.have < amount {
            return None;
        }
        self.have -= amount;
        Some(self.count(amount, now))
    }

    /// Counts `amount` units granted (from held units or a lease of exactly them).
    pub(super) fn count(&mut self, amount: u64, now: Instant) -> Ordinal {
        self.unsettled = self.unsettled.saturating_add(amount);
        let used = self.next.saturating_add(amount).saturating_sub(1);
        self.next = self.next.saturating_add(amount);
        let before = self.high;
        self.high = self.high.max(used);
        self.last_grant = now;
        Ordinal { before, used }
    }

    /// Takes back `amount` granted units (a batch refused by another limit) as held ones.
    pub(super) fn ungrant(&mut self, amount: u64) {
        let amount = amount.min(self.unsettled);
        self.unsettled -= amount;
        self.have = self.have.saturating_add(amount);
    }

    /// The next lease to ask for `amount` units: `(want, min)`. The chunk doubles while
    /// leases last less than `horizon`, halves when they last longer, stays within
    /// `max_chunk` and a sixteenth of the budget last seen free.
    pub(super) fn next_lease(
        &mut self,
        amount: u64,
        now: Instant,
        horizon: Duration,
        max_chunk: u64,
    ) -> (u64, u64) {
        let need = amount.saturating_sub(self.have);
        let grown = match self.leased_at {
            None => 1,
            Some(at) if now.saturating_duration_since(at) < horizon => self.chunk.saturating_mul(2),
            Some(_) => self.chunk / 2,
        };
        self.chunk = grown.clamp(1, max_chunk).min((self.free / 16).max(1));
        (need.max(self.chunk), need)
    }

    /// Takes in a lease answered by the store.
    pub(super) fn leased(&mut self, lease: &Lease, limit: u64, now: Instant) {
        if lease.granted > 0 {
            self.known_free = None;
        }
        self.limit = limit;
        self.have = self.have.saturating_add(lease.granted);
        self.free = limit.saturating_sub(lease.reserved());
        // The held units are the last ones reserved: number the next from there.
        self.next = lease.reserved().saturating_sub(self.have).saturating_add(1);
        self.leased_at = Some(now);
    }

    /// Whether `amount` is known not to fit (see `known_free`): the free budget then.
    pub(super) fn known_refusal(&self, amount: u64, limit: u64, within: Duration) -> Option<u64> {
        let (free, at) = self.known_free?;
        (self.limit == limit && at.elapsed() < within && amount > free.saturating_add(self.have))
            .then_some(free)
    }

    /// Whether nothing is held or owed: the allotment can be dropped.
    pub(super) fn is_empty(&self) -> bool {
        self.have == 0 && self.unsettled == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_millis(100);

    #[test]
    fn chunks_double_while_fast_halve_when_slow_and_shrink_at_the_edge() {
        let t0 = Instant::now();
        let mut a = Allotment::new(1_000_000, t0);
        assert_eq!(a.next_lease(1, t0, H, 10_000), (1, 1));
        let lease = |granted, used, leased| Lease {
            granted,
            used,
            leased,
        };
        a.leased(&lease(1, 0, 1), 1_000_000, t0);
        assert!(a.grant(1, 1_000_000, t0).is_some());
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let (want, min) = a.next_lease(1, t0, H, 10_000);
            assert_eq!(min, 1);
            sizes.push(want);
            a.leased(&lease(want, 0, want), 1_000_000, t0);
            while a.grant(1, 1_000_000, t0).is_some() {}
        }
        assert_eq!(sizes, [2, 4, 8, 16, 32]);
        // A lease that lasted longer than the horizon halves the chunk.
        let later = t0 + H * 2;
        assert_eq!(a.next_lease(1, later, H, 10_000).0, 16);
        // Near the limit: a sixteenth of the free budget, then single units.
        a.leased(&lease(0, 999_970, 0), 1_000_000, later);
        assert_eq!(a.next_lease(1, later, H, 10_000).0, 1);
        // A batch larger than the chunk asks for itself.
        assert_eq!(a.next_lease(50, later, H, 10_000), (50, 50));
    }

    #[test]
    fn grants_are_numbered_and_a_changed_limit_grants_nothing() {
        let t0 = Instant::now();
        let mut a = Allotment::new(100, t0);
        a.leased(
            &Lease {
                granted: 10,
                used: 20,
                leased: 10,
            },
            100,
            t0,
        );
        let first = a.grant(3, 100, t0).unwrap();
        assert_eq!((first.before, first.used), (0, 23));
        let second = a.grant(1, 100, t0).unwrap();
        assert_eq!((second.before, second.used), (23, 24));
        assert_eq!(a.grant(1, 50, t0), None, "another limit: give back first");
        assert_eq!(a.grant(7, 100, t0), None, "only 6 held");
        a.ungrant(4);
        assert_eq!((a.have, a.unsettled), (10, 0));
        a.ungrant(4);
        assert_eq!((a.have, a.unsettled), (10, 0), "never more than granted");
    }
}
