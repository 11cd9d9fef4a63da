//! Behaviour beyond the conformance suite: several instances (separate pools) on one schema,
//! the ordering of revisions under concurrent updates, the bounded change log (and its
//! configured length), unreadable rows and counts beyond `i64`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use keyward::RecordStore;
use keyward::UsageStore;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::TestSchema;
use keyward::conformance::sample_record;
use keyward::{
    Consumption, DEFAULT_CHANGE_LOG_LEN, KeyChange, KeyId, Project, StoreError, Timestamp,
    UsageBucket,
};
use keyward_postgres::{PostgresOptions, PostgresStore};

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + ms)
}

async fn insert_keys(store: &PostgresStore, n: usize) -> Vec<KeyId> {
    let p = Project::new("instances").unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let r = sample_record(&p, "dev".parse().unwrap(), t(i as i64));
        store.insert(&r, &[]).await.unwrap();
        ids.push(r.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_in_four_instances_never_overspend() {
    let Some(schema) = TestSchema::create("consumers_in_four_instances_never_overspend").await
    else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(schema.store().await);
    }
    let bucket = UsageBucket {
        counter: "project:web:events".into(),
        period_start: t(0),
    };
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = stores[i % 4].clone();
        let bucket = bucket.clone();
        tasks.push(tokio::spawn(
            async move { store.consume(&bucket, 1, 50).await },
        ));
    }
    let mut granted = 0;
    for task in tasks {
        if let Consumption::Granted { used } = task.await.unwrap().unwrap() {
            assert!(used <= 50);
            granted += 1;
        }
    }
    assert_eq!(granted, 50);
    assert_eq!(stores[3].usage(&bucket).await.unwrap(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_from_another_instance_is_a_typed_conflict() {
    let Some(schema) = TestSchema::create("a_duplicate_id_from_another_instance").await else {
        return;
    };
    let (a, b) = (schema.store().await, schema.store().await);
    let r = sample_record(&Project::new("dup").unwrap(), "dev".parse().unwrap(), t(0));
    let (ra, rb) = tokio::join!(a.insert(&r, &[]), b.insert(&r, &[]));
    let outcomes = [ra, rb];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(StoreError::AlreadyExists(id)) if *id == r.id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_of_last_used_times_in_opposite_orders_do_not_deadlock() {
    let Some(schema) = TestSchema::create("batches_of_last_used_times_in_opposite_orders").await
    else {
        return;
    };
    let (a, b) = (schema.store().await, schema.store().await);
    let ids = insert_keys(&a, 40).await;
    let mut tasks = Vec::new();
    for round in 0..20_i64 {
        for (store, reversed) in [(a.clone(), false), (b.clone(), true)] {
            let mut batch: Vec<(KeyId, Timestamp)> =
                ids.iter().map(|id| (*id, t(1000 + round))).collect();
            if reversed {
                batch.reverse();
            }
            tasks.push(tokio::spawn(
                async move { store.record_usage(&batch).await },
            ));
        }
    }
    for task in tasks {
        task.await.unwrap().expect("no deadlock error");
    }
    for id in &ids {
        assert_eq!(
            a.get(id).await.unwrap().unwrap().last_used_at,
            Some(t(1019))
        );
    }
    // Duplicates within one batch: the latest wins.
    a.record_usage(&[(ids[0], t(5000)), (ids[0], t(4000))])
        .await
        .unwrap();
    assert_eq!(
        a.get(&ids[0]).await.unwrap().unwrap().last_used_at,
        Some(t(5000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poller_never_misses_a_change_made_by_concurrent_updaters() {
    let Some(schema) = TestSchema::create("a_poller_never_misses_a_change").await else {
        return;
    };
    let writers = [schema.store().await, schema.store().await];
    let reader = schema.store().await;
    let ids = insert_keys(&writers[0], 60).await;
    let start = reader.changes_since(0).await.unwrap().revision;
    let done = Arc::new(AtomicBool::new(false));

    let poller = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut rev = start;
            let mut seen = HashSet::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let c = reader.changes_since(rev).await.unwrap();
                assert!(!c.resync);
                assert!(c.revision >= rev, "the revision never goes back");
                seen.extend(c.ids);
                rev = c.revision;
                if finished {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let store = writers[i % 2].clone();
        let id = *id;
        tasks.push(tokio::spawn(async move {
            let change = KeyChange {
                name: Some(format!("n{i}")),
                ..KeyChange::default()
            };
            store.update(&id, &change, &[]).await.unwrap().unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = poller.await.unwrap();
    let expected: HashSet<KeyId> = ids.into_iter().collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_the_pruned_change_log_is_told_to_resync() {
    let Some(schema) = TestSchema::create("a_reader_behind_the_pruned_change_log").await else {
        return;
    };
    let store = schema.store().await;
    let ids = insert_keys(&store, 3).await;
    for id in &ids {
        store
            .update(
                id,
                &KeyChange {
                    revoke_at: Some(t(1)),
                    ..KeyChange::default()
                },
                &[],
            )
            .await
            .unwrap();
    }
    let all = store.changes_since(0).await.unwrap();
    assert_eq!(all.revision, 6, "3 inserts, then 3 updates");
    assert_eq!(all.ids, [ids.clone(), ids.clone()].concat());
    assert!(!all.resync);
    // What pruning does once the log is full: the oldest entries go.
    sqlx::query("DELETE FROM keyward_changes WHERE revision <= 5")
        .execute(store.pool())
        .await
        .unwrap();
    let behind = store.changes_since(0).await.unwrap();
    assert!(behind.resync);
    let at_edge = store.changes_since(5).await.unwrap();
    assert!(!at_edge.resync);
    assert_eq!(at_edge.ids, [ids[2]]);
    let ahead = store.changes_since(u64::MAX).await.unwrap();
    assert!(!ahead.resync && ahead.ids.is_empty());
    // Usage is not a change.
    store.record_usage(&[(ids[0], t(9))]).await.unwrap();
    assert_eq!(store.changes_since(6).await.unwrap().revision, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_keeps_the_configured_length_and_a_reader_behind_it_must_resync() {
    let Some(schema) = TestSchema::create("the_change_log_keeps_the_configured_length").await
    else {
        return;
    };
    let default = schema.store().await;
    assert_eq!(
        default.options().get_change_log_len(),
        DEFAULT_CHANGE_LOG_LEN
    );
    let store = default.with_options(PostgresOptions::default().change_log_len(3));
    let id = insert_keys(&store, 1).await[0];
    for i in 0..10 {
        let change = KeyChange {
            name: Some(format!("n{i}")),
            ..KeyChange::default()
        };
        store.update(&id, &change, &[]).await.unwrap().unwrap();
    }
    let behind = store.changes_since(0).await.unwrap();
    assert_eq!(behind.revision, 11, "the insert, then 10 updates");
    assert!(behind.resync);
    let edge = store.changes_since(8).await.unwrap();
    assert!(!edge.resync);
    assert_eq!(edge.ids, vec![id; 3]);
    assert!(store.changes_since(7).await.unwrap().resync);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM keyward_changes")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_edited_into_nonsense_is_reported_as_corrupt() {
    let Some(schema) = TestSchema::create("a_row_edited_into_nonsense").await else {
        return;
    };
    let store = schema.store().await;
    let ids = insert_keys(&store, 2).await;
    sqlx::query("UPDATE keyward_keys SET scopes = '{\"Not A Scope\"}' WHERE id = $1")
        .bind(ids[0].as_str())
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE keyward_keys SET limits = '{\"bogus\": 1}' WHERE id = $1")
        .bind(ids[1].as_str())
        .execute(store.pool())
        .await
        .unwrap();
    for id in &ids {
        match store.get(id).await {
            Err(e @ StoreError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(id.as_str()), "{msg}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_stop_at_i64_max_and_huge_amounts_are_refused_whole() {
    let Some(schema) = TestSchema::create("counts_stop_at_i64_max").await else {
        return;
    };
    let store = schema.store().await;
    let bucket = UsageBucket {
        counter: "huge".into(),
        period_start: t(0),
    };
    assert_eq!(
        store.consume(&bucket, u64::MAX, u64::MAX).await.unwrap(),
        Consumption::Refused { used: 0 }
    );
    let big = i64::MAX as u64 - 1;
    assert_eq!(
        store.consume(&bucket, big, u64::MAX).await.unwrap(),
        Consumption::Granted { used: big }
    );
    assert_eq!(
        store.consume(&bucket, 2, u64::MAX).await.unwrap(),
        Consumption::Refused { used: big }
    );
    assert_eq!(
        store.consume(&bucket, 1, u64::MAX).await.unwrap(),
        Consumption::Granted {
            used: i64::MAX as u64
        }
    );
    assert_eq!(
        store.consume(&bucket, 0, 10).await.unwrap(),
        Consumption::Refused {
            used: i64::MAX as u64
        }
    );
}

/// Every list query (no filter; project; project and environment; with and without a cursor)
/// has an index path in order: with sequential scans and sorts priced out, the plan holds
/// neither, so a page costs the same in a project of 1,000 or 1,000,000 keys (issue 13, D5).
#[tokio::test]
async fn every_list_query_has_an_index_path_without_a_sort() {
    use keyward::store::rows::{Param, Placeholders, list_statement};
    use keyward::{Environment, ListQuery};
    use sqlx::Row;
    let Some(schema) = TestSchema::create("every_list_query_has_an_index_path").await else {
        return;
    };
    let store = schema.store().await;
    let ids = insert_keys(&store, 3).await;
    let pool = schema.pool(1).await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SET enable_sort = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let project = Project::new("instances").unwrap();
    let dev: Environment = "dev".parse().unwrap();
    for (p, e) in [
        (None, None),
        (Some(project.clone()), None),
        (Some(project), Some(dev)),
    ] {
        for after in [None, Some((t(1), ids[1]))] {
            let query = ListQuery {
                project: p.clone(),
                environment: e,
                after,
                limit: 100,
            };
            let statement = list_statement(&query, Placeholders::Dollar);
            let mut explain =
                sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {}", statement.sql)));
            for param in statement.params {
                explain = match param {
                    Param::Integer(n) => explain.bind(n),
                    Param::Text(s) | Param::Json(s) => explain.bind(s),
                    Param::Names(n) => explain.bind(n),
                };
            }
            let plan: Vec<String> = explain
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
            let text = plan.join(" | ");
            assert!(text.contains("Index"), "{query:?}: {text}");
            assert!(!text.contains("Sort"), "{query:?} sorts: {text}");
            assert!(!text.contains("Seq Scan"), "{query:?}: {text}");
        }
    }
}
