//! The verify cache: warm verifies skip the store and Argon2, stay coherent, and bound abuse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::conformance::{CountingStore, with_wrong_secret};
use keyward::{
    AuthError, CacheConfig, Error, HashParams, IssueRequest, KeyManager, KeyStore, Requirements,
};
use keyward_memory::MemoryStore;

fn manager_on(store: Arc<dyn KeyStore>, cache: CacheConfig) -> KeyManager {
    KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .cache(cache)
        .build()
        .unwrap()
}

fn request() -> IssueRequest {
    IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(["read"])
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_verify_reads_no_store_and_runs_no_argon2() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let m = manager_on(counting.clone(), CacheConfig::default());
    let issued = m.issue(request()).await.unwrap();
    let text = issued.key.expose_secret();
    let runs = m.hasher().runs();
    m.verify(text, &Requirements::none()).await.unwrap();
    assert_eq!(
        (counting.gets(), m.hasher().runs()),
        (1, runs + 1),
        "cold: one read, one Argon2"
    );
    for _ in 0..100 {
        m.verify(text, &Requirements::scopes(["read"]).unwrap())
            .await
            .unwrap();
    }
    assert_eq!(
        (counting.gets(), m.hasher().runs()),
        (1, runs + 1),
        "warm: nothing more"
    );
    // Scope and project checks still apply on the warm path.
    assert!(matches!(
        m.verify(text, &Requirements::scopes(["admin"]).unwrap())
            .await,
        Err(Error::Auth(AuthError::InsufficientScope { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_for_a_cached_id_is_rejected_without_argon2() {
    let m = manager_on(Arc::new(MemoryStore::new()), CacheConfig::default());
    let issued = m.issue(request()).await.unwrap();
    let text = issued.key.expose_secret();
    m.verify(text, &Requirements::none()).await.unwrap();
    let runs = m.hasher().runs();
    for _ in 0..50 {
        assert!(matches!(
            m.verify(&with_wrong_secret(text, 29), &Requirements::none())
                .await,
            Err(Error::Auth(AuthError::Invalid))
        ));
    }
    assert_eq!(m.hasher().runs(), runs);
    m.verify(text, &Requirements::none())
        .await
        .expect("the right secret still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_verifies_of_one_key_run_argon2_once() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let m = manager_on(counting.clone(), CacheConfig::default());
    let issued = m.issue(request()).await.unwrap();
    let text = Arc::new(issued.key.expose_secret().to_owned());
    let runs = m.hasher().runs();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (m, text) = (m.clone(), Arc::clone(&text));
            tokio::spawn(async move { m.verify(&text, &Requirements::none()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(m.hasher().runs(), runs + 1);
    assert_eq!(counting.gets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_cold_attempts_per_id_are_limited_before_argon2() {
    let cache = CacheConfig {
        max_failures: 3,
        ..CacheConfig::default()
    };
    let m = manager_on(Arc::new(MemoryStore::new()), cache);
    let issued = m.issue(request()).await.unwrap();
    let guess = with_wrong_secret(issued.key.expose_secret(), 29);
    for _ in 0..3 {
        assert!(matches!(
            m.verify(&guess, &Requirements::none()).await,
            Err(Error::Auth(AuthError::Invalid))
        ));
    }
    let runs = m.hasher().runs();
    for _ in 0..20 {
        assert!(matches!(
            m.verify(&guess, &Requirements::none()).await,
            Err(Error::Auth(AuthError::RateLimited { .. }))
        ));
    }
    assert_eq!(m.hasher().runs(), runs, "limited attempts run no Argon2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_attempt_limit_lifts_when_its_window_ends() {
    let window = Duration::from_millis(100);
    let cache = CacheConfig {
        max_failures: 2,
        failure_window: window,
        ..CacheConfig::default()
    };
    let m = manager_on(Arc::new(MemoryStore::new()), cache);
    let issued = m.issue(request()).await.unwrap();
    let guess = with_wrong_secret(issued.key.expose_secret(), 29);
    let outcome = |r: Result<keyward::Identity, Error>| match r {
        Err(Error::Auth(AuthError::Invalid)) => "invalid",
        Err(Error::Auth(AuthError::RateLimited { .. })) => "limited",
        other => panic!("unexpected {other:?}"),
    };
    let opened = Instant::now();
    assert_eq!(
        outcome(m.verify(&guess, &Requirements::none()).await),
        "invalid"
    );
    assert_eq!(
        outcome(m.verify(&guess, &Requirements::none()).await),
        "invalid"
    );
    let limited = outcome(m.verify(&guess, &Requirements::none()).await);
    if opened.elapsed() < window {
        assert_eq!(limited, "limited", "2 failures within the window");
    }
    tokio::time::sleep(window + Duration::from_millis(20)).await;
    // A new window: the next guess runs Argon2 again and is counted from 1.
    let runs = m.hasher().runs();
    let reopened = Instant::now();
    assert_eq!(
        outcome(m.verify(&guess, &Requirements::none()).await),
        "invalid"
    );
    assert_eq!(m.hasher().runs(), runs + 1);
    assert_eq!(
        outcome(m.verify(&guess, &Requirements::none()).await),
        "invalid"
    );
    let limited = outcome(m.verify(&guess, &Requirements::none()).await);
    if reopened.elapsed() < window {
        assert_eq!(limited, "limited", "2 failures within the new window");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_another_manager_reaches_the_cache_within_the_poll_interval() {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryStore::new());
    let poll = Duration::from_millis(20);
    let cache = CacheConfig {
        poll_interval: poll,
        ..CacheConfig::default()
    };
    let a = manager_on(Arc::clone(&store), cache.clone());
    let b = manager_on(Arc::clone(&store), cache);
    let issued = a.issue(request()).await.unwrap();
    let text = issued.key.expose_secret();
    a.verify(text, &Requirements::none()).await.unwrap();
    b.verify(text, &Requirements::none()).await.unwrap();
    // Let B's watcher take its baseline revision.
    tokio::time::sleep(poll * 3).await;
    b.verify(text, &Requirements::none())
        .await
        .expect("warm in B");
    let start = Instant::now();
    a.revoke(&issued.record.id).await.unwrap();
    assert!(matches!(
        a.verify(text, &Requirements::none()).await,
        Err(Error::Auth(AuthError::Revoked { .. }))
    ));
    loop {
        match b.verify(text, &Requirements::none()).await {
            Err(Error::Auth(AuthError::Revoked { .. })) => break,
            Ok(_) => assert!(
                start.elapsed() < Duration::from_secs(5),
                "B never heard of the revocation"
            ),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!(
        "revocation reached the other manager's cache after {:?} (poll interval {poll:?})",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_used_times_are_written_in_batches_and_on_shutdown() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let m = KeyManager::builder_arc(counting.clone())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .usage_flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let issued = m.issue(request()).await.unwrap();
    for _ in 0..20 {
        m.verify(issued.key.expose_secret(), &Requirements::none())
            .await
            .unwrap();
    }
    // Nothing is written per verify.
    assert_eq!(
        m.get(&issued.record.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        None
    );
    m.shutdown().await.unwrap();
    assert!(
        m.get(&issued.record.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_weaker_than_policy_is_upgraded_on_the_next_verify() {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryStore::new());
    let weak = manager_on(Arc::clone(&store), CacheConfig::default());
    let issued = weak.issue(request()).await.unwrap();
    let strong = KeyManager::builder_arc(Arc::clone(&store))
        .serve("dev".parse().unwrap())
        .hash_params(HashParams {
            m_cost: 256,
            t_cost: 2,
            p_cost: 1,
        })
        .build()
        .unwrap();
    strong
        .verify(issued.key.expose_secret(), &Requirements::none())
        .await
        .unwrap();
    let rec = store.get(&issued.record.id).await.unwrap().unwrap();
    assert_eq!(
        rec.secret_hash.params().unwrap(),
        HashParams {
            m_cost: 256,
            t_cost: 2,
            p_cost: 1
        }
    );
    strong
        .verify(issued.key.expose_secret(), &Requirements::none())
        .await
        .expect("still verifies after the upgrade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_older_than_the_ttl_is_verified_against_the_store_again() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let ttl = Duration::from_millis(50);
    let m = manager_on(
        counting.clone(),
        CacheConfig {
            ttl,
            ..CacheConfig::default()
        },
    );
    let issued = m.issue(request()).await.unwrap();
    let text = issued.key.expose_secret();
    m.verify(text, &Requirements::none()).await.unwrap();
    m.verify(text, &Requirements::none()).await.unwrap();
    assert_eq!(counting.gets(), 1, "within the TTL: served from the cache");
    let runs = m.hasher().runs();
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;
    m.verify(text, &Requirements::none()).await.unwrap();
    assert_eq!(
        counting.gets(),
        2,
        "after the TTL: read from the store again"
    );
    assert_eq!(
        m.hasher().runs(),
        runs,
        "the stored hash is the one the secret was verified against: no Argon2"
    );
    m.verify(text, &Requirements::none()).await.unwrap();
    assert_eq!(counting.gets(), 2, "cached again for another TTL");
}

/// A manager whose cache entries expire after `ttl` and whose change feed is not polled
/// within a test: only the TTL and the manager's own invalidations act.
fn manager_with_ttl(store: Arc<dyn KeyStore>, ttl: Duration, max_failures: u32) -> KeyManager {
    manager_on(
        store,
        CacheConfig {
            ttl,
            max_failures,
            poll_interval: Duration::from_secs(3600),
            ..CacheConfig::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_ttl_the_fresh_record_decides_and_a_changed_hash_or_wrong_secret_runs_argon2() {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryStore::new());
    let ttl = Duration::from_millis(50);
    let m = manager_with_ttl(store.clone(), ttl, 10);
    let none = Requirements::none();
    let revoked = m.issue(request()).await.unwrap();
    let rehashed = m.issue(request()).await.unwrap();
    let wrong = m.issue(request()).await.unwrap();
    for k in [&revoked.key, &rehashed.key, &wrong.key] {
        m.verify_key(k, &none).await.unwrap();
    }
    // Changes made behind the manager's back (no invalidation, no feed within the test).
    store
        .update(
            &revoked.key.id(),
            &keyward::KeyChange {
                revoke_at: Some(keyward::Timestamp::now()),
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap();
    let other_hash = m.hasher().hash(b"another secret entirely").await.unwrap();
    store
        .update(
            &rehashed.key.id(),
            &keyward::KeyChange {
                secret_hash: Some(other_hash),
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;

    let runs = m.hasher().runs();
    assert!(matches!(
        m.verify_key(&revoked.key, &none).await,
        Err(Error::Auth(AuthError::Revoked { .. }))
    ));
    assert_eq!(
        m.hasher().runs(),
        runs,
        "same hash: the state comes from the store"
    );
    assert!(matches!(
        m.verify_key(&rehashed.key, &none).await,
        Err(Error::Auth(AuthError::Invalid))
    ));
    assert_eq!(m.hasher().runs(), runs + 1, "another hash: Argon2 decides");
    let guess: keyward::ApiKey = with_wrong_secret(wrong.key.expose_secret(), 29)
        .parse()
        .unwrap();
    assert!(matches!(
        m.verify_key(&guess, &none).await,
        Err(Error::Auth(AuthError::Invalid))
    ));
    assert_eq!(
        m.hasher().runs(),
        runs + 2,
        "another secret: Argon2 decides"
    );
    m.verify_key(&wrong.key, &none).await.unwrap();
    assert_eq!(m.hasher().runs(), runs + 2, "the right one is revalidated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_against_a_known_id_does_not_lock_out_a_holder_whose_entry_expired() {
    let ttl = Duration::from_millis(50);
    let m = manager_with_ttl(Arc::new(MemoryStore::new()), ttl, 3);
    let none = Requirements::none();
    let issued = m.issue(request()).await.unwrap();
    m.verify_key(&issued.key, &none).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;
    // Someone who read the public id in a log floods it with guesses: after 3, the id is
    // refused without Argon2.
    let guess: keyward::ApiKey = with_wrong_secret(issued.key.expose_secret(), 29)
        .parse()
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            m.verify_key(&guess, &none).await,
            Err(Error::Auth(AuthError::Invalid))
        ));
    }
    assert!(matches!(
        m.verify_key(&guess, &none).await,
        Err(Error::Auth(AuthError::RateLimited { .. }))
    ));
    // The holder's secret matches the expired entry: revalidated, not locked out.
    m.verify_key(&issued.key, &none).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_cached_decides_warm_keys_without_waiting_and_defers_the_rest() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let m = manager_on(counting.clone(), CacheConfig::default());
    let issued = m.issue(request()).await.unwrap();
    let key = &issued.key;
    let read = Requirements::scopes(["read"]).unwrap();

    // Not cached yet: the store is needed.
    assert!(m.verify_cached(key, &read).is_none());
    m.verify_key(key, &read).await.unwrap();
    let (gets, runs) = (counting.gets(), m.hasher().runs());

    // Cached: decided on the spot, the same outcomes as verify_key, no store, no Argon2.
    let who = m.verify_cached(key, &read).unwrap().unwrap();
    assert_eq!(who.id, key.id());
    assert!(matches!(
        m.verify_cached(key, &Requirements::scopes(["admin"]).unwrap()),
        Some(Err(Error::Auth(AuthError::InsufficientScope { .. })))
    ));
    let wrong: keyward::ApiKey = with_wrong_secret(key.expose_secret(), 29).parse().unwrap();
    assert!(matches!(
        m.verify_cached(&wrong, &read),
        Some(Err(Error::Auth(AuthError::Invalid)))
    ));
    assert_eq!((counting.gets(), m.hasher().runs()), (gets, runs));

    // A key for another environment is refused from its text, cached or not.
    let prd = keyward::ApiKey::generate("kw".parse().unwrap(), "prd".parse().unwrap()).unwrap();
    assert!(matches!(
        m.verify_cached(&prd, &read),
        Some(Err(Error::Auth(AuthError::WrongEnvironment { .. })))
    ));

    // Revoked through the manager: the entry is gone, so the store must decide.
    m.revoke(&key.id()).await.unwrap();
    assert!(m.verify_cached(key, &read).is_none());
    assert!(matches!(
        m.verify_key(key, &read).await,
        Err(Error::Auth(AuthError::Revoked { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_cached_leaves_keys_with_credits_to_the_store() {
    let m = manager_on(Arc::new(MemoryStore::new()), CacheConfig::default());
    let issued = m
        .issue(request().limits(keyward::KeyLimits {
            credits: Some(keyward::Credits {
                amount: 2,
                refill: None,
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let req = Requirements::none();
    m.verify_key(&issued.key, &req).await.unwrap();
    // Cached, but each use spends a credit in the store: not decided from the cache.
    assert!(m.verify_cached(&issued.key, &req).is_none());
    m.verify_key(&issued.key, &req).await.unwrap();
    assert!(matches!(
        m.verify_key(&issued.key, &req).await,
        Err(Error::Auth(AuthError::CreditsExhausted { .. }))
    ));
}

/// Fails `update` while `fail` is set; everything else passes through.
struct FailUpdates(Arc<std::sync::atomic::AtomicBool>);

impl keyward::conformance::StoreHook for FailUpdates {
    fn before(&self, method: &'static str) -> Result<(), keyward::StoreError> {
        if method == "update" && self.0.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(keyward::StoreError::backend(
                "memory",
                "updates are failing",
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_whose_re_hash_failed_is_verified_cold_and_re_hashed() {
    let memory: Arc<dyn KeyStore> = Arc::new(MemoryStore::new());
    let weak = manager_on(Arc::clone(&memory), CacheConfig::default());
    let issued = weak.issue(request()).await.unwrap();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let store: Arc<dyn KeyStore> = Arc::new(keyward::conformance::Wrapped::with_hook(
        Arc::clone(&memory),
        FailUpdates(Arc::clone(&fail)),
    ));
    let ttl = Duration::from_millis(50);
    let stronger = HashParams {
        m_cost: 256,
        t_cost: 2,
        p_cost: 1,
    };
    let strong = KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(stronger)
        .cache(CacheConfig {
            ttl,
            poll_interval: Duration::from_secs(3600),
            ..CacheConfig::default()
        })
        .build()
        .unwrap();
    let none = Requirements::none();
    // The re-hash fails: the key is served, its weak hash stays.
    strong.verify_key(&issued.key, &none).await.unwrap();
    let params = |r: keyward::KeyRecord| r.secret_hash.params().unwrap();
    let stored = memory.get(&issued.record.id).await.unwrap().unwrap();
    assert_ne!(params(stored), stronger);
    // After the TTL, the entry is not revalidated with a store read: Argon2 runs again and
    // the re-hash is retried, this time with success.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;
    let runs = strong.hasher().runs();
    strong.verify_key(&issued.key, &none).await.unwrap();
    assert!(strong.hasher().runs() > runs, "verified cold");
    let stored = memory.get(&issued.record.id).await.unwrap().unwrap();
    assert_eq!(params(stored), stronger);
}

fn outcome(r: &Result<keyward::Identity, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(Error::Auth(AuthError::Invalid)) => "invalid",
        Err(Error::Auth(AuthError::RateLimited { .. })) => "limited",
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_secrets_against_one_uncached_id_run_at_most_max_failures_argon2s() {
    let m = manager_on(Arc::new(MemoryStore::new()), CacheConfig::default());
    let issued = m.issue(request()).await.unwrap();
    let guess = Arc::new(with_wrong_secret(issued.key.expose_secret(), 29));
    let runs = m.hasher().runs();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (m, guess) = (m.clone(), Arc::clone(&guess));
            tokio::spawn(async move { m.verify(&guess, &Requirements::none()).await })
        })
        .collect();
    let mut invalid = 0;
    for t in tasks {
        match outcome(&t.await.unwrap()) {
            "invalid" => invalid += 1,
            "limited" => {}
            other => panic!("a wrong secret was {other}"),
        }
    }
    let max = CacheConfig::default().max_failures as usize;
    assert_eq!(
        invalid, max,
        "the first {max} are answered, the rest refused"
    );
    assert!(
        m.hasher().runs() - runs <= max,
        "{} Argon2 runs",
        m.hasher().runs() - runs
    );
    m.verify(issued.key.expose_secret(), &Requirements::none())
        .await
        .map(|_| ())
        .expect_err("the id is at its limit until the window ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_unknown_id_runs_no_argon2_and_reads_the_store_once() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let m = manager_on(counting.clone(), CacheConfig::default());
    let issued = m.issue(request()).await.unwrap();
    let wrong = with_wrong_secret(issued.key.expose_secret(), 29);
    let unknown = keyward::ApiKey::generate(m.prefix(), "dev".parse().unwrap()).unwrap();
    let runs = m.hasher().runs();
    let gets = counting.gets();
    for _ in 0..5 {
        let err = m
            .verify(unknown.expose_secret(), &Requirements::none())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Auth(AuthError::Invalid)), "{err:?}");
        assert_eq!(counting.gets(), gets + 1, "one store read, then none");
    }
    assert_eq!(m.hasher().runs(), runs, "an unknown id runs no Argon2");
    // The outward answer is the wrong secret's, byte for byte.
    let unknown_err = m
        .verify(unknown.expose_secret(), &Requirements::none())
        .await;
    let wrong_err = m.verify(&wrong, &Requirements::none()).await;
    assert_eq!(
        format!("{:?}", unknown_err.unwrap_err()),
        format!("{:?}", wrong_err.unwrap_err())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_remembered_as_unknown_is_valid_once_the_feed_delivers_its_insert() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn KeyStore> = counting.clone();
    let cache = CacheConfig {
        poll_interval: Duration::from_millis(20),
        ..CacheConfig::default()
    };
    let a = manager_on(Arc::clone(&store), cache.clone());
    let b = manager_on(Arc::clone(&store), cache);
    // A key made elsewhere, whose record is not in the shared store yet.
    let scratch = manager_on(Arc::new(MemoryStore::new()), CacheConfig::default());
    let issued = scratch.issue(request()).await.unwrap();
    let text = issued.key.expose_secret();
    for _ in 0..3 {
        assert_eq!(
            outcome(&a.verify(text, &Requirements::none()).await),
            "invalid"
        );
    }
    let gets = counting.gets();
    assert_eq!(
        outcome(&a.verify(text, &Requirements::none()).await),
        "invalid"
    );
    assert_eq!(counting.gets(), gets, "A remembers the id as unknown");
    // Another manager on the same store inserts it; the negative TTL (60 s) is far away, so
    // only the change feed can make A forget.
    b.store().insert(&issued.record, &[]).await.unwrap();
    let start = Instant::now();
    loop {
        match outcome(&a.verify(text, &Requirements::none()).await) {
            "ok" => break,
            "invalid" => assert!(
                start.elapsed() < Duration::from_secs(5),
                "A never heard of the insert"
            ),
            other => panic!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Blocks the first store `get` after [`Gate::close`] until [`Gate::open`], and reports
/// when it is blocked, so a test can hold a cold verify in the middle deterministically.
#[derive(Default)]
struct Gate {
    closed: std::sync::atomic::AtomicBool,
    blocked: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Gate {
    /// Closes the gate; the receiver hears when a `get` is held, the sender releases it.
    fn close(&self) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (blocked_tx, blocked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        *self.blocked.lock().unwrap() = Some(blocked_tx);
        *self.release.lock().unwrap() = Some(release_rx);
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        (blocked_rx, release_tx)
    }
}

impl keyward::conformance::StoreHook for Gate {
    fn before(&self, method: &'static str) -> Result<(), keyward::StoreError> {
        if method == "get" && self.closed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let blocked = self.blocked.lock().unwrap().take().unwrap();
            let release = self.release.lock().unwrap().take().unwrap();
            blocked.send(()).unwrap();
            release.recv().unwrap();
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_attempts_are_refused_past_their_share_while_a_real_key_s_first_use_succeeds() {
    let gated = Arc::new(keyward::conformance::Wrapped::with_hook(
        Arc::new(MemoryStore::new()) as Arc<dyn KeyStore>,
        Gate::default(),
    ));
    // Two workers, half for ids with failed attempts: one such verify at a time.
    let hasher = keyward::Hasher::with_workers(HashParams::INSECURE_TEST_ONLY, 2, 64).unwrap();
    let m = KeyManager::builder_arc(gated.clone())
        .serve("dev".parse().unwrap())
        .hasher(hasher)
        .cache(CacheConfig {
            failing_share_percent: 50,
            ..CacheConfig::default()
        })
        .build()
        .unwrap();
    let mut guesses = Vec::new();
    for _ in 0..20 {
        let issued = m.issue(request()).await.unwrap();
        let guess = with_wrong_secret(issued.key.expose_secret(), 29);
        // One failed attempt each: every id now has a failure history.
        assert_eq!(
            outcome(&m.verify(&guess, &Requirements::none()).await),
            "invalid"
        );
        guesses.push(guess);
    }
    let real = m.issue(request()).await.unwrap();

    // One failing attempt takes the share and is held at its store read.
    let (blocked, release) = gated.hook().close();
    let held = {
        let (m, guess) = (m.clone(), guesses[0].clone());
        tokio::spawn(async move { m.verify(&guess, &Requirements::none()).await })
    };
    tokio::task::spawn_blocking(move || blocked.recv().unwrap())
        .await
        .unwrap();
    let runs = m.hasher().runs();
    // The flood: refused before Argon2 while the share is in use.
    let flood: Vec<_> = guesses[1..]
        .iter()
        .map(|guess| {
            let (m, guess) = (m.clone(), guess.clone());
            tokio::spawn(async move { m.verify(&guess, &Requirements::none()).await })
        })
        .collect();
    for t in flood {
        let r = t.await.unwrap();
        assert!(
            matches!(r, Err(Error::Auth(AuthError::RateLimited { .. }))),
            "{r:?}"
        );
    }
    assert_eq!(m.hasher().runs(), runs, "the flood ran no Argon2");
    // A real key's first use has no failure history: it is not held to the share.
    m.verify(real.key.expose_secret(), &Requirements::none())
        .await
        .expect("a real key's first use succeeds during the flood");
    assert_eq!(m.hasher().runs(), runs + 1);
    release.send(()).unwrap();
    assert_eq!(outcome(&held.await.unwrap()), "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_that_fail_in_the_store_are_not_counted_against_the_key() {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = Arc::new(keyward::conformance::FailingStore::new(
        Arc::new(MemoryStore::new()),
        "memory",
        Arc::clone(&down),
    ));
    let cache = CacheConfig {
        max_failures: 2,
        ..CacheConfig::default()
    };
    let m = manager_on(store, cache);
    let issued = m.issue(request()).await.unwrap();
    let text = issued.key.expose_secret();
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        assert!(matches!(
            m.verify(text, &Requirements::none()).await,
            Err(Error::Store(_))
        ));
    }
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    m.verify(text, &Requirements::none())
        .await
        .expect("a store outage used up none of the key's attempts");
}

/// A store hook for feed-trouble tests: hands out a push feed the test drives, counts `get`s
/// and `changes_since` calls, and fails every call while `down` is set.
#[derive(Default)]
struct DrivenFeed {
    events: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<keyward::ChangeEvent>>>,
    gets: std::sync::atomic::AtomicUsize,
    catch_ups: std::sync::atomic::AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

impl keyward::conformance::StoreHook for DrivenFeed {
    fn before(&self, method: &'static str) -> Result<(), keyward::StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.down.load(SeqCst) {
            return Err(keyward::StoreError::backend(
                "test",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down"),
            ));
        }
        match method {
            "get" => self.gets.fetch_add(1, SeqCst),
            "changes_since" => self.catch_ups.fetch_add(1, SeqCst),
            _ => 0,
        };
        Ok(())
    }

    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<keyward::ChangeEvent>> {
        self.events.lock().unwrap().take()
    }
}

/// A manager on a store with a test-driven push feed, and a manager on the same records that
/// makes "changes elsewhere" (not notified unless the test sends them).
struct FeedTrouble {
    m: KeyManager,
    hook: Arc<keyward::conformance::Wrapped<DrivenFeed>>,
    elsewhere: KeyManager,
    events: tokio::sync::mpsc::Sender<keyward::ChangeEvent>,
}

impl FeedTrouble {
    fn new(inner: MemoryStore, cache: CacheConfig) -> Self {
        let (events, rx) = tokio::sync::mpsc::channel(16);
        let hook = DrivenFeed {
            events: std::sync::Mutex::new(Some(rx)),
            ..DrivenFeed::default()
        };
        let inner: Arc<dyn KeyStore> = Arc::new(inner);
        let hook = Arc::new(keyward::conformance::Wrapped::with_hook(
            Arc::clone(&inner),
            hook,
        ));
        Self {
            m: manager_on(hook.clone(), cache),
            hook,
            elsewhere: manager_on(inner, CacheConfig::default()),
            events,
        }
    }

    fn gets(&self) -> usize {
        self.hook
            .hook()
            .gets
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Issues a key elsewhere and verifies it here (cold: cached).
    async fn cached_key(&self) -> keyward::IssuedKey {
        let issued = self.elsewhere.issue(request()).await.unwrap();
        self.m
            .verify(issued.key.expose_secret(), &Requirements::none())
            .await
            .unwrap();
        issued
    }

    /// Waits until `key` is served from the cache alone (the feed caught up).
    async fn wait_until_warm(&self, key: &keyward::IssuedKey) {
        wait_for("the feed to catch up", || {
            self.m
                .verify_cached(&key.key, &Requirements::none())
                .is_some()
        })
        .await;
    }
}

/// Waits (at most 10 s) until `done` holds.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waited for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_feed_revalidates_with_one_store_read_and_a_resync_invalidates_only_what_changed() {
    let t = FeedTrouble::new(MemoryStore::new(), CacheConfig::default());
    let (kept, revoked) = (t.cached_key().await, t.cached_key().await);
    let (kept_text, revoked_text) = (kept.key.expose_secret(), revoked.key.expose_secret());
    t.wait_until_warm(&kept).await;
    let (gets, runs) = (t.gets(), t.m.hasher().runs());

    t.events.send(keyward::ChangeEvent::Lost).await.unwrap();
    wait_for("the feed to be marked lost", || {
        t.m.verify_cached(&kept.key, &Requirements::none())
            .is_none()
    })
    .await;
    // Lost: each use revalidates with one store read, no Argon2.
    t.m.verify(kept_text, &Requirements::none()).await.unwrap();
    assert_eq!((t.gets(), t.m.hasher().runs()), (gets + 1, runs));
    t.m.verify(kept_text, &Requirements::none()).await.unwrap();
    assert_eq!((t.gets(), t.m.hasher().runs()), (gets + 2, runs));

    // A revocation made elsewhere while the feed is down is never notified…
    t.elsewhere.revoke(&revoked.record.id).await.unwrap();
    // …but the revalidation sees it.
    assert!(matches!(
        t.m.verify(revoked_text, &Requirements::none()).await,
        Err(Error::Auth(AuthError::Revoked { .. }))
    ));

    // Back: the catch-up from the baseline invalidates the revoked key only.
    t.events.send(keyward::ChangeEvent::Resync).await.unwrap();
    t.wait_until_warm(&kept).await;
    let (gets, runs) = (t.gets(), t.m.hasher().runs());
    for _ in 0..10 {
        t.m.verify(kept_text, &Requirements::none()).await.unwrap();
    }
    assert_eq!(
        (t.gets(), t.m.hasher().runs()),
        (gets, runs),
        "an unchanged key: no store read, no Argon2"
    );
    assert!(matches!(
        t.m.verify(revoked_text, &Requirements::none()).await,
        Err(Error::Auth(AuthError::Revoked { .. }))
    ));
    assert!(
        t.m.verify_cached(&revoked.key, &Requirements::none())
            .is_none_or(|r| r.is_err()),
        "the revoked key is not served as valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_whose_gap_exceeds_the_change_log_drops_the_whole_cache() {
    let t = FeedTrouble::new(MemoryStore::with_change_log_len(1), CacheConfig::default());
    let kept = t.cached_key().await;
    let kept_text = kept.key.expose_secret();
    t.wait_until_warm(&kept).await;
    t.events.send(keyward::ChangeEvent::Lost).await.unwrap();
    // Two changes elsewhere: the one-entry log no longer reaches the baseline.
    for _ in 0..2 {
        t.elsewhere.issue(request()).await.unwrap();
    }
    let catch_ups = t
        .hook
        .hook()
        .catch_ups
        .load(std::sync::atomic::Ordering::SeqCst);
    t.events.send(keyward::ChangeEvent::Resync).await.unwrap();
    wait_for("a catch-up", || {
        t.hook
            .hook()
            .catch_ups
            .load(std::sync::atomic::Ordering::SeqCst)
            != catch_ups
    })
    .await;
    // The cache is served again once caught up, and the key is no longer in it: the next
    // verify is cold (store read and Argon2).
    let runs = t.m.hasher().runs();
    let start = Instant::now();
    loop {
        t.m.verify(kept_text, &Requirements::none()).await.unwrap();
        if t.m.hasher().runs() == runs + 1 {
            break;
        }
        // Still stale (the catch-up's answer not applied yet): a revalidation, no Argon2.
        assert_eq!(t.m.hasher().runs(), runs);
        assert!(start.elapsed() < Duration::from_secs(10), "never dropped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_down_a_cached_key_is_served_until_max_stale_then_503() {
    let max_stale = Duration::from_secs(3);
    let t = FeedTrouble::new(
        MemoryStore::new(),
        CacheConfig {
            max_stale,
            ..CacheConfig::default()
        },
    );
    let confirmed = Instant::now();
    let key = t.cached_key().await;
    let text = key.key.expose_secret();
    let runs = t.m.hasher().runs();
    t.events.send(keyward::ChangeEvent::Lost).await.unwrap();
    t.hook
        .hook()
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Within max_stale of the last confirmation: served (the revalidation read fails).
    t.m.verify(text, &Requirements::none())
        .await
        .expect("served within max_stale");
    assert!(confirmed.elapsed() < max_stale, "the machine was too slow");
    // Past it: the store error (503), not a credential error.
    tokio::time::sleep_until((confirmed + max_stale + Duration::from_millis(100)).into()).await;
    assert!(matches!(
        t.m.verify(text, &Requirements::none()).await,
        Err(Error::Store(_))
    ));
    // A wrong secret is still refused, without Argon2.
    assert!(matches!(
        t.m.verify(&with_wrong_secret(text, 29), &Requirements::none())
            .await,
        Err(Error::Auth(AuthError::Invalid)) | Err(Error::Store(_))
    ));
    assert_eq!(
        t.m.hasher().runs(),
        runs,
        "no Argon2 while the store is down"
    );
    // The store is back (the feed still lost): one read confirms the key again.
    t.hook
        .hook()
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    t.m.verify(text, &Requirements::none()).await.unwrap();
    assert_eq!(t.m.hasher().runs(), runs);
}
