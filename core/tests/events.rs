//! Lifecycle and threshold events (`KeyManager::subscribe_events`, `EventSink`): each kind is
//! emitted with the right fields and no secret, thresholds once per period, across managers
//! sharing one store, and a slow sink never slows consumption. Memory store; the PostgreSQL
//! two-instance case is in storage-postgres/tests/events.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward::conformance::KeyForms;
use keyward::{
    Credits, CreditsLevel, EventConfig, EventSink, HashParams, Identity, IssueRequest, IssuedKey,
    KeyChange, KeyEvent, KeyLimits, KeyManager, KeyManagerBuilder, KeyStore, ManualClock, Period,
    Quota, QuotaScope, Requirements, Timestamp, async_trait,
};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// 2026-03-10T12:00:00Z.
fn start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-03-10T12:00:00Z").unwrap()
}

fn builder(store: Arc<dyn KeyStore>, clock: &ManualClock) -> KeyManagerBuilder {
    KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(clock.clone()))
}

fn manager_with(config: EventConfig) -> (KeyManager, ManualClock) {
    let clock = ManualClock::new(start());
    let m = builder(Arc::new(keyward_memory::MemoryStore::new()), &clock)
        .events(config)
        .build()
        .unwrap();
    (m, clock)
}

fn manager() -> (KeyManager, ManualClock) {
    manager_with(EventConfig::default())
}

async fn issue(m: &KeyManager, limits: KeyLimits) -> IssuedKey {
    m.issue(IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap()).limits(limits))
        .await
        .unwrap()
}

async fn identity(m: &KeyManager, key: &IssuedKey) -> Identity {
    m.verify(key.key.expose_secret(), &Requirements::none())
        .await
        .unwrap()
}

/// Every event received until none comes for 200 ms (claims run on spawned tasks).
async fn drain(rx: &mut Receiver<KeyEvent>) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    while let Ok(r) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        out.push(r.unwrap());
    }
    out
}

fn percents(events: &[KeyEvent]) -> Vec<(QuotaScope, u8, u64)> {
    events
        .iter()
        .map(|e| match e {
            KeyEvent::QuotaThreshold {
                scope,
                percent,
                used,
                ..
            } => (*scope, *percent, *used),
            other => panic!("not a threshold: {other:?}"),
        })
        .collect()
}

fn key_quota(limit: u64) -> KeyLimits {
    KeyLimits {
        quota: Some(Quota {
            limit,
            period: Period::Day,
        }),
        ..KeyLimits::default()
    }
}

#[tokio::test]
async fn issue_rotate_and_revoke_emit_lifecycle_events_without_the_secret() {
    let (m, clock) = manager();
    let mut rx = m.subscribe_events();
    let issued = m
        .issue(
            IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                .name("ci")
                .expires_in(30 * DAY),
        )
        .await
        .unwrap();
    let rotated = m
        .rotate(&issued.record.id, Duration::from_secs(60))
        .await
        .unwrap();
    m.revoke(&rotated.record.id).await.unwrap();
    let events = drain(&mut rx).await;
    assert_eq!(
        events.iter().map(KeyEvent::kind).collect::<Vec<_>>(),
        ["key.issued", "key.rotated", "key.revoked"]
    );
    let now = clock.now_ts();
    let expected_expiry = Some(now.saturating_add(30 * DAY));
    assert!(
        matches!(
            &events[0],
            KeyEvent::Issued { key_id, project, environment, name, created_at, expires_at, .. }
                if *key_id == issued.record.id && project.as_str() == "web-app"
                    && environment.as_str() == "dev" && name == "ci" && *created_at == now
                    && *expires_at == expected_expiry
        ),
        "{:?}",
        events[0]
    );
    assert!(matches!(
        &events[1],
        KeyEvent::Rotated { key_id, new_key_id, grace_end, .. }
            if *key_id == issued.record.id && *new_key_id == rotated.record.id
                && *grace_end == now.saturating_add(Duration::from_secs(60))
    ));
    assert!(
        matches!(&events[2], KeyEvent::Revoked { key_id, revoked_at, .. }
        if *key_id == rotated.record.id && *revoked_at == now)
    );
    let json = serde_json::to_string(&events).unwrap();
    for key in [&issued.key, &rotated.key] {
        KeyForms::of(key.expose_secret()).assert_hidden_in("the events' JSON", &json);
    }
}

trait NowTs {
    fn now_ts(&self) -> Timestamp;
}
impl NowTs for ManualClock {
    fn now_ts(&self) -> Timestamp {
        keyward::Clock::now(self)
    }
}

#[tokio::test]
async fn revoking_through_update_emits_revoked_and_a_second_revoke_emits_nothing() {
    let (m, clock) = manager();
    let issued = issue(&m, KeyLimits::default()).await;
    let mut rx = m.subscribe_events();
    let change = KeyChange {
        revoke_at: Some(m.now()),
        ..KeyChange::default()
    };
    m.update(&issued.record.id, &change).await.unwrap();
    // A revoke is recognised by its instant: the second is a millisecond later or more.
    clock.advance(Duration::from_millis(1));
    m.revoke(&issued.record.id).await.unwrap();
    m.update(
        &issued.record.id,
        &KeyChange {
            name: Some("renamed".into()),
            ..KeyChange::default()
        },
    )
    .await
    .unwrap();
    let events = drain(&mut rx).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind(), "key.revoked");
}

#[tokio::test]
async fn a_key_quota_reports_80_and_100_percent_once_per_period() {
    let (m, clock) = manager();
    let key = issue(&m, key_quota(10)).await;
    let who = identity(&m, &key).await;
    let mut rx = m.subscribe_events();
    m.consume_events(&who, 7).await.unwrap();
    assert!(drain(&mut rx).await.is_empty());
    m.consume_events(&who, 1).await.unwrap(); // 8 of 10
    m.consume_events(&who, 1).await.unwrap();
    m.consume_events(&who, 1).await.unwrap(); // 10 of 10
    assert!(m.consume_events(&who, 1).await.is_err());
    assert!(m.consume_events(&who, 5).await.is_err());
    let events = drain(&mut rx).await;
    assert_eq!(
        percents(&events),
        [(QuotaScope::Key, 80, 8), (QuotaScope::Key, 100, 10)]
    );
    let KeyEvent::QuotaThreshold {
        limit,
        period_start,
        resets_at,
        key_id,
        ..
    } = &events[1]
    else {
        unreachable!()
    };
    let (day_start, day_end) = Period::Day.window(m.now());
    assert_eq!(
        (*limit, *period_start, *resets_at, *key_id),
        (10, day_start, day_end, who.id)
    );

    // The next day is a new period: the thresholds are reported again.
    clock.advance(DAY);
    m.consume_events(&who, 10).await.unwrap();
    assert_eq!(
        percents(&drain(&mut rx).await),
        [(QuotaScope::Key, 80, 10), (QuotaScope::Key, 100, 10)]
    );
}

#[tokio::test]
async fn a_refused_batch_reports_100_percent_once_even_below_the_limit() {
    let (m, _) = manager();
    let key = issue(&m, key_quota(10)).await;
    let who = identity(&m, &key).await;
    let mut rx = m.subscribe_events();
    m.consume_events(&who, 9).await.unwrap();
    for _ in 0..3 {
        assert!(m.consume_events(&who, 5).await.is_err());
    }
    m.consume_events(&who, 1).await.unwrap(); // reaches 10: already reported
    assert_eq!(
        percents(&drain(&mut rx).await),
        [(QuotaScope::Key, 80, 9), (QuotaScope::Key, 100, 9)]
    );
}

#[tokio::test]
async fn a_project_quota_reports_its_thresholds_once_across_two_managers_on_one_store() {
    let clock = ManualClock::new(start());
    let store: Arc<dyn KeyStore> = Arc::new(keyward_memory::MemoryStore::new());
    let a = builder(Arc::clone(&store), &clock).build().unwrap();
    let b = builder(Arc::clone(&store), &clock).build().unwrap();
    let project = "web-app".parse().unwrap();
    a.set_project_quota(
        &project,
        Some(Quota {
            limit: 1000,
            period: Period::Month,
        }),
    )
    .await
    .unwrap();
    let key = issue(&a, KeyLimits::default()).await;
    let (who_a, who_b) = (identity(&a, &key).await, identity(&b, &key).await);
    let (mut rx_a, mut rx_b) = (a.subscribe_events(), b.subscribe_events());
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (m, who) = if i % 2 == 0 {
            (a.clone(), who_a.clone())
        } else {
            (b.clone(), who_b.clone())
        };
        tasks.push(tokio::spawn(async move {
            m.consume_events(&who, 1).await.is_ok()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    // Refused at the limit, in both instances.
    assert!(a.consume_events(&who_a, 1).await.is_err());
    assert!(b.consume_events(&who_b, 1).await.is_err());
    let mut all = drain(&mut rx_a).await;
    all.extend(drain(&mut rx_b).await);
    let mut got = percents(&all);
    got.sort_unstable_by_key(|(_, p, _)| *p);
    assert_eq!(
        got,
        [
            (QuotaScope::Project, 80, 800),
            (QuotaScope::Project, 100, 1000)
        ]
    );
}

#[tokio::test]
async fn credits_low_is_reported_once_at_the_level_and_not_again_when_exhausted() {
    let (m, _) = manager_with(EventConfig::default().credits_low(Some(CreditsLevel::Remaining(2))));
    let key = issue(
        &m,
        KeyLimits {
            credits: Some(Credits {
                amount: 10,
                refill: None,
            }),
            ..KeyLimits::default()
        },
    )
    .await;
    let mut rx = m.subscribe_events();
    for _ in 0..7 {
        identity(&m, &key).await;
    }
    assert!(drain(&mut rx).await.is_empty());
    for _ in 0..3 {
        identity(&m, &key).await;
    }
    assert!(
        m.verify(key.key.expose_secret(), &Requirements::none())
            .await
            .is_err()
    );
    let events = drain(&mut rx).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0],
        KeyEvent::CreditsLow {
            remaining: 2,
            used: 8,
            limit: 10,
            resets_at: None,
            ..
        }
    ));
}

#[tokio::test]
async fn exhausted_credits_are_reported_when_the_level_was_never_crossed_here() {
    // The level is reached before anyone listens; the refusal reports it.
    let (m, _) = manager_with(EventConfig::default().credits_low(Some(CreditsLevel::Percent(0))));
    let key = issue(
        &m,
        KeyLimits {
            credits: Some(Credits {
                amount: 2,
                refill: None,
            }),
            ..KeyLimits::default()
        },
    )
    .await;
    identity(&m, &key).await;
    identity(&m, &key).await;
    let mut rx = m.subscribe_events();
    assert!(
        m.verify(key.key.expose_secret(), &Requirements::none())
            .await
            .is_err()
    );
    assert!(
        m.verify(key.key.expose_secret(), &Requirements::none())
            .await
            .is_err()
    );
    let events = drain(&mut rx).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0],
        KeyEvent::CreditsLow {
            remaining: 0,
            used: 2,
            ..
        }
    ));
}

#[tokio::test]
async fn expiring_keys_are_reported_once_per_expiry_instant() {
    let (m, clock) = manager();
    let soon = m
        .issue(
            IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                .expires_in(3 * DAY),
        )
        .await
        .unwrap();
    m.issue(
        IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap()).expires_in(30 * DAY),
    )
    .await
    .unwrap();
    let revoked = m
        .issue(
            IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap()).expires_in(DAY),
        )
        .await
        .unwrap();
    m.revoke(&revoked.record.id).await.unwrap();
    // Subscribing starts the background sweep as well: count what is delivered.
    let mut rx = m.subscribe_events();
    m.check_expiring().await.unwrap();
    m.check_expiring().await.unwrap();
    let events = drain(&mut rx).await;
    let expected = clock.now_ts().saturating_add(3 * DAY);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0],
        KeyEvent::Expiring { key_id, project, environment, expires_at, .. }
            if *key_id == soon.record.id && project.as_str() == "web-app"
                && environment.as_str() == "dev" && *expires_at == expected
    ));
    assert_eq!(m.check_expiring().await.unwrap(), 0);
    // A new expiry is a new instant to report.
    m.set_expiry(
        &soon.record.id,
        Some(clock.now_ts().saturating_add(2 * DAY)),
    )
    .await
    .unwrap();
    assert_eq!(m.check_expiring().await.unwrap(), 1);
    // Time passes: the 30-day key comes within the window.
    clock.advance(24 * DAY);
    assert_eq!(m.check_expiring().await.unwrap(), 1);
    assert_eq!(drain(&mut rx).await.len(), 2);
}

#[tokio::test]
async fn the_background_sweep_reports_expiring_keys_without_a_call() {
    let (m, _) = manager_with(EventConfig::default().sweep_interval(Duration::from_secs(1)));
    let soon = m
        .issue(
            IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap()).expires_in(DAY),
        )
        .await
        .unwrap();
    let mut rx = m.subscribe_events();
    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, KeyEvent::Expiring { key_id, .. } if key_id == soon.record.id));
}

#[tokio::test]
async fn an_instance_nobody_listens_to_claims_nothing() {
    let clock = ManualClock::new(start());
    let store: Arc<dyn KeyStore> = Arc::new(keyward_memory::MemoryStore::new());
    let deaf = builder(Arc::clone(&store), &clock).build().unwrap();
    let heard = builder(Arc::clone(&store), &clock).build().unwrap();
    deaf.issue(
        IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap()).expires_in(DAY),
    )
    .await
    .unwrap();
    assert_eq!(deaf.check_expiring().await.unwrap(), 0);
    let mut rx = heard.subscribe_events();
    heard.check_expiring().await.unwrap();
    assert_eq!(drain(&mut rx).await.len(), 1);
}

/// Records each event, then takes a minute to "deliver" it.
#[derive(Debug, Default, Clone)]
struct SlowSink(Arc<Mutex<Vec<KeyEvent>>>);

#[async_trait]
impl EventSink for SlowSink {
    async fn deliver(&self, event: &KeyEvent) {
        self.0.lock().unwrap().push(event.clone());
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_gets_events_without_slowing_issue_or_consumption() {
    let sink = SlowSink::default();
    let clock = ManualClock::new(start());
    let m = builder(Arc::new(keyward_memory::MemoryStore::new()), &clock)
        .event_sink(sink.clone())
        .build()
        .unwrap();
    let key = issue(&m, key_quota(10)).await;
    let who = identity(&m, &key).await;
    // The sink takes `key.issued` and sleeps on it for a minute.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sink.0.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the sink never got key.issued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for _ in 0..10 {
        m.consume_events(&who, 1).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let got = sink.0.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        1,
        "the thresholds wait behind the slow delivery: {got:?}"
    );
    assert_eq!(got[0].kind(), "key.issued");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_learns_how_many_events_it_lost() {
    let (m, _) = manager_with(EventConfig::default().capacity(2));
    let mut rx = m.subscribe_events();
    for _ in 0..5 {
        issue(&m, KeyLimits::default()).await;
    }
    assert!(matches!(rx.recv().await, Err(RecvError::Lagged(3))));
    assert_eq!(rx.recv().await.unwrap().kind(), "key.issued");
}

#[tokio::test]
async fn events_serialize_with_a_type_tag() {
    let (m, _) = manager();
    let key = issue(&m, key_quota(10)).await;
    let who = identity(&m, &key).await;
    let mut rx = m.subscribe_events();
    m.consume_events(&who, 8).await.unwrap();
    let event = drain(&mut rx).await.remove(0);
    let json = serde_json::to_value(&event).unwrap();
    let (start, end) = Period::Day.window(m.now());
    assert_eq!(
        json,
        serde_json::json!({
            "type": "quota.threshold",
            "scope": "key",
            "project": "web-app",
            "environment": "dev",
            "key_id": who.id.to_string(),
            "percent": 80,
            "used": 8,
            "limit": 10,
            "period_start": start,
            "resets_at": end,
        })
    );
}

#[test]
fn bad_event_settings_fail_the_build() {
    let err = KeyManager::builder(keyward_memory::MemoryStore::new())
        .events(EventConfig::default().quota_thresholds([0, 80]))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("1 to 100"), "{err}");
}
