//! Key events in the example server: each is POSTed as JSON to `--webhook-url`, retried when
//! the receiver fails, and a receiver that never answers slows no request. The receivers are
//! local HTTP servers on loopback.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use keyward::conformance::KeyForms;
use keyward::{HashParams, IssueRequest, KeyManager, Period, Quota};
use keyward_cli::open_store;
use keyward_examples::server::{self, webhook};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What a receiver got: the kind header and the JSON body.
type Received = (String, Value);

/// A webhook receiver on loopback that answers 503 to its first `fail_first` requests.
struct Receiver {
    url: reqwest::Url,
    rx: mpsc::UnboundedReceiver<Received>,
    requests: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ReceiverState {
    tx: mpsc::UnboundedSender<Received>,
    requests: Arc<AtomicUsize>,
    fail_first: usize,
}

async fn receive(State(s): State<ReceiverState>, headers: HeaderMap, body: String) -> StatusCode {
    if s.requests.fetch_add(1, Ordering::SeqCst) < s.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let kind = headers
        .get(webhook::EVENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let _ = s.tx.send((kind, serde_json::from_str(&body).unwrap()));
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let requests = Arc::new(AtomicUsize::new(0));
        let state = ReceiverState {
            tx,
            requests: Arc::clone(&requests),
            fail_first,
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: url.parse().unwrap(),
            rx,
            requests,
        }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("no webhook POST within 10 s")
            .unwrap()
    }
}

async fn manager_with_webhook(db: &str, url: reqwest::Url) -> KeyManager {
    let builder = KeyManager::builder_arc(open_store(db).await.unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY);
    let sink = webhook::WebhookSink::new(url)
        .unwrap()
        .retries(3, Duration::from_millis(50));
    builder
        .event_sink(webhook::LogEvents)
        .event_sink(sink)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_posted_as_json_and_retried_when_the_receiver_fails() {
    let mut hook = Receiver::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("keys.db").display());
    let manager = manager_with_webhook(&db, hook.url.clone()).await;
    let project = "web-app".parse().unwrap();
    manager
        .set_project_quota(
            &project,
            Some(Quota {
                limit: 10,
                period: Period::Day,
            }),
        )
        .await
        .unwrap();
    let issued = manager
        .issue(
            IssueRequest::new(project, "dev".parse().unwrap())
                .scopes(["write"])
                .unwrap(),
        )
        .await
        .unwrap();
    let key = issued.key.expose_secret().to_owned();

    // Served over HTTP: a batch reaching 80 % of the project's quota.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server::serve(
        listener,
        manager.clone(),
        std::future::pending(),
    ));
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{base}{}", server::TRACES_BATCH))
        .bearer_auth(&key)
        .json(&json!({"events": (0..8).map(|i| json!({"n": i})).collect::<Vec<_>>()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2));

    // key.issued was refused once (503) and delivered on the retry; then the threshold.
    let (kind, issued_json) = hook.next().await;
    assert_eq!(kind, "key.issued");
    assert_eq!(issued_json["type"], "key.issued");
    assert_eq!(issued_json["key_id"], issued.record.id.to_string());
    assert_eq!(issued_json["project"], "web-app");
    assert_eq!(issued_json["environment"], "dev");
    let (kind, threshold) = hook.next().await;
    assert_eq!(kind, "quota.threshold");
    assert_eq!(threshold["scope"], "project");
    assert_eq!(threshold["percent"], 80);
    assert_eq!(threshold["used"], 8);
    assert_eq!(threshold["limit"], 10);
    assert_eq!(
        hook.requests.load(Ordering::SeqCst),
        3,
        "one refused, two delivered"
    );
    for body in [&issued_json, &threshold] {
        KeyForms::of(&key).assert_hidden_in("the webhook body", &body.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_answers_slows_no_request() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("keys.db").display());
    let manager = manager_with_webhook(&db, url.parse().unwrap()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server::serve(
        listener,
        manager.clone(),
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let issued = manager
            .issue(
                IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                    .scopes(["write"])
                    .unwrap(),
            )
            .await
            .unwrap();
        let started = Instant::now();
        let r = client
            .post(format!("{base}{}", server::TRACES_BATCH))
            .bearer_auth(issued.key.expose_secret())
            .json(&json!({"events": [{"n": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

/// Kills the child when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_posts_a_quota_threshold_to_its_webhook_url() {
    let mut hook = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("keys.db").display());
    // Another process sets things up, as the admin CLI would: its changes are no events of
    // the server's, but the quota threshold the server reaches is.
    let admin = KeyManager::builder_arc(open_store(&db).await.unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let project = "web-app".parse().unwrap();
    admin
        .set_project_quota(
            &project,
            Some(Quota {
                limit: 4,
                period: Period::Day,
            }),
        )
        .await
        .unwrap();
    let key = admin
        .issue(
            IssueRequest::new(project, "dev".parse().unwrap())
                .scopes(["write"])
                .unwrap(),
        )
        .await
        .unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let _server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_keyward-server"))
            .current_dir(dir.path())
            .args(["--db", &db, "--addr", &addr.to_string(), "--env", "dev"])
            .args(["--webhook-url", hook.url.as_str()])
            .env("KEYWARD_INSECURE_FAST_HASH", "1")
            .env_remove("KEYWARD_DB")
            .env_remove("KEYWARD_PREFIX")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let start = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no /healthz in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .post(format!("{base}{}", server::TRACES_BATCH))
        .bearer_auth(key.key.expose_secret())
        .json(&json!({"events": [{}, {}, {}, {}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let mut got = [hook.next().await, hook.next().await];
    got.sort_by_key(|(_, body)| body["percent"].as_u64());
    for ((kind, body), percent) in got.iter().zip([80, 100]) {
        assert_eq!(kind, "quota.threshold");
        assert_eq!(body["percent"], percent);
        assert_eq!(body["key_id"], key.record.id.to_string());
    }
}

#[test]
fn the_real_binary_refuses_an_https_webhook_url_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("keys.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_keyward-server"))
        .current_dir(dir.path())
        .args(["--db", &db, "--addr", "127.0.0.1:0"])
        .args(["--webhook-url", "https://hooks.example.com/keyward"])
        .env_remove("KEYWARD_DB")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must be http://"), "{stderr}");
}
