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
