//! Cluster-wide rate limits ([`RateLimitMode::Cluster`]) on one memory store shared by two
//! managers (clones of a `MemoryStore` share its data), on a manual clock: the key's rate
//! holds across the instances, per-process mode gives each instance the whole rate, a warm
//! verify spends local cells without a store call, refusals under overload do not call the
//! store per request, idle and shut-down instances give their cells back, and a store outage
//! falls back to per-process limits instead of failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward::conformance::{FailingStore, LogBuffer, StoreHook, Wrapped};
use keyward::{
    AuthError, Error, HashParams, IssueRequest, KeyLimits, KeyManager, KeyStore, ManualClock,
    RateLimit, RateLimitMode, Requirements, StoreError, Timestamp,
};
use keyward_memory::MemoryStore;

/// Counts store calls by method.
#[derive(Debug, Default)]
struct ByMethod(Mutex<HashMap<&'static str, usize>>);

impl StoreHook for ByMethod {
    fn before(&self, method: &'static str) -> Result<(), StoreError> {
        *self.0.lock().unwrap().entry(method).or_default() += 1;
        Ok(())
    }
}

impl ByMethod {
    fn calls(&self, method: &str) -> usize {
        self.0.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

type Counted = Wrapped<ByMethod>;

fn counted(store: &MemoryStore) -> Arc<Counted> {
    Arc::new(Wrapped::with_hook(
        Arc::new(store.clone()) as Arc<dyn KeyStore>,
        ByMethod::default(),
    ))
}

fn start() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000))
}

fn manager(store: Arc<dyn KeyStore>, clock: &ManualClock, mode: RateLimitMode) -> KeyManager {
    KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(clock.clone()))
        .rate_limits(mode)
        .build()
        .unwrap()
}

fn cluster(sync_ms: u64) -> RateLimitMode {
    RateLimitMode::Cluster {
        sync_interval: Duration::from_millis(sync_ms),
    }
}

async fn issue(m: &KeyManager, requests: u32, per_seconds: u32) -> String {
    let limits = KeyLimits {
        rate_limit: Some(RateLimit {
            requests,
            per_seconds,
        }),
        ..KeyLimits::default()
    };
    let req = IssueRequest::new("rate".parse().unwrap(), "dev".parse().unwrap()).limits(limits);
    m.issue(req).await.unwrap().key.expose_secret().to_owned()
}

/// `Ok(true)` admitted, `Ok(false)` rate limited; anything else panics.
async fn admitted(m: &KeyManager, text: &str) -> bool {
    match m.verify(text, &Requirements::none()).await {
        Ok(_) => true,
        Err(Error::Auth(AuthError::RateLimited { retry_after })) => {
            assert!(retry_after > Duration::ZERO);
            false
        }
        Err(e) => panic!("unexpected outcome: {e:?}"),
    }
}

/// Two instances, each presenting the key `per_ms_each` times every millisecond for
/// `seconds` of manual time; answers how many each admitted.
async fn drive(
    a: &KeyManager,
    b: &KeyManager,
    clock: &ManualClock,
    text: &str,
    seconds: u64,
    every_ms: u64,
) -> (u64, u64) {
    let (mut n_a, mut n_b) = (0, 0);
    for ms in 0..seconds * 1000 {
        if ms % every_ms == 0 {
            n_a += u64::from(admitted(a, text).await);
            n_b += u64::from(admitted(b, text).await);
        }
        clock.advance(Duration::from_millis(1));
        if ms % 10 == 0 {
            // Let the idle sweeps run now and then, as they would.
            tokio::task::yield_now().await;
        }
    }
    (n_a, n_b)
}

#[tokio::test]
async fn two_cluster_instances_hold_a_keys_rate_within_ten_percent() {
    let store = MemoryStore::new();
    let clock = start();
    let a = manager(Arc::new(store.clone()), &clock, RateLimitMode::cluster());
    let b = manager(Arc::new(store), &clock, RateLimitMode::cluster());
    // 100 requests per second (burst 100); each instance tries 200 per second for 10 s.
    let text = issue(&a, 100, 1).await;
    let (n_a, n_b) = drive(&a, &b, &clock, &text, 10, 5).await;
    let total = n_a + n_b;
    eprintln!("cluster: {n_a} + {n_b} = {total} admitted of 4,000 over 10 s");
    // GCRA's own bound: the burst plus the rate over the run.
    let bound = 100 + 100 * 10;
    assert!(total <= bound, "admitted {total} > {bound}");
    assert!(
        total * 10 >= bound * 9,
        "admitted {total}, below 90 % of {bound}"
    );
    // Both instances got a share (the sync times are jittered, so neither keeps the phase
    // that gives it the cells first).
    assert!(n_a * 4 >= total && n_b * 4 >= total, "{n_a} / {n_b}");
}

#[tokio::test]
async fn per_process_instances_admit_the_rate_each() {
    let store = MemoryStore::new();
    let clock = start();
    let a = manager(Arc::new(store.clone()), &clock, RateLimitMode::PerProcess);
    let b = manager(Arc::new(store), &clock, RateLimitMode::PerProcess);
    let text = issue(&a, 100, 1).await;
    let (n_a, n_b) = drive(&a, &b, &clock, &text, 10, 5).await;
    // Each instance admits the burst plus the rate over the run: twice the key's rate.
    for n in [n_a, n_b] {
        assert!((1_050..=1_100).contains(&n), "{n_a} / {n_b}");
    }
}

#[tokio::test]
async fn the_default_is_per_process_on_a_store_that_is_not_shared() {
    let clock = start();
    let m = KeyManager::builder(MemoryStore::new())
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    assert_eq!(m.rate_limit_mode(), RateLimitMode::PerProcess);
    assert_eq!(
        RateLimitMode::default_for(&MemoryStore::new()),
        RateLimitMode::PerProcess
    );
}

#[tokio::test]
async fn a_warm_verify_spends_local_cells_without_a_store_call() {
    let store = MemoryStore::new();
    let counted = counted(&store);
    let clock = start();
    let m = manager(
        Arc::clone(&counted) as Arc<dyn KeyStore>,
        &clock,
        RateLimitMode::cluster(),
    );
    let text = issue(&m, 1_000_000, 1).await;
    let key = keyward::ApiKey::parse(&text).unwrap();
    let req = Requirements::none();
    for _ in 0..10_000 {
        assert!(admitted(&m, &text).await);
    }
    // Chunks double while they last less than a sync interval: 1, 2, 4, … 8,192.
    let asks = counted.hook().calls("take_cells");
    assert!((1..=16).contains(&asks), "{asks} asks for 10,000 verifies");
    // With cells in hand, a warm verify decides synchronously and calls nothing.
    let calls = counted.hook().0.lock().unwrap().values().sum::<usize>();
    let mut decided = 0;
    for _ in 0..1_000 {
        if let Some(outcome) = m.verify_cached(&key, &req) {
            outcome.unwrap();
            decided += 1;
        }
    }
    assert!(decided >= 999, "{decided}");
    assert_eq!(
        counted.hook().0.lock().unwrap().values().sum::<usize>(),
        calls,
        "a warm verify called the store"
    );
}

#[tokio::test]
async fn refusals_under_overload_do_not_call_the_store_per_request() {
    let store = MemoryStore::new();
    let counted = counted(&store);
    let clock = start();
    let m = manager(
        Arc::clone(&counted) as Arc<dyn KeyStore>,
        &clock,
        RateLimitMode::cluster(),
    );
    // 10 a second: the emission interval (100 ms) is longer than the sync interval (50 ms).
    let text = issue(&m, 10, 1).await;
    let mut n = 0;
    for _ in 0..1_000 {
        n += u64::from(admitted(&m, &text).await);
    }
    assert_eq!(n, 10, "the burst, at one instant");
    assert!(counted.hook().calls("take_cells") <= 6);
    // One second at 10 requests a millisecond: 10,000 requests, about 10 admitted.
    let asks_before = counted.hook().calls("take_cells");
    let mut n = 0;
    for _ in 0..1_000 {
        clock.advance(Duration::from_millis(1));
        for _ in 0..10 {
            n += u64::from(admitted(&m, &text).await);
        }
    }
    assert!((9..=11).contains(&n), "{n}");
    let asks = counted.hook().calls("take_cells") - asks_before;
    assert!(asks <= 25, "{asks} store calls for 10,000 requests");
}

#[tokio::test]
async fn shutdown_gives_unused_cells_back() {
    let store = MemoryStore::new();
    let clock = start();
    let a = manager(Arc::new(store.clone()), &clock, cluster(50));
    let b = manager(Arc::new(store), &clock, cluster(50));
    // 100 an hour: no cell comes back by itself during the test.
    let text = issue(&a, 100, 3600).await;
    for _ in 0..40 {
        assert!(admitted(&a, &text).await);
    }
    a.shutdown().await.unwrap();
    let mut n = 0;
    for _ in 0..200 {
        n += u64::from(admitted(&b, &text).await);
    }
    assert_eq!(n, 60, "what a left unused came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_gives_its_cells_back() {
    let store = MemoryStore::new();
    let clock = start();
    let a = manager(Arc::new(store.clone()), &clock, cluster(10));
    let b = manager(Arc::new(store), &clock, cluster(10));
    let text = issue(&a, 100, 3600).await;
    for _ in 0..40 {
        assert!(admitted(&a, &text).await);
    }
    // No request for a while: manager time and real time pass (the sweep runs every 10 ms
    // of real time and gives back what did not move for two intervals of manager time).
    for _ in 0..10 {
        clock.advance(Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut n = 0;
    for _ in 0..200 {
        n += u64::from(admitted(&b, &text).await);
    }
    assert_eq!(n, 60, "what a left unused came back");
}

#[tokio::test]
async fn a_store_outage_falls_back_to_per_process_limits_with_one_warning() {
    let logs = LogBuffer::new();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let down = Arc::new(AtomicBool::new(false));
    let store = Arc::new(FailingStore::new(
        Arc::new(MemoryStore::new()),
        "flaky",
        Arc::clone(&down),
    ));
    let clock = start();
    let m = manager(store as Arc<dyn KeyStore>, &clock, RateLimitMode::cluster());
    let text = issue(&m, 5, 60).await;
    assert!(
        admitted(&m, &text).await,
        "cold verify while the store is up"
    );
    down.store(true, Ordering::SeqCst);
    // The store is down: no error reaches the caller, and the per-process limiter (a fresh
    // burst of 5) decides.
    let mut n = 0;
    for _ in 0..1_000 {
        n += u64::from(admitted(&m, &text).await);
    }
    assert!((4..=5).contains(&n), "{n}");
    let warnings = logs
        .text()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("rate-limit cells"))
        .count();
    assert_eq!(warnings, 1, "{}", logs.text());
    // Back up: the store decides again after a second (it had given 1 of 5 cells).
    down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    let mut n = 0;
    for _ in 0..100 {
        n += u64::from(admitted(&m, &text).await);
    }
    assert_eq!(n, 4, "the store's remaining cells");
}

#[test]
fn the_mode_parses_from_the_flag_words() {
    assert_eq!(
        "per-process".parse::<RateLimitMode>().unwrap(),
        RateLimitMode::PerProcess
    );
    assert_eq!(
        "cluster".parse::<RateLimitMode>().unwrap(),
        RateLimitMode::cluster()
    );
    let err = "both".parse::<RateLimitMode>().unwrap_err();
    assert!(err.to_string().contains("per-process"), "{err}");
}
