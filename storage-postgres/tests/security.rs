//! Security evidence on PostgreSQL (SECURITY.md): a manager over this store, traced at TRACE
//! (sqlx included), logs no secret, no full key and no `Authorization` value on any path; and
//! a process killed with SIGKILL right after `issue()` or `revoke()` returned loses nothing
//! it acknowledged. Skipped with a notice without `DATABASE_URL` (an error with
//! `KEYWARD_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::TestSchema;
use keyward::conformance::{LogBuffer, assert_keys_hidden, with_wrong_secret};
use keyward::{
    AuthError, Error, HashParams, IssueRequest, KeyId, KeyLimits, KeyManager, RateLimit,
    Requirements,
};
use keyward_postgres::PostgresStore;
use sqlx::postgres::PgConnectOptions;

fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer::new();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

fn manager(store: PostgresStore) -> KeyManager {
    KeyManager::builder(store)
        .prefix("av".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap()
}

fn req() -> IssueRequest {
    IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(["read"])
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backed_manager_at_trace_logs_no_secret() {
    let Some(schema) = TestSchema::create("a_postgres_backed_manager_at_trace").await else {
        return;
    };
    let logs = logs();
    let m = manager(schema.store().await);
    let none = Requirements::none();
    let a = m.issue(req()).await.unwrap();
    let ka = a.key.expose_secret().to_owned();
    let b = m
        .issue(req().limits(KeyLimits {
            rate_limit: Some(RateLimit {
                requests: 1,
                per_seconds: 3600,
            }),
            ..KeyLimits::default()
        }))
        .await
        .unwrap();
    let kb = b.key.expose_secret().to_owned();
    m.verify(&ka, &none).await.unwrap();
    let wrong = with_wrong_secret(&ka, 39);
    m.verify(&kb, &none).await.unwrap();
    let mut errors = vec![
        m.verify(&wrong, &none).await.unwrap_err(),
        m.verify(&ka, &Requirements::scopes(["admin"]).unwrap())
            .await
            .unwrap_err(),
        m.verify(&kb, &none).await.unwrap_err(),
    ];
    let rotated = m.rotate(&b.record.id, Duration::ZERO).await.unwrap();
    let kr = rotated.key.expose_secret().to_owned();
    m.revoke(&a.record.id).await.unwrap();
    errors.push(m.verify(&ka, &none).await.unwrap_err());
    errors.push(m.rotate(&a.record.id, Duration::ZERO).await.unwrap_err());
    m.flush_usage().await.unwrap();
    m.shutdown().await.unwrap();
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::Auth(AuthError::Revoked { .. })))
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::Auth(AuthError::RateLimited { .. })))
    );
    let logged = logs.text();
    assert!(logged.contains(a.record.id.as_str()), "the capture works");
    let keys = [&ka, &kb, &kr, &wrong];
    for e in &errors {
        assert_keys_hidden("an error", &format!("{e} {e:?}"), &keys);
    }
    assert_keys_hidden("the TRACE log", &logged, &keys);
}

// ---------------------------------------------------------------------------------------
// kill -9 right after the operation returned

const CHILD: &str = "KEYWARD_PG_CRASH_CHILD";
const SCHEMA: &str = "KEYWARD_PG_CRASH_SCHEMA";
const ID: &str = "KEYWARD_PG_CRASH_ID";

async fn store_in(schema_name: &str) -> PostgresStore {
    let url = std::env::var("DATABASE_URL").unwrap();
    let options = url
        .parse::<PgConnectOptions>()
        .unwrap()
        .options([("search_path", schema_name)]);
    PostgresStore::connect_with(options).await.unwrap()
}

/// The child side; a no-op in a normal run.
#[test]
fn pg_crash_child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let schema_name = std::env::var(SCHEMA).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = manager(store_in(&schema_name).await);
        let line = match mode.as_str() {
            "issue" => format!(
                "ISSUED {}",
                m.issue(req()).await.unwrap().key.expose_secret()
            ),
            _ => {
                let id: KeyId = std::env::var(ID).unwrap().parse().unwrap();
                m.revoke(&id).await.unwrap();
                "REVOKED done".to_owned()
            }
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "\n{line}").unwrap();
        out.flush().unwrap();
        drop(out);
        std::thread::sleep(Duration::from_secs(120));
        std::process::exit(3);
    });
}

/// Runs the child in `mode`, reads what follows `prefix`, then SIGKILLs it.
fn run_and_kill(mode: &str, schema: &TestSchema, id: Option<&KeyId>, prefix: &str) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "pg_crash_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, mode)
    .env(SCHEMA, &schema.name)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some(id) = id {
        cmd.env(ID, id.as_str());
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let found = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no {prefix} line");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            break rest.trim().to_owned();
        }
    };
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_issues_and_revocations_survive_a_kill_9() {
    let Some(schema) = TestSchema::create("acknowledged_issues_and_revocations").await else {
        return;
    };
    // Migrate the schema once before the children use it.
    let m = manager(schema.store().await);
    let key = run_and_kill("issue", &schema, None, "ISSUED");
    let who = m
        .verify(&key, &Requirements::scopes(["read"]).unwrap())
        .await;
    let who = who.unwrap_or_else(|e| panic!("the issued key does not verify after kill -9: {e}"));
    run_and_kill("revoke", &schema, Some(&who.id), "REVOKED");
    let fresh = manager(schema.store().await);
    match fresh.verify(&key, &Requirements::none()).await {
        Err(Error::Auth(AuthError::Revoked { id, .. })) => assert_eq!(id, who.id),
        other => panic!("a revocation acknowledged before kill -9 was lost: {other:?}"),
    }
}
