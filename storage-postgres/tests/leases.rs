//! Leases and cluster rate limiters with several instances (separate pools) on one schema,
//! and their counts at the edge of `bigint`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use keyward::UsageStore;

use common::TestSchema;
use keyward::{Consumption, Lease, RateCells, Timestamp, UsageBucket};

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + ms)
}

fn bucket(name: &str) -> UsageBucket {
    UsageBucket {
        counter: name.into(),
        period_start: t(0),
    }
}

/// Two instances, each with its own pool: 64 concurrent leases of one unit against a limit
/// of 50, split between them, grant exactly 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_from_two_instances_grant_exactly_50_of_64() {
    let Some(schema) = TestSchema::create("leases_from_two_instances").await else {
        return;
    };
    let stores = [schema.store().await, schema.store().await];
    let bucket = bucket("project:web:events");
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = stores[i % 2].clone();
            let bucket = bucket.clone();
            tokio::spawn(async move { store.lease(&bucket, 1, 1, 50).await })
        })
        .collect();
    let mut granted = [0_u64; 2];
    for (i, task) in tasks.into_iter().enumerate() {
        let lease = task.await.unwrap().unwrap();
        assert!(lease.reserved() <= 50, "{lease:?}");
        granted[i % 2] += lease.granted;
    }
    assert_eq!(granted[0] + granted[1], 50, "{granted:?}");
    for store in &stores {
        assert_eq!(
            store.lease(&bucket, 0, 0, 50).await.unwrap(),
            Lease {
                granted: 0,
                used: 0,
                leased: 50
            }
        );
        assert_eq!(store.usage(&bucket).await.unwrap(), 0);
    }
}

/// Leases and consumes mixed across two instances share one limit: of 64 single units, 50
/// are granted, whichever path asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_and_consumes_from_two_instances_share_one_limit() {
    let Some(schema) = TestSchema::create("leases_and_consumes_share_one_limit").await else {
        return;
    };
    let stores = [schema.store().await, schema.store().await];
    let bucket = bucket("key:mixed:credits");
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = stores[i % 2].clone();
            let bucket = bucket.clone();
            tokio::spawn(async move {
                if i % 4 < 2 {
                    store.lease(&bucket, 1, 1, 50).await.unwrap().granted
                } else {
                    match store.consume(&bucket, 1, 50).await.unwrap() {
                        Consumption::Granted { .. } => 1,
                        Consumption::Refused { .. } => 0,
                    }
                }
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap();
    }
    assert_eq!(granted, 50);
    let counts = stores[1].lease(&bucket, 0, 0, 50).await.unwrap();
    assert_eq!(counts.reserved(), 50, "{counts:?}");
    // Settling everything leased as spent: usage shows all 50 on either instance.
    stores[0].settle(&bucket, counts.leased, 0).await.unwrap();
    assert_eq!(stores[1].usage(&bucket).await.unwrap(), 50);
}

/// Two instances taking cells of one rate limiter at one instant share its burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_cells_from_two_instances_share_one_burst() {
    let Some(schema) = TestSchema::create("rate_cells_from_two_instances").await else {
        return;
    };
    let stores = [schema.store().await, schema.store().await];
    // A burst of 20 cells, 100 a second.
    let cells = RateCells::new("key:shared:rate", 1_800_000_000_000_000, 10_000, 190_000);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = stores[i % 2].clone();
            let cells = cells.clone();
            tokio::spawn(async move { store.take_cells(&cells, 1).await })
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        taken += task.await.unwrap().unwrap();
    }
    assert_eq!(taken, 20);
    stores[0].return_cells(&cells, 5).await.unwrap();
    assert_eq!(stores[1].take_cells(&cells, 10).await.unwrap(), 5);
    let stored: i64 = sqlx::query_scalar("SELECT tat FROM keyward_rate WHERE name = $1")
        .bind(&cells.name)
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(stored, cells.now_micros + 20 * 10_000);
}

/// Leases and settlements stop at i64::MAX (`bigint`): never a wrapped, negative or refused
/// count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_beyond_bigint_stop_at_i64_max() {
    let Some(schema) = TestSchema::create("leases_beyond_bigint").await else {
        return;
    };
    let store = schema.store().await;
    let bucket = bucket("huge");
    let max = i64::MAX as u64;
    assert_eq!(
        store.lease(&bucket, u64::MAX, 1, u64::MAX).await.unwrap(),
        Lease {
            granted: max,
            used: 0,
            leased: max
        }
    );
    assert_eq!(
        store.consume(&bucket, 1, u64::MAX).await.unwrap(),
        Consumption::Refused { used: 0 }
    );
    assert_eq!(
        store.settle(&bucket, u64::MAX, u64::MAX).await.unwrap(),
        Lease {
            granted: 0,
            used: max,
            leased: 0
        }
    );
    assert_eq!(
        store.settle(&bucket, 5, 0).await.unwrap(),
        Lease {
            granted: 0,
            used: max,
            leased: 0
        }
    );
    assert_eq!(store.usage(&bucket).await.unwrap(), max);
    assert_eq!(
        store.lease(&bucket, 1, 1, u64::MAX).await.unwrap().granted,
        0
    );
}
