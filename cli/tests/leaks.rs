//! Leak tests of the `keyward` CLI binary at TRACE (`RUST_LOG=trace`): no secret, no full key
//! may appear in its logs, its errors or its output, but for the one place a new key is shown.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod common;

use common::Run;
use keyward::ApiKey;
use keyward::conformance::{assert_keys_hidden, with_wrong_secret};

fn id_of(key: &str) -> String {
    ApiKey::parse(key).unwrap().id().to_string()
}

// ---------------------------------------------------------------------------------------
// The CLI binary

/// The CLI on `keys.db` in `dir`, logging at TRACE, with an empty stdin unless given one.
fn cli(dir: &Path, args: &[&str], vars: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let all = [&["--db", "sqlite:keys.db"][..], args].concat();
    let vars = [&[("RUST_LOG", "trace")][..], vars].concat();
    common::run(dir, &all, &vars, Some(stdin.unwrap_or("")))
}

#[test]
fn the_cli_at_rust_log_trace_prints_a_key_only_where_it_issues_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let issue = |extra: &[&str]| {
        let mut args = vec![
            "issue",
            "--project",
            "web-app",
            "--env",
            "dev",
            "--scope",
            "read",
        ];
        args.extend_from_slice(extra);
        let r = cli(d, &args, &[], None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        (r.stdout.trim().to_owned(), r)
    };
    let (k1, r1) = issue(&["--name", "ci"]);
    let (k2, r2) = issue(&["--credits", "1", "--rate-limit", "100/60"]);
    let (k3, r3) = issue(&["--expires-in", "1h"]);
    let keys = [k1.as_str(), k2.as_str(), k3.as_str()];
    let mut seen: Vec<(String, Run)> = Vec::new();
    // Issue's stderr (the logs) must not repeat the key it printed on stdout.
    for (name, r) in [("issue 1", r1), ("issue 2", r2), ("issue 3", r3)] {
        seen.push((
            name.to_owned(),
            Run {
                stdout: String::new(),
                ..r
            },
        ));
    }
    let verify = |key: &str, args: &[&str]| {
        let mut all = vec!["verify", "--env", "dev"];
        all.extend_from_slice(args);
        cli(d, &all, &[("KEYWARD_KEY", key)], None)
    };
    let wrong = with_wrong_secret(&k1, 42);
    let runs = vec![
        ("verify ok", verify(&k1, &[])),
        (
            "verify stdin",
            cli(
                d,
                &["verify", "--env", "dev"],
                &[],
                Some(&format!("{k1}\n")),
            ),
        ),
        ("verify scope", verify(&k1, &["--scope", "admin"])),
        ("verify project", verify(&k1, &["--project", "other"])),
        ("verify wrong secret", verify(&wrong, &[])),
        (
            "verify wrong env",
            cli(
                d,
                &["verify", "--env", "prd"],
                &[("KEYWARD_KEY", &k1)],
                None,
            ),
        ),
        ("verify whitespace", verify(&format!(" {k1}"), &[])),
        ("verify credits 1", verify(&k2, &[])),
        ("verify credits 2", verify(&k2, &[])),
        (
            "verify misplaced",
            cli(d, &["verify", "--env", "dev", &k1], &[], None),
        ),
        ("list", cli(d, &["list"], &[], None)),
        ("list json", cli(d, &["list", "--json"], &[], None)),
        (
            "usage",
            cli(d, &["usage", "--project", "web-app"], &[], None),
        ),
        (
            "doctor ok",
            cli(
                d,
                &["doctor", "--env", "dev"],
                &[("KEYWARD_KEY", &k1)],
                None,
            ),
        ),
        (
            "doctor quoted",
            cli(
                d,
                &["doctor"],
                &[("KEYWARD_KEY", &format!("\"{k1}\""))],
                None,
            ),
        ),
        (
            "doctor truncated",
            cli(d, &["doctor"], &[("KEYWARD_KEY", &k1[..50])], None),
        ),
        (
            "doctor wrong env",
            cli(
                d,
                &["doctor", "--env", "prd"],
                &[("KEYWARD_KEY", &k1)],
                None,
            ),
        ),
        ("doctor misplaced", cli(d, &["doctor", &k1], &[], None)),
        ("revoke by whole key", cli(d, &["revoke", &k3], &[], None)),
        ("verify revoked", verify(&k3, &[])),
        (
            "rotate revoked",
            cli(d, &["rotate", &id_of(&k3)], &[], None),
        ),
        (
            "revoke unknown",
            cli(d, &["revoke", "000000000000"], &[], None),
        ),
    ];
    let codes: Vec<(&str, i32)> = runs.iter().map(|(n, r)| (*n, r.code)).collect();
    for (name, code) in [
        ("verify ok", 0),
        ("verify stdin", 0),
        ("verify scope", 1),
        ("verify project", 1),
        ("verify wrong secret", 1),
        ("verify wrong env", 1),
        ("verify whitespace", 1),
        ("verify credits 1", 0),
        ("verify credits 2", 1),
        ("verify misplaced", 2),
        ("doctor ok", 0),
        ("doctor quoted", 1),
        ("doctor misplaced", 2),
        ("revoke by whole key", 0),
        ("verify revoked", 1),
        ("rotate revoked", 2),
        ("revoke unknown", 2),
    ] {
        assert!(codes.contains(&(name, code)), "{name}: {codes:?}");
    }
    seen.extend(runs.into_iter().map(|(n, r)| (n.to_owned(), r)));
    // Rotation prints the new key on stdout (its one showing); its logs must not.
    let r = cli(d, &["rotate", &id_of(&k1), "--grace", "1h"], &[], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let k4 = r.stdout.trim().to_owned();
    ApiKey::parse(&k4).unwrap();
    seen.push((
        "rotate".to_owned(),
        Run {
            stdout: String::new(),
            ..r
        },
    ));
    let all_keys = [keys[0], keys[1], keys[2], k4.as_str(), wrong.as_str()];
    let mut traced = false;
    for (name, r) in &seen {
        traced |= r.stderr.contains("TRACE") || r.stderr.contains("DEBUG");
        assert_keys_hidden(&format!("`keyward {name}` stderr"), &r.stderr, &all_keys);
        assert_keys_hidden(&format!("`keyward {name}` stdout"), &r.stdout, &all_keys);
    }
    assert!(traced, "RUST_LOG=trace reached the CLI's logs");
}
