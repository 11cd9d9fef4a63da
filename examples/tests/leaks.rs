//! Leak tests at TRACE for everything above core: the SQLite store through the manager, the
//! `keyward` CLI binary (`RUST_LOG=trace`), the example server in-process (every crate's
//! events, hyper's and reqwest's included, through a global subscriber and the `log` bridge)
//! and the real `keyward-server` binary (`RUST_LOG=trace`). No secret, no full key and no
//! `Authorization` header value (Bearer or Basic) may appear in a log, an error, an answer
//! body or a header that is not the one place a new key is shown.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

use base64::Engine as _;
use common::Run;
use keyward::conformance::{LogBuffer, assert_keys_hidden, with_wrong_secret};
use keyward::{ApiKey, AuthError, Error, HashParams, IssueRequest, KeyManager, Requirements};
use keyward_examples::server;
use keyward_sqlite::SqliteStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Capture (the oracle is keyward::conformance::assert_keys_hidden)

fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer::new();
        let sink = buf.clone();
        // Global (every thread), every target at TRACE but the test's own HTTP client
        // (reqwest logs the URLs it requests, keys in query strings included: that is the
        // client's log, not the server's). `try_init` also bridges the `log` crate.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace,reqwest=off"))
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .try_init()
            .expect("one subscriber per test binary");
        buf
    })
}

fn logged() -> String {
    logs().text()
}

fn id_of(key: &str) -> String {
    ApiKey::parse(key).unwrap().id().to_string()
}

// ---------------------------------------------------------------------------------------
// SQLite through the manager

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_at_trace_logs_no_secret_on_any_path() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("keys.db")).await.unwrap();
    let m = KeyManager::builder(store.clone())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let req = || {
        IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
            .scopes(["read"])
            .unwrap()
    };
    let a = m.issue(req()).await.unwrap();
    let b = m.issue(req()).await.unwrap();
    let (ka, kb) = (
        a.key.expose_secret().to_owned(),
        b.key.expose_secret().to_owned(),
    );
    let none = Requirements::none();
    m.verify(&ka, &none).await.unwrap();
    let mut errors: Vec<Error> = vec![
        m.verify(&with_wrong_secret(&ka, 42), &none)
            .await
            .unwrap_err(),
        m.verify(&with_wrong_secret(&kb, 42), &none)
            .await
            .unwrap_err(),
        m.verify(&ka, &Requirements::scopes(["admin"]).unwrap())
            .await
            .unwrap_err(),
    ];
    let rotated = m.rotate(&b.record.id, Duration::ZERO).await.unwrap();
    let kr = rotated.key.expose_secret().to_owned();
    errors.push(m.verify(&kb, &none).await.unwrap_err());
    m.revoke(&a.record.id).await.unwrap();
    errors.push(m.verify(&ka, &none).await.unwrap_err());
    errors.push(
        m.rotate(&a.record.id, Duration::ZERO)
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    errors.push(
        m.verify(&kr, &Requirements::scopes(["write"]).unwrap())
            .await
            .unwrap_err(),
    );
    m.flush_usage().await.unwrap();
    m.shutdown().await.unwrap();

    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::Auth(AuthError::Invalid)))
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::Auth(AuthError::Revoked { .. })))
    );
    let keys = [ka.as_str(), kb.as_str(), kr.as_str()];
    for e in &errors {
        let r = keyward::http::rejection(e, "api", keyward::Timestamp::now());
        let mut shown = format!("{e} | {e:?} | {} | {:?}", r.body, r.headers);
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            shown.push_str(&format!(" | {s} | {s:?}"));
            source = s.source();
        }
        assert_keys_hidden("a SQLite-backed error", &shown, &keys);
    }
    let text = logged();
    assert!(
        text.contains("keyward_sqlite") && text.contains(a.record.id.as_str()),
        "the store's spans are captured"
    );
    assert_keys_hidden("the TRACE log", &text, &keys);
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

// ---------------------------------------------------------------------------------------
// The example server, in-process

async fn send(rb: reqwest::RequestBuilder) -> (StatusCode, String, String) {
    let r = rb.send().await.unwrap();
    let status = r.status();
    let headers = format!("{:?}", r.headers());
    (status, headers, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_and_every_crate_under_it_at_trace_log_no_key() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("keys.db")).await.unwrap();
    let m = KeyManager::builder(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let admin = m
        .issue(
            IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                .scopes(["read", "write", "admin"])
                .unwrap(),
        )
        .await
        .unwrap()
        .key
        .expose_secret()
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, m.clone(), async {
        let _ = rx.await;
    }));
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{base}{p}");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    let mut answers = Vec::new();
    let (status, h, body) = send(
        c.post(url(server::API_KEYS))
            .bearer_auth(&admin)
            .json(&json!({"name": "ci", "scopes": ["read", "write"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let new: Value = serde_json::from_str(&body).unwrap();
    let k = new["key"].as_str().unwrap().to_owned();
    assert!(h.contains("no-store"), "{h}");
    answers.push((status, h, String::new()));
    let wrong = with_wrong_secret(&k, 42);
    let ping = url(server::PING);
    for rb in [
        c.get(&ping).bearer_auth(&k),
        c.get(&ping).header("authorization", format!("bearer {k}")),
        c.get(&ping).header("x-api-key", &k),
        c.get(&ping)
            .header("authorization", format!("Basic {}", b64(&format!("{k}:")))),
        c.get(&ping).bearer_auth(&wrong),
        c.get(&ping).header("authorization", format!("Token {k}")),
        c.get(&ping).bearer_auth(&k).header("x-api-key", &k),
        c.get(format!("{ping}?api_key={k}")).bearer_auth(&k),
        c.get(format!("{ping}?q={k}")),
        c.get(&ping).bearer_auth(format!("{k} ")),
        c.get(&ping).bearer_auth(&k[..40]),
        c.post(url(server::TRACES_BATCH))
            .bearer_auth(&k)
            .json(&json!({"events": [{"msg": "hello"}]})),
        c.post(url(server::TRACES_BATCH))
            .bearer_auth(&k)
            .json(&json!({"events": [], "key": k})),
        c.get(url(server::API_KEYS)).bearer_auth(&admin),
        c.get(url(server::API_KEYS)).bearer_auth(&k),
        c.delete(url(&format!("/api/v1/me/api-keys/{k}/")))
            .bearer_auth(&admin),
    ] {
        answers.push(send(rb).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0.as_u16()).collect();
    for s in [201, 200, 401, 400, 403] {
        assert!(statuses.contains(&s), "{s} not reached: {statuses:?}");
    }
    // Rotation shows the new key once in its body; revocation answers with the public view.
    let (status, h, body) = send(
        c.post(url(&format!("/api/v1/me/api-keys/{}/rotate/", id_of(&k))))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let k2 = serde_json::from_str::<Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    answers.push((status, h, String::new()));
    answers.push(
        send(
            c.delete(url(&format!("/api/v1/me/api-keys/{}/", id_of(&k2))))
                .bearer_auth(&admin),
        )
        .await,
    );
    answers.push(send(c.get(&ping).bearer_auth(&k2)).await);
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let keys = [admin.as_str(), k.as_str(), k2.as_str(), wrong.as_str()];
    for (status, headers, body) in &answers {
        assert_keys_hidden(
            &format!("a {status} answer"),
            &format!("{headers} {body}"),
            &keys,
        );
    }
    let text = logged();
    assert!(
        text.contains("hyper") || text.contains("reqwest"),
        "the HTTP stack's own TRACE events are captured"
    );
    assert!(
        text.contains(&id_of(&k)),
        "the server's events are captured"
    );
    assert_keys_hidden("the TRACE log of the server and its stack", &text, &keys);
}

// ---------------------------------------------------------------------------------------
// The real server binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_binary_at_rust_log_trace_logs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = cli(
        d,
        &[
            "issue",
            "--project",
            "web-app",
            "--env",
            "dev",
            "--scope",
            "read",
            "--scope",
            "admin",
        ],
        &[],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let admin = r.stdout.trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward-server"))
        .current_dir(d)
        .args(["--db", "sqlite:keys.db", "--addr", &addr])
        .env("KEYWARD_INSECURE_FAST_HASH", "1")
        .env("RUST_LOG", "trace")
        .env_remove("KEYWARD_DB")
        .env_remove("KEYWARD_PREFIX")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let c = reqwest::Client::new();
    let base = format!("http://{addr}");
    let start = Instant::now();
    while c.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "no server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wrong = with_wrong_secret(&admin, 42);
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{admin}:"));
    let ping = format!("{base}{}", server::PING);
    let mut bodies = String::new();
    for rb in [
        c.get(&ping).bearer_auth(&admin),
        c.get(&ping).header("authorization", format!("Basic {b64}")),
        c.get(&ping).header("x-api-key", &admin),
        c.get(&ping).bearer_auth(&wrong),
        c.get(format!("{ping}?key={admin}")),
        c.get(format!("{base}{}", server::API_KEYS))
            .bearer_auth(&admin),
    ] {
        let (_, h, b) = send(rb).await;
        bodies.push_str(&h);
        bodies.push_str(&b);
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(15) {
            child.kill().unwrap();
            panic!("no stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("TRACE"), "RUST_LOG=trace took effect");
    assert!(stderr.contains(&id_of(&admin)), "the verifies were logged");
    let keys = [admin.as_str(), wrong.as_str()];
    assert_keys_hidden("keyward-server's TRACE log", &stderr, &keys);
    assert_keys_hidden("keyward-server's answers", &bodies, &keys);
}
