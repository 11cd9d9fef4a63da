//! The cases on leased allotments and cluster rate limiters (docs/ARCHITECTURE.md,
//! "Metering"): `lease`, `settle`, `consume` against leased units, `take_cells` and
//! `return_cells`.
//!
//! Every `pub async fn` here is a case, listed in the one table in the parent module; one that
//! is not listed is never used, and `dead_code` is an error here.
#![deny(dead_code)]

use std::sync::Arc;

use futures_util::future::join_all;

use super::helpers::{t, unique};
use crate::store::{Consumption, KeyStore, Lease, RateCells, UsageBucket};

/// A bucket no other case uses, in the period starting at `t(0)`.
fn bucket(base: &str) -> UsageBucket {
    UsageBucket {
        counter: unique(base),
        period_start: t(0),
    }
}

/// The counts of `bucket` (a `lease` of nothing only reads).
async fn counts(store: &Arc<dyn KeyStore>, bucket: &UsageBucket, limit: u64) -> Lease {
    store.lease(bucket, 0, 0, limit).await.expect("lease 0")
}

/// The cases' clock for rate limiters, in microseconds (the cases' clock origin, in 2027).
const T0: i64 = 1_800_000_000_000_000;
/// 100 cells a second.
const EMISSION: i64 = 10_000;
/// A burst of 10 cells.
const TOLERANCE: i64 = 9 * EMISSION;

/// A call on the rate limiter `name` at `T0 + micros`.
fn cells(name: &str, micros: i64) -> RateCells {
    RateCells::new(name, T0 + micros, EMISSION, TOLERANCE)
}

/// 64 concurrent leases of one unit against a limit of 50: exactly 50 are granted, and
/// they are leased, not used.
pub async fn lease_never_over_reserves_under_concurrency(store: &Arc<dyn KeyStore>) {
    let bucket = bucket("conc-lease");
    let tasks = (0..64).map(|_| {
        let store = Arc::clone(store);
        let bucket = bucket.clone();
        tokio::spawn(async move { store.lease(&bucket, 1, 1, 50).await })
    });
    let mut granted = 0;
    let mut refused = 0;
    for r in join_all(tasks).await {
        let lease = r.expect("task").expect("lease");
        assert!(lease.granted <= 1, "{lease:?}");
        assert!(lease.reserved() <= 50, "{lease:?}");
        if lease.granted == 1 {
            granted += 1;
        } else {
            assert_eq!(lease.leased, 50, "refused only when all is leased");
            refused += 1;
        }
    }
    assert_eq!((granted, refused), (50, 14));
    assert_eq!(
        counts(store, &bucket, 50).await,
        Lease {
            granted: 0,
            used: 0,
            leased: 50
        }
    );
    assert_eq!(store.usage(&bucket).await.expect("usage"), 0);
}

/// A lease grants what is asked when it is free; else all that is free if that is at least
/// the minimum; else nothing. A lease of nothing only reads.
pub async fn lease_grants_want_or_all_that_is_free_or_none(store: &Arc<dyn KeyStore>) {
    let bucket = bucket("lease-grant");
    let lease = |want, min| {
        let (store, bucket) = (Arc::clone(store), bucket.clone());
        async move { store.lease(&bucket, want, min, 100).await.expect("lease") }
    };
    let expect = |granted, leased| Lease {
        granted,
        used: 0,
        leased,
    };
    assert_eq!(lease(0, 0).await, expect(0, 0));
    assert_eq!(lease(30, 30).await, expect(30, 30));
    assert_eq!(lease(60, 10).await, expect(60, 90));
    // 10 are free: fewer than the minimum of 11, so none.
    assert_eq!(lease(20, 11).await, expect(0, 90));
    // 10 are free and at least 5 are asked: all 10.
    assert_eq!(lease(20, 5).await, expect(10, 100));
    assert_eq!(lease(1, 0).await, expect(0, 100));
    assert_eq!(lease(1, 1).await, expect(0, 100));
    assert_eq!(lease(0, 0).await, expect(0, 100));
    assert_eq!(store.usage(&bucket).await.expect("usage"), 0);
}

/// `consume` counts leased units against the limit, and a lease counts consumed ones.
pub async fn consume_counts_leased_units_against_the_limit(store: &Arc<dyn KeyStore>) {
    let bucket = bucket("lease-consume");
    assert_eq!(
        store
            .lease(&bucket, 40, 40, 50)
            .await
            .expect("lease")
            .granted,
        40
    );
    assert_eq!(
        store.consume(&bucket, 11, 50).await.expect("consume"),
        Consumption::Refused { used: 0 }
    );
    assert_eq!(
        store.consume(&bucket, 10, 50).await.expect("consume"),
        Consumption::Granted { used: 10 }
    );
    assert_eq!(
        store.consume(&bucket, 1, 50).await.expect("consume"),
        Consumption::Refused { used: 10 }
    );
    assert_eq!(
        store.lease(&bucket, 1, 1, 50).await.expect("lease"),
        Lease {
            granted: 0,
            used: 10,
            leased: 40
        }
    );
    // The lease's units come back: consumers may spend them.
    assert_eq!(
        store.settle(&bucket, 0, 40).await.expect("settle"),
        Lease {
            granted: 0,
            used: 10,
            leased: 0
        }
    );
    assert_eq!(
        store.consume(&bucket, 40, 50).await.expect("consume"),
        Consumption::Granted { used: 50 }
    );
    assert_eq!(
        store.lease(&bucket, 1, 1, 50).await.expect("lease").granted,
        0
    );
}

/// `settle` adds spent units to `used` and takes spent and returned units out of `leased`,
/// never below zero; `usage` shows only settled units.
pub async fn settle_moves_spent_units_into_used_and_frees_the_rest(store: &Arc<dyn KeyStore>) {
    let bucket = bucket("settle");
    let settle = |spent, returned| {
        let (store, bucket) = (Arc::clone(store), bucket.clone());
        async move {
            store
                .settle(&bucket, spent, returned)
                .await
                .expect("settle")
        }
    };
    let expect = |used, leased| Lease {
        granted: 0,
        used,
        leased,
    };
    assert_eq!(
        store
            .lease(&bucket, 20, 1, 100)
            .await
            .expect("lease")
            .granted,
        20
    );
    assert_eq!(store.usage(&bucket).await.expect("usage"), 0);
    assert_eq!(settle(5, 0).await, expect(5, 15));
    assert_eq!(store.usage(&bucket).await.expect("usage"), 5);
    assert_eq!(settle(3, 2).await, expect(8, 10));
    assert_eq!(store.usage(&bucket).await.expect("usage"), 8);
    // More returned than is leased: `leased` stops at zero.
    assert_eq!(settle(0, 100).await, expect(8, 0));
    // Units spent are counted even when no lease is left to take them from.
    assert_eq!(settle(2, 5).await, expect(10, 0));
    assert_eq!(counts(store, &bucket, 100).await, expect(10, 0));
    assert_eq!(store.usage(&bucket).await.expect("usage"), 10);
    // All but the 10 used is free again.
    assert_eq!(
        store.lease(&bucket, 95, 1, 100).await.expect("lease"),
        Lease {
            granted: 90,
            used: 10,
            leased: 90
        }
    );
    // Settling on a bucket never used changes nothing.
    let empty = self::bucket("settle-empty");
    assert_eq!(
        store.settle(&empty, 0, 5).await.expect("settle"),
        expect(0, 0)
    );
    assert_eq!(store.usage(&empty).await.expect("usage"), 0);
}

/// Leases are counted per counter name and per period start.
pub async fn leases_are_separate_per_counter_and_period(store: &Arc<dyn KeyStore>) {
    let name = unique("lease-period");
    let may = UsageBucket {
        counter: name.clone(),
        period_start: t(0),
    };
    let june = UsageBucket {
        counter: name,
        period_start: t(30 * 86_400_000),
    };
    let other = bucket("lease-period-other");
    assert_eq!(
        store.lease(&may, 10, 10, 10).await.expect("lease").granted,
        10
    );
    assert_eq!(store.lease(&may, 1, 1, 10).await.expect("lease").granted, 0);
    assert_eq!(
        store.lease(&june, 10, 10, 10).await.expect("lease").granted,
        10
    );
    assert_eq!(
        store.lease(&other, 5, 5, 10).await.expect("lease").granted,
        5
    );
    assert_eq!(
        store.settle(&june, 4, 6).await.expect("settle"),
        Lease {
            granted: 0,
            used: 4,
            leased: 0
        }
    );
    assert_eq!(store.usage(&may).await.expect("usage"), 0);
    assert_eq!(store.usage(&june).await.expect("usage"), 4);
    assert_eq!(store.usage(&other).await.expect("usage"), 0);
    assert_eq!(
        store.consume(&may, 1, 10).await.expect("consume"),
        Consumption::Refused { used: 0 }
    );
    assert_eq!(
        store.consume(&june, 6, 10).await.expect("consume"),
        Consumption::Granted { used: 10 }
    );
    assert_eq!(
        counts(store, &may, 10).await,
        Lease {
            granted: 0,
            used: 0,
            leased: 10
        }
    );
}

/// Limits and amounts up to `u64::MAX` answer typed results without a panic. SQL stores
/// keep counts as signed 64-bit integers, so they may grant and count less than a memory
/// store, but never more than the limit.
pub async fn huge_leases_and_settlements_answer_without_panic(store: &Arc<dyn KeyStore>) {
    const MAX: u64 = u64::MAX;
    const SQL_MAX: u64 = i64::MAX.unsigned_abs();
    let fresh = bucket("huge-fresh");
    assert_eq!(
        store
            .lease(&fresh, MAX, MAX, 10)
            .await
            .expect("lease")
            .granted,
        0
    );
    assert_eq!(
        store
            .lease(&fresh, MAX, 0, 10)
            .await
            .expect("lease")
            .granted,
        10
    );

    let bucket = bucket("huge");
    let first = store.lease(&bucket, MAX, 1, MAX).await.expect("lease");
    assert!(first.granted >= SQL_MAX, "{first:?}");
    assert_eq!((first.used, first.leased), (0, first.granted));
    assert_eq!(
        store.lease(&bucket, MAX, 1, MAX).await.expect("lease"),
        Lease {
            granted: 0,
            used: 0,
            leased: first.granted
        }
    );
    assert_eq!(
        store.consume(&bucket, 1, MAX).await.expect("consume"),
        Consumption::Refused { used: 0 }
    );
    let settled = store.settle(&bucket, MAX, MAX).await.expect("settle");
    assert!(settled.used >= SQL_MAX, "{settled:?}");
    assert_eq!((settled.granted, settled.leased), (0, 0));
    assert_eq!(store.usage(&bucket).await.expect("usage"), settled.used);
    assert_eq!(
        store
            .lease(&bucket, 1, 1, MAX)
            .await
            .expect("lease")
            .granted,
        0
    );
    assert_eq!(
        store.consume(&bucket, MAX, MAX).await.expect("consume"),
        Consumption::Refused { used: settled.used }
    );
}

/// A fresh rate limiter gives at most its burst at once, then one cell per emission
/// interval, and never more than the burst however long it was idle.
pub async fn take_cells_gives_the_burst_then_refills_at_the_emission_rate(
    store: &Arc<dyn KeyStore>,
) {
    let name = unique("rate-refill");
    let take = |micros, want| {
        let (store, cells) = (Arc::clone(store), cells(&name, micros));
        async move { store.take_cells(&cells, want).await.expect("take_cells") }
    };
    assert_eq!(take(0, 100).await, 10);
    assert_eq!(take(0, 1).await, 0);
    assert_eq!(take(EMISSION - 1, 1).await, 0);
    assert_eq!(take(EMISSION, 5).await, 1);
    assert_eq!(take(EMISSION, 1).await, 0);
    // 3.5 intervals later, 2 more (the half interval is not a cell yet).
    assert_eq!(take(3 * EMISSION + EMISSION / 2, 100).await, 2);
    assert_eq!(take(3 * EMISSION + EMISSION / 2, 1).await, 0);
    // Taking nothing takes nothing.
    assert_eq!(take(1_000_000, 0).await, 0);
    // Idle for a second (100 intervals): the burst again, not more.
    assert_eq!(take(1_000_000, 100).await, 10);
    // A limiter is one per name.
    let other = unique("rate-refill-other");
    let cells = RateCells::new(other, T0 + 1_000_000, EMISSION, TOLERANCE);
    assert_eq!(store.take_cells(&cells, 3).await.expect("take_cells"), 3);
}

/// Concurrent takers of one rate limiter at one instant share its burst: together they never
/// get more than is free.
pub async fn concurrent_take_cells_never_hand_out_more_than_is_free(store: &Arc<dyn KeyStore>) {
    let name = unique("rate-conc");
    let tasks = (0..48).map(|i| {
        let store = Arc::clone(store);
        let cells = cells(&name, 0);
        let want = if i % 3 == 0 { 3 } else { 1 };
        tokio::spawn(async move { (want, store.take_cells(&cells, want).await) })
    });
    let mut total = 0;
    for r in join_all(tasks).await {
        let (want, taken) = r.expect("task");
        let taken = taken.expect("take_cells");
        assert!(taken <= want, "{taken} of {want}");
        total += taken;
    }
    assert_eq!(total, 10);
    let cells = cells(&name, 0);
    assert_eq!(store.take_cells(&cells, 1).await.expect("take_cells"), 0);
}

/// Returned cells can be taken again, but a return never makes the limiter's TAT earlier
/// than now: it gives back no more than the burst.
pub async fn return_cells_gives_cells_back_but_never_before_now(store: &Arc<dyn KeyStore>) {
    let name = unique("rate-return");
    let take = |micros, want| {
        let (store, cells) = (Arc::clone(store), cells(&name, micros));
        async move { store.take_cells(&cells, want).await.expect("take_cells") }
    };
    let give = |micros, n| {
        let (store, cells) = (Arc::clone(store), cells(&name, micros));
        async move { store.return_cells(&cells, n).await.expect("return_cells") }
    };
    assert_eq!(take(0, 10).await, 10);
    give(0, 4).await;
    assert_eq!(take(0, 10).await, 4);
    assert_eq!(take(0, 1).await, 0);
    // More back than was taken: the limiter is as fresh as at first, no fresher.
    give(0, 100).await;
    assert_eq!(take(0, 100).await, 10);
    // Half the burst's time later, all 10 back: the TAT goes back to the returner's now, not
    // to the past, so a caller whose clock is half the burst behind finds only 5 free.
    give(5 * EMISSION, 10).await;
    assert_eq!(take(0, 100).await, 5);
    // Returning nothing returns nothing.
    give(0, 0).await;
    assert_eq!(take(0, 1).await, 0);
    // A limiter never used has nothing to give back.
    let unknown = unique("rate-return-unknown");
    let fresh = RateCells::new(unknown, T0, EMISSION, TOLERANCE);
    store.return_cells(&fresh, 5).await.expect("return_cells");
    assert_eq!(store.take_cells(&fresh, 100).await.expect("take_cells"), 10);
}
