//! Secrets at rest and in diagnostics: no table row holds a secret or a full key, and a
//! password in the connection URL never shows in an error, a `Debug` or a log line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use keyward::UsageStore;
use std::time::Duration;

use common::TestSchema;
use keyward::conformance::{LogBuffer, secret_of};
use keyward::{HashParams, IssueRequest, KeyManager, Requirements, UsageBucket};
use keyward_postgres::PostgresStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_row_of_any_keyward_table_holds_a_secret_or_a_full_key() {
    let Some(schema) = TestSchema::create("no_row_of_any_keyward_table_holds_a_secret").await
    else {
        return;
    };
    let store = schema.store().await;
    let manager = KeyManager::builder(store.clone())
        .prefix("av".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let mut keys = Vec::new();
    for name in ["ci", "ingest", "rotated"] {
        let issued = manager
            .issue(
                IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                    .scopes(["read", "write"])
                    .unwrap()
                    .name(name)
                    .metadata(serde_json::json!({"owner": "ops"})),
            )
            .await
            .unwrap();
        manager
            .verify(issued.key.expose_secret(), &Requirements::none())
            .await
            .unwrap();
        keys.push(issued);
    }
    // Fill every table: a rotation and a revocation (change log), usage, a counter, a setting.
    let rotated: keyward::IssuedKey = manager
        .rotate(&keys[2].record.id, Duration::from_secs(60))
        .await
        .unwrap()
        .into();
    manager.revoke(&keys[0].record.id).await.unwrap();
    manager.flush_usage().await.unwrap();
    store
        .consume(
            &UsageBucket {
                counter: format!("key:{}", keys[1].record.id),
                period_start: keyward::Timestamp::from_unix_millis(0),
            },
            1,
            10,
        )
        .await
        .unwrap();

    // A cluster rate limiter's state (keyward_rate).
    let rate = keyward::Counter::KeyRate(keys[1].record.id).name();
    store
        .take_cells(&keyward::RateCells::new(rate, 1, 1_000, 0), 1)
        .await
        .unwrap();

    store
        .put_setting(
            "project:web-app:quota",
            Some(&serde_json::json!({"limit": 50, "period": "month"})),
            &[],
        )
        .await
        .unwrap();

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name LIKE 'keyward\\_%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(tables.len(), 8, "{tables:?}");
    let mut dump = String::new();
    for table in &tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t"
        )))
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert!(!rows.is_empty(), "table {table} has rows to inspect");
        if table == "keyward_audit" {
            assert!(
                rows.iter().all(|r| !r.contains("$argon2")),
                "no hash in the audit trail: {rows:?}"
            );
        }
        dump.extend(rows.into_iter().map(|r| r + "\n"));
    }
    for k in keys.iter().chain([&rotated]) {
        let full = k.key.expose_secret();
        let secret = secret_of(full);
        assert_eq!(secret.len(), 43);
        assert!(!dump.contains(full), "a full key is stored");
        assert!(!dump.contains(secret), "a secret is stored");
        assert!(
            dump.contains(k.record.id.as_str()),
            "the dump covers the keys"
        );
    }
    assert!(
        dump.contains("$argon2id$"),
        "hashes are stored as PHC strings"
    );
}

fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let captured = LogBuffer::new();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{e} | {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn a_password_in_the_url_is_not_in_the_error_or_the_logs() {
    let (logs, _guard) = capture_logs();
    let err = PostgresStore::connect("postgres://postgres:supersecret@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    let shown = error_chain(&err);
    println!("{shown}");
    assert!(!shown.contains("supersecret"), "{shown}");
    assert!(
        shown.contains("postgres"),
        "the error names the store: {shown}"
    );
    for url in [
        "postgres://postgres:supersecret@127.0.0.1:notaport/test",
        "postgres://postgres:supersecret@127.0.0.1/test?sslmode=bogus",
    ] {
        let err = PostgresStore::connect(url).await.expect_err("bad url");
        let shown = error_chain(&err);
        assert!(!shown.contains("supersecret"), "{shown}");
    }
    let logged = logs.text();
    assert!(logged.contains("connecting to postgres"), "{logged}");
    assert!(!logged.contains("supersecret"), "{logged}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_connected_with_a_password_does_not_show_it() {
    let Some(schema) = TestSchema::create("a_store_connected_with_a_password").await else {
        return;
    };
    let (logs, _guard) = capture_logs();
    // The local server trusts loopback, so any password is accepted and must stay hidden.
    let options = schema.options().password("supersecret");
    let store = PostgresStore::connect_with(options).await.unwrap();
    let feed = store.listen().await.unwrap();
    let shown = format!("{store:?} {:?} {feed:?}", store.pool());
    assert!(!shown.contains("supersecret"), "{shown}");
    assert!(shown.contains(&schema.name), "{shown}");
    drop(feed);
    let logged = logs.text();
    assert!(!logged.contains("supersecret"), "{logged}");
}
