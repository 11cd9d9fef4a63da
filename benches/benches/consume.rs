//! `UsageStore::consume` per store: the atomic quota counter every event batch and every
//! credit-limited verify goes through (issue 6), and `KeyManager::consume_events` with a
//! project quota on top (the setting is cached, so it is one store call as well); and
//! consumes per second against one bucket from 1, 8 and 32 concurrent tasks (issue 17's
//! baseline); and `consume_events` per second from 1, 8 and 32 tasks with leased and with
//! direct metering (issue 17's result).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyward::{
    HashParams, Identity, IssueRequest, KeyManager, Metering, Period, Quota, Requirements,
    Timestamp, UsageBucket,
};
use keyward_benches::{BenchStore, StoreKind};

fn main() {
    let mut c = keyward_benches::criterion()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for kind in StoreKind::selected() {
        let Some(bench) = rt.block_on(BenchStore::open(kind)).unwrap() else {
            eprintln!("{}: skipped (DATABASE_URL not set)", kind.name());
            continue;
        };
        let store = Arc::clone(&bench.store);
        let mut g = c.benchmark_group(format!("{}_consume", kind.name()));
        // A fresh counter per sample batch would measure inserts; one counter with a huge limit
        // measures the steady state: an existing row updated atomically.
        let bucket = UsageBucket {
            counter: "bench:consume".into(),
            period_start: Timestamp::from_unix_millis(0),
        };
        g.bench_function("consume_1", |b| {
            b.iter(|| {
                rt.block_on(store.consume(&bucket, 1, u64::MAX >> 2))
                    .unwrap()
            });
        });
        let refused = UsageBucket {
            counter: "bench:refused".into(),
            period_start: Timestamp::from_unix_millis(0),
        };
        rt.block_on(store.consume(&refused, 10, 10)).unwrap();
        g.bench_function("consume_refused", |b| {
            b.iter(|| rt.block_on(store.consume(&refused, 1, 10)).unwrap());
        });

        let manager = KeyManager::builder_arc(Arc::clone(&store))
            .serve("dev".parse().unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .build()
            .unwrap();
        let who = rt.block_on(metered_key(&manager, "bench-quota"));
        let n = AtomicU64::new(0);
        g.bench_function("consume_events_batch_of_10", |b| {
            b.iter(|| {
                n.fetch_add(1, Ordering::Relaxed);
                rt.block_on(manager.consume_events(&who, 10)).unwrap()
            });
        });
        g.finish();

        // Issue 17's baseline: consumes per second against ONE bucket from 1, 8 and 32
        // concurrent tasks (every consume is its own store transaction today, so they
        // serialise on the bucket's row).
        let mut g = c.benchmark_group(format!("{}_consume_concurrent", kind.name()));
        g.throughput(criterion::Throughput::Elements(1));
        let hot = UsageBucket {
            counter: "bench:hot".into(),
            period_start: Timestamp::from_unix_millis(0),
        };
        for tasks in [1u64, 8, 32] {
            g.bench_function(format!("tasks_{tasks}"), |b| {
                b.iter_custom(|iters| rt.block_on(concurrent_consumes(&store, &hot, tasks, iters)));
            });
        }
        g.finish();

        // Issue 17: `consume_events` of one event against one project quota, from 1, 8 and 32
        // tasks, with leased allotments (the default) and with one store write per request.
        let mut g = c.benchmark_group(format!("{}_metered_concurrent", kind.name()));
        g.throughput(criterion::Throughput::Elements(1));
        for (mode, metering) in [
            ("leased", Metering::default()),
            ("direct", Metering::Direct),
        ] {
            let manager = KeyManager::builder_arc(Arc::clone(&store))
                .serve("dev".parse().unwrap())
                .hash_params(HashParams::INSECURE_TEST_ONLY)
                .metering(metering)
                .build()
                .unwrap();
            let who = rt.block_on(metered_key(&manager, &format!("bench-metered-{mode}")));
            for tasks in [1u64, 8, 32] {
                g.bench_function(format!("{mode}_tasks_{tasks}"), |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(concurrent_events(&manager, &who, tasks, iters))
                    });
                });
            }
            rt.block_on(manager.shutdown()).unwrap();
        }
        g.finish();
        drop(bench);
    }
    c.final_summary();
}

/// `iters` consumes of one unit on `bucket`, spread over `tasks` concurrent tasks; the time
/// they took together.
async fn concurrent_consumes(
    store: &Arc<dyn keyward::KeyStore>,
    bucket: &UsageBucket,
    tasks: u64,
    iters: u64,
) -> Duration {
    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (store, bucket) = (Arc::clone(store), bucket.clone());
        let share = iters / tasks + u64::from(t < iters % tasks);
        set.spawn(async move {
            for _ in 0..share {
                store.consume(&bucket, 1, u64::MAX >> 2).await.unwrap();
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    started.elapsed()
}

/// A verified key of `project`, which gets a huge monthly quota.
async fn metered_key(manager: &KeyManager, project: &str) -> Identity {
    let project = project.parse().unwrap();
    manager
        .set_project_quota(
            &project,
            Some(Quota {
                limit: u64::MAX >> 2,
                period: Period::Month,
            }),
        )
        .await
        .unwrap();
    let issued = manager
        .issue(IssueRequest::new(project, "dev".parse().unwrap()))
        .await
        .unwrap();
    manager
        .verify(issued.key.expose_secret(), &Requirements::none())
        .await
        .unwrap()
}

/// `iters` single-event `consume_events` calls spread over `tasks` concurrent tasks; the time
/// they took together.
async fn concurrent_events(
    manager: &KeyManager,
    who: &Identity,
    tasks: u64,
    iters: u64,
) -> Duration {
    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (manager, who) = (manager.clone(), who.clone());
        let share = iters / tasks + u64::from(t < iters % tasks);
        set.spawn(async move {
            for _ in 0..share {
                manager.consume_events(&who, 1).await.unwrap();
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    started.elapsed()
}
