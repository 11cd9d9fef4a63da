//! End-to-end tests of the `keyward` admin CLI, run as a process on a temporary SQLite file.
//! Hashing uses the insecure test parameters (`KEYWARD_INSECURE_FAST_HASH=1`) to stay fast.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

mod common;

use common::Run;
use keyward::ApiKey;
use keyward::conformance::{KeyForms, fix_checksum};

/// A temporary working directory holding the store `keys.db`.
struct Cli {
    dir: tempfile::TempDir,
    /// Every stderr and every `list` output seen, to check that no secret ever appears.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Cli {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            seen: Default::default(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Runs `keyward --db sqlite:keys.db <args>` with extra variables and optional stdin.
    fn run_with(&self, args: &[&str], vars: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut all = vec!["--db", "sqlite:keys.db"];
        all.extend_from_slice(args);
        let run = common::run(self.dir.path(), &all, vars, stdin);
        self.seen.borrow_mut().push(run.stderr.clone());
        run
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], None)
    }

    /// `issue`: checks that stdout is exactly one key line and returns the key.
    fn issue(&self, args: &[&str]) -> String {
        let mut all = vec!["issue"];
        all.extend_from_slice(args);
        let run = self.run(&all);
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
        let key = run.stdout.strip_suffix('\n').unwrap().to_owned();
        assert!(ApiKey::parse(&key).is_ok(), "stdout is not a key: {run:?}");
        assert!(run.stderr.contains("shown once"), "{run:?}");
        key
    }

    /// `verify` with the key in `$KEYWARD_KEY`.
    fn verify(&self, key: &str, args: &[&str]) -> Run {
        let mut all = vec!["verify"];
        all.extend_from_slice(args);
        self.run_with(&all, &[("KEYWARD_KEY", key)], None)
    }

    fn list(&self, args: &[&str]) -> Run {
        let mut all = vec!["list"];
        all.extend_from_slice(args);
        let run = self.run(&all);
        assert_eq!(run.code, 0, "{run:?}");
        self.seen.borrow_mut().push(run.stdout.clone());
        run
    }

    /// Asserts that no stderr and no list output seen so far holds any form of `key`.
    fn assert_never_leaked(&self, key: &str) {
        let forms = KeyForms::of(key);
        for text in self.seen.borrow().iter() {
            forms.assert_hidden_in("a stderr or list output", text);
        }
    }
}

fn id_of(key: &str) -> String {
    ApiKey::parse(key).unwrap().id().to_string()
}

fn new_key(prefix: &str, env: &str) -> String {
    ApiKey::generate(prefix.parse().unwrap(), env.parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[test]
fn issue_verify_list_rotate_revoke_end_to_end() {
    let cli = Cli::new();

    // issue: the key alone on stdout; id and masked form on stderr.
    let key = cli.issue(&[
        "--project",
        "web-app",
        "--env",
        "dev",
        "--scope",
        "write",
        "--scope",
        "read",
        "--name",
        "ingestion",
        "--expires-in",
        "30d",
    ]);
    assert!(key.starts_with("kw_dev_"), "{key}");
    let id = id_of(&key);
    let issue_stderr = cli.seen.borrow().last().unwrap().clone();
    assert!(issue_stderr.contains(&id), "{issue_stderr}");
    assert!(
        issue_stderr.contains(&format!("kw_dev_{id}_…")),
        "{issue_stderr}"
    );
    assert!(cli.path().join("keys.db").exists());

    // verify: exit 0 with id, project, environment and scopes; with debug logs on, no secret.
    let ok = cli.run_with(
        &[
            "verify",
            "--env",
            "dev",
            "--project",
            "web-app",
            "--scope",
            "write",
        ],
        &[("KEYWARD_KEY", &key), ("RUST_LOG", "trace")],
        None,
    );
    assert_eq!(ok.code, 0, "{ok:?}");
    for expected in [id.as_str(), "web-app", "dev", "read write"] {
        assert!(ok.stdout.contains(expected), "{expected}: {ok:?}");
    }

    // verify rejections: exit 1 with the reason.
    let scope = cli.verify(&key, &["--env", "dev", "--scope", "admin"]);
    assert_eq!(scope.code, 1, "{scope:?}");
    assert!(
        scope.stderr.contains("lacks the scope(s) admin"),
        "{scope:?}"
    );
    assert!(scope.stderr.contains("403"), "{scope:?}");
    let env = cli.verify(&key, &["--env", "prd"]);
    assert_eq!(env.code, 1, "{env:?}");
    assert!(env.stderr.contains("'dev' API key"), "{env:?}");
    let project = cli.verify(&key, &["--env", "dev", "--project", "billing"]);
    assert_eq!(project.code, 1, "{project:?}");
    assert!(
        project.stderr.contains("requires project 'billing'"),
        "{project:?}"
    );

    // list: table and JSON, masked, with the last use recorded by verify.
    let table = cli.list(&[]);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{table:?}");
    for column in [
        "ID",
        "KEY",
        "PROJECT",
        "ENV",
        "SCOPES",
        "STATUS",
        "CREATED",
        "EXPIRES",
        "LAST USED",
    ] {
        assert!(lines[0].contains(column), "{column}: {table:?}");
    }
    for cell in [
        id.as_str(),
        "kw_dev_",
        "web-app",
        "dev",
        "read write",
        "active",
    ] {
        assert!(lines[1].contains(cell), "{cell}: {table:?}");
    }
    assert!(!lines[1].ends_with('-'), "last used is recorded: {table:?}");

    let json = cli.list(&["--json", "--project", "web-app", "--env", "dev"]);
    let keys: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 1, "{json:?}");
    assert_eq!(keys[0]["id"], id.as_str());
    assert_eq!(keys[0]["masked"], format!("kw_dev_{id}_…").as_str());
    assert_eq!(keys[0]["project"], "web-app");
    assert_eq!(keys[0]["environment"], "dev");
    assert_eq!(keys[0]["status"], "active");
    assert_eq!(keys[0]["name"], "ingestion");
    let expires = keys[0]["expires_at"].as_str().expect("RFC 3339 text");
    assert!(
        keyward::Timestamp::parse_rfc3339(expires).is_ok(),
        "{json:?}"
    );
    assert!(keys[0].get("secret_hash").is_none(), "{json:?}");
    let other = cli.list(&["--json", "--project", "billing"]);
    assert_eq!(other.stdout.trim(), "[]");

    // rotate: the new key alone on stdout; the old key works during the grace period.
    let rotated = cli.run(&["rotate", &id, "--grace", "1h"]);
    assert_eq!(rotated.code, 0, "{rotated:?}");
    assert_eq!(rotated.stdout.lines().count(), 1, "{rotated:?}");
    let new_key = rotated.stdout.trim_end().to_owned();
    let new_id = id_of(&new_key);
    assert_ne!(new_id, id);
    assert!(rotated.stderr.contains(&new_id), "{rotated:?}");
    assert!(rotated.stderr.contains("grace end"), "{rotated:?}");
    assert!(rotated.stderr.contains("the new key "), "{rotated:?}");
    // rotating it again is refused unless forced.
    let again = cli.run(&["rotate", &id, "--grace", "1h"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("already rotated"), "{again:?}");
    assert!(again.stderr.contains("--force"), "{again:?}");
    assert!(again.stdout.is_empty(), "{again:?}");
    for k in [&key, &new_key] {
        let run = cli.verify(k, &["--env", "dev", "--scope", "write"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let table = cli.list(&[]);
    assert_eq!(table.stdout.lines().count(), 3, "{table:?}");

    // revoke: the key is rejected with exit 1 and the reason; the other key is untouched.
    let revoked = cli.run(&["revoke", &new_id]);
    assert_eq!(revoked.code, 0, "{revoked:?}");
    assert!(revoked.stdout.contains(&new_id), "{revoked:?}");
    let run = cli.verify(&new_key, &["--env", "dev"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("was revoked"), "{run:?}");
    assert!(run.stderr.contains("401"), "{run:?}");
    assert_eq!(cli.verify(&key, &["--env", "dev"]).code, 0);
    assert_eq!(cli.run(&["revoke", &id]).code, 0);
    assert_eq!(cli.verify(&key, &["--env", "dev"]).code, 1);

    // rotating a revoked key is refused as a usage error.
    let again = cli.run(&["rotate", &id]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("revoked"), "{again:?}");
    // forced, it is replaced all the same, and the new key's expiry is printed.
    let forced = cli.run(&["rotate", &id, "--force"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(
        forced.stderr.contains("the new key expires at"),
        "{forced:?}"
    );
    let forced_id = id_of(forced.stdout.trim_end());
    assert_eq!(cli.run(&["revoke", &forced_id]).code, 0);

    let json = cli.list(&["--json"]);
    let keys: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .all(|k| k["status"] == "revoked"),
        "{json:?}"
    );

    // A wrong secret for a known id: exit 1, "not valid".
    let mut forged = ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned();
    forged.replace_range(7..19, &id);
    let forged = fix_checksum(&forged);
    let run = cli.verify(&forged, &["--env", "dev"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not valid"), "{run:?}");

    cli.assert_never_leaked(&key);
    cli.assert_never_leaked(&new_key);
    cli.assert_never_leaked(&forged);
}

#[test]
fn verify_reads_the_key_from_stdin() {
    let cli = Cli::new();
    let key = cli.issue(&["--project", "web-app", "--env", "dev", "--scope", "write"]);

    let ok = cli.run_with(&["verify", "--env", "dev"], &[], Some(&format!("{key}\n")));
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains(&id_of(&key)), "{ok:?}");

    let crlf = cli.run_with(
        &["verify", "--env", "dev"],
        &[],
        Some(&format!("{key}\r\n")),
    );
    assert_eq!(crlf.code, 0, "{crlf:?}");

    // Trailing spaces are reported, not silently trimmed.
    let spaced = cli.run_with(
        &["verify", "--env", "dev"],
        &[],
        Some(&format!("{key}  \n")),
    );
    assert_eq!(spaced.code, 1, "{spaced:?}");
    assert!(spaced.stderr.contains("whitespace"), "{spaced:?}");

    let empty = cli.run_with(&["verify", "--env", "dev"], &[], Some(""));
    assert_eq!(empty.code, 1, "{empty:?}");
    assert!(empty.stderr.contains("empty"), "{empty:?}");

    let truncated = cli.run_with(
        &["verify", "--env", "dev"],
        &[],
        Some(&format!("{}\n", &key[..key.len() - 5])),
    );
    assert_eq!(truncated.code, 1, "{truncated:?}");
    assert!(truncated.stderr.contains("truncated"), "{truncated:?}");

    cli.assert_never_leaked(&key);
}

#[test]
fn prefix_option_sets_the_prefix_issued_and_accepted() {
    let cli = Cli::new();
    let key = cli.issue(&[
        "--prefix",
        "av",
        "--project",
        "p1",
        "--env",
        "prd",
        "--scope",
        "read",
    ]);
    assert!(key.starts_with("av_prd_"), "{key}");
    assert_eq!(
        cli.verify(&key, &["--prefix", "av", "--env", "prd"]).code,
        0
    );
    let run = cli.run_with(
        &["verify", "--env", "prd"],
        &[("KEYWARD_KEY", &key), ("KEYWARD_PREFIX", "tl")],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("another product"), "{run:?}");
    cli.assert_never_leaked(&key);
}

#[test]
fn default_store_is_keyward_db_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::run(
        dir.path(),
        &["issue", "--project", "p", "--env", "dev", "--scope", "read"],
        &[],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(dir.path().join("keyward.db").exists());
}

#[test]
fn usage_errors_exit_2() {
    let cli = Cli::new();
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["issue", "--project", "p", "--env", "dev"],
        &[
            "issue",
            "--project",
            "Web App",
            "--env",
            "dev",
            "--scope",
            "read",
        ],
        &["issue", "--project", "p", "--env", "DEV", "--scope", "read"],
        &["issue", "--project", "p", "--env", "dev", "--scope", "Read"],
        &[
            "issue",
            "--project",
            "p",
            "--env",
            "dev",
            "--scope",
            "read",
            "--expires-in",
            "30",
        ],
        &["verify"],
        &["rotate", "7Kq2mZ9xA1bC", "--grace", "soon"],
        &["revoke", "not-an-id"],
        &["revoke", "7Kq2mZ9xA1bC"],
        &["rotate", "7Kq2mZ9xA1bC"],
        &["--prefix", "A", "list"],
    ];
    for args in cases {
        let run = cli.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}: {run:?}");
    }
    let unknown = cli.run(&["revoke", "7Kq2mZ9xA1bC"]);
    assert!(
        unknown.stderr.contains("no key with id 7Kq2mZ9xA1bC"),
        "{unknown:?}"
    );
}

#[test]
fn input_beyond_the_limits_exits_2_naming_the_limit() {
    let cli = Cli::new();
    let issue = |extra: &[&str]| {
        let mut args = vec!["issue", "--project", "p", "--env", "dev", "--scope", "read"];
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    let scopes = (0..=keyward::MAX_SCOPES)
        .map(|i| format!("s{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let cases: [(Run, &str); 5] = [
        // Issue 13, D7: used to issue a key whose expiry printed as 1970-01-01.
        (
            issue(&["--expires-in", "999999999w"]),
            "keyward::MAX_EXPIRY",
        ),
        // A key born expired.
        (issue(&["--expires-in", "0s"]), "zero"),
        // D11.
        (issue(&["--scope", &scopes]), "keyward::MAX_SCOPES"),
        (issue(&["--name", "invoice\u{202E}fdp.exe"]), "U+202E"),
        (issue(&["--name", "zero\u{200B}width"]), "U+200B"),
    ];
    for (run, hint) in &cases {
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(run.stderr.contains(hint), "{hint}: {run:?}");
    }
    let key = cli.issue(&["--project", "p", "--env", "dev", "--scope", "read"]);
    let run = cli.run(&["rotate", &id_of(&key), "--grace", "18446744073709551615s"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.contains("keyward::MAX_GRACE"), "{run:?}");
    let listed = cli.list(&["--json"]);
    let keys: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(
        keys.as_array().unwrap().len(),
        1,
        "only the one good key: {keys}"
    );
    assert_eq!(keys[0]["expires_at"], serde_json::Value::Null);
}

#[test]
fn expires_in_must_be_positive_and_is_refused_before_the_store_is_opened() {
    let cli = Cli::new();
    let issue = ["issue", "--project", "p", "--env", "dev", "--scope", "read"];
    let cases: &[&[&str]] = &[
        &["--expires-in", "0s"],
        &["--expires-in", "0"],
        &["--expires-in", "000h"],
        &["--expires-in", ""],
        &["--expires-in", "-1h"],
        &["--expires-in=-30d"],
    ];
    for extra in cases {
        let run = cli.run(&[&issue[..], extra].concat());
        assert_eq!(run.code, 2, "{extra:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{extra:?}: {run:?}");
        assert!(
            run.stderr.contains("--expires-in must be positive"),
            "{extra:?}: {run:?}"
        );
        assert!(
            !cli.path().join("keys.db").exists(),
            "{extra:?}: the store was opened"
        );
    }
}

#[test]
fn issue_keeps_metadata_given_as_a_json_object() {
    let cli = Cli::new();
    let key = cli.issue(&[
        "--project",
        "p",
        "--env",
        "dev",
        "--scope",
        "read",
        "--metadata",
        r#"{"team":"obs","tier":2}"#,
    ]);
    let listed = cli.list(&["--json"]);
    let keys: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(keys[0]["id"], id_of(&key).as_str(), "{keys}");
    assert_eq!(
        keys[0]["metadata"],
        serde_json::json!({"team": "obs", "tier": 2}),
        "{keys}"
    );
}

#[test]
fn metadata_that_is_not_a_json_object_or_too_large_exits_2_naming_the_flag() {
    let cli = Cli::new();
    let issue = ["issue", "--project", "p", "--env", "dev", "--scope", "read"];
    let big = format!(r#"{{"notes":"{}"}}"#, "x".repeat(17 * 1024));
    let cases: [(&str, &str); 6] = [
        ("{team: obs}", "--metadata must be a JSON object"),
        ("", "--metadata must be a JSON object"),
        ("[1,2]", "not an array"),
        (r#""obs""#, "not a string"),
        ("null", "not null"),
        (
            &big,
            "--metadata: invalid metadata (a JSON value of at most 16 KiB)",
        ),
    ];
    for (value, says) in cases {
        let run = cli.run(&[&issue[..], &["--metadata", value]].concat());
        assert_eq!(run.code, 2, "{says}: {run:?}");
        assert!(run.stdout.is_empty(), "{says}: {run:?}");
        assert!(run.stderr.contains(says), "{says}: {:?}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
    // Nothing was issued.
    let listed = cli.list(&["--json"]);
    assert_eq!(listed.stdout.trim(), "[]", "{listed:?}");
}

#[test]
fn store_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = common::run(
        dir.path(),
        // Loopback port 1: nothing listens, so the store cannot be reached.
        &["--db", "postgres://admin:hunter2@127.0.0.1:1/keys", "list"],
        &[],
        None,
    );
    assert_eq!(postgres.code, 2, "{postgres:?}");
    assert!(
        postgres.stderr.contains("the postgres store failed"),
        "{postgres:?}"
    );
    assert!(!postgres.stderr.contains("hunter2"), "{postgres:?}");

    let unknown = common::run(dir.path(), &["--db", "mysql://h/db", "list"], &[], None);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown.stderr.contains("unknown store URL scheme"),
        "{unknown:?}"
    );

    let unopenable = common::run(
        dir.path(),
        &["--db", "sqlite:no/such/directory/keys.db", "list"],
        &[],
        None,
    );
    assert_eq!(unopenable.code, 2, "{unopenable:?}");
    assert!(unopenable.stderr.contains("error"), "{unopenable:?}");
}

#[test]
fn a_key_given_as_an_argument_is_refused_without_being_echoed() {
    let cli = Cli::new();
    let key = new_key("kw", "dev");
    for args in [&["verify", "--env", "dev", &key][..], &["doctor", &key][..]] {
        let run = cli.run(args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            run.stderr.contains("do not pass a key on the command line"),
            "{run:?}"
        );
    }
    cli.assert_never_leaked(&key);
}

#[test]
fn revoke_accepts_a_whole_key_but_warns_and_never_echoes_it() {
    let cli = Cli::new();
    let key = cli.issue(&["--project", "p", "--env", "dev", "--scope", "read"]);
    let run = cli.run(&["revoke", &key]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("not an id"), "{run:?}");
    assert!(run.stdout.contains(&id_of(&key)), "{run:?}");
    KeyForms::of(&key).assert_hidden_in("revoke's stdout", &run.stdout);
    assert_eq!(cli.verify(&key, &["--env", "dev"]).code, 1);
    cli.assert_never_leaked(&key);
}

/// Runs `keyward doctor <args>` with `$KEYWARD_KEY` set to `value` (unset for `None`).
fn doctor(value: Option<&str>, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let vars: Vec<(&str, &str)> = value.map(|v| ("KEYWARD_KEY", v)).into_iter().collect();
    let run = common::run(dir.path(), &all, &vars, None);
    if let Some(v) = value.filter(|v| v.len() > 20) {
        let secret = v
            .trim()
            .trim_matches(['"', '\''])
            .rsplit('_')
            .next()
            .unwrap();
        assert!(!run.stdout.contains(secret), "{run:?}");
        assert!(!run.stderr.contains(secret), "{run:?}");
    }
    run
}

#[test]
fn doctor_reports_an_unset_variable() {
    let run = doctor(None, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("$KEYWARD_KEY: the variable is not set"),
        "{run:?}"
    );
}

#[test]
fn doctor_reports_an_empty_variable() {
    let run = doctor(Some(""), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("empty"), "{run:?}");
}

#[test]
fn doctor_reports_a_quoted_key() {
    let key = new_key("kw", "dev");
    let run = doctor(Some(&format!("\"{key}\"")), &["--env", "dev"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("quotes"), "{run:?}");
    assert!(
        run.stdout.contains(&format!("kw_dev_{}_…", id_of(&key))),
        "{run:?}"
    );
}

#[test]
fn doctor_reports_whitespace_around_the_key() {
    let key = new_key("kw", "dev");
    let run = doctor(Some(&format!("{key}\n")), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("whitespace"), "{run:?}");
    assert!(run.stdout.contains("70 characters"), "{run:?}");
}

#[test]
fn doctor_reports_a_pasted_bearer_prefix_not_a_whitespace() {
    let key = new_key("kw", "dev");
    for value in [
        format!("Bearer {key}"),
        format!("bearer {key}"),
        format!("Authorization: Bearer {key}"),
    ] {
        let run = doctor(Some(&value), &["--env", "dev"]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stdout
                .contains("remove the 'Bearer ' prefix: the variable must hold the key alone"),
            "{run:?}"
        );
        assert!(!run.stdout.contains("whitespace"), "{run:?}");
        assert!(run.stdout.contains(&id_of(&key)), "{run:?}");
    }
}

#[test]
fn doctor_reports_a_key_of_another_environment() {
    let key = new_key("kw", "dev");
    let run = doctor(Some(&key), &["--env", "prd"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("another environment"), "{run:?}");
    assert!(run.stdout.contains("'prd'"), "{run:?}");
}

#[test]
fn doctor_reports_a_key_of_another_product() {
    let run = doctor(Some("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("OpenAI"), "{run:?}");
    let other_prefix = new_key("tl", "dev");
    let run = doctor(Some(&other_prefix), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("another product"), "{run:?}");
}

#[test]
fn doctor_accepts_a_well_formed_key() {
    let key = new_key("av", "prd");
    let run = doctor(Some(&key), &["--prefix", "av", "--env", "prd"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("$KEYWARD_KEY: ok"), "{run:?}");

    // Another variable, via --var.
    let dir = tempfile::tempdir().unwrap();
    let run = common::run(
        dir.path(),
        &["doctor", "--var", "MY_API_KEY", "--prefix", "av"],
        &[("MY_API_KEY", &key)],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("$MY_API_KEY: ok"), "{run:?}");
    KeyForms::of(&key).assert_hidden_in("revoke's stdout", &run.stdout);
}

/// `doctor --db` with the key in `$KEYWARD_KEY`; stdout and stderr never hold the key.
fn doctor_db(cli: &Cli, key: &str, args: &[&str]) -> Run {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let run = cli.run_with(&all, &[("KEYWARD_KEY", key)], None);
    KeyForms::of(key).assert_hidden_in("doctor's stdout", &run.stdout);
    run
}

#[test]
fn doctor_with_a_store_says_whether_the_store_accepts_the_key() {
    let cli = Cli::new();
    let key = cli.issue(&["--project", "web-app", "--env", "dev", "--scope", "read"]);
    let id = id_of(&key);

    let ok = doctor_db(&cli, &key, &[]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout.contains(&format!(
            "the key store accepts kw_dev_{id}_…: project 'web-app'"
        )),
        "{ok:?}"
    );

    let other_project = doctor_db(&cli, &key, &["--project", "other-app"]);
    assert_eq!(other_project.code, 3, "{other_project:?}");
    assert!(
        other_project
            .stdout
            .contains("requires project 'other-app'"),
        "{other_project:?}"
    );

    let unknown = new_key("kw", "dev");
    let run = doctor_db(&cli, &unknown, &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.contains("the key store refuses"), "{run:?}");
    assert!(
        run.stdout.contains("unknown or its secret is wrong"),
        "{run:?}"
    );

    assert_eq!(cli.run(&["revoke", &id]).code, 0);
    let revoked = doctor_db(&cli, &key, &[]);
    assert_eq!(revoked.code, 3, "{revoked:?}");
    assert!(
        revoked
            .stdout
            .contains(&format!("API key {id} was revoked")),
        "{revoked:?}"
    );
    cli.assert_never_leaked(&key);
}

#[test]
fn doctor_without_a_store_says_the_store_was_not_asked() {
    let key = new_key("kw", "dev");
    let run = doctor(Some(&key), &["--env", "dev"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("key store was not asked"), "{run:?}");
}

#[test]
fn list_streams_every_page_of_a_large_project() {
    let cli = Cli::new();
    // 1,234 records (more than two of the CLI's 500-key pages), loaded straight into the file.
    let db = cli.path().join("keys.db");
    let project: keyward::Project = "big-app".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        use keyward::RecordStore;
        let store = keyward_sqlite::SqliteStore::open(&db).await.unwrap();
        let records: Vec<_> = (0..1234)
            .map(|i| {
                keyward::conformance::sample_record(
                    &project,
                    "dev".parse().unwrap(),
                    keyward::Timestamp::from_unix_millis(1_800_000_000_000 + i),
                )
            })
            .collect();
        store.insert_many(&records, &[]).await.unwrap();
    });
    let json = cli.list(&["--project", "big-app", "--json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(listed.len(), 1234);
    let mut ids: Vec<&str> = listed.iter().map(|k| k["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 1234, "a key was listed twice");
    let table = cli.list(&["--project", "big-app"]);
    assert_eq!(table.stdout.lines().count(), 1 + 1234);
    assert!(table.stdout.starts_with("ID"));
    let empty = cli.list(&["--project", "nobody", "--json"]);
    assert_eq!(empty.stdout, "[]\n");
    // usage pages through the project the same way: every key has credits and a quota.
    let usage = cli.run(&["usage", "--project", "big-app", "--json"]);
    assert_eq!(usage.code, 0, "{usage:?}");
    let report: serde_json::Value = serde_json::from_str(&usage.stdout).unwrap();
    assert_eq!(report["project"], "big-app");
    assert!(report["project_quota"].is_null());
    assert_eq!(report["keys"].as_array().unwrap().len(), 1234);
    let text = cli.run(&["usage", "--project", "big-app"]);
    let first: Vec<&str> = text.stdout.lines().take(3).collect();
    assert_eq!(text.stdout.lines().count(), 1 + 2 * 1234, "{first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_service_accepts_a_cli_key_and_sees_a_cli_revocation() {
    let cli = Cli::new();
    let key = cli.issue(&["--project", "web-app", "--env", "dev", "--scope", "read"]);
    // A service in another process (this one) on the same SQLite file, with its own cache.
    let db = format!("sqlite:{}", cli.path().join("keys.db").display());
    let service = keyward::KeyManager::builder_arc(keyward_cli::open_store(&db).await.unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(keyward::HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let req = keyward::Requirements::scopes(["read"]).unwrap();
    service.verify(&key, &req).await.unwrap();
    // Revoked by the CLI: the service's cache hears of it through the store's change feed.
    let run = cli.run(&["revoke", &id_of(&key)]);
    assert_eq!(run.code, 0, "{run:?}");
    let start = std::time::Instant::now();
    loop {
        match service.verify(&key, &req).await {
            Ok(_) => assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "still accepted 5 s after the CLI revoked it"
            ),
            Err(e) => {
                assert!(
                    matches!(e.as_auth(), Some(keyward::AuthError::Revoked { .. })),
                    "{e:?}"
                );
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    service.shutdown().await.unwrap();
}

#[test]
fn verify_takes_the_rate_limit_mode_and_refuses_an_unknown_one() {
    let cli = Cli::new();
    let key = cli.issue(&[
        "--project",
        "web",
        "--env",
        "dev",
        "--scope",
        "read",
        "--rate-limit",
        "2/60",
    ]);
    // Per process: each run has a fresh limiter. Cluster: the limiter in the file is shared
    // by every run, two permits a minute.
    for mode in [
        "per-process",
        "per-process",
        "per-process",
        "cluster",
        "cluster",
    ] {
        let run = cli.verify(&key, &["--env", "dev", "--rate-limits", mode]);
        assert_eq!(run.code, 0, "{mode}: {run:?}");
    }
    let run = cli.verify(&key, &["--env", "dev", "--rate-limits", "cluster"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("rate"), "{run:?}");
    let run = cli.verify(&key, &["--env", "dev", "--rate-limits", "everywhere"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("per-process"), "{run:?}");
    cli.assert_never_leaked(&key);
}
