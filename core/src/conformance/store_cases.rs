//! The cases on the store alone: records, the change feed, counters and settings
//! (docs/ARCHITECTURE.md, "The store contract").
//!
//! Every `pub async fn` here is a case, listed in the one table in the parent module; one that
//! is not listed is never used, and `dead_code` is an error here.
#![deny(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::helpers::{SAMPLE_PHC, env, project, sample_record, t, unique};
use crate::hash::SecretHash;
use crate::key::KeyId;
use crate::scope::ScopeSet;
use crate::store::StoreError;
use crate::store::{
    ChangeEvent, Changes, Consumption, KeyChange, KeyLimits, KeyRecord, KeyStore, ListQuery,
    UsageBucket,
};
use crate::time::Timestamp;

/// A record survives insert and get with every field intact.
pub async fn insert_and_get_round_trip_every_field(store: &Arc<dyn KeyStore>) {
    let p = project("round-trip");
    let r = sample_record(&p, env("prd"), t(1));
    store.insert(&r, &[]).await.expect("insert");
    let got = store.get(&r.id).await.expect("get").expect("present");
    assert_eq!(got, r);

    let mut bare = sample_record(&p, env("dev"), t(2));
    bare.metadata = None;
    bare.expires_at = None;
    bare.rotated_from = None;
    bare.rotated_to = None;
    bare.limits = KeyLimits::default();
    bare.scopes = ScopeSet::new();
    bare.name = String::new();
    store.insert(&bare, &[]).await.expect("insert bare");
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
    store.insert_many(&batch, &[]).await.expect("insert_many");
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
        store.insert_many(&again, &[]).await,
        Err(StoreError::AlreadyExists(id)) if id == batch[3].id
    ));
}

/// A second insert with the same id fails with [`StoreError::AlreadyExists`].
pub async fn duplicate_insert_is_already_exists_and_keeps_the_original(store: &Arc<dyn KeyStore>) {
    let p = project("dup");
    let r = sample_record(&p, env("dev"), t(3));
    store.insert(&r, &[]).await.expect("insert");
    let mut other = sample_record(&p, env("prd"), t(4));
    other.id = r.id;
    match store.insert(&other, &[]).await {
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
        store.insert(&r, &[]).await.expect("insert");
        inserted.push(r);
    }
    store
        .insert(&sample_record(&b, env("dev"), t(15)), &[])
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
    store.insert(&r, &[]).await.expect("insert");
    let change = KeyChange {
        name: Some("renamed".into()),
        scopes: Some(ScopeSet::parse(["admin"]).expect("scope")),
        ..KeyChange::default()
    };
    let updated = store
        .update(&r.id, &change, &[])
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
        .update(&r.id, &clear, &[])
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
    assert!(
        store
            .update(&id, &change, &[])
            .await
            .expect("update")
            .is_none()
    );
}

/// Revoking twice keeps the first revocation time.
pub async fn revoke_is_idempotent_and_keeps_the_first_time(store: &Arc<dyn KeyStore>) {
    let r = sample_record(&project("revoke"), env("dev"), t(6));
    store.insert(&r, &[]).await.expect("insert");
    let first = KeyChange {
        revoke_at: Some(t(100)),
        ..KeyChange::default()
    };
    let second = KeyChange {
        revoke_at: Some(t(200)),
        ..KeyChange::default()
    };
    let a = store
        .update(&r.id, &first, &[])
        .await
        .expect("revoke")
        .expect("present");
    let b = store
        .update(&r.id, &second, &[])
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
        store.insert(&r, &[]).await.expect("insert");
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
        let results = join_all(changes.iter().map(|c| store.update(&r.id, c, &[]))).await;
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
    store.insert(&a, &[]).await.expect("insert");
    store.insert(&b, &[]).await.expect("insert");
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
    store.insert(&a, &[]).await.expect("insert");
    store.insert(&b, &[]).await.expect("insert");
    let start: Changes = store.changes_since(u64::MAX).await.expect("changes");
    assert!(start.ids.is_empty());
    let r0 = start.revision;
    let revoke = KeyChange {
        revoke_at: Some(t(20)),
        ..KeyChange::default()
    };
    store.update(&a.id, &revoke, &[]).await.expect("update");
    store.update(&b.id, &revoke, &[]).await.expect("update");
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
                &[],
            )
            .await
            .expect("update");
        expect_announced(&mut feed, a.id).await;
    }
}

/// Inserts, one by one and in a batch, advance the revision and are reported like updates
/// (by `changes_since`, and by the push feed where there is one), so a cache that remembers
/// an id as unknown learns that it now exists.
pub async fn changes_since_reports_inserted_ids(store: &Arc<dyn KeyStore>) {
    let p = project("inserted");
    let r0 = store
        .changes_since(u64::MAX)
        .await
        .expect("changes")
        .revision;
    let a = sample_record(&p, env("dev"), t(10));
    store.insert(&a, &[]).await.expect("insert");
    let batch = [
        sample_record(&p, env("dev"), t(11)),
        sample_record(&p, env("dev"), t(12)),
    ];
    store.insert_many(&batch, &[]).await.expect("insert_many");
    let c = store.changes_since(r0).await.expect("changes");
    assert!(c.revision >= r0 + 3, "revision {} after {}", c.revision, r0);
    for id in [a.id, batch[0].id, batch[1].id] {
        assert!(c.ids.contains(&id), "{id} not in {:?}", c.ids);
    }
    assert!(!c.resync);
    if let Some(mut feed) = store.subscribe().await.expect("subscribe") {
        let b = sample_record(&p, env("dev"), t(13));
        store.insert(&b, &[]).await.expect("insert");
        expect_announced(&mut feed, b.id).await;
    }
}

/// Waits (at most 5 s) until the push feed announces `id`.
async fn expect_announced(feed: &mut tokio::sync::mpsc::Receiver<ChangeEvent>, id: KeyId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ev = tokio::time::timeout_at(deadline, feed.recv())
            .await
            .expect("feed event in 5 s");
        if matches!(ev, Some(ChangeEvent::Changed(changed)) if changed == id) {
            break;
        }
    }
}

/// Settings are stored, replaced and deleted by name.
pub async fn settings_round_trip_and_delete(store: &Arc<dyn KeyStore>) {
    let name = unique("setting");
    assert_eq!(store.get_setting(&name).await.expect("get"), None);
    let v1 = serde_json::json!({"limit": 5, "period": "month"});
    let v2 = serde_json::json!({"limit": 7, "period": {"seconds": 60}});
    store.put_setting(&name, Some(&v1), &[]).await.expect("put");
    assert_eq!(store.get_setting(&name).await.expect("get"), Some(v1));
    store
        .put_setting(&name, Some(&v2), &[])
        .await
        .expect("replace");
    assert_eq!(store.get_setting(&name).await.expect("get"), Some(v2));
    store.put_setting(&name, None, &[]).await.expect("delete");
    assert_eq!(store.get_setting(&name).await.expect("get"), None);
    store
        .put_setting(&name, None, &[])
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
