//! The CLI's audit trail: every change the CLI makes (issue, rotate, revoke, quota set and
//! remove) appears once in `keyward audit` with the actor `cli:<user>@<host>`; the table,
//! JSON lines, `--key`, `--limit` and `--before`; never a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{command, text};
use keyward::conformance::assert_keys_hidden;
use serde_json::Value;

/// `keyward --db <db> <args…>` as the user `USER`.
fn as_user(db: &str, user: &str, args: &[&str]) -> std::process::Output {
    command()
        .env("USER", user)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn every_change_the_cli_makes_appears_once_in_keyward_audit_with_its_actor() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("keys.db").display());
    let issue = [
        "issue",
        "--project",
        "web-app",
        "--env",
        "dev",
        "--scope",
        "read",
        "--name",
        "ci",
    ];
    let key = ok(&as_user(&db, "alice", &issue)).trim().to_owned();
    let id = key.split('_').nth(2).unwrap().to_owned();
    let rotated = ok(&as_user(&db, "bob", &["rotate", &id, "--grace", "1h"]))
        .trim()
        .to_owned();
    let new_id = rotated.split('_').nth(2).unwrap().to_owned();
    ok(&as_user(&db, "carol", &["revoke", &new_id]));
    ok(&as_user(
        &db,
        "dave",
        &["quota", "set", "--project", "web-app", "--limit", "100"],
    ));
    ok(&as_user(
        &db,
        "erin",
        &["quota", "remove", "--project", "web-app"],
    ));
    // Reading changes nothing: verify, list, usage and audit write no entry.
    let verify = command()
        .env("KEYWARD_KEY", &key) // the old key, in its grace period
        .args(["--db", &db, "verify", "--env", "dev"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    ok(&as_user(&db, "frank", &["list", "--project", "web-app"]));

    let out = as_user(&db, "reader", &["audit", "--project", "web-app", "--json"]);
    let stdout = ok(&out);
    let entries = json_lines(&stdout);
    let seen: Vec<(String, String, Value)> = entries
        .iter()
        .rev()
        .map(|e| {
            let actor = e["actor"].as_str().unwrap().to_owned();
            let user = actor
                .strip_prefix("cli:")
                .and_then(|a| a.split_once('@'))
                .map(|(user, host)| {
                    assert!(!host.is_empty(), "{actor}");
                    user.to_owned()
                })
                .unwrap_or_else(|| panic!("not a CLI actor: {actor}"));
            (
                e["action"].as_str().unwrap().to_owned(),
                user,
                e["key_id"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, String, Value)> = [
        ("issued", "alice", Value::from(id.as_str())),
        ("rotated", "bob", Value::from(id.as_str())),
        ("revoked", "carol", Value::from(new_id.as_str())),
        ("quota_changed", "dave", Value::Null),
        ("quota_changed", "erin", Value::Null),
    ]
    .into_iter()
    .map(|(a, u, k)| (a.to_owned(), u.to_owned(), k))
    .collect();
    assert_eq!(seen, expected, "{stdout}");
    assert_eq!(entries[4]["summary"]["name"], "ci");
    assert_eq!(entries[3]["summary"]["new_key_id"], new_id.as_str());
    assert_eq!(entries[1]["summary"]["quota"]["limit"], 100);
    assert_eq!(entries[0]["summary"]["quota"], Value::Null);
    assert_keys_hidden("keyward audit --json", &stdout, &[&key, &rotated]);
    assert!(!stdout.contains("$argon2"));

    // The table: a header and one line per entry, newest first.
    let table = ok(&as_user(&db, "reader", &["audit", "--project", "web-app"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(
        lines[0].starts_with("SEQ") && lines[0].contains("ACTOR"),
        "{table}"
    );
    assert!(
        lines[1].contains("quota_changed") && lines[1].contains("cli:erin@"),
        "{table}"
    );
    assert!(
        lines[5].contains("issued") && lines[5].contains(&id),
        "{table}"
    );
    assert_keys_hidden("keyward audit", &table, &[&key, &rotated]);

    // One key; a page and the next with --before.
    let of_id = json_lines(&ok(&as_user(
        &db,
        "reader",
        &["audit", "--project", "web-app", "--key", &id, "--json"],
    )));
    assert_eq!(of_id.len(), 2);
    let out = as_user(
        &db,
        "reader",
        &["audit", "--project", "web-app", "--json", "--limit", "2"],
    );
    let first = json_lines(&ok(&out));
    assert_eq!(first.len(), 2);
    let last_seq = first[1]["seq"].as_u64().unwrap();
    assert!(
        text(&out.stderr).contains(&format!("--before {last_seq}")),
        "{}",
        text(&out.stderr)
    );
    let before = last_seq.to_string();
    let rest = json_lines(&ok(&as_user(
        &db,
        "reader",
        &[
            "audit",
            "--project",
            "web-app",
            "--json",
            "--before",
            &before,
        ],
    )));
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|e| e["seq"].as_u64().unwrap() < last_seq));
    // Another project has no entries.
    let out = as_user(&db, "reader", &["audit", "--project", "other-app"]);
    assert!(text(&out.stderr).contains("no audit entries match"));
    // A bad key id is a usage error.
    let out = as_user(
        &db,
        "reader",
        &["audit", "--project", "web-app", "--key", "nope"],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// The admin router's caller: the tenant `web-app`, the actor `user:page`.
#[derive(Clone)]
struct PageAuth;

impl keyward::axum::admin::AdminAuth for PageAuth {
    async fn authorize(
        &self,
        _: &mut http::request::Parts,
    ) -> Result<keyward::axum::admin::AdminCaller, keyward::axum::admin::AdminDenied> {
        Ok(keyward::axum::admin::AdminCaller {
            tenant: keyward::Tenant::new("web-app".parse().unwrap()),
            actor: "user:page".into(),
            csrf_token: None,
        })
    }
}

async fn admin(router: &axum::Router, method: &str, uri: &str, body: Option<Value>) -> Value {
    use tower::ServiceExt as _;
    let mut r = http::Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            r = r.header("content-type", "application/json");
            axum::body::Body::from(v.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let response = router.clone().oneshot(r.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(status.is_success(), "{method} {uri}: {status}");
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_the_manager_and_the_admin_router_appear_once_in_keyward_audit() {
    use keyward::{Actor, HashParams, IssueRequest, KeyChange, KeyManager, Period, Quota};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let db = format!("sqlite:{}", path.display());
    let store = keyward_sqlite::SqliteStore::open(&path).await.unwrap();
    let manager = KeyManager::builder(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();

    // Through the manager, as user:ops (and one change as the default, system).
    let ops = manager.acting_as(Actor::new("user:ops").unwrap());
    let request = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap());
    let a = ops.issue(request.clone().name("a")).await.unwrap();
    let id = a.record.id;
    let rename = KeyChange {
        name: Some("a2".into()),
        ..KeyChange::default()
    };
    ops.update(&id, &rename).await.unwrap();
    ops.set_expiry(&id, None).await.unwrap();
    let b = ops.rotate(&id, std::time::Duration::ZERO).await.unwrap();
    manager.revoke(&b.record.id).await.unwrap();
    ops.set_project_quota(
        &"web-app".parse().unwrap(),
        Some(Quota {
            limit: 5,
            period: Period::Day,
        }),
    )
    .await
    .unwrap();

    // Through the admin router, as user:page.
    let config = keyward::axum::admin::AdminConfig::new(manager.clone());
    let router = keyward::axum::admin::api_router(config, PageAuth);
    let created = admin(
        &router,
        "POST",
        "/",
        Some(serde_json::json!({"name": "c", "scopes": ["read"], "environment": "dev"})),
    )
    .await;
    let c = created["info"]["id"].as_str().unwrap().to_owned();
    admin(
        &router,
        "PATCH",
        &format!("/{c}/"),
        Some(serde_json::json!({"name": "c2"})),
    )
    .await;
    let rotated = admin(&router, "POST", &format!("/{c}/rotate/"), None).await;
    let d = rotated["info"]["id"].as_str().unwrap().to_owned();
    admin(&router, "DELETE", &format!("/{d}/"), None).await;
    drop(router);
    drop((manager, ops));

    // Read with the binary.
    let out = as_user(
        &db,
        "reader",
        &["audit", "--project", "web-app", "--json", "--limit", "1000"],
    );
    let stdout = ok(&out);
    let seen: Vec<(String, String, Value)> = json_lines(&stdout)
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["key_id"].clone(),
            )
        })
        .collect();
    let (a, b) = (id.to_string(), b.record.id.to_string());
    let expected: Vec<(String, String, Value)> = [
        ("issued", "user:ops", Value::from(a.as_str())),
        ("updated", "user:ops", Value::from(a.as_str())),
        ("updated", "user:ops", Value::from(a.as_str())),
        ("rotated", "user:ops", Value::from(a.as_str())),
        ("revoked", "system", Value::from(b.as_str())),
        ("quota_changed", "user:ops", Value::Null),
        ("issued", "user:page", Value::from(c.as_str())),
        ("updated", "user:page", Value::from(c.as_str())),
        ("rotated", "user:page", Value::from(c.as_str())),
        ("revoked", "user:page", Value::from(d.as_str())),
    ]
    .into_iter()
    .map(|(x, y, z)| (x.to_owned(), y.to_owned(), z))
    .collect();
    assert_eq!(seen, expected, "{stdout}");
}
