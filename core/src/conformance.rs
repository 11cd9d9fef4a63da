//! The store conformance suite (feature `test-util`): the [`KeyStore`] contract as tests.
//!
//! Every store runs all of it with one line in its tests:
//!
//! ```text
//! async fn make_store() -> Option<Arc<dyn KeyStore>> { Some(Arc::new(MyStore::new())) }
//! keyward::store_conformance_tests!(make_store);
//! ```
//!
//! The factory returns `None` when the backend is not available (the test prints that it was
//! skipped); it should panic instead when the environment demands the backend (CI). Each case
//! uses fresh random project names, so cases may share one database.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;

use crate::error::{AuthError, Error, StoreError};
use crate::hash::{HashParams, SecretHash};
use crate::key::{ApiKey, Environment, KeyId};
use crate::manager::{IssueRequest, KeyManager, Requirements};
use crate::name::Project;
use crate::scope::ScopeSet;
use crate::store::{
    ChangeEvent, Changes, Consumption, KeyChange, KeyLimits, KeyRecord, KeyStore, ListQuery,
    RecordStore, UsageBucket, UsageStore,
};
use crate::time::{ManualClock, Timestamp};

/// A PHC string for store-level cases (the stores never interpret it).
pub const SAMPLE_PHC: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$X34BrkThJYMu+rIISZMN1uQlJp94vR8NMk4ILKRmdLY";

/// The names of every case, in the order [`store_conformance_tests!`](crate::store_conformance_tests) runs them.
pub const CASES: &[&str] = &[
    "insert_and_get_round_trip_every_field",
    "get_of_an_unknown_id_is_none",
    "insert_many_inserts_every_record",
    "duplicate_insert_is_already_exists_and_keeps_the_original",
    "list_filters_and_pages_in_created_order",
    "update_changes_only_the_named_fields",
    "update_of_an_unknown_id_is_none",
    "revoke_is_idempotent_and_keeps_the_first_time",
    "concurrent_updates_of_different_fields_are_all_kept",
    "record_usage_keeps_the_latest_time_and_skips_unknown_ids",
    "consume_never_overspends_under_concurrency",
    "consume_refuses_a_batch_crossing_the_limit_whole",
    "usage_is_counted_per_counter_and_per_period",
    "changes_since_reports_updated_ids_and_advances",
    "manager_issues_verifies_and_binds_keys",
    "manager_revokes_rotates_and_expires_keys",
    "revoke_is_effective_for_every_verify_that_starts_after_it",
    "the_store_never_holds_the_secret",
    "settings_round_trip_and_delete",
    "release_gives_units_back_but_never_below_zero",
    "manager_event_quotas_refuse_whole_batches_and_roll_over",
    "manager_credits_are_used_per_verify_and_refill_at_the_boundary",
    "manager_rate_limits_reject_the_burst_and_recover",
];

fn unique(base: &str) -> String {
    let id = KeyId::generate().map(|i| i.to_string()).unwrap_or_default();
    format!("{base}-{}", id.to_ascii_lowercase())
}

fn project(base: &str) -> Project {
    Project::new(&unique(base)).expect("valid project")
}

fn env(s: &str) -> Environment {
    Environment::new(s).expect("valid environment")
}

/// A complete record with every optional field set.
pub fn sample_record(
    project: &Project,
    environment: Environment,
    created_at: Timestamp,
) -> KeyRecord {
    KeyRecord {
        id: KeyId::generate().expect("rng"),
        prefix: "av".parse().expect("prefix"),
        project: project.clone(),
        environment,
        scopes: ScopeSet::parse(["read", "traces:write"]).expect("scopes"),
        name: "ingest – ünïcode name".into(),
        metadata: Some(serde_json::json!({"team": "obs", "n": 3, "tags": ["a", "b"]})),
        created_at,
        expires_at: Some(Timestamp::from_unix_millis(
            created_at.unix_millis() + 86_400_000,
        )),
        revoked_at: None,
        last_used_at: None,
        secret_hash: SecretHash::from_phc(SAMPLE_PHC).expect("phc"),
        rotated_from: Some(KeyId::generate().expect("rng")),
        limits: KeyLimits {
            credits: Some(crate::quota::Credits {
                amount: 100,
                refill: Some(crate::quota::Refill {
                    period: crate::quota::Period::Month,
                    amount: 50,
                }),
            }),
            quota: Some(crate::quota::Quota {
                limit: 1000,
                period: crate::quota::Period::Seconds(3600),
            }),
            rate_limit: Some(crate::quota::RateLimit {
                requests: 10,
                per_seconds: 1,
            }),
        },
    }
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + ms)
}

/// A record survives insert and get with every field intact.
pub async fn insert_and_get_round_trip_every_field(store: &Arc<dyn KeyStore>) {
    let p = project("round-trip");
    let r = sample_record(&p, env("prd"), t(1));
    store.insert(&r).await.expect("insert");
    let got = store.get(&r.id).await.expect("get").expect("present");
    assert_eq!(got, r);

    let mut bare = sample_record(&p, env("dev"), t(2));
    bare.metadata = None;
    bare.expires_at = None;
    bare.rotated_from = None;
    bare.limits = KeyLimits::default();
    bare.scopes = ScopeSet::new();
    bare.name = String::new();
    store.insert(&bare).await.expect("insert bare");
    assert_eq!(
        store.get(&bare.id).await.expect("get").expect("present"),
        bare
    );
}

/// Not found is `Ok(None)`, not an error.
pub async fn get_of_an_unknown_id_is_none(store: &Arc<dyn KeyStore>) {
    let id = KeyId::generate().expect("rng");
    assert!(store.get(&id).await.expect("get").is_none());
}

/// A batch insert stores every record; a batch with a taken id fails with
/// [`StoreError::AlreadyExists`].
pub async fn insert_many_inserts_every_record(store: &Arc<dyn KeyStore>) {
    let p = project("many");
    let batch: Vec<KeyRecord> = (0..250)
        .map(|i| sample_record(&p, env("dev"), t(i)))
        .collect();
    store.insert_many(&batch).await.expect("insert_many");
    for r in [&batch[0], &batch[125], &batch[249]] {
        assert_eq!(store.get(&r.id).await.expect("get").as_ref(), Some(r));
    }
    let listed = store
        .list(&ListQuery {
            project: Some(p.clone()),
            limit: 1000,
            ..ListQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 250);
    let again = vec![sample_record(&p, env("dev"), t(999)), batch[3].clone()];
    assert!(matches!(
        store.insert_many(&again).await,
        Err(StoreError::AlreadyExists(id)) if id == batch[3].id
    ));
}

/// A second insert with the same id fails with [`StoreError::AlreadyExists`].
pub async fn duplicate_insert_is_already_exists_and_keeps_the_original(store: &Arc<dyn KeyStore>) {
    let p = project("dup");
    let r = sample_record(&p, env("dev"), t(3));
    store.insert(&r).await.expect("insert");
    let mut other = sample_record(&p, env("prd"), t(4));
    other.id = r.id;
    match store.insert(&other).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, r.id),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get(&r.id).await.expect("get").expect("present"), r);
}

/// Filters by project and environment; pages in `(created_at, id)` order without gaps or
/// repeats.
pub async fn list_filters_and_pages_in_created_order(store: &Arc<dyn KeyStore>) {
    let a = project("list-a");
    let b = project("list-b");
    let mut inserted = Vec::new();
    // Two records share a creation time: the id breaks the tie.
    for (i, ms) in [50, 10, 30, 30, 20, 40].into_iter().enumerate() {
        let e = if i % 2 == 0 { env("dev") } else { env("prd") };
        let r = sample_record(&a, e, t(ms));
        store.insert(&r).await.expect("insert");
        inserted.push(r);
    }
    store
        .insert(&sample_record(&b, env("dev"), t(15)))
        .await
        .expect("insert b");
    let mut expected: Vec<(Timestamp, KeyId)> =
        inserted.iter().map(|r| (r.created_at, r.id)).collect();
    expected.sort();

    let mut seen = Vec::new();
    let mut q = ListQuery {
        project: Some(a.clone()),
        limit: 4,
        ..ListQuery::default()
    };
    loop {
        let page = store.list(&q).await.expect("list");
        assert!(page.len() <= 4);
        if page.is_empty() {
            break;
        }
        assert!(page.iter().all(|r| r.project == a));
        seen.extend(page.iter().map(|r| (r.created_at, r.id)));
        let last = page.last().expect("non-empty");
        q.after = Some((last.created_at, last.id));
    }
    assert_eq!(seen, expected);

    let dev = store
        .list(&ListQuery {
            project: Some(a.clone()),
            environment: Some(env("dev")),
            ..ListQuery::default()
        })
        .await
        .expect("list dev");
    assert_eq!(dev.len(), 3);
    assert!(dev.iter().all(|r| r.environment == env("dev")));
    let only_b = store
        .list(&ListQuery {
            project: Some(b),
            ..ListQuery::default()
        })
        .await
        .expect("list b");
    assert_eq!(only_b.len(), 1);
}

/// An update changes exactly the fields it names and returns the new record.
pub async fn update_changes_only_the_named_fields(store: &Arc<dyn KeyStore>) {
    let r = sample_record(&project("upd"), env("dev"), t(5));
    store.insert(&r).await.expect("insert");
    let change = KeyChange {
        name: Some("renamed".into()),
        scopes: Some(ScopeSet::parse(["admin"]).expect("scope")),
        ..KeyChange::default()
    };
    let updated = store
        .update(&r.id, &change)
        .await
        .expect("update")
        .expect("present");
    let mut expected = r.clone();
    expected.name = "renamed".into();
    expected.scopes = ScopeSet::parse(["admin"]).expect("scope");
    assert_eq!(updated, expected);
    assert_eq!(
        store.get(&r.id).await.expect("get").expect("present"),
        expected
    );

    let clear = KeyChange {
        expires_at: Some(None),
        metadata: Some(None),
        limits: Some(KeyLimits::default()),
        secret_hash: Some(SecretHash::from_phc(SAMPLE_PHC.replace("m=64", "m=128")).expect("phc")),
        ..KeyChange::default()
    };
    let cleared = store
        .update(&r.id, &clear)
        .await
        .expect("update")
        .expect("present");
    assert_eq!(cleared.expires_at, None);
    assert_eq!(cleared.metadata, None);
    assert!(cleared.limits.is_empty());
    assert!(cleared.secret_hash.as_str().contains("m=128"));
    assert_eq!(cleared.name, "renamed");
}

/// Updating an unknown id is `Ok(None)`.
pub async fn update_of_an_unknown_id_is_none(store: &Arc<dyn KeyStore>) {
    let id = KeyId::generate().expect("rng");
    let change = KeyChange {
        revoke_at: Some(t(0)),
        ..KeyChange::default()
    };
    assert!(store.update(&id, &change).await.expect("update").is_none());
}

/// Revoking twice keeps the first revocation time.
pub async fn revoke_is_idempotent_and_keeps_the_first_time(store: &Arc<dyn KeyStore>) {
    let r = sample_record(&project("revoke"), env("dev"), t(6));
    store.insert(&r).await.expect("insert");
    let first = KeyChange {
        revoke_at: Some(t(100)),
        ..KeyChange::default()
    };
    let second = KeyChange {
        revoke_at: Some(t(200)),
        ..KeyChange::default()
    };
    let a = store
        .update(&r.id, &first)
        .await
        .expect("revoke")
        .expect("present");
    let b = store
        .update(&r.id, &second)
        .await
        .expect("revoke")
        .expect("present");
    assert_eq!(a.revoked_at, Some(t(100)));
    assert_eq!(b.revoked_at, Some(t(100)));
    assert_eq!(
        store
            .get(&r.id)
            .await
            .expect("get")
            .expect("present")
            .revoked_at,
        Some(t(100))
    );
}

/// Concurrent changes to different fields of one key never undo each other.
pub async fn concurrent_updates_of_different_fields_are_all_kept(store: &Arc<dyn KeyStore>) {
    for round in 0..5 {
        let r = sample_record(&project("conc"), env("dev"), t(7 + round));
        store.insert(&r).await.expect("insert");
        let changes = [
            KeyChange {
                revoke_at: Some(t(1000)),
                ..KeyChange::default()
            },
            KeyChange {
                name: Some("concurrent".into()),
                ..KeyChange::default()
            },
            KeyChange {
                expires_at: Some(Some(t(5000))),
                ..KeyChange::default()
            },
            KeyChange {
                scopes: Some(ScopeSet::parse(["x"]).expect("scope")),
                ..KeyChange::default()
            },
            KeyChange {
                metadata: Some(Some(serde_json::json!({"round": round}))),
                ..KeyChange::default()
            },
        ];
        let results = join_all(changes.iter().map(|c| store.update(&r.id, c))).await;
        for res in results {
            res.expect("update").expect("present");
        }
        let got = store.get(&r.id).await.expect("get").expect("present");
        assert_eq!(got.revoked_at, Some(t(1000)));
        assert_eq!(got.name, "concurrent");
        assert_eq!(got.expires_at, Some(t(5000)));
        assert_eq!(got.scopes, ScopeSet::parse(["x"]).expect("scope"));
        assert_eq!(got.metadata, Some(serde_json::json!({"round": round})));
    }
}

/// Last-used times only move forward; unknown ids are skipped without error.
pub async fn record_usage_keeps_the_latest_time_and_skips_unknown_ids(store: &Arc<dyn KeyStore>) {
    let p = project("usage");
    let a = sample_record(&p, env("dev"), t(8));
    let b = sample_record(&p, env("dev"), t(9));
    store.insert(&a).await.expect("insert");
    store.insert(&b).await.expect("insert");
    let unknown = KeyId::generate().expect("rng");
    store
        .record_usage(&[(a.id, t(500)), (unknown, t(500)), (b.id, t(300))])
        .await
        .expect("usage");
    store
        .record_usage(&[(a.id, t(400)), (b.id, t(600))])
        .await
        .expect("usage");
    assert_eq!(
        store
            .get(&a.id)
            .await
            .expect("get")
            .expect("a")
            .last_used_at,
        Some(t(500))
    );
    assert_eq!(
        store
            .get(&b.id)
            .await
            .expect("get")
            .expect("b")
            .last_used_at,
        Some(t(600))
    );
    assert!(store.get(&unknown).await.expect("get").is_none());
}

/// 64 concurrent consumers of 1 unit against a limit of 50: exactly 50 succeed.
pub async fn consume_never_overspends_under_concurrency(store: &Arc<dyn KeyStore>) {
    let bucket = UsageBucket {
        counter: unique("conc-quota"),
        period_start: t(0),
    };
    let tasks = (0..64).map(|_| {
        let store = Arc::clone(store);
        let bucket = bucket.clone();
        tokio::spawn(async move { store.consume(&bucket, 1, 50).await })
    });
    let mut granted = 0;
    let mut refused = 0;
    for r in join_all(tasks).await {
        match r.expect("task").expect("consume") {
            Consumption::Granted { used } => {
                assert!(used <= 50);
                granted += 1;
            }
            Consumption::Refused { used } => {
                assert_eq!(used, 50);
                refused += 1;
            }
        }
    }
    assert_eq!((granted, refused), (50, 14));
    assert_eq!(store.usage(&bucket).await.expect("usage"), 50);
}

/// A batch that would cross the limit is refused whole and adds nothing.
pub async fn consume_refuses_a_batch_crossing_the_limit_whole(store: &Arc<dyn KeyStore>) {
    let bucket = UsageBucket {
        counter: unique("batch"),
        period_start: t(0),
    };
    assert_eq!(store.usage(&bucket).await.expect("usage"), 0);
    assert_eq!(
        store.consume(&bucket, 30, 50).await.expect("consume"),
        Consumption::Granted { used: 30 }
    );
    assert_eq!(
        store.consume(&bucket, 25, 50).await.expect("consume"),
        Consumption::Refused { used: 30 }
    );
    assert_eq!(store.usage(&bucket).await.expect("usage"), 30);
    assert_eq!(
        store.consume(&bucket, 20, 50).await.expect("consume"),
        Consumption::Granted { used: 50 }
    );
    assert_eq!(
        store.consume(&bucket, 1, 50).await.expect("consume"),
        Consumption::Refused { used: 50 }
    );
    assert_eq!(
        store
            .consume(&bucket, u64::MAX, u64::MAX)
            .await
            .expect("consume"),
        Consumption::Refused { used: 50 }
    );
}

/// Counters are independent per name and per period start.
pub async fn usage_is_counted_per_counter_and_per_period(store: &Arc<dyn KeyStore>) {
    let name = unique("period");
    let may = UsageBucket {
        counter: name.clone(),
        period_start: t(0),
    };
    let june = UsageBucket {
        counter: name.clone(),
        period_start: t(30 * 86_400_000),
    };
    let other = UsageBucket {
        counter: unique("period-other"),
        period_start: t(0),
    };
    store.consume(&may, 10, 10).await.expect("consume");
    assert_eq!(
        store.consume(&may, 1, 10).await.expect("consume"),
        Consumption::Refused { used: 10 }
    );
    assert_eq!(
        store.consume(&june, 1, 10).await.expect("consume"),
        Consumption::Granted { used: 1 }
    );
    assert_eq!(
        store.consume(&other, 2, 10).await.expect("consume"),
        Consumption::Granted { used: 2 }
    );
    assert_eq!(store.usage(&may).await.expect("usage"), 10);
    assert_eq!(store.usage(&june).await.expect("usage"), 1);
}

/// Updates advance the revision and are reported by `changes_since`; usage records are not.
pub async fn changes_since_reports_updated_ids_and_advances(store: &Arc<dyn KeyStore>) {
    let p = project("changes");
    let a = sample_record(&p, env("dev"), t(10));
    let b = sample_record(&p, env("dev"), t(11));
    store.insert(&a).await.expect("insert");
    store.insert(&b).await.expect("insert");
    let start: Changes = store.changes_since(u64::MAX).await.expect("changes");
    assert!(start.ids.is_empty());
    let r0 = start.revision;
    let revoke = KeyChange {
        revoke_at: Some(t(20)),
        ..KeyChange::default()
    };
    store.update(&a.id, &revoke).await.expect("update");
    store.update(&b.id, &revoke).await.expect("update");
    store.record_usage(&[(a.id, t(30))]).await.expect("usage");
    let c = store.changes_since(r0).await.expect("changes");
    assert!(c.revision >= r0 + 2, "revision {} after {}", c.revision, r0);
    assert!(
        c.ids.contains(&a.id) && c.ids.contains(&b.id),
        "{:?}",
        c.ids
    );
    assert!(!c.resync);
    let after = store.changes_since(c.revision).await.expect("changes");
    assert!(!after.ids.contains(&a.id) && !after.ids.contains(&b.id));
    if let Some(mut feed) = store.subscribe().await.expect("subscribe") {
        store
            .update(
                &a.id,
                &KeyChange {
                    name: Some("fed".into()),
                    ..KeyChange::default()
                },
            )
            .await
            .expect("update");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let ev = tokio::time::timeout_at(deadline, feed.recv())
                .await
                .expect("feed event in 5 s");
            if matches!(ev, Some(ChangeEvent::Changed(id)) if id == a.id) {
                break;
            }
        }
    }
}

fn manager(store: &Arc<dyn KeyStore>, clock: &ManualClock, envs: &[&str]) -> KeyManager {
    let mut b = KeyManager::builder_arc(Arc::clone(store))
        .prefix("av".parse().expect("prefix"))
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(clock.clone()));
    for e in envs {
        b = b.serve(env(e));
    }
    b.build().expect("manager")
}

fn auth(r: Result<crate::Identity, Error>) -> AuthError {
    match r {
        Err(Error::Auth(a)) => a,
        other => panic!("expected an auth error, got {other:?}"),
    }
}

/// Issue and verify through a [`KeyManager`]: the identity, the binding to environment and
/// project, the missing scopes named, unknown ids and wrong secrets alike.
pub async fn manager_issues_verifies_and_binds_keys(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("web-app");
    let issued = m
        .issue(
            IssueRequest::new(p.clone(), env("dev"))
                .scopes(["write", "read"])
                .expect("scopes")
                .name("ci")
                .metadata(serde_json::json!({"owner": "ops"})),
        )
        .await
        .expect("issue");
    let text = issued.key.expose_secret().to_owned();
    let who = m
        .verify(&text, &Requirements::scopes(["write"]).expect("req"))
        .await
        .expect("verify");
    assert_eq!(who.id, issued.record.id);
    assert_eq!(who.project, p);
    assert_eq!(who.environment, env("dev"));
    assert_eq!(who.name, "ci");
    assert_eq!(who.metadata, Some(serde_json::json!({"owner": "ops"})));

    let e = auth(
        m.verify(
            &text,
            &Requirements::scopes(["write", "admin", "billing"]).expect("req"),
        )
        .await,
    );
    assert_eq!(
        e,
        AuthError::InsufficientScope {
            id: who.id,
            missing: ScopeSet::parse(["admin", "billing"]).expect("s")
        }
    );

    let other_project = project("other");
    let e = auth(
        m.verify(
            &text,
            &Requirements::none().with_project(other_project.clone()),
        )
        .await,
    );
    assert!(
        matches!(e, AuthError::WrongProject { expected, found, .. } if expected == other_project && found == p)
    );

    let prd = manager(store, &clock, &["prd"]);
    let e = auth(prd.verify(&text, &Requirements::none()).await);
    assert!(matches!(e, AuthError::WrongEnvironment { found, .. } if found == env("dev")));

    let tl = KeyManager::builder_arc(Arc::clone(store))
        .prefix("tl".parse().expect("p"))
        .serve(env("dev"))
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .expect("m");
    assert!(matches!(
        auth(tl.verify(&text, &Requirements::none()).await),
        AuthError::WrongPrefix { .. }
    ));

    // Wrong secret for a known id, and an unknown id: the same outcome.
    let forged = ApiKey::generate_with_id(issued.key.prefix(), env("dev"), who.id).expect("rng");
    assert_eq!(
        auth(
            m.verify(forged.expose_secret(), &Requirements::none())
                .await
        ),
        AuthError::Invalid
    );
    let unknown = ApiKey::generate(issued.key.prefix(), env("dev")).expect("rng");
    assert_eq!(
        auth(
            m.verify(unknown.expose_secret(), &Requirements::none())
                .await
        ),
        AuthError::Invalid
    );

    // A dev key relabelled as prd with a recomputed checksum is still refused by a prd server.
    let relabelled = text.replacen("av_dev_", "av_prd_", 1);
    let relabelled = fix_checksum(&relabelled);
    assert_eq!(
        auth(prd.verify(&relabelled, &Requirements::none()).await),
        AuthError::Invalid
    );
}

/// Recomputes the checksum of a (tampered) key text.
pub fn fix_checksum(text: &str) -> String {
    let body = &text[..text.len() - crate::key::CHECK_LEN];
    let check = crate::key::checksum(body.as_bytes());
    format!("{body}{}", String::from_utf8_lossy(&check))
}

/// Revoke, rotation with a grace period, and expiry, on an injected clock.
pub async fn manager_revokes_rotates_and_expires_keys(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("lifecycle");
    let req = IssueRequest::new(p.clone(), env("dev"))
        .scopes(["read"])
        .expect("scopes");

    // Revoke: rejected at once, idempotent, unknown id is NotFound.
    let a = m.issue(req.clone()).await.expect("issue");
    m.revoke(&a.record.id).await.expect("revoke");
    let first = m
        .get(&a.record.id)
        .await
        .expect("get")
        .expect("present")
        .revoked_at;
    clock.advance(Duration::from_secs(1));
    m.revoke(&a.record.id).await.expect("revoke again");
    assert_eq!(
        m.get(&a.record.id)
            .await
            .expect("get")
            .expect("present")
            .revoked_at,
        first
    );
    assert!(matches!(
        auth(m.verify(a.key.expose_secret(), &Requirements::none()).await),
        AuthError::Revoked { .. }
    ));
    let unknown = KeyId::generate().expect("rng");
    assert!(matches!(m.revoke(&unknown).await, Err(Error::NotFound(id)) if id == unknown));
    assert!(matches!(
        m.rotate(&a.record.id, Duration::ZERO).await,
        Err(Error::InvalidState { .. })
    ));

    // Rotation: both work during the grace period, only the new one after it.
    let b = m.issue(req.clone().name("rotating")).await.expect("issue");
    clock.advance(Duration::from_secs(1)); // distinct creation times keep the listing order fixed
    let rotated = m
        .rotate(&b.record.id, Duration::from_secs(3600))
        .await
        .expect("rotate");
    assert_eq!(rotated.record.rotated_from, Some(b.record.id));
    assert_eq!(rotated.record.project, p);
    assert_eq!(rotated.record.scopes, b.record.scopes);
    assert_eq!(rotated.record.name, "rotating");
    assert_ne!(rotated.key.expose_secret(), b.key.expose_secret());
    clock.advance(Duration::from_secs(3599));
    m.verify(b.key.expose_secret(), &Requirements::none())
        .await
        .expect("old key within grace");
    m.verify(rotated.key.expose_secret(), &Requirements::none())
        .await
        .expect("new key");
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        auth(m.verify(b.key.expose_secret(), &Requirements::none()).await),
        AuthError::Expired { .. }
    ));
    m.verify(rotated.key.expose_secret(), &Requirements::none())
        .await
        .expect("new key after grace");
    assert!(matches!(
        m.rotate(&b.record.id, Duration::ZERO).await,
        Err(Error::InvalidState { .. })
    ));

    // Expiry set at issue and by set_expiry.
    let c = m
        .issue(req.clone().expires_in(Duration::from_secs(60)))
        .await
        .expect("issue");
    clock.advance(Duration::from_secs(59));
    m.verify(c.key.expose_secret(), &Requirements::none())
        .await
        .expect("before expiry");
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        auth(m.verify(c.key.expose_secret(), &Requirements::none()).await),
        AuthError::Expired { .. }
    ));
    m.set_expiry(&c.record.id, None)
        .await
        .expect("clear expiry");
    m.verify(c.key.expose_secret(), &Requirements::none())
        .await
        .expect("expiry cleared");
    m.set_expiry(&c.record.id, Some(m.now()))
        .await
        .expect("expire now");
    assert!(matches!(
        auth(m.verify(c.key.expose_secret(), &Requirements::none()).await),
        AuthError::Expired { .. }
    ));

    // Listing is masked and filtered.
    let listed = m
        .list(&ListQuery {
            project: Some(p.clone()),
            ..ListQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 4);
    let statuses: Vec<&str> = listed.iter().map(|k| k.status.as_str()).collect();
    assert_eq!(statuses, ["revoked", "expired", "active", "expired"]);
    assert!(listed.iter().all(|k| k.masked.ends_with("_…")));
}

/// 32 tasks verify in a loop while one revokes: no verify that starts after `revoke()`
/// returned succeeds.
pub async fn revoke_is_effective_for_every_verify_that_starts_after_it(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let issued = m
        .issue(IssueRequest::new(project("race"), env("dev")))
        .await
        .expect("issue");
    let text = Arc::new(issued.key.expose_secret().to_owned());
    let revoked = Arc::new(AtomicBool::new(false));
    let ok_before = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (m, text, revoked, ok_before) = (
            m.clone(),
            Arc::clone(&text),
            Arc::clone(&revoked),
            Arc::clone(&ok_before),
        );
        tasks.push(tokio::spawn(async move {
            let mut after = 0;
            while after < 5 {
                let started_after_revoke = revoked.load(Ordering::SeqCst);
                let result = m.verify(&text, &Requirements::none()).await;
                if started_after_revoke {
                    assert!(
                        matches!(result, Err(Error::Auth(AuthError::Revoked { .. }))),
                        "a verify that started after revoke() returned gave {result:?}"
                    );
                    after += 1;
                } else if result.is_ok() {
                    ok_before.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    while ok_before.load(Ordering::SeqCst) < 32 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    m.revoke(&issued.record.id).await.expect("revoke");
    revoked.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("verifier task");
    }
}

/// After issuing, no field of the stored record, nor its listing, contains the secret; the
/// stored hash is an Argon2id PHC string.
pub async fn the_store_never_holds_the_secret(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("no-secret");
    let issued = m
        .issue(IssueRequest::new(p.clone(), env("dev")))
        .await
        .expect("issue");
    let full = issued.key.expose_secret();
    let secret = &full[full.len() - 49..full.len() - 6];
    let stored = store
        .get(&issued.record.id)
        .await
        .expect("get")
        .expect("present");
    assert!(stored.secret_hash.as_str().starts_with("$argon2id$v=19$"));
    let dumped = format!("{stored:?} {}", stored.secret_hash.as_str());
    assert!(!dumped.contains(secret));
    let listed = store
        .list(&ListQuery {
            project: Some(p),
            ..ListQuery::default()
        })
        .await
        .expect("list");
    assert!(!format!("{listed:?}").contains(secret));
}

/// Settings are stored, replaced and deleted by name.
pub async fn settings_round_trip_and_delete(store: &Arc<dyn KeyStore>) {
    let name = unique("setting");
    assert_eq!(store.get_setting(&name).await.expect("get"), None);
    let v1 = serde_json::json!({"limit": 5, "period": "month"});
    let v2 = serde_json::json!({"limit": 7, "period": {"seconds": 60}});
    store.put_setting(&name, Some(&v1)).await.expect("put");
    assert_eq!(store.get_setting(&name).await.expect("get"), Some(v1));
    store.put_setting(&name, Some(&v2)).await.expect("replace");
    assert_eq!(store.get_setting(&name).await.expect("get"), Some(v2));
    store.put_setting(&name, None).await.expect("delete");
    assert_eq!(store.get_setting(&name).await.expect("get"), None);
    store
        .put_setting(&name, None)
        .await
        .expect("deleting twice is fine");
}

/// `release` subtracts, saturating at zero, and is a no-op on an empty bucket.
pub async fn release_gives_units_back_but_never_below_zero(store: &Arc<dyn KeyStore>) {
    let bucket = UsageBucket {
        counter: unique("release"),
        period_start: t(0),
    };
    store.release(&bucket, 5).await.expect("release on empty");
    assert_eq!(store.usage(&bucket).await.expect("usage"), 0);
    store.consume(&bucket, 10, 10).await.expect("consume");
    store.release(&bucket, 4).await.expect("release");
    assert_eq!(store.usage(&bucket).await.expect("usage"), 6);
    assert_eq!(
        store.consume(&bucket, 4, 10).await.expect("consume"),
        Consumption::Granted { used: 10 }
    );
    store.release(&bucket, 100).await.expect("release");
    assert_eq!(store.usage(&bucket).await.expect("usage"), 0);
}

fn month(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("rfc3339")
}

/// Project and key event quotas: 64 concurrent batches against a limit of 50, a batch crossing
/// the limit refused whole with what is left, the key quota's units given back when the
/// project refuses, and a new period at the calendar boundary.
pub async fn manager_event_quotas_refuse_whole_batches_and_roll_over(store: &Arc<dyn KeyStore>) {
    use crate::quota::{Period, Quota};
    let clock = ManualClock::new(month("2026-01-31T23:59:00Z"));
    let m = manager(store, &clock, &["dev"]);
    let p = project("quota");
    m.set_project_quota(
        &p,
        Some(Quota {
            limit: 50,
            period: Period::Month,
        }),
    )
    .await
    .expect("set quota");
    assert_eq!(
        m.project_quota(&p).await.expect("get"),
        Some(Quota {
            limit: 50,
            period: Period::Month
        })
    );
    let issued = m
        .issue(IssueRequest::new(p.clone(), env("dev")))
        .await
        .expect("issue");
    let who = m
        .verify(issued.key.expose_secret(), &Requirements::none())
        .await
        .expect("verify");

    let tasks = (0..64).map(|_| {
        let (m, who) = (m.clone(), who.clone());
        tokio::spawn(async move { m.consume_events(&who, 1).await })
    });
    let mut granted = 0;
    for r in join_all(tasks).await {
        match r.expect("task") {
            Ok(_) => granted += 1,
            Err(Error::Auth(AuthError::QuotaExceeded {
                scope: "project",
                limit: 50,
                used: 50,
                requested: 1,
                resets_at,
            })) => {
                assert_eq!(resets_at, month("2026-02-01T00:00:00Z"));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(granted, 50);
    let report = m.usage(&p).await.expect("usage");
    let q = report.project_quota.expect("project quota");
    assert_eq!((q.used, q.remaining, q.limit), (50, 0, 50));

    // The boundary: a new month starts at zero.
    clock.set(month("2026-02-01T00:00:00Z"));
    let accepted = m.consume_events(&who, 30).await.expect("new period");
    assert_eq!(accepted.project.expect("project").used, 30);
    // A batch crossing the limit is refused whole and says what is left.
    let err = m
        .consume_events(&who, 21)
        .await
        .expect_err("crossing batch");
    assert!(
        matches!(
            &err,
            Error::Auth(AuthError::QuotaExceeded {
                used: 30,
                requested: 21,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("20 left"), "{err}");
    assert_eq!(
        m.usage(&p)
            .await
            .expect("usage")
            .project_quota
            .expect("q")
            .used,
        30
    );
    m.consume_events(&who, 20)
        .await
        .expect("exactly up to the limit");

    // A key quota alongside: when the project refuses, the key's units are given back.
    let limited = m
        .issue(IssueRequest::new(p.clone(), env("dev")).limits(KeyLimits {
            quota: Some(Quota {
                limit: 10,
                period: Period::Day,
            }),
            ..KeyLimits::default()
        }))
        .await
        .expect("issue");
    let lw = m
        .verify(limited.key.expose_secret(), &Requirements::none())
        .await
        .expect("verify");
    assert!(matches!(
        m.consume_events(&lw, 5).await,
        Err(Error::Auth(AuthError::QuotaExceeded {
            scope: "project",
            ..
        }))
    ));
    m.set_project_quota(&p, None)
        .await
        .expect("remove project quota");
    assert_eq!(
        m.consume_events(&lw, 10)
            .await
            .expect("key quota whole")
            .key
            .expect("key")
            .used,
        10
    );
    assert!(matches!(
        m.consume_events(&lw, 1).await,
        Err(Error::Auth(AuthError::QuotaExceeded { scope: "key", .. }))
    ));
    let keys = m.usage(&p).await.expect("usage").keys;
    assert_eq!(
        keys.iter()
            .find(|k| k.id == lw.id)
            .and_then(|k| k.quota)
            .map(|q| q.used),
        Some(10)
    );
}

/// Credits: one per successful verify, a distinct outcome when used up (not "invalid"), and
/// a refill at the period boundary.
pub async fn manager_credits_are_used_per_verify_and_refill_at_the_boundary(
    store: &Arc<dyn KeyStore>,
) {
    use crate::quota::{Credits, Period, Refill};
    let clock = ManualClock::new(month("2026-03-31T12:00:00Z"));
    let m = manager(store, &clock, &["dev"]);
    let p = project("credits");
    let limits = KeyLimits {
        credits: Some(Credits {
            amount: 3,
            refill: Some(Refill {
                period: Period::Month,
                amount: 2,
            }),
        }),
        ..KeyLimits::default()
    };
    let issued = m
        .issue(IssueRequest::new(p.clone(), env("dev")).limits(limits))
        .await
        .expect("issue");
    let text = issued.key.expose_secret();
    for _ in 0..3 {
        m.verify(text, &Requirements::none())
            .await
            .expect("a credit left");
    }
    let e = auth(m.verify(text, &Requirements::none()).await);
    assert_eq!(
        e,
        AuthError::CreditsExhausted {
            id: issued.record.id,
            resets_at: Some(month("2026-04-01T00:00:00Z"))
        }
    );
    let report = m.usage(&p).await.expect("usage");
    let c = report.keys[0].credits.expect("credits");
    assert_eq!((c.used, c.remaining), (3, 0));
    // A wrong secret never spends credits.
    clock.set(month("2026-04-01T00:00:00Z"));
    for _ in 0..2 {
        m.verify(text, &Requirements::none())
            .await
            .expect("refilled");
    }
    assert!(matches!(
        auth(m.verify(text, &Requirements::none()).await),
        AuthError::CreditsExhausted { .. }
    ));

    let once = m
        .issue(IssueRequest::new(p, env("dev")).limits(KeyLimits {
            credits: Some(Credits {
                amount: 1,
                refill: None,
            }),
            ..KeyLimits::default()
        }))
        .await
        .expect("issue");
    m.verify(once.key.expose_secret(), &Requirements::none())
        .await
        .expect("one use");
    clock.advance(Duration::from_secs(400 * 86_400));
    assert_eq!(
        auth(
            m.verify(once.key.expose_secret(), &Requirements::none())
                .await
        ),
        AuthError::CreditsExhausted {
            id: once.record.id,
            resets_at: None
        }
    );
}

/// A per-key rate limit rejects the burst beyond its allowance and recovers as time passes.
pub async fn manager_rate_limits_reject_the_burst_and_recover(store: &Arc<dyn KeyStore>) {
    use crate::quota::RateLimit;
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let issued = m
        .issue(
            IssueRequest::new(project("rate"), env("dev")).limits(KeyLimits {
                rate_limit: Some(RateLimit {
                    requests: 5,
                    per_seconds: 10,
                }),
                ..KeyLimits::default()
            }),
        )
        .await
        .expect("issue");
    let text = issued.key.expose_secret();
    for _ in 0..5 {
        m.verify(text, &Requirements::none())
            .await
            .expect("within the burst");
    }
    match auth(m.verify(text, &Requirements::none()).await) {
        AuthError::RateLimited { retry_after } => assert!(
            retry_after <= Duration::from_secs(2) && retry_after > Duration::ZERO,
            "{retry_after:?}"
        ),
        other => panic!("{other:?}"),
    }
    clock.advance(Duration::from_secs(2)); // one request's worth (10 s / 5)
    m.verify(text, &Requirements::none())
        .await
        .expect("recovered one");
    assert!(matches!(
        auth(m.verify(text, &Requirements::none()).await),
        AuthError::RateLimited { .. }
    ));
    clock.advance(Duration::from_secs(10));
    for _ in 0..5 {
        m.verify(text, &Requirements::none())
            .await
            .expect("a full burst again");
    }
}

/// Runs one case by name (used by [`store_conformance_tests!`](crate::store_conformance_tests)).
///
/// # Panics
/// When the case fails, or the name is unknown.
pub async fn run_case(name: &str, store: &Arc<dyn KeyStore>) {
    match name {
        "insert_and_get_round_trip_every_field" => {
            insert_and_get_round_trip_every_field(store).await
        }
        "get_of_an_unknown_id_is_none" => get_of_an_unknown_id_is_none(store).await,
        "insert_many_inserts_every_record" => insert_many_inserts_every_record(store).await,
        "duplicate_insert_is_already_exists_and_keeps_the_original" => {
            duplicate_insert_is_already_exists_and_keeps_the_original(store).await
        }
        "list_filters_and_pages_in_created_order" => {
            list_filters_and_pages_in_created_order(store).await
        }
        "update_changes_only_the_named_fields" => update_changes_only_the_named_fields(store).await,
        "update_of_an_unknown_id_is_none" => update_of_an_unknown_id_is_none(store).await,
        "revoke_is_idempotent_and_keeps_the_first_time" => {
            revoke_is_idempotent_and_keeps_the_first_time(store).await
        }
        "concurrent_updates_of_different_fields_are_all_kept" => {
            concurrent_updates_of_different_fields_are_all_kept(store).await
        }
        "record_usage_keeps_the_latest_time_and_skips_unknown_ids" => {
            record_usage_keeps_the_latest_time_and_skips_unknown_ids(store).await
        }
        "consume_never_overspends_under_concurrency" => {
            consume_never_overspends_under_concurrency(store).await
        }
        "consume_refuses_a_batch_crossing_the_limit_whole" => {
            consume_refuses_a_batch_crossing_the_limit_whole(store).await
        }
        "usage_is_counted_per_counter_and_per_period" => {
            usage_is_counted_per_counter_and_per_period(store).await
        }
        "changes_since_reports_updated_ids_and_advances" => {
            changes_since_reports_updated_ids_and_advances(store).await
        }
        "manager_issues_verifies_and_binds_keys" => {
            manager_issues_verifies_and_binds_keys(store).await
        }
        "manager_revokes_rotates_and_expires_keys" => {
            manager_revokes_rotates_and_expires_keys(store).await
        }
        "revoke_is_effective_for_every_verify_that_starts_after_it" => {
            revoke_is_effective_for_every_verify_that_starts_after_it(store).await
        }
        "the_store_never_holds_the_secret" => the_store_never_holds_the_secret(store).await,
        "settings_round_trip_and_delete" => settings_round_trip_and_delete(store).await,
        "release_gives_units_back_but_never_below_zero" => {
            release_gives_units_back_but_never_below_zero(store).await
        }
        "manager_event_quotas_refuse_whole_batches_and_roll_over" => {
            manager_event_quotas_refuse_whole_batches_and_roll_over(store).await
        }
        "manager_credits_are_used_per_verify_and_refill_at_the_boundary" => {
            manager_credits_are_used_per_verify_and_refill_at_the_boundary(store).await
        }
        "manager_rate_limits_reject_the_burst_and_recover" => {
            manager_rate_limits_reject_the_burst_and_recover(store).await
        }

        other => panic!("unknown conformance case {other}"),
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each with a fresh store from
/// `$factory` (an `async fn() -> Option<Arc<dyn KeyStore>>`; `None` prints a skip notice).
/// The calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:path) => {
        $crate::__conformance_cases!($factory;
            insert_and_get_round_trip_every_field,
            get_of_an_unknown_id_is_none,
            insert_many_inserts_every_record,
            duplicate_insert_is_already_exists_and_keeps_the_original,
            list_filters_and_pages_in_created_order,
            update_changes_only_the_named_fields,
            update_of_an_unknown_id_is_none,
            revoke_is_idempotent_and_keeps_the_first_time,
            concurrent_updates_of_different_fields_are_all_kept,
            record_usage_keeps_the_latest_time_and_skips_unknown_ids,
            consume_never_overspends_under_concurrency,
            consume_refuses_a_batch_crossing_the_limit_whole,
            usage_is_counted_per_counter_and_per_period,
            changes_since_reports_updated_ids_and_advances,
            manager_issues_verifies_and_binds_keys,
            manager_revokes_rotates_and_expires_keys,
            revoke_is_effective_for_every_verify_that_starts_after_it,
            the_store_never_holds_the_secret,
            settings_round_trip_and_delete,
            release_gives_units_back_but_never_below_zero,
            manager_event_quotas_refuse_whole_batches_and_roll_over,
            manager_credits_are_used_per_verify_and_refill_at_the_boundary,
            manager_rate_limits_reject_the_burst_and_recover,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                match $factory().await {
                    Some(store) => $crate::conformance::run_case(stringify!($case), &store).await,
                    None => eprintln!("SKIPPED {}: store not available", stringify!($case)),
                }
            }
        )*
        #[test]
        fn every_conformance_case_is_run() {
            let ours: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(ours, $crate::conformance::CASES);
        }
    };
}

/// Something run before every call of a [`Wrapped`] store: it may count the call, or fail it.
pub trait StoreHook: Send + Sync + 'static {
    /// Called with the method's name before the call is forwarded; an `Err` is returned
    /// instead of calling the inner store.
    ///
    /// # Errors
    /// Whatever the hook decides.
    fn before(&self, method: &'static str) -> Result<(), StoreError>;
}

/// A store that forwards every method to an inner store after a [`StoreHook`]. The one
/// forwarding wrapper for tests: [`CountingStore`], [`WithGuard`] and [`FailingStore`] are
/// hooks on it, so a method added to [`KeyStore`] is forwarded in one place.
pub struct Wrapped<H> {
    inner: Arc<dyn KeyStore>,
    hook: H,
}

impl<H> std::fmt::Debug for Wrapped<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrapped")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<H> Wrapped<H> {
    /// Wraps `inner` with `hook`.
    pub fn with_hook(inner: Arc<dyn KeyStore>, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The hook.
    pub fn hook(&self) -> &H {
        &self.hook
    }
}

#[async_trait]
impl<H: StoreHook> RecordStore for Wrapped<H> {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.hook.before("insert")?;
        self.inner.insert(record).await
    }
    async fn insert_many(&self, records: &[KeyRecord]) -> Result<(), StoreError> {
        self.hook.before("insert_many")?;
        self.inner.insert_many(records).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.hook.before("get")?;
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        self.hook.before("list")?;
        self.inner.list(query).await
    }
    async fn update(
        &self,
        id: &KeyId,
        change: &KeyChange,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.hook.before("update")?;
        self.inner.update(id, change).await
    }
    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        self.hook.before("record_usage")?;
        self.inner.record_usage(used).await
    }
    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError> {
        self.hook.before("changes_since")?;
        self.inner.changes_since(revision).await
    }
    async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<ChangeEvent>>, StoreError> {
        self.hook.before("subscribe")?;
        self.inner.subscribe().await
    }
}

#[async_trait]
impl<H: StoreHook> UsageStore for Wrapped<H> {
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError> {
        self.hook.before("consume")?;
        self.inner.consume(bucket, amount, limit).await
    }
    async fn release(&self, bucket: &UsageBucket, amount: u64) -> Result<(), StoreError> {
        self.hook.before("release")?;
        self.inner.release(bucket, amount).await
    }
    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError> {
        self.hook.before("usage")?;
        self.inner.usage(bucket).await
    }
    async fn get_setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.hook.before("get_setting")?;
        self.inner.get_setting(name).await
    }
    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.hook.before("put_setting")?;
        self.inner.put_setting(name, value).await
    }
}

/// Counts calls (all, and `get`s), to prove a path does not touch the store.
#[derive(Debug, Default)]
pub struct CallCounter {
    calls: AtomicUsize,
    gets: AtomicUsize,
}

impl StoreHook for CallCounter {
    fn before(&self, method: &'static str) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if method == "get" {
            self.gets.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A store wrapper that counts calls, to prove a path does not touch the store.
pub type CountingStore = Wrapped<CallCounter>;

impl CountingStore {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn KeyStore>) -> Self {
        Self::with_hook(inner, CallCounter::default())
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.hook.calls.load(Ordering::SeqCst)
    }

    /// `get` calls made so far (the verify path's lookups).
    pub fn gets(&self) -> usize {
        self.hook.gets.load(Ordering::SeqCst)
    }
}

/// Keeps a value alive as long as the store (see [`WithGuard`]).
#[derive(Debug)]
pub struct Guard<G>(G);

impl<G: Send + Sync + 'static> StoreHook for Guard<G> {
    fn before(&self, _: &'static str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store that keeps a guard alive as long as itself (a temporary directory, a test schema
/// that is dropped on `Drop`…). The inner store drops first, then the guard. Use it in a
/// conformance factory instead of writing a wrapper that could miss a method.
pub type WithGuard<G> = Wrapped<Guard<G>>;

impl<G> WithGuard<G> {
    /// Wraps `inner`, keeping `guard` until the wrapper drops.
    pub fn new(inner: Arc<dyn KeyStore>, guard: G) -> Self {
        Self::with_hook(inner, Guard(guard))
    }
}

/// Fails every call with a backend error while switched down, like a database that went
/// away; forwards otherwise.
#[derive(Debug)]
pub struct DownSwitch {
    store: &'static str,
    down: Arc<AtomicBool>,
}

impl StoreHook for DownSwitch {
    fn before(&self, _: &'static str) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::backend(
                self.store,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
            ))
        } else {
            Ok(())
        }
    }
}

/// A store that can be switched to failing (see [`DownSwitch`]).
pub type FailingStore = Wrapped<DownSwitch>;

impl FailingStore {
    /// Wraps `inner`; while `down` is set every call fails as the store named `store`.
    pub fn new(inner: Arc<dyn KeyStore>, store: &'static str, down: Arc<AtomicBool>) -> Self {
        Self::with_hook(inner, DownSwitch { store, down })
    }
}
