//! Store writes whose caller is dropped half way (docs/ARCHITECTURE.md, "Metering"): a client
//! that hangs up while its lease is on the way, and a shutdown that stops the settle timer
//! while a settle is on the way, lose no unit and strand none; a shutdown that stops the
//! last-used flush while it is on the way loses no time, and one that stops the expiring-key
//! sweep after its claim was made still emits the event.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use keyward::conformance::{Delay, StoreHook, Wrapped};
use keyward::{
    Counter, EventConfig, HashParams, Identity, IssueRequest, KeyEvent, KeyManager, KeyStore,
    Lease, LeaseConfig, Metering, Period, Project, Quota, RecordStore, Requirements, StoreError,
    UsageStore,
};
use keyward_memory::MemoryStore;

/// Delays one store method: before it is forwarded or after it answered.
struct Slow {
    method: &'static str,
    delay: Delay,
}

impl StoreHook for Slow {
    fn before(&self, _: &'static str) -> Result<(), StoreError> {
        Ok(())
    }
    fn delay(&self, method: &'static str) -> Delay {
        if method == self.method {
            self.delay
        } else {
            Delay::default()
        }
    }
}

const PROJECT: &str = "cancelled";
const LIMIT: u64 = 1_000_000;

async fn metered(slow: Slow, settle_every: Duration) -> (MemoryStore, KeyManager, Identity) {
    let memory = MemoryStore::new();
    let store: Arc<dyn KeyStore> = Arc::new(Wrapped::with_hook(Arc::new(memory.clone()), slow));
    let m = KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .metering(Metering::Leased(
            LeaseConfig::default().settle_interval(settle_every),
        ))
        .build()
        .unwrap();
    let project: Project = PROJECT.parse().unwrap();
    let quota = Quota {
        limit: LIMIT,
        period: Period::Month,
    };
    m.set_project_quota(&project, Some(quota)).await.unwrap();
    let key = m
        .issue(IssueRequest::new(project, "dev".parse().unwrap()))
        .await
        .unwrap();
    let who = m
        .verify(key.key.expose_secret(), &Requirements::none())
        .await
        .unwrap();
    (memory, m, who)
}

async fn counts(memory: &MemoryStore, m: &KeyManager) -> Lease {
    let project: Project = PROJECT.parse().unwrap();
    let (start, _) = Period::Month.window(m.now());
    let bucket = Counter::ProjectEvents(&project).bucket(start);
    memory.lease(&bucket, 0, 0, LIMIT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_the_timer_settles_loses_nothing() {
    // Every settle waits 150 ms before it reaches the store: the timer's settle is still on
    // its way when shutdown stops the timer.
    let slow = Slow {
        method: "settle",
        delay: Delay {
            before: Duration::from_millis(150),
            after: Duration::ZERO,
        },
    };
    let (memory, m, who) = metered(slow, Duration::from_millis(10)).await;
    for _ in 0..300 {
        m.consume_events(&who, 1).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(40)).await;
    let on_the_way = counts(&memory, &m).await;
    assert_eq!(on_the_way.used, 0, "the timer's settle is still waiting");
    m.shutdown().await.unwrap();
    let after = counts(&memory, &m).await;
    assert_eq!((after.used, after.leased), (300, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_while_its_lease_is_answered_strands_nothing() {
    // The store takes the lease at once and answers 100 ms later: the client hangs up in
    // between.
    let slow = Slow {
        method: "lease",
        delay: Delay {
            before: Duration::ZERO,
            after: Duration::from_millis(100),
        },
    };
    let (memory, m, who) = metered(slow, Duration::from_millis(10)).await;
    let request = {
        let (m, who) = (m.clone(), who.clone());
        tokio::spawn(async move { m.consume_events(&who, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let leased = counts(&memory, &m).await;
    assert_eq!(leased.leased, 1, "the lease was taken: {leased:?}");
    request.abort();
    assert!(request.await.is_err_and(|e| e.is_cancelled()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    m.shutdown().await.unwrap();
    let after = counts(&memory, &m).await;
    // The unit the dropped request leased is counted as spent (as a direct consume that
    // committed would be) and nothing stays leased.
    assert_eq!((after.used, after.leased), (1, 0));
    // The instance goes on metering.
    m.consume_events(&who, 1).await.unwrap();
    assert_eq!(counts(&memory, &m).await.used, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_the_timer_writes_last_used_times_loses_none() {
    let slow = Slow {
        method: "record_usage",
        delay: Delay {
            before: Duration::from_millis(150),
            after: Duration::ZERO,
        },
    };
    let memory = MemoryStore::new();
    let store: Arc<dyn KeyStore> = Arc::new(Wrapped::with_hook(Arc::new(memory.clone()), slow));
    let m = KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .usage_flush_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let key = m
        .issue(IssueRequest::new(
            PROJECT.parse().unwrap(),
            "dev".parse().unwrap(),
        ))
        .await
        .unwrap();
    m.verify(key.key.expose_secret(), &Requirements::none())
        .await
        .unwrap();
    // The timer's flush has taken the time and waits before the store.
    tokio::time::sleep(Duration::from_millis(40)).await;
    let record = memory.get(&key.record.id).await.unwrap().unwrap();
    assert_eq!(record.last_used_at, None, "the flush is still on its way");
    m.shutdown().await.unwrap();
    let record = memory.get(&key.record.id).await.unwrap().unwrap();
    assert!(record.last_used_at.is_some(), "the time was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_after_the_sweep_claimed_an_event_still_emits_it() {
    // The claim (a consume with limit 1) is made at once and answered 150 ms later: shutdown
    // stops the sweep in between. Another instance would find the event claimed.
    let slow = Slow {
        method: "consume",
        delay: Delay {
            before: Duration::ZERO,
            after: Duration::from_millis(150),
        },
    };
    let memory = MemoryStore::new();
    let store: Arc<dyn KeyStore> = Arc::new(Wrapped::with_hook(Arc::new(memory.clone()), slow));
    let m = KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .events(EventConfig::default().sweep_interval(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let key = m
        .issue(
            IssueRequest::new(PROJECT.parse().unwrap(), "dev".parse().unwrap())
                .expires_in(Duration::from_secs(24 * 3600)),
        )
        .await
        .unwrap();
    let mut events = m.subscribe_events();
    tokio::time::sleep(Duration::from_millis(50)).await;
    m.shutdown().await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("the claimed event is emitted")
        .unwrap();
    assert!(
        matches!(event, KeyEvent::Expiring { key_id, .. } if key_id == key.record.id),
        "{event:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_lease_lands_after_shutdown_settles_it() {
    // The lease waits 100 ms before the store: shutdown settles and closes in between, and
    // the request's lease arrives after.
    let slow = Slow {
        method: "lease",
        delay: Delay {
            before: Duration::from_millis(100),
            after: Duration::ZERO,
        },
    };
    let (memory, m, who) = metered(slow, Duration::from_millis(10)).await;
    let request = {
        let (m, who) = (m.clone(), who.clone());
        tokio::spawn(async move { m.consume_events(&who, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    m.shutdown().await.unwrap();
    request.await.unwrap().unwrap();
    let after = counts(&memory, &m).await;
    assert_eq!((after.used, after.leased), (1, 0));
}
