//! Threshold and expiry events with two service instances (two managers, two pools) on one
//! PostgreSQL database: under concurrent consumption through both, each threshold is
//! delivered exactly once in all, as is each expiring key (docs/ARCHITECTURE.md, *Events*:
//! the claim is `UsageStore::consume` of a once-only bucket).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use keyward::{
    Credits, CreditsLevel, EventConfig, HashParams, Identity, IssueRequest, KeyEvent, KeyLimits,
    KeyManager, KeyStore, Period, Quota, QuotaScope, Requirements,
};
use tokio::sync::broadcast::Receiver;

fn instance(store: keyward_postgres::PostgresStore) -> KeyManager {
    let store: Arc<dyn KeyStore> = Arc::new(store);
    KeyManager::builder_arc(store)
        .prefix("av".parse().unwrap())
        .serve("prd".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .events(EventConfig::default().credits_low(Some(CreditsLevel::Remaining(10))))
        .build()
        .unwrap()
}

/// Every event received until none comes for 500 ms.
async fn drain(rx: &mut Receiver<KeyEvent>) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    while let Ok(r) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        out.push(r.unwrap());
    }
    out
}

async fn verify(m: &KeyManager, key: &str) -> Identity {
    m.verify(key, &Requirements::none()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_threshold_fires_exactly_once_across_two_instances_under_concurrent_consumption() {
    let Some(schema) = common::TestSchema::create("events_two_instances").await else {
        return;
    };
    let a = instance(schema.store().await);
    let b = instance(schema.store().await);
    let project = "events-two-instances".parse().unwrap();
    a.set_project_quota(
        &project,
        Some(Quota {
            limit: 400,
            period: Period::Month,
        }),
    )
    .await
    .unwrap();
    let limits = KeyLimits {
        quota: Some(Quota {
            limit: 100,
            period: Period::Day,
        }),
        ..KeyLimits::default()
    };
    let mut keys = Vec::new();
    for _ in 0..4 {
        let issued = a
            .issue(
                IssueRequest::new(project.clone(), "prd".parse().unwrap()).limits(limits.clone()),
            )
            .await
            .unwrap();
        keys.push(issued);
    }
    let (mut rx_a, mut rx_b) = (a.subscribe_events(), b.subscribe_events());

    // 4 keys × 100 events, one at a time, from 8 tasks (4 per instance): every key reaches
    // its own 80 % and 100 %, the project its 80 % and 100 %, then both refuse more.
    let mut tasks = Vec::new();
    for key in &keys {
        for m in [&a, &b] {
            let who = verify(m, key.key.expose_secret()).await;
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                let mut granted = 0u64;
                for _ in 0..60 {
                    if m.consume_events(&who, 1).await.is_ok() {
                        granted += 1;
                    }
                }
                granted
            }));
        }
    }
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    assert_eq!(granted, 400, "each key's 100, the project's 400");
    let mut all = drain(&mut rx_a).await;
    let from_a = all.len();
    all.extend(drain(&mut rx_b).await);
    let mut got: Vec<(QuotaScope, String, u8)> = all
        .iter()
        .filter_map(|e| match e {
            KeyEvent::QuotaThreshold {
                scope: QuotaScope::Key,
                key_id,
                percent,
                ..
            } => Some((QuotaScope::Key, key_id.to_string(), *percent)),
            KeyEvent::QuotaThreshold {
                scope: QuotaScope::Project,
                project,
                percent,
                ..
            } => Some((QuotaScope::Project, project.to_string(), *percent)),
            _ => None,
        })
        .collect();
    got.sort();
    let mut want = vec![
        (QuotaScope::Project, project.to_string(), 80),
        (QuotaScope::Project, project.to_string(), 100),
    ];
    for key in &keys {
        want.push((QuotaScope::Key, key.record.id.to_string(), 80));
        want.push((QuotaScope::Key, key.record.id.to_string(), 100));
    }
    want.sort();
    assert_eq!(got, want, "each threshold once in all: {all:?}");
    eprintln!(
        "{} threshold events: {from_a} from instance A, {} from B",
        all.len(),
        all.len() - from_a
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_low_and_expiring_keys_fire_once_across_two_instances() {
    let Some(schema) = common::TestSchema::create("events_credits_expiring").await else {
        return;
    };
    let a = instance(schema.store().await);
    let b = instance(schema.store().await);
    let project: keyward::Project = "events-credits-expiring".parse().unwrap();
    let key = a
        .issue(
            IssueRequest::new(project.clone(), "prd".parse().unwrap())
                .expires_in(Duration::from_secs(24 * 3600))
                .limits(KeyLimits {
                    credits: Some(Credits {
                        amount: 50,
                        refill: None,
                    }),
                    ..KeyLimits::default()
                }),
        )
        .await
        .unwrap();
    let (mut rx_a, mut rx_b) = (a.subscribe_events(), b.subscribe_events());
    let text = key.key.expose_secret().to_owned();
    let mut tasks = Vec::new();
    for m in [&a, &b] {
        for _ in 0..3 {
            let (m, text) = (m.clone(), text.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..20 {
                    if m.verify(&text, &Requirements::none()).await.is_ok() {
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
    assert_eq!(ok, 50);
    // Both instances look for expiring keys (as their background sweeps do too).
    let (sa, sb) = tokio::join!(a.check_expiring(), b.check_expiring());
    assert!(sa.unwrap() + sb.unwrap() <= 1);
    let mut all = drain(&mut rx_a).await;
    all.extend(drain(&mut rx_b).await);
    let ours: Vec<&KeyEvent> = all.iter().filter(|e| *e.project() == project).collect();
    let mut kinds: Vec<&str> = ours.iter().map(|e| e.kind()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["credits.low", "key.expiring"], "{ours:?}");
    // Reported by the first grant at or above the level, or by a refusal if its claim won
    // the race (each instance numbers its grants within the units it leased).
    assert!(
        ours.iter().any(|e| matches!(
            e,
            KeyEvent::CreditsLow {
                remaining,
                used: used @ 40..=50,
                limit: 50,
                ..
            } if remaining + used == 50
        )),
        "{ours:?}"
    );
}
