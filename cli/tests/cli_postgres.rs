//! The CLI end to end against PostgreSQL: issue → verify → list → rotate → revoke, in a schema
//! of its own that is dropped afterwards. Needs `DATABASE_URL`; without it the test prints
//! that it was skipped, unless `KEYWARD_REQUIRE_POSTGRES=1` (CI), which makes it fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{keyward, ok};
use keyward::conformance::assert_keys_hidden;
use sqlx::Connection;

fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("KEYWARD_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "KEYWARD_REQUIRE_POSTGRES=1 but DATABASE_URL is not set"
            );
            eprintln!("SKIPPED cli_postgres: DATABASE_URL not set");
            None
        }
    }
}

#[tokio::test]
async fn every_command_works_against_postgres() {
    let Some(url) = database_url() else { return };
    let schema = format!("keyward_cli_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = format!("{url}{sep}options=-c%20search_path%3D{schema}");

    let result = std::panic::AssertUnwindSafe(async {
        let key = ok(&keyward(
            &db,
            &[
                "issue",
                "--project",
                "web-app",
                "--env",
                "dev",
                "--scope",
                "write",
                "--name",
                "ingest",
            ],
            None,
        ));
        let key = key.trim().to_owned();
        assert_eq!(key.lines().count(), 1);
        let who = ok(&keyward(
            &db,
            &["verify", "--env", "dev", "--scope", "write"],
            Some(&key),
        ));
        assert!(who.contains("web-app"), "{who}");
        let id = key.split('_').nth(2).unwrap().to_owned();

        let listed = ok(&keyward(
            &db,
            &["list", "--project", "web-app", "--json"],
            None,
        ));
        let json: serde_json::Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(json[0]["id"], id.as_str());
        assert_keys_hidden("the key listing", &listed, &[&key]);

        let new_key = ok(&keyward(&db, &["rotate", &id, "--grace", "1h"], None));
        let new_key = new_key.trim().to_owned();
        ok(&keyward(&db, &["verify", "--env", "dev"], Some(&new_key)));
        ok(&keyward(&db, &["verify", "--env", "dev"], Some(&key)));

        ok(&keyward(&db, &["revoke", &id], None));
        let rejected = keyward(&db, &["verify", "--env", "dev"], Some(&key));
        assert_eq!(rejected.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&rejected.stderr).contains("revoked"));

        ok(&keyward(
            &db,
            &["quota", "set", "--project", "web-app", "--limit", "10"],
            None,
        ));
        assert!(
            ok(&keyward(
                &db,
                &["quota", "show", "--project", "web-app"],
                None
            ))
            .contains("0 of 10 used")
        );
        ok(&keyward(&db, &["usage", "--project", "web-app"], None));
    });
    let outcome = futures_catch(result).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs a future, catching a panic so the schema is dropped before the test fails.
async fn futures_catch<F: std::future::Future<Output = ()>>(
    f: std::panic::AssertUnwindSafe<F>,
) -> Result<(), Box<dyn std::any::Any + Send>> {
    use futures_util::FutureExt;
    f.catch_unwind().await
}
