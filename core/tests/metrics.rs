//! Metrics (`keyward::metrics`): every verify outcome counted once as it happens, through the
//! manager and through `keyward::http::Guard`; the cache's answers, invalidations and
//! evictions; Argon2 runs by purpose; store call durations; the change feed's loss and
//! recovery; consumption and refusals; bounded label values; the README and the module's
//! table list every metric.
//!
//! Each test has its own `DebuggingRecorder`, made current only while its managers are built
//! (`metrics::with_local_recorder`): the manager resolves its handles then, so tests running
//! in parallel do not see each other's counts. A snapshot returns what was counted since the
//! previous one (the debugging recorder swaps counters to zero).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyward::conformance::FailingStore;
use keyward::http::Guard;
use keyward::metrics::{self as km, CacheResult, HashPurpose, QuotaKind, StoreOp, VerifyOutcome};
use keyward::{
    ApiKey, CacheConfig, Credits, HashParams, Hasher, IssueRequest, KeyLimits, KeyManager,
    KeyManagerBuilder, KeyRecord, KeyStore, ManualClock, Period, Quota, RateLimit, RecordStore,
    Requirements, SecretHash, Timestamp,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

const NONE: [&[u8]; 0] = [];

/// A recorder for one test, and what it has seen.
struct Recorded {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
    /// Every label value of every snapshot.
    labels: BTreeSet<String>,
}

/// One snapshot: counters and histograms (number of values) that moved, by
/// `name{k=v,…}`; gauges by name.
#[derive(Debug, Default)]
struct Delta {
    counts: BTreeMap<String, u64>,
    observed: BTreeMap<String, Vec<f64>>,
    gauges: BTreeMap<String, f64>,
}

impl Delta {
    /// The counts of one metric that moved, by its labels' values joined with `,`.
    fn of(&self, name: &str) -> BTreeMap<String, u64> {
        self.counts
            .iter()
            .filter_map(|(k, v)| {
                let labels = k.strip_prefix(name)?.strip_prefix('{')?.strip_suffix('}')?;
                let values: Vec<&str> = labels
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| l.split_once('=').map_or(l, |(_, v)| v))
                    .collect();
                Some((values.join(","), *v))
            })
            .collect()
    }

    /// The values a histogram observed, for one set of label values (`k=v,…`).
    fn histogram(&self, name: &str, labels: &str) -> &[f64] {
        self.observed
            .get(&format!("{name}{{{labels}}}"))
            .map_or(&[], Vec::as_slice)
    }
}

impl Recorded {
    fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Self {
            recorder,
            snapshotter,
            labels: BTreeSet::new(),
        }
    }

    /// Builds a manager with this recorder current, so its handles record here.
    fn build(&self, builder: impl FnOnce() -> KeyManagerBuilder) -> KeyManager {
        metrics::with_local_recorder(&self.recorder, || builder().build().unwrap())
    }

    fn take(&mut self) -> Delta {
        let mut delta = Delta::default();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| {
                    self.labels.insert(l.value().to_owned());
                    format!("{}={}", l.key(), l.value())
                })
                .collect();
            labels.sort();
            let id = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(0) => {}
                DebugValue::Counter(n) => {
                    delta.counts.insert(id, n);
                }
                DebugValue::Histogram(values) if values.is_empty() => {}
                DebugValue::Histogram(values) => {
                    delta
                        .observed
                        .insert(id, values.into_iter().map(|v| v.into_inner()).collect());
                }
                DebugValue::Gauge(v) => {
                    delta.gauges.insert(key.name().to_owned(), v.into_inner());
                }
            }
        }
        delta
    }

    /// Asserts that exactly one verification was counted since the last snapshot, as `outcome`.
    #[track_caller]
    fn counted(&mut self, outcome: VerifyOutcome, what: &str) -> Delta {
        let delta = self.take();
        let expected = BTreeMap::from([(outcome.as_str().to_owned(), 1)]);
        assert_eq!(delta.of(km::VERIFY_TOTAL), expected, "{what}");
        delta
    }
}

fn t0() -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000)
}

fn req() -> IssueRequest {
    IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(["read"])
        .unwrap()
}

fn limited(limits: KeyLimits) -> IssueRequest {
    req().limits(limits)
}

fn builder(store: Arc<dyn KeyStore>) -> KeyManagerBuilder {
    KeyManager::builder_arc(store)
        .prefix("av".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
}

fn memory() -> Arc<dyn KeyStore> {
    Arc::new(keyward_memory::MemoryStore::new())
}

async fn issue(m: &KeyManager, req: IssueRequest) -> (KeyRecord, String) {
    let issued = m.issue(req).await.unwrap();
    (issued.record, issued.key.expose_secret().to_owned())
}

fn generated(prefix: &str, env: &str) -> String {
    ApiKey::generate(prefix.parse().unwrap(), env.parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned()
}

/// Waits (bounded) until `cond` holds of what is counted; returns everything counted meanwhile.
async fn wait_for(rec: &mut Recorded, cond: impl Fn(&Delta) -> bool) -> Delta {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Delta::default();
    loop {
        let d = rec.take();
        for (k, v) in d.counts {
            *all.counts.entry(k).or_default() += v;
        }
        for (k, v) in d.observed {
            all.observed.entry(k).or_default().extend(v);
        }
        if cond(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "timed out; counted {all:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verify_outcome_is_counted_once_as_it_happens() {
    let mut rec = Recorded::new();
    let clock = ManualClock::new(t0());
    let down = Arc::new(AtomicBool::new(false));
    let store = Arc::new(FailingStore::new(memory(), "test", Arc::clone(&down)));
    let m = rec.build(|| builder(store.clone()).clock(Arc::new(clock.clone())));
    let guard = Guard::new(m.clone());
    let none = Requirements::none();

    let (plain, plain_t) = issue(&m, req()).await;
    let (_, expiring_t) = issue(&m, req().expires_in(Duration::from_secs(60))).await;
    let (_, rated_t) = issue(
        &m,
        limited(KeyLimits {
            rate_limit: Some(RateLimit {
                requests: 1,
                per_seconds: 3600,
            }),
            ..KeyLimits::default()
        }),
    )
    .await;
    let (_, credited_t) = issue(
        &m,
        limited(KeyLimits {
            credits: Some(Credits {
                amount: 1,
                refill: None,
            }),
            ..KeyLimits::default()
        }),
    )
    .await;
    let (revoked, revoked_t) = issue(&m, req()).await;
    let (_, uncached_t) = issue(&m, req()).await;
    let (_, guarded_t) = issue(&m, req()).await;
    // A record whose stored hash is not Argon2: verifying it fails inside (not the store).
    let odd = ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    store
        .insert(
            &KeyRecord {
                id: odd.id(),
                secret_hash: SecretHash::from_phc(
                    "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
                )
                .unwrap(),
                ..plain.clone()
            },
            &[],
        )
        .await
        .unwrap();
    let issuing = rec.take();
    assert_eq!(
        issuing.of(km::VERIFY_TOTAL),
        BTreeMap::new(),
        "issuing is no verification"
    );

    // The manager's pipeline.
    let _ = m.verify("not a key", &none).await;
    rec.counted(VerifyOutcome::Malformed, "malformed");
    let _ = m.verify(&generated("tl", "dev"), &none).await;
    rec.counted(VerifyOutcome::WrongPrefix, "another prefix");
    let _ = m.verify(&generated("av", "prd"), &none).await;
    rec.counted(VerifyOutcome::WrongEnvironment, "another environment");
    let _ = m.verify(&generated("av", "dev"), &none).await;
    rec.counted(VerifyOutcome::Invalid, "unknown id");
    m.verify(&plain_t, &none).await.unwrap();
    rec.counted(VerifyOutcome::Ok, "cold");
    m.verify(&plain_t, &none).await.unwrap();
    rec.counted(VerifyOutcome::Ok, "warm");
    let wrong = keyward::conformance::with_wrong_secret(&plain_t, 3);
    let _ = m.verify(&wrong, &none).await;
    rec.counted(VerifyOutcome::Invalid, "wrong secret, warm");
    let _ = m
        .verify(&plain_t, &Requirements::scopes(["admin"]).unwrap())
        .await;
    rec.counted(VerifyOutcome::InsufficientScope, "scope");
    let other = Requirements::none().with_project("other".parse().unwrap());
    let _ = m.verify(&plain_t, &other).await;
    rec.counted(VerifyOutcome::WrongProject, "project");
    m.revoke(&revoked.id).await.unwrap();
    let _ = m.verify(&revoked_t, &none).await;
    rec.counted(VerifyOutcome::Revoked, "revoked");
    m.verify(&rated_t, &none).await.unwrap();
    rec.counted(VerifyOutcome::Ok, "first of the rate limit");
    let _ = m.verify(&rated_t, &none).await;
    rec.counted(VerifyOutcome::RateLimited, "rate limited");
    m.verify(&credited_t, &none).await.unwrap();
    rec.counted(VerifyOutcome::Ok, "the one credit");
    let _ = m.verify(&credited_t, &none).await;
    let credits = rec.counted(VerifyOutcome::Quota, "credits spent");
    assert_eq!(
        credits.of(km::QUOTA_REFUSALS_TOTAL),
        BTreeMap::from([("credits".to_owned(), 1)])
    );
    let _ = m.verify(odd.expose_secret(), &none).await;
    rec.counted(VerifyOutcome::InternalError, "unreadable stored hash");
    clock.advance(Duration::from_secs(61));
    let _ = m.verify(&expiring_t, &none).await;
    rec.counted(VerifyOutcome::Expired, "expired");

    // The HTTP layer: what never reaches the manager is counted by the guard, and what does
    // is counted once, by the manager.
    let bearer = |t: &str| format!("Bearer {t}");
    let _ = guard.authenticate(None, NONE, NONE).await;
    rec.counted(VerifyOutcome::Missing, "no credential");
    let _ = guard.authenticate(None, [&b"Bearer  "[..]], NONE).await;
    rec.counted(VerifyOutcome::Missing, "an empty bearer");
    let (b, x) = (bearer(&plain_t), plain_t.clone());
    let _ = guard
        .authenticate(None, [b.as_bytes()], [x.as_bytes()])
        .await;
    rec.counted(VerifyOutcome::Malformed, "two credentials");
    let query = format!("api_key={plain_t}");
    let _ = guard.authenticate(Some(&query), NONE, NONE).await;
    rec.counted(VerifyOutcome::Malformed, "a key in the query string");
    let _ = guard.authenticate(None, [&b"Digest x"[..]], NONE).await;
    rec.counted(VerifyOutcome::Malformed, "another scheme");
    let b = bearer(&guarded_t);
    guard
        .authenticate(None, [b.as_bytes()], NONE)
        .await
        .unwrap();
    rec.counted(VerifyOutcome::Ok, "guard, cold (check, then the store)");
    guard
        .authenticate(None, [b.as_bytes()], NONE)
        .await
        .unwrap();
    rec.counted(VerifyOutcome::Ok, "guard, warm");
    let b = bearer(&revoked_t);
    let _ = guard.authenticate(None, [b.as_bytes()], NONE).await;
    rec.counted(VerifyOutcome::Revoked, "guard, revoked");

    // The store fails: an uncached key needs it.
    down.store(true, Ordering::SeqCst);
    let _ = m.verify(&uncached_t, &none).await;
    rec.counted(VerifyOutcome::StoreError, "store down");
    down.store(false, Ordering::SeqCst);

    // Overloaded: one hashing worker, no queue, and a slow hash holding it.
    let slow = HashParams {
        m_cost: 19_456,
        t_cost: 8,
        p_cost: 1,
    };
    let busy = rec.build(|| builder(memory()).hasher(Hasher::with_workers(slow, 1, 0).unwrap()));
    let (_, busy_t) = issue(&busy, req()).await;
    rec.take();
    let hasher = busy.hasher().clone();
    let before = hasher.runs();
    let holding = tokio::spawn(async move { hasher.hash(b"hold the only worker").await });
    while busy.hasher().runs() == before {
        tokio::task::yield_now().await;
    }
    let during = rec.take();
    assert_eq!(
        during.gauges.get(km::HASH_QUEUE_DEPTH),
        Some(&1.0),
        "the running job is in the queue depth"
    );
    let refused = busy.verify(&busy_t, &none).await;
    assert!(
        matches!(refused, Err(keyward::Error::Overloaded)),
        "{refused:?}"
    );
    rec.counted(VerifyOutcome::Overloaded, "overloaded");
    holding.await.unwrap().unwrap();

    // Every outcome was driven, and no label value is a key, an id or a project.
    let expected: BTreeSet<String> = VerifyOutcome::ALL
        .iter()
        .map(|o| o.as_str().to_owned())
        .collect();
    let seen: BTreeSet<String> = rec
        .labels
        .iter()
        .filter(|l| expected.contains(*l))
        .cloned()
        .collect();
    assert_eq!(seen, expected);
    let secrets = [&plain_t, &revoked_t, &rated_t, &credited_t, &uncached_t];
    for label in &rec.labels {
        for s in secrets {
            let id = ApiKey::parse(s).unwrap().id().to_string();
            assert!(
                !label.contains(&id) && !label.contains(s.as_str()),
                "{label}"
            );
        }
        assert!(
            !label.contains("web-app"),
            "a project name in a label: {label}"
        );
    }
}

/// Every label value a snapshot can show: the enums' values and the stores' names.
#[tokio::test]
async fn label_values_are_the_documented_static_values_only() {
    let mut rec = Recorded::new();
    let m = rec.build(|| builder(memory()));
    let (record, key) = issue(&m, req()).await;
    m.verify(&key, &Requirements::none()).await.unwrap();
    rec.take();
    let mut allowed: BTreeSet<&str> = BTreeSet::from(["memory", "sqlite", "postgres", "custom"]);
    allowed.extend(VerifyOutcome::ALL.iter().map(|v| v.as_str()));
    allowed.extend(CacheResult::ALL.iter().map(|v| v.as_str()));
    allowed.extend(HashPurpose::ALL.iter().map(|v| v.as_str()));
    allowed.extend(StoreOp::ALL.iter().map(|v| v.as_str()));
    allowed.extend(QuotaKind::ALL.iter().map(|v| v.as_str()));
    assert!(rec.labels.len() > 30, "{:?}", rec.labels);
    for label in &rec.labels {
        assert!(
            allowed.contains(label.as_str()),
            "unexpected label value {label}"
        );
        assert!(!label.contains(&record.id.to_string()), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_counts_hits_misses_revalidations_unknown_ids_and_stale_answers() {
    let mut rec = Recorded::new();
    let down = Arc::new(AtomicBool::new(false));
    let store = Arc::new(FailingStore::new(memory(), "test", Arc::clone(&down)));
    let m = rec.build(|| {
        builder(store.clone()).cache(CacheConfig {
            ttl: Duration::from_millis(100),
            ..CacheConfig::default()
        })
    });
    let none = Requirements::none();
    let (_, key) = issue(&m, req()).await;
    let cache = |d: &Delta| d.of(km::CACHE_TOTAL);
    let one = |r: &str| BTreeMap::from([(r.to_owned(), 1)]);

    m.verify(&key, &none).await.unwrap();
    assert_eq!(cache(&rec.take()), one("miss"));
    m.verify(&key, &none).await.unwrap();
    assert_eq!(cache(&rec.take()), one("hit"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    m.verify(&key, &none).await.unwrap();
    assert_eq!(cache(&rec.take()), one("revalidated"));

    let unknown = generated("av", "dev");
    let _ = m.verify(&unknown, &none).await;
    assert_eq!(cache(&rec.take()), one("miss"));
    let _ = m.verify(&unknown, &none).await;
    assert_eq!(cache(&rec.take()), one("negative_hit"));

    // Format errors never reach the cache.
    let _ = m.verify(&generated("av", "prd"), &none).await;
    assert_eq!(cache(&rec.take()), BTreeMap::new());

    tokio::time::sleep(Duration::from_millis(150)).await;
    down.store(true, Ordering::SeqCst);
    m.verify(&key, &none).await.unwrap();
    assert_eq!(cache(&rec.take()), one("stale"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rate_limited_key_counts_one_hit_per_verify_when_it_asks_for_cells() {
    let mut rec = Recorded::new();
    let m = rec.build(|| builder(memory()).rate_limits(keyward::RateLimitMode::cluster()));
    let none = Requirements::none();
    let (_, text) = issue(
        &m,
        limited(KeyLimits {
            rate_limit: Some(keyward::RateLimit {
                requests: 1_000_000,
                per_seconds: 1,
            }),
            ..KeyLimits::default()
        }),
    )
    .await;
    let key = keyward::ApiKey::parse(&text).unwrap();
    m.verify_key(&key, &none).await.unwrap();
    rec.take();
    // The two-step path a tower layer takes: the synchronous answer, else the future.
    let mut asked = 0;
    for _ in 0..200 {
        match m.verify_cached(&key, &none) {
            Some(outcome) => {
                outcome.unwrap();
            }
            None => {
                asked += 1;
                m.verify_key(&key, &none).await.unwrap();
            }
        }
    }
    assert!(asked > 0, "the local cells never ran out");
    let delta = rec.take();
    assert_eq!(
        delta.of(km::CACHE_TOTAL),
        BTreeMap::from([("hit".to_owned(), 200)]),
        "{asked} asks"
    );
    assert_eq!(
        delta.of(km::VERIFY_TOTAL),
        BTreeMap::from([("ok".to_owned(), 200)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reported_by_the_feed_count_invalidations_and_a_lost_feed_its_recovery() {
    let mut rec = Recorded::new();
    let down = Arc::new(AtomicBool::new(false));
    let shared = memory();
    let store = Arc::new(FailingStore::new(
        Arc::clone(&shared),
        "test",
        Arc::clone(&down),
    ));
    let poll = CacheConfig {
        poll_interval: Duration::from_millis(20),
        ..CacheConfig::default()
    };
    let m = rec.build(|| builder(store.clone()).cache(poll.clone()));
    // Another instance over the same store, recording elsewhere.
    let elsewhere = builder(shared).build().unwrap();
    let none = Requirements::none();
    let (a, a_t) = issue(&m, req()).await;
    let (_, b_t) = issue(&m, req()).await;
    m.verify(&a_t, &none).await.unwrap();
    m.verify(&b_t, &none).await.unwrap();
    rec.take();

    elsewhere.revoke(&a.id).await.unwrap();
    let d = wait_for(&mut rec, |d| {
        d.counts.contains_key("keyward_cache_invalidated_total{}")
    })
    .await;
    assert_eq!(d.counts["keyward_cache_invalidated_total{}"], 1, "{d:?}");
    assert!(matches!(
        m.verify(&a_t, &none).await,
        Err(keyward::Error::Auth(keyward::AuthError::Revoked { .. }))
    ));

    down.store(true, Ordering::SeqCst);
    let d = wait_for(&mut rec, |d| {
        d.counts.contains_key("keyward_feed_lost_total{}")
    })
    .await;
    assert_eq!(
        d.counts["keyward_feed_lost_total{}"], 1,
        "once per loss, not per poll"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    down.store(false, Ordering::SeqCst);
    let d = wait_for(&mut rec, |d| {
        d.counts.contains_key("keyward_feed_recovered_total{}")
    })
    .await;
    assert_eq!(d.counts["keyward_feed_recovered_total{}"], 1);
    let lag = d.histogram(km::FEED_LAG_SECONDS, "");
    assert_eq!(lag.len(), 1, "{d:?}");
    assert!(
        lag[0] >= 0.1 && lag[0] < 10.0,
        "lost for about 100 ms: {lag:?}"
    );
}

#[tokio::test]
async fn evictions_for_capacity_are_counted_and_removals_are_not() {
    let mut rec = Recorded::new();
    let m = rec.build(|| {
        builder(memory()).cache(CacheConfig {
            capacity: 2,
            ..CacheConfig::default()
        })
    });
    let none = Requirements::none();
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(issue(&m, req()).await);
    }
    let (first, first_t) = &keys[0];
    m.verify(first_t, &none).await.unwrap();
    m.revoke(&first.id).await.unwrap(); // a removal, not an eviction
    assert!(
        !rec.take()
            .counts
            .contains_key("keyward_cache_evicted_total{}")
    );
    for (_, key) in &keys[1..] {
        m.verify(key, &none).await.unwrap();
    }
    let evicted = rec.take().counts["keyward_cache_evicted_total{}"];
    // Nine cached into room for two.
    assert!((7..=9).contains(&evicted), "{evicted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_runs_are_counted_and_timed_by_purpose() {
    let mut rec = Recorded::new();
    let store = memory();
    let m = rec.build(|| builder(Arc::clone(&store)));
    let runs = |d: &Delta| d.of(km::HASH_RUNS_TOTAL);
    let one = |r: &str| BTreeMap::from([(r.to_owned(), 1)]);

    let (_, key) = issue(&m, req()).await;
    let d = rec.take();
    assert_eq!(runs(&d), one("issue"));
    assert_eq!(d.histogram(km::HASH_SECONDS, "purpose=issue").len(), 1);
    m.verify(&key, &Requirements::none()).await.unwrap();
    let d = rec.take();
    assert_eq!(runs(&d), one("verify"));
    assert_eq!(d.histogram(km::HASH_SECONDS, "purpose=verify").len(), 1);
    m.verify(&key, &Requirements::none()).await.unwrap();
    assert_eq!(
        runs(&rec.take()),
        BTreeMap::new(),
        "a warm verify runs no Argon2"
    );

    // A manager with stronger parameters re-hashes the key on its cold verify.
    let stronger = rec.build(|| {
        builder(store).hash_params(HashParams {
            m_cost: 128,
            t_cost: 2,
            p_cost: 1,
        })
    });
    stronger.verify(&key, &Requirements::none()).await.unwrap();
    let d = rec.take();
    assert_eq!(
        runs(&d),
        BTreeMap::from([("rehash".to_owned(), 1), ("verify".to_owned(), 1)])
    );
    let took = d.histogram(km::HASH_SECONDS, "purpose=rehash");
    assert!(
        took.len() == 1 && took[0] > 0.0 && took[0] < 10.0,
        "{took:?}"
    );
}

#[tokio::test]
async fn store_calls_are_timed_by_operation_and_store_name() {
    let mut rec = Recorded::new();
    let m = rec.build(|| builder(memory()));
    assert_eq!(
        m.store().name(),
        "memory",
        "the wrapper keeps the store's name"
    );
    let (record, key) = issue(&m, req()).await;
    let d = rec.take();
    assert_eq!(
        d.histogram(km::STORE_SECONDS, "op=insert,store=memory")
            .len(),
        1
    );
    m.verify(&key, &Requirements::none()).await.unwrap();
    let d = rec.take();
    assert_eq!(
        d.histogram(km::STORE_SECONDS, "op=get,store=memory").len(),
        1
    );
    m.revoke(&record.id).await.unwrap();
    let d = rec.take();
    assert_eq!(
        d.histogram(km::STORE_SECONDS, "op=update,store=memory")
            .len(),
        1
    );

    // A store that does not name itself is `custom`.
    let wrapped = Arc::new(keyward::conformance::CountingStore::new(memory()));
    let custom = rec.build(|| builder(wrapped));
    custom.get(&record.id).await.unwrap();
    let d = rec.take();
    assert_eq!(
        d.histogram(km::STORE_SECONDS, "op=get,store=custom").len(),
        1
    );
}

#[tokio::test]
async fn consumed_events_spent_credits_and_refusals_are_counted_by_kind() {
    let mut rec = Recorded::new();
    let m = rec.build(|| builder(memory()));
    let none = Requirements::none();
    let (_, quota_t) = issue(
        &m,
        limited(KeyLimits {
            quota: Some(Quota {
                limit: 5,
                period: Period::Day,
            }),
            ..KeyLimits::default()
        }),
    )
    .await;
    let (_, credited_t) = issue(
        &m,
        limited(KeyLimits {
            credits: Some(Credits {
                amount: 2,
                refill: None,
            }),
            ..KeyLimits::default()
        }),
    )
    .await;
    let (_, plain_t) = issue(&m, req()).await;
    let who = m.verify(&quota_t, &none).await.unwrap();
    let plain = m.verify(&plain_t, &none).await.unwrap();
    rec.take();

    m.consume_events(&who, 3).await.unwrap();
    m.consume_events(&who, 0).await.unwrap();
    assert_eq!(rec.take().counts["keyward_consumed_events_total{}"], 3);
    m.consume_events(&who, 3).await.unwrap_err();
    let d = rec.take();
    assert!(!d.counts.contains_key("keyward_consumed_events_total{}"));
    assert_eq!(
        d.of(km::QUOTA_REFUSALS_TOTAL),
        BTreeMap::from([("key_quota".to_owned(), 1)])
    );
    m.set_project_quota(
        &"web-app".parse().unwrap(),
        Some(Quota {
            limit: 3,
            period: Period::Day,
        }),
    )
    .await
    .unwrap();
    m.consume_events(&plain, 4).await.unwrap_err();
    assert_eq!(
        rec.take().of(km::QUOTA_REFUSALS_TOTAL),
        BTreeMap::from([("project_quota".to_owned(), 1)])
    );

    for _ in 0..2 {
        m.verify(&credited_t, &none).await.unwrap();
    }
    assert_eq!(rec.take().counts["keyward_credits_spent_total{}"], 2);
    let _ = m.verify(&credited_t, &none).await.unwrap_err();
    let d = rec.take();
    assert!(!d.counts.contains_key("keyward_credits_spent_total{}"));
    assert_eq!(
        d.of(km::QUOTA_REFUSALS_TOTAL),
        BTreeMap::from([("credits".to_owned(), 1)])
    );
}

/// The README and the module's table name every metric and every label value.
#[test]
fn the_readme_and_the_module_docs_list_every_metric_and_label_value() {
    let readme = include_str!("../../README.md");
    let module = include_str!("../src/metrics.rs");
    let section = readme
        .split("## Metrics")
        .nth(1)
        .expect("a Metrics section in README.md");
    let values = VerifyOutcome::ALL
        .iter()
        .map(|v| v.as_str())
        .chain(CacheResult::ALL.iter().map(|v| v.as_str()))
        .chain(HashPurpose::ALL.iter().map(|v| v.as_str()))
        .chain(QuotaKind::ALL.iter().map(|v| v.as_str()));
    for name in km::ALL {
        assert!(
            section.contains(&format!("`{name}`")),
            "README lacks {name}"
        );
        assert!(
            module.contains(&format!("| `{name}` |")),
            "module table lacks {name}"
        );
    }
    for value in values {
        assert!(
            section.contains(&format!("`{value}`")),
            "README lacks label value {value}"
        );
        assert!(
            module.contains(&format!("`{value}`")),
            "module docs lack {value}"
        );
    }
}
