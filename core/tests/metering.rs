//! Leased metering (docs/ARCHITECTURE.md, "Metering") through the manager, on the memory
//! store: exact at the limit across instances, batches refused whole, few store writes,
//! nothing lost at a graceful shutdown, at most one chunk stranded by a crash, thresholds once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward::conformance::{StoreHook, Wrapped};
use keyward::{
    AuthError, Counter, Error, EventConfig, HashParams, Identity, IssueRequest, KeyEvent,
    KeyManager, KeyStore, LeaseConfig, Metering, Period, Project, Quota, Requirements, StoreError,
    UsageStore,
};
use keyward_memory::MemoryStore;

/// Counts store calls by method, and fails `lease` while `fail_leases` is set.
#[derive(Default)]
struct Counting {
    calls: Mutex<HashMap<&'static str, usize>>,
    fail_leases: AtomicBool,
    fail_settles: AtomicBool,
}

impl Counting {
    fn count(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

/// The hook half of [`Counting`] (a local type, so it may implement `StoreHook`).
struct Hook(Arc<Counting>);

impl StoreHook for Hook {
    fn before(&self, method: &'static str) -> Result<(), StoreError> {
        *self.0.calls.lock().unwrap().entry(method).or_insert(0) += 1;
        if method == "lease" && self.0.fail_leases.load(Ordering::SeqCst) {
            return Err(StoreError::backend("memory", "leases are failing"));
        }
        if method == "settle" && self.0.fail_settles.load(Ordering::SeqCst) {
            return Err(StoreError::backend("memory", "settles are failing"));
        }
        Ok(())
    }
}

fn manager(store: Arc<dyn KeyStore>, lease: LeaseConfig) -> KeyManager {
    KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .metering(Metering::Leased(lease))
        .build()
        .unwrap()
}

/// A key of a new project with a monthly quota of `limit`, verified on each manager.
async fn key_with_quota(ms: &[&KeyManager], project: &str, limit: u64) -> Vec<Identity> {
    let project: Project = project.parse().unwrap();
    ms[0]
        .set_project_quota(
            &project,
            Some(Quota {
                limit,
                period: Period::Month,
            }),
        )
        .await
        .unwrap();
    let key = ms[0]
        .issue(IssueRequest::new(project, "dev".parse().unwrap()))
        .await
        .unwrap();
    let mut out = Vec::new();
    for m in ms {
        out.push(
            m.verify(key.key.expose_secret(), &Requirements::none())
                .await
                .unwrap(),
        );
    }
    out
}

fn project_bucket(m: &KeyManager, project: &str) -> keyward::UsageBucket {
    let project: Project = project.parse().unwrap();
    let (start, _) = Period::Month.window(m.now());
    Counter::ProjectEvents(&project).bucket(start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_requests_against_fifty_grant_exactly_fifty_across_two_instances() {
    let store = MemoryStore::new();
    let a = manager(Arc::new(store.clone()), LeaseConfig::default());
    let b = manager(Arc::new(store.clone()), LeaseConfig::default());
    // Many rounds: the edge is where leases could lose or double units.
    for round in 0..20 {
        let project = format!("exact-{round}");
        let who = key_with_quota(&[&a, &b], &project, 50).await;
        let mut tasks = Vec::new();
        for (m, who) in [(&a, &who[0]), (&b, &who[1])] {
            for _ in 0..32 {
                let (m, who) = (m.clone(), who.clone());
                tasks.push(tokio::spawn(async move { m.consume_events(&who, 1).await }));
            }
        }
        let mut granted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => granted += 1,
                Err(Error::Auth(AuthError::QuotaExceeded { limit: 50, .. })) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(granted, 50, "round {round}");
        a.flush_usage().await.unwrap();
        b.flush_usage().await.unwrap();
        let p: Project = project.parse().unwrap();
        assert_eq!(a.project_usage(&p).await.unwrap().unwrap().used, 50);
        assert_eq!(b.project_usage(&p).await.unwrap().unwrap().used, 50);
    }
}

#[tokio::test]
async fn a_batch_is_refused_whole_and_the_rest_of_the_budget_stays_usable() {
    let m = manager(Arc::new(MemoryStore::new()), LeaseConfig::default());
    let who = key_with_quota(&[&m], "batches", 100).await;
    for _ in 0..95 {
        m.consume_events(&who[0], 1).await.unwrap();
    }
    let err = m.consume_events(&who[0], 10).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Auth(AuthError::QuotaExceeded {
                requested: 10,
                limit: 100,
                ..
            })
        ),
        "{err:?}"
    );
    let ok = m.consume_events(&who[0], 5).await.unwrap();
    assert_eq!(ok.project.unwrap().used, 100);
    assert!(m.consume_events(&who[0], 1).await.is_err());
    let p: Project = "batches".parse().unwrap();
    assert_eq!(m.project_usage(&p).await.unwrap().unwrap().used, 100);
}

#[tokio::test]
async fn most_requests_are_granted_without_a_store_write() {
    let counting = Arc::new(Counting::default());
    let store = Arc::new(Wrapped::with_hook(
        Arc::new(MemoryStore::new()),
        Hook(Arc::clone(&counting)),
    ));
    let m = manager(store.clone(), LeaseConfig::default());
    let who = key_with_quota(&[&m], "few-writes", 1_000_000_000).await;
    for _ in 0..5_000 {
        m.consume_events(&who[0], 1).await.unwrap();
    }
    let writes = counting.count("lease") + counting.count("settle") + counting.count("consume");
    eprintln!("{writes} store writes for 5,000 requests");
    assert!(writes < 100, "{writes} store writes for 5,000 requests");
    let p: Project = "few-writes".parse().unwrap();
    // This instance's report includes what it has not settled yet.
    assert_eq!(m.project_usage(&p).await.unwrap().unwrap().used, 5_000);
    m.flush_usage().await.unwrap();
    let bucket = project_bucket(&m, "few-writes");
    assert_eq!(store.usage(&bucket).await.unwrap(), 5_000);
}

#[tokio::test]
async fn a_graceful_shutdown_settles_every_grant_and_gives_back_every_held_unit() {
    let store = MemoryStore::new();
    let a = manager(Arc::new(store.clone()), LeaseConfig::default());
    let who = key_with_quota(&[&a], "graceful", 1_000_000).await;
    for _ in 0..1_000 {
        a.consume_events(&who[0], 1).await.unwrap();
    }
    let bucket = project_bucket(&a, "graceful");
    let before = store.lease(&bucket, 0, 0, 1_000_000).await.unwrap();
    assert!(before.leased > 0, "the instance holds a lease: {before:?}");
    a.shutdown().await.unwrap();
    let after = store.lease(&bucket, 0, 0, 1_000_000).await.unwrap();
    assert_eq!((after.used, after.leased), (1_000, 0));
    // After shutdown the manager still answers, one store write per request.
    a.consume_events(&who[0], 1).await.unwrap();
    let after = store.lease(&bucket, 0, 0, 1_000_000).await.unwrap();
    assert_eq!((after.used, after.leased), (1_001, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_never_overspends_and_strands_at_most_one_chunk() {
    const LIMIT: u64 = 1_000;
    const MAX_CHUNK: u64 = 32;
    let store = MemoryStore::new();
    let lease = LeaseConfig::default()
        .max_chunk(MAX_CHUNK)
        .edge_wait(Duration::from_millis(50));
    let a = manager(Arc::new(store.clone()), lease);
    let b = manager(Arc::new(store.clone()), lease);
    let who = key_with_quota(&[&a, &b], "crash", LIMIT).await;
    let mut granted_a = 0;
    for _ in 0..500 {
        a.consume_events(&who[0], 1).await.unwrap();
        granted_a += 1;
    }
    // kill -9: the instance goes away without settling or giving anything back.
    drop(a);
    let mut granted_b = 0;
    while b.consume_events(&who[1], 1).await.is_ok() {
        granted_b += 1;
        assert!(granted_a + granted_b <= LIMIT, "over-spent");
    }
    let stranded = LIMIT - granted_a - granted_b;
    assert!(stranded <= MAX_CHUNK, "{stranded} units stranded");
    b.flush_usage().await.unwrap();
    let p: Project = "crash".parse().unwrap();
    let reported = b.project_usage(&p).await.unwrap().unwrap().used;
    // Reports count what was granted and settled: the crashed instance's unsettled grants
    // are missing, nothing is counted twice.
    assert!(reported <= granted_a + granted_b, "{reported}");
    assert!(reported >= granted_b, "{reported}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thresholds_fire_once_with_two_leasing_instances() {
    let store = MemoryStore::new();
    let build = || {
        KeyManager::builder(store.clone())
            .serve("dev".parse().unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .events(EventConfig::default())
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let (mut ra, mut rb) = (a.subscribe_events(), b.subscribe_events());
    let who = key_with_quota(&[&a, &b], "thresholds", 200).await;
    let mut tasks = Vec::new();
    for (m, who) in [(&a, &who[0]), (&b, &who[1])] {
        for _ in 0..4 {
            let (m, who) = (m.clone(), who.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..60 {
                    if m.consume_events(&who, 1).await.is_ok() {
                        ok += 1;
                    }
                }
                ok
            }));
        }
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, 200);
    let mut percents = Vec::new();
    for rx in [&mut ra, &mut rb] {
        while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            if let KeyEvent::QuotaThreshold { percent, used, .. } = e {
                assert!(used >= u64::from(percent) * 2 && used <= 200, "{e:?}");
                percents.push(percent);
            }
        }
    }
    percents.sort_unstable();
    assert_eq!(percents, [80, 100]);
}

#[tokio::test]
async fn a_failing_lease_is_a_store_error_and_loses_nothing() {
    let counting = Arc::new(Counting::default());
    let store = Arc::new(Wrapped::with_hook(
        Arc::new(MemoryStore::new()),
        Hook(Arc::clone(&counting)),
    ));
    let m = manager(store.clone(), LeaseConfig::default());
    let who = key_with_quota(&[&m], "failing", 10).await;
    counting.fail_leases.store(true, Ordering::SeqCst);
    let err = m.consume_events(&who[0], 1).await.unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    counting.fail_leases.store(false, Ordering::SeqCst);
    let mut ok = 0;
    while m.consume_events(&who[0], 1).await.is_ok() {
        ok += 1;
    }
    assert_eq!(ok, 10);
}

#[tokio::test]
async fn a_lowered_limit_takes_effect_on_held_units() {
    let m = manager(Arc::new(MemoryStore::new()), LeaseConfig::default());
    let who = key_with_quota(&[&m], "lowered", 10_000).await;
    for _ in 0..200 {
        m.consume_events(&who[0], 1).await.unwrap();
    }
    let p: Project = "lowered".parse().unwrap();
    m.set_project_quota(
        &p,
        Some(Quota {
            limit: 200,
            period: Period::Month,
        }),
    )
    .await
    .unwrap();
    assert!(m.consume_events(&who[0], 1).await.is_err());
    m.set_project_quota(
        &p,
        Some(Quota {
            limit: 205,
            period: Period::Month,
        }),
    )
    .await
    .unwrap();
    let mut ok = 0;
    while m.consume_events(&who[0], 1).await.is_ok() {
        ok += 1;
    }
    assert_eq!(ok, 5);
}

#[tokio::test]
async fn a_flood_of_refused_requests_does_not_write_per_request() {
    let counting = Arc::new(Counting::default());
    let store = Arc::new(Wrapped::with_hook(
        Arc::new(MemoryStore::new()),
        Hook(Arc::clone(&counting)),
    ));
    let m = manager(store, LeaseConfig::default());
    let who = key_with_quota(&[&m], "flood", 20).await;
    for _ in 0..20 {
        m.consume_events(&who[0], 1).await.unwrap();
    }
    let before = counting.count("lease") + counting.count("consume");
    let mut refused = 0;
    for _ in 0..1_000 {
        if m.consume_events(&who[0], 1).await.is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 1_000);
    let calls = counting.count("lease") + counting.count("consume") - before;
    assert!(calls < 20, "{calls} store calls for 1,000 refusals");
}

#[tokio::test]
async fn a_batch_the_project_refuses_gives_the_keys_units_back() {
    use keyward::KeyLimits;
    let store = MemoryStore::new();
    let m = manager(Arc::new(store.clone()), LeaseConfig::default());
    let project: Project = "give-back".parse().unwrap();
    m.set_project_quota(
        &project,
        Some(Quota {
            limit: 10,
            period: Period::Month,
        }),
    )
    .await
    .unwrap();
    let key = m
        .issue(
            IssueRequest::new(project.clone(), "dev".parse().unwrap()).limits(KeyLimits {
                quota: Some(Quota {
                    limit: 100,
                    period: Period::Month,
                }),
                ..KeyLimits::default()
            }),
        )
        .await
        .unwrap();
    let who = m
        .verify(key.key.expose_secret(), &Requirements::none())
        .await
        .unwrap();
    let err = m.consume_events(&who, 20).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Auth(AuthError::QuotaExceeded {
                scope: "project",
                ..
            })
        ),
        "{err:?}"
    );
    m.consume_events(&who, 10).await.unwrap();
    m.flush_usage().await.unwrap();
    let report = m.usage(&project).await.unwrap();
    assert_eq!(report.project_quota.unwrap().used, 10);
    assert_eq!(
        report.keys[0].quota.unwrap().used,
        10,
        "the refused 20 are not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_use_the_same_leases_and_stay_exact_across_two_instances() {
    use keyward::{Credits, KeyLimits};
    let store = MemoryStore::new();
    let a = manager(Arc::new(store.clone()), LeaseConfig::default());
    let b = manager(Arc::new(store.clone()), LeaseConfig::default());
    let key = a
        .issue(
            IssueRequest::new("credits".parse().unwrap(), "dev".parse().unwrap()).limits(
                KeyLimits {
                    credits: Some(Credits {
                        amount: 50,
                        refill: None,
                    }),
                    ..KeyLimits::default()
                },
            ),
        )
        .await
        .unwrap();
    let text = key.key.expose_secret().to_owned();
    let mut tasks = Vec::new();
    for m in [&a, &b] {
        for _ in 0..32 {
            let (m, text) = (m.clone(), text.clone());
            tasks.push(tokio::spawn(async move {
                m.verify(&text, &Requirements::none()).await
            }));
        }
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Auth(AuthError::CreditsExhausted { .. })) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(ok, 50);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    let project: Project = "credits".parse().unwrap();
    let report = b.usage(&project).await.unwrap();
    let credits = report.keys[0].credits.unwrap();
    assert_eq!((credits.used, credits.remaining), (50, 0));
}

#[tokio::test]
async fn a_batch_larger_than_what_could_come_back_is_refused_at_once() {
    let store = MemoryStore::new();
    let lease = LeaseConfig::default().edge_wait(Duration::from_secs(30));
    let a = manager(Arc::new(store.clone()), lease);
    let b = manager(Arc::new(store.clone()), lease);
    let who = key_with_quota(&[&a, &b], "hopeless", 1_000).await;
    // A holds a chunk (it granted some and keeps the rest for its next requests).
    for _ in 0..200 {
        a.consume_events(&who[0], 1).await.unwrap();
    }
    let started = std::time::Instant::now();
    for huge in [5_000, u64::MAX] {
        let err = b.consume_events(&who[1], huge).await.unwrap_err();
        assert!(
            matches!(err, Error::Auth(AuthError::QuotaExceeded { .. })),
            "{err:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for units that could not make it fit"
    );
    // What A holds is still A's to grant.
    a.consume_events(&who[0], 1).await.unwrap();
}

#[tokio::test]
async fn units_a_failed_settle_could_not_write_are_kept_and_settled_later() {
    let counting = Arc::new(Counting::default());
    let store = Arc::new(Wrapped::with_hook(
        Arc::new(MemoryStore::new()),
        Hook(Arc::clone(&counting)),
    ));
    let m = manager(store.clone(), LeaseConfig::default());
    let who = key_with_quota(&[&m], "settle-fails", 1_000_000).await;
    counting.fail_settles.store(true, Ordering::SeqCst);
    for _ in 0..100 {
        m.consume_events(&who[0], 1).await.unwrap();
    }
    assert!(matches!(m.flush_usage().await, Err(Error::Store(_))));
    let p: Project = "settle-fails".parse().unwrap();
    assert_eq!(m.project_usage(&p).await.unwrap().unwrap().used, 100);
    let bucket = project_bucket(&m, "settle-fails");
    assert_eq!(store.usage(&bucket).await.unwrap(), 0);
    counting.fail_settles.store(false, Ordering::SeqCst);
    m.shutdown().await.unwrap();
    let counts = store.lease(&bucket, 0, 0, 1_000_000).await.unwrap();
    assert_eq!((counts.used, counts.leased), (100, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_never_misses_units_on_their_way_to_the_store() {
    // Settle every millisecond, so reports keep meeting settles in flight.
    let lease = LeaseConfig::default().settle_interval(Duration::from_millis(1));
    let m = manager(Arc::new(MemoryStore::new()), lease);
    let who = key_with_quota(&[&m], "in-flight", 1_000_000).await;
    let p: Project = "in-flight".parse().unwrap();
    for n in 1..=2_000u64 {
        m.consume_events(&who[0], 1).await.unwrap();
        if n % 10 == 0 {
            assert_eq!(m.project_usage(&p).await.unwrap().unwrap().used, n);
        }
    }
}
