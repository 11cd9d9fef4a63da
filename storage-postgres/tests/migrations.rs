//! Schema migrations: recorded, idempotent, and applied once when instances start together.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestSchema;
use keyward::{RecordStore, StoreError};
use keyward_postgres::{MIGRATIONS, PostgresError, PostgresStore};
use sqlx::postgres::PgPoolOptions;

async fn recorded_versions(pool: &sqlx::PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM keyward_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_records_every_step_and_is_idempotent() {
    let Some(schema) = TestSchema::create("migrate_records_every_step_and_is_idempotent").await
    else {
        return;
    };
    let store = schema.store().await;
    let expected: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(recorded_versions(store.pool()).await, expected);
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let again = PostgresStore::from_pool(store.pool().clone())
        .await
        .unwrap();
    assert_eq!(recorded_versions(again.pool()).await, expected);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "keyward_audit",
            "keyward_changes",
            "keyward_keys",
            "keyward_migrations",
            "keyward_rate",
            "keyward_revision",
            "keyward_settings",
            "keyward_usage"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_apply_each_step_once() {
    let Some(schema) = TestSchema::create("instances_starting_together_apply_each_step_once").await
    else {
        return;
    };
    let mut starts = Vec::new();
    for _ in 0..8 {
        let pool = schema.pool(2).await;
        starts.push(tokio::spawn(PostgresStore::from_pool(pool)));
    }
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every instance starts"));
    }
    let expected: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(recorded_versions(stores[0].pool()).await, expected);
    let revision_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM keyward_revision")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(revision_rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_path_without_an_existing_schema_is_a_typed_error() {
    let Some(schema) = TestSchema::create("a_search_path_without_an_existing_schema").await else {
        return;
    };
    let options = schema
        .options()
        .options([("search_path", "keyward_test_does_not_exist")]);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    match PostgresStore::from_pool(pool).await {
        Err(StoreError::Backend { store, source }) => {
            assert_eq!(store, "postgres");
            assert_eq!(
                source.downcast_ref::<PostgresError>(),
                Some(&PostgresError::NoSchema)
            );
        }
        other => panic!("expected NoSchema, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_before_migration_3_is_known_as_rotated() {
    let Some(schema) = TestSchema::create("a_key_rotated_before_migration_3").await else {
        return;
    };
    let pool = schema.pool(2).await;
    // The schema as version 2 left it, with a key rotated twice (an older version allowed
    // that) and a key never rotated.
    sqlx::raw_sql(
        "CREATE TABLE keyward_migrations (
            version     bigint PRIMARY KEY,
            description text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&pool)
    .await
    .unwrap();
    for m in MIGRATIONS.iter().filter(|m| m.version <= 2) {
        sqlx::raw_sql(m.sql).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO keyward_migrations (version, description) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.description)
            .execute(&pool)
            .await
            .unwrap();
    }
    let (old, first, latest, alone) = (
        "old000000000",
        "first0000000",
        "latest000000",
        "alone0000000",
    );
    for (id, created_at, rotated_from) in [
        (old, 1_i64, None),
        (latest, 3, Some(old)),
        (first, 2, Some(old)),
        (alone, 4, None),
    ] {
        sqlx::query(
            "INSERT INTO keyward_keys (id, prefix, project, environment, created_at, secret_hash,
                 rotated_from)
             VALUES ($1, 'av', 'legacy', 'dev', $2, $3, $4)",
        )
        .bind(id)
        .bind(created_at)
        .bind(keyward::conformance::SAMPLE_PHC)
        .bind(rotated_from)
        .execute(&pool)
        .await
        .unwrap();
    }

    let store = PostgresStore::from_pool(pool).await.unwrap();
    let rotated_to = |id: &str| {
        let store = store.clone();
        let id: keyward::KeyId = id.parse().unwrap();
        async move { store.get(&id).await.unwrap().unwrap().rotated_to }
    };
    assert_eq!(rotated_to(old).await, Some(latest.parse().unwrap()));
    for id in [first, latest, alone] {
        assert_eq!(rotated_to(id).await, None, "{id}");
    }
    // Migration 4 added the audit trail to this old schema: an audited change works.
    let id: keyward::KeyId = alone.parse().unwrap();
    let project: keyward::Project = "legacy".parse().unwrap();
    let entry = keyward::AuditEntry::new(
        keyward::Timestamp::from_unix_millis(5),
        keyward::Actor::system(),
        keyward::AuditAction::Revoked,
        project.clone(),
    )
    .key(id);
    let revoke = keyward::KeyChange {
        revoke_at: Some(keyward::Timestamp::from_unix_millis(5)),
        ..keyward::KeyChange::default()
    };
    store.update(&id, &revoke, &[entry]).await.unwrap().unwrap();
    let trail = keyward::AuditStore::audit(&store, &keyward::AuditQuery::new(project))
        .await
        .unwrap();
    assert_eq!((trail.len(), trail[0].key_id), (1, Some(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_count_from_before_migration_5_has_nothing_leased() {
    let Some(schema) = TestSchema::create("a_usage_count_from_before_migration_5").await else {
        return;
    };
    let pool = schema.pool(2).await;
    // The schema as version 4 left it, with a count of 7.
    sqlx::raw_sql(
        "CREATE TABLE keyward_migrations (
            version     bigint PRIMARY KEY,
            description text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&pool)
    .await
    .unwrap();
    for m in MIGRATIONS.iter().filter(|m| m.version <= 4) {
        sqlx::raw_sql(m.sql).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO keyward_migrations (version, description) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.description)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO keyward_usage (counter, period_start, used) VALUES ('old', 0, 7)")
        .execute(&pool)
        .await
        .unwrap();

    let store = PostgresStore::from_pool(pool).await.unwrap();
    let bucket = keyward::UsageBucket {
        counter: "old".into(),
        period_start: keyward::Timestamp::from_unix_millis(0),
    };
    assert_eq!(
        keyward::UsageStore::usage(&store, &bucket).await.unwrap(),
        7
    );
    assert_eq!(
        keyward::UsageStore::lease(&store, &bucket, 10, 1, 10)
            .await
            .unwrap(),
        keyward::Lease {
            granted: 3,
            used: 7,
            leased: 3
        }
    );
    // The column refuses a negative count, like `used`.
    let negative = sqlx::query("UPDATE keyward_usage SET leased = -1")
        .execute(store.pool())
        .await;
    assert!(negative.is_err(), "{negative:?}");
}
