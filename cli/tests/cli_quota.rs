//! The CLI's quota, usage and credit options, end to end on a temporary SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{keyward, text};
use keyward::conformance::assert_keys_hidden;

#[test]
fn quota_set_show_usage_and_credits_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("keys.db").display());

    let out = keyward(&db, &["quota", "show", "--project", "web-app"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("has no event quota"));

    let out = keyward(
        &db,
        &["quota", "set", "--project", "web-app", "--limit", "1000"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = keyward(&db, &["quota", "show", "--project", "web-app"], None);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("1000 events per month") && shown.contains("0 of 1000 used, 1000 left"),
        "{shown}"
    );

    // A key with 2 credits refilling monthly: two verifies, then refused with exit 1.
    let out = keyward(
        &db,
        &[
            "issue",
            "--project",
            "web-app",
            "--env",
            "dev",
            "--scope",
            "read",
            "--credits",
            "2",
            "--refill",
            "monthly:5",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_owned();
    for _ in 0..2 {
        let out = keyward(&db, &["verify", "--env", "dev"], Some(&key));
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = keyward(&db, &["verify", "--env", "dev"], Some(&key));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("HTTP 429") && err.contains("no credits left"),
        "{err}"
    );
    assert_keys_hidden("the refusal", &err, &[&key]);

    let out = keyward(&db, &["usage", "--project", "web-app"], None);
    let report = text(&out.stdout);
    assert!(report.contains("credits: 2 of 2 used, 0 left"), "{report}");
    let out = keyward(&db, &["usage", "--project", "web-app", "--json"], None);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["project_quota"]["limit"], 1000);
    assert_eq!(json["keys"][0]["credits"]["remaining"], 0);

    let out = keyward(&db, &["quota", "remove", "--project", "web-app"], None);
    assert!(out.status.success());
    let out = keyward(&db, &["quota", "show", "--project", "web-app"], None);
    assert!(text(&out.stdout).contains("has no event quota"));

    let bad = keyward(
        &db,
        &[
            "quota",
            "set",
            "--project",
            "web-app",
            "--limit",
            "5",
            "--period",
            "fortnightly",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    let bad = keyward(
        &db,
        &[
            "issue",
            "--project",
            "p1",
            "--env",
            "dev",
            "--scope",
            "read",
            "--rate-limit",
            "10",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("REQUESTS/SECONDS"));
}
