//! Leak tests at TRACE for everything above core: the SQLite store through the manager, the
//! example server in-process (every crate's events, hyper's and reqwest's included, through a
//! global subscriber and the `log` bridge) and the real `keyward-server` binary
//! (`RUST_LOG=trace`). The `keyward` CLI's are in `keyward-cli` (cli/tests/leaks.rs). No secret, no full key and no
//! `Authorization` header value (Bearer or Basic) may appear in a log, an error, an answer
//! body or a header that is not the one place a new key is shown.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
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
    let admin = {
        let store = SqliteStore::open(d.join("keys.db")).await.unwrap();
        let manager = KeyManager::builder(store)
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .build()
            .unwrap();
        let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
            .scopes(["read", "admin"])
            .unwrap();
        let key = manager
            .issue(req)
            .await
            .unwrap()
            .key
            .expose_secret()
            .to_owned();
        manager.shutdown().await.unwrap();
        key
    };
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
