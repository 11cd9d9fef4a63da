//! The example server over real HTTP: every route and every status of the Keyward layer,
//! driven with reqwest against the app served in-process on an ephemeral loopback port
//! (`keyward_examples::server::router`/`serve`), plus the real `keyward-server` binary and
//! another manager (as the admin CLI of `keyward-cli` is) on the same SQLite file. Hashing uses
//! the insecure test parameters.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use keyward::conformance::{
    FailingStore, KeyForms, LogBuffer, assert_keys_hidden, with_wrong_secret,
};
use keyward::{
    ApiKey, HashParams, IssueRequest, KeyId, KeyLimits, KeyManager, KeyStore, ListQuery,
    ManualClock, Period, Quota, Timestamp,
};
use keyward_cli::open_store;
use keyward_examples::server;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------------
// Harness

/// Everything the app logs during these tests (keyward and keyward_examples at debug).
fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer::new();
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "keyward=debug,keyward_examples=debug",
            ))
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .try_init();
        buf
    })
}

fn logged() -> String {
    logs().text()
}

/// No form of the key (its secret above all) appears in the logs.
fn assert_not_logged(key: &str) {
    KeyForms::of(key).assert_hidden_in("the log", &logged());
}

/// A response, read whole.
#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().expect("ASCII header"))
    }

    fn challenge(&self) -> &str {
        self.header("www-authenticate")
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// The app served in-process on 127.0.0.1:0, over a SQLite file in a temporary directory.
struct TestServer {
    base: String,
    client: reqwest::Client,
    manager: KeyManager,
    clock: ManualClock,
    db_url: String,
    /// Holds the SQLite file until the server is dropped.
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_wrapped(|s| s).await
    }

    /// Starts with `wrap` applied to the store (e.g. a store that can fail).
    async fn start_wrapped(wrap: impl FnOnce(Arc<dyn KeyStore>) -> Arc<dyn KeyStore>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite:{}", dir.path().join("keys.db").display());
        Self::start_on(dir, db_url, wrap).await
    }

    async fn start_on(
        dir: tempfile::TempDir,
        db_url: String,
        wrap: impl FnOnce(Arc<dyn KeyStore>) -> Arc<dyn KeyStore>,
    ) -> Self {
        logs();
        let store = wrap(open_store(&db_url).await.unwrap());
        let clock = ManualClock::new(Timestamp::now());
        let manager = KeyManager::builder_arc(store)
            .serve("dev".parse().unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, manager.clone(), async {
            let _ = rx.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            manager,
            clock,
            db_url,
            _dir: dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Issues a key directly through the manager (as the CLI would).
    async fn issue(&self, project: &str, scopes: &[&str]) -> String {
        self.issue_req(
            IssueRequest::new(project.parse().unwrap(), "dev".parse().unwrap()),
            scopes,
        )
        .await
    }

    async fn issue_req(&self, req: IssueRequest, scopes: &[&str]) -> String {
        let issued = self
            .manager
            .issue(req.scopes(scopes).unwrap())
            .await
            .unwrap();
        issued.key.expose_secret().to_owned()
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.unwrap();
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    /// GET `path` with `Authorization: Bearer <key>`.
    async fn get(&self, path: &str, key: &str) -> Resp {
        self.send(self.req(Method::GET, path).bearer_auth(key))
            .await
    }

    async fn ping(&self, key: &str) -> Resp {
        self.get(server::PING, key).await
    }

    /// GET the ping route with raw header pairs.
    async fn ping_with(&self, headers: &[(&str, HeaderValue)]) -> Resp {
        let mut rb = self.req(Method::GET, server::PING);
        for (name, value) in headers {
            rb = rb.header(*name, value.clone());
        }
        self.send(rb).await
    }

    /// POST `body` as it is, labelled JSON, with `Authorization: Bearer <key>`.
    fn post_raw_json(&self, path: &str, key: &str, body: &'static str) -> reqwest::RequestBuilder {
        self.req(Method::POST, path)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
    }

    async fn post_json(&self, path: &str, key: &str, body: &Value) -> Resp {
        self.send(self.req(Method::POST, path).bearer_auth(key).json(body))
            .await
    }

    /// Graceful shutdown: waits for `serve` to return.
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server stops within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

fn key_path(id: &str) -> String {
    format!("/api/v1/me/api-keys/{id}/")
}

fn rotate_path(id: &str) -> String {
    format!("/api/v1/me/api-keys/{id}/rotate/")
}

fn id_of(key: &str) -> String {
    ApiKey::parse(key).unwrap().id().to_string()
}

fn assert_invalid_token(r: &Resp) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(
        r.challenge()
            .starts_with("Bearer realm=\"keyward\", error=\"invalid_token\""),
        "{r:?}"
    );
    assert_eq!(r.error(), "invalid_token", "{r:?}");
}

// ---------------------------------------------------------------------------------------
// Routes without a key

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_without_a_key_even_with_a_bad_one() {
    let s = TestServer::start().await;
    let r = s.send(s.req(Method::GET, server::HEALTHZ)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ok"}));
    let r = s.get(server::HEALTHZ, "garbage").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_not_401() {
    let s = TestServer::start().await;
    let r = s.send(s.req(Method::GET, "/api/v1/nothing")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error(), "not_found");
}

// ---------------------------------------------------------------------------------------
// Extraction

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_accepts_bearer_in_any_case_x_api_key_and_basic_auth() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["read"]).await;
    let basic = |user: &str, pass: &str| {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    };
    let cases = [
        (
            "authorization",
            HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        ),
        (
            "authorization",
            HeaderValue::from_str(&format!("bearer {key}")).unwrap(),
        ),
        (
            "authorization",
            HeaderValue::from_str(&format!("BEARER {key}")).unwrap(),
        ),
        ("x-api-key", HeaderValue::from_str(&key).unwrap()),
        ("authorization", basic(&key, "")),
    ];
    for (name, value) in cases {
        let r = s.ping_with(&[(name, value)]).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {r:?}");
        assert_eq!(r.json(), json!({"status": "ok"}));
    }
    // reqwest's own basic_auth helper: the key as user name.
    let r = s
        .send(
            s.req(Method::GET, server::PING)
                .basic_auth(&key, None::<&str>),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_not_logged(&key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_is_401_with_a_bare_bearer_challenge() {
    let s = TestServer::start().await;
    for rb in [
        s.req(Method::GET, server::PING),
        s.req(Method::GET, server::PING)
            .header("authorization", "Bearer"),
        s.req(Method::GET, server::PING)
            .header("authorization", "Bearer   "),
    ] {
        let r = s.send(rb).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
        // RFC 6750 §3.1: no error code when the request had no credentials.
        assert_eq!(r.challenge(), "Bearer realm=\"keyward\"");
        assert_eq!(r.error(), "missing_credentials");
        assert_eq!(r.header("content-type"), "application/json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_foreign_and_wrong_environment_keys_are_401_invalid_token() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["read"]).await;
    let truncated = &key[..key.len() - 1];
    let prd = ApiKey::generate("kw".parse().unwrap(), "prd".parse().unwrap()).unwrap();
    let foreign = ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    for (what, presented) in [
        ("garbage", "not-a-key"),
        ("truncated", truncated),
        ("prd key", prd.expose_secret()),
        ("other prefix", foreign.expose_secret()),
    ] {
        let r = s.get(server::PING, presented).await;
        assert_invalid_token(&r);
        assert!(
            !r.body.contains(presented),
            "{what}: the body echoes the key"
        );
    }
    let r = s.get(server::PING, prd.expose_secret()).await;
    assert!(
        r.json()["message"].as_str().unwrap().contains("'prd'"),
        "{r:?}"
    );
    let r = s
        .send(
            s.req(Method::GET, server::PING)
                .header("authorization", "Digest abc"),
        )
        .await;
    assert_invalid_token(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_bytes_in_headers_are_401_and_answered_in_ascii() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["read"]).await;
    let mut with_latin1 = format!("Bearer {key}").into_bytes();
    with_latin1.insert(20, 0xE9); // 'é' in Latin-1, inside the key
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("authorization", with_latin1),
        ("authorization", b"Bearer \xff\xfe\x80\x81".to_vec()),
        ("authorization", "Bearer clé_ünicode_🔑".as_bytes().to_vec()),
        ("x-api-key", b"\xc3\xa9\xc3\xa9\xc3\xa9".to_vec()),
        ("authorization", b"\xe9\xe9 token".to_vec()),
    ];
    for (name, bytes) in cases {
        let value = HeaderValue::from_bytes(&bytes).unwrap();
        let r = s.ping_with(&[(name, value)]).await;
        assert_invalid_token(&r); // also checks the challenge is ASCII (to_str)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_kib_header_is_401_without_echo() {
    let s = TestServer::start().await;
    let big = "A".repeat(16 * 1024);
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{big}:"))
    };
    for (name, value) in [
        ("authorization", format!("Bearer {big}")),
        ("x-api-key", big.clone()),
        ("authorization", format!("Basic {basic}")),
    ] {
        let r = s
            .ping_with(&[(name, HeaderValue::from_str(&value).unwrap())])
            .await;
        assert_invalid_token(&r);
        assert!(r.body.len() < 1024, "{r:?}");
        assert!(r.challenge().len() < 1024, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_credentials_in_one_request_are_400() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["read"]).await;
    let bearer = HeaderValue::from_str(&format!("Bearer {key}")).unwrap();
    let raw = HeaderValue::from_str(&key).unwrap();
    let r = s
        .ping_with(&[("authorization", bearer.clone()), ("x-api-key", raw)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.error(), "invalid_request");
    let r = s
        .ping_with(&[("authorization", bearer.clone()), ("authorization", bearer)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_the_query_string_is_400_in_every_shape_even_with_a_valid_header() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["read"]).await;
    let id = id_of(&key);
    let encoded = key.replace('_', "%5F");
    for query in [
        format!("api_key={key}"),
        format!("access_token={key}"),
        format!("innocent={key}"),
        "token=whatever".to_owned(),
        // Issue 13, D6: no parameter name, a name of its own, after another parameter,
        // percent-encoded, after `Bearer+`.
        key.clone(),
        format!("{key}=1"),
        format!("a=x&{key}"),
        encoded.clone(),
        format!("q=Bearer+{key}"),
        format!("redirect=%2Fdone%3Fk%3D{encoded}&page=2"),
    ] {
        let r = s.get(&format!("{}?{query}", server::PING), &key).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {r:?}");
        assert_eq!(r.error(), "invalid_request");
        assert!(
            r.challenge()
                .starts_with("Bearer realm=\"keyward\", error=\"invalid_request\""),
            "{query}: {r:?}"
        );
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("query string")
        );
        assert!(!r.body.contains(&key));
    }
    // Ordinary queries are fine, the key's public id included.
    for query in [
        "page=2",
        "q=hello+world&sort=created_at",
        &format!("id={id}"),
    ] {
        let r = s.get(&format!("{}?{query}", server::PING), &key).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {r:?}");
    }
    assert!(
        logged().contains(&format!("key.id={id}")),
        "the exposure is logged with the public id"
    );
    assert_not_logged(&key);
}

// ---------------------------------------------------------------------------------------
// Verification outcomes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_id_and_wrong_secret_answers_are_byte_identical() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["read"]).await;
    let unknown = ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    let wrong = with_wrong_secret(&key, 42);
    let a = s.ping(unknown.expose_secret()).await;
    let b = s.ping(&wrong).await;
    assert_invalid_token(&a);
    assert_eq!(a.status, b.status);
    assert_eq!(
        a.body, b.body,
        "the bodies tell an unknown id from a wrong secret"
    );
    assert_eq!(a.challenge(), b.challenge());
    // Also once the real key is cached (the warm path).
    assert_eq!(s.ping(&key).await.status, StatusCode::OK);
    let c = s.ping(&wrong).await;
    assert_eq!(a.body, c.body);
    assert_eq!(a.challenge(), c.challenge());
    assert_not_logged(&key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scope_is_403_insufficient_scope_naming_it() {
    let s = TestServer::start().await;
    let read_only = s.issue("web-app", &["read"]).await;
    let r = s
        .post_json(server::TRACES_BATCH, &read_only, &json!({"events": [{}]}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(r.error(), "insufficient_scope");
    let challenge = r.challenge();
    assert!(challenge.starts_with("Bearer realm=\"keyward\", error=\"insufficient_scope\""));
    assert!(challenge.ends_with("scope=\"write\""), "{challenge}");
    // Admin routes need admin: the admin API's own 403 (`forbidden`, no challenge).
    let r = s.get(server::API_KEYS, &read_only).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(r.error(), "forbidden", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_401_invalid_token() {
    let s = TestServer::start().await;
    let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .expires_in(Duration::from_secs(3600));
    let key = s.issue_req(req, &["read"]).await;
    assert_eq!(s.ping(&key).await.status, StatusCode::OK);
    s.clock.advance(Duration::from_secs(3601));
    let r = s.ping(&key).await;
    assert_invalid_token(&r);
    assert!(r.json()["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_secrets_for_one_id_are_429_with_retry_after() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["read"]).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = s.ping(&with_wrong_secret(&key, 42)).await;
        statuses.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            let secs: u64 = r.header("retry-after").parse().unwrap();
            assert!(secs >= 1, "{r:?}");
            assert_eq!(r.error(), "too_many_requests");
            assert!(r.challenge().is_empty(), "{r:?}");
            return;
        }
        assert_invalid_token(&r);
    }
    panic!("never limited: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_is_503_and_an_error_log_line_without_the_key() {
    let down = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&down);
    let s =
        TestServer::start_wrapped(move |inner| Arc::new(FailingStore::new(inner, "flaky", flag)))
            .await;
    let key = s.issue("web-app", &["read", "admin"]).await;
    down.store(true, Ordering::SeqCst);
    let r = s.ping(&key).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert_eq!(r.error(), "temporarily_unavailable");
    assert!(
        !r.body.contains("flaky"),
        "store details leak to the client: {r:?}"
    );
    let id = id_of(&key);
    let line = logged()
        .lines()
        .find(|l| l.contains("ERROR") && l.contains(&id) && l.contains("unavailable"))
        .map(str::to_owned);
    assert!(line.is_some(), "no error line for key {id}:\n{}", logged());
    assert!(line.unwrap().contains("connection refused"));
    assert_not_logged(&key);
    // Back up: the same key works.
    down.store(false, Ordering::SeqCst);
    assert_eq!(s.ping(&key).await.status, StatusCode::OK);
    // An admin operation failing on the store is a 503 too.
    down.store(true, Ordering::SeqCst);
    let r = s.get(server::API_KEYS, &key).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    down.store(false, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_under_load_logs_one_error_line_not_one_per_request() {
    let down = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&down);
    let s =
        TestServer::start_wrapped(move |inner| Arc::new(FailingStore::new(inner, "flaky", flag)))
            .await;
    down.store(true, Ordering::SeqCst);
    // 200 first uses of keys this instance has not cached: each needs the store, each is 503.
    let keys: Vec<String> = (0..200)
        .map(|_| {
            keyward::ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap())
                .unwrap()
                .expose_secret()
                .to_owned()
        })
        .collect();
    for key in &keys {
        assert_eq!(s.ping(key).await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    down.store(false, Ordering::SeqCst);
    let ids: Vec<String> = keys.iter().map(|k| id_of(k)).collect();
    let lines: Vec<String> = logged()
        .lines()
        .filter(|l| l.contains("ERROR") && ids.iter().any(|id| l.contains(id.as_str())))
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("cause=store"), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_list_is_paged_with_a_next_link_and_bounded_limits() {
    let s = TestServer::start().await;
    let admin = s.issue("paged-app", &["admin"]).await;
    for _ in 0..4 {
        s.issue("paged-app", &["read"]).await;
    }
    // Another project's keys never appear.
    s.issue("other-app", &["read"]).await;
    let mut seen = Vec::new();
    let mut path = format!("{}?limit=2", server::API_KEYS);
    let mut pages = 0;
    loop {
        let r = s.get(&path, &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let page = r.json();
        let page = page.as_array().unwrap();
        assert!(page.len() <= 2, "{r:?}");
        seen.extend(page.iter().map(|k| {
            assert_eq!(k["project"], "paged-app");
            k["id"].as_str().unwrap().to_owned()
        }));
        pages += 1;
        let Some(link) = r.headers.get("link") else {
            break;
        };
        let link = link.to_str().unwrap();
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        path = link[1..link.find('>').unwrap()].to_owned();
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(pages, 3, "5 keys in pages of 2");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (5, 5), "{seen:?}");
    // The default page holds them all; limits out of range and bad cursors are 400.
    assert_eq!(
        s.get(server::API_KEYS, &admin)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        5
    );
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?after=nonsense",
        "?colour=red",
    ] {
        let r = s.get(&format!("{}{bad}", server::API_KEYS), &admin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
        assert_eq!(r.json()["error"], "invalid_request", "{bad}: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Ingestion

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_counted_under_the_keys_project_and_environment() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["write"]).await;
    let events = json!({"events": [{"type": "span", "name": "a"}, {"type": "span"}, {}]});
    let r = s.post_json(server::TRACES_BATCH, &key, &events).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let j = r.json();
    assert_eq!(j["accepted"], 3);
    assert_eq!(j["project"], "web-app");
    assert_eq!(j["environment"], "dev");
    assert_eq!(j["key_id"], id_of(&key));
    assert_eq!(j["total"], 3);
    let r = s.post_json(server::TRACES_BATCH, &key, &events).await;
    assert_eq!(r.json()["total"], 6);
    // Another project's count is its own.
    let other = s.issue("other", &["write"]).await;
    let r = s.post_json(server::TRACES_BATCH, &other, &events).await;
    assert_eq!(r.json()["project"], "other");
    assert_eq!(r.json()["total"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_projects_quota_is_429_with_retry_after_and_not_counted() {
    let s = TestServer::start().await;
    let project: keyward::Project = "web-app".parse().unwrap();
    let quota = Quota {
        limit: 5,
        period: Period::Day,
    };
    s.manager
        .set_project_quota(&project, Some(quota))
        .await
        .unwrap();
    let key = s.issue("web-app", &["write"]).await;
    let batch = |n: usize| json!({ "events": vec![json!({}); n] });
    let r = s.post_json(server::TRACES_BATCH, &key, &batch(3)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["quota"]["project"]["remaining"], 2, "{r:?}");
    assert!(r.json()["quota"]["key"].is_null());
    let r = s.post_json(server::TRACES_BATCH, &key, &batch(3)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    assert_eq!(r.error(), "too_many_requests");
    let retry: u64 = r.header("retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{r:?}");
    // Refused whole: the 2 units left are still there.
    let r = s.post_json(server::TRACES_BATCH, &key, &batch(2)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["quota"]["project"]["remaining"], 0);
    assert_eq!(r.json()["total"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_keys_own_quota_is_429() {
    let s = TestServer::start().await;
    let limits = KeyLimits {
        quota: Some(Quota {
            limit: 2,
            period: Period::Month,
        }),
        ..KeyLimits::default()
    };
    let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap()).limits(limits);
    let key = s.issue_req(req, &["write"]).await;
    let r = s
        .post_json(server::TRACES_BATCH, &key, &json!({"events": [{}, {}, {}]}))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    assert!(r.header("retry-after").parse::<u64>().unwrap() >= 1);
    let r = s
        .post_json(server::TRACES_BATCH, &key, &json!({"events": [{}, {}]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["quota"]["key"]["used"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_400_with_a_helpful_message() {
    let s = TestServer::start().await;
    let key = s.issue("web-app", &["write"]).await;
    let raw = |body: &'static str| s.post_raw_json(server::TRACES_BATCH, &key, body);
    let r = s.send(raw("{\"events\": [")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    let r = s.send(raw("{\"events\": [1, 2]}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.json()["message"].as_str().unwrap().contains("events[0]"),
        "{r:?}"
    );
    let r = s.send(raw("{\"evnts\": []}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.json()["message"].as_str().unwrap().contains("evnts"),
        "{r:?}"
    );
    let r = s.send(raw("{\"events\": []}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("no events"));
    let many: Vec<Value> = (0..=server::MAX_BATCH_EVENTS).map(|_| json!({})).collect();
    let r = s
        .post_json(server::TRACES_BATCH, &key, &json!({ "events": many }))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    let r = s
        .send(
            s.req(Method::POST, server::TRACES_BATCH)
                .bearer_auth(&key)
                .body("{\"events\": [{}]}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
}

/// An answer is 400 `invalid_request` in JSON with the RFC 6750 challenge, as the README says.
fn assert_invalid_request(r: &Resp, hint: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json", "{r:?}");
    assert_eq!(r.error(), "invalid_request", "{r:?}");
    assert!(
        r.challenge().starts_with(
            "Bearer realm=\"keyward\", error=\"invalid_request\", error_description=\""
        ),
        "{r:?}"
    );
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains(hint), "{hint:?} not in {message:?}");
}

/// A 400 of the admin API (`keyward::axum::admin`): `invalid_request` in JSON. Its
/// credential is checked before (a bad one is 401 `unauthenticated`), so a 400 there is about
/// the request, and carries no `WWW-Authenticate` challenge.
fn assert_admin_invalid_request(r: &Resp, hint: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json", "{r:?}");
    assert_eq!(r.error(), "invalid_request", "{r:?}");
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains(hint), "{hint:?} not in {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_400_is_invalid_request_with_the_challenge_on_key_routes() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin", "write"]).await;
    let key = s.issue("web-app", &["read"]).await;
    let raw_batch = |body: &'static str| s.post_raw_json(server::TRACES_BATCH, &admin, body);
    assert_invalid_request(&s.send(raw_batch("{\"events\": [")).await, "invalid JSON");
    assert_invalid_request(&s.send(raw_batch("{\"events\": []}")).await, "no events");
    assert_admin_invalid_request(
        &s.post_json(server::API_KEYS, &admin, &json!({"name": "", "scopes": []}))
            .await,
        "scopes",
    );
    assert_admin_invalid_request(
        &s.post_json(
            server::API_KEYS,
            &admin,
            &json!({"name": "", "scopes": ["Write!"]}),
        )
        .await,
        "scope",
    );
    let whole_key = s.req(Method::DELETE, &key_path(&key)).bearer_auth(&admin);
    assert_admin_invalid_request(&s.send(whole_key).await, "whole API key");
    let rotate = rotate_path(&id_of(&key));
    assert_admin_invalid_request(
        &s.post_json(&rotate, &admin, &json!({"grace": "forever"}))
            .await,
        "grace",
    );
    let two = s
        .req(Method::GET, server::PING)
        .bearer_auth(&key)
        .header("x-api-key", &key);
    assert_invalid_request(&s.send(two).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_beyond_the_limits_is_400_naming_the_limit() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let key = s.issue("web-app", &["read"]).await;
    // 100 scopes: the server offers only read and write, so the first other one is named
    // (keyward::MAX_SCOPES, 64, is beyond reach here).
    let scopes: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    let cases = [
        // Issue 13, D7: an expiry past 100 years used to give a key expiring "1970-01-01".
        (
            json!({"name": "", "scopes": ["read"], "expires_in": "999999999w"}),
            "keyward::MAX_EXPIRY",
        ),
        (
            json!({"name": "", "scopes": ["read"], "expires_in": "0s"}),
            "zero",
        ),
        // D11: too many scopes, and a right-to-left override in a name.
        (
            json!({"name": "", "scopes": scopes }),
            "'s0' is not offered",
        ),
        (
            json!({"scopes": ["read"], "name": "invoice\u{202E}fdp.exe"}),
            "U+202E",
        ),
    ];
    for (body, hint) in &cases {
        let r = s.post_json(server::API_KEYS, &admin, body).await;
        assert_admin_invalid_request(&r, hint);
    }
    // D7: a grace of u64::MAX seconds.
    let rotate = rotate_path(&id_of(&key));
    let r = s
        .post_json(&rotate, &admin, &json!({"grace": "18446744073709551615s"}))
        .await;
    assert_admin_invalid_request(&r, "keyward::MAX_GRACE");
    let keys = s.manager.list(&ListQuery::default()).await.unwrap();
    assert_eq!(keys.len(), 2, "nothing was issued");
    assert!(keys.iter().all(|k| k.expires_at.is_none()), "{keys:?}");
    // The limit itself is accepted, and its expiry reads as a date 100 years ahead.
    let r = s
        .post_json(
            server::API_KEYS,
            &admin,
            &json!({"name": "", "scopes": ["read"], "expires_in": "36525d"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let year: i32 = r.json()["info"]["expires_at"].as_str().unwrap()[..4]
        .parse()
        .unwrap();
    assert!(year >= 2126, "{year}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_in_json_on_every_route() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin", "write"]).await;
    let key = s.issue("web-app", &["read"]).await;
    let big = format!(
        "{{\"events\": [{}]}}",
        "{},".repeat(server::MAX_BODY_BYTES / 3)
    );
    assert!(big.len() > server::MAX_BODY_BYTES);
    // The admin API has its own, smaller limit (64 KiB) and the contract's code.
    let admin_big = format!(
        "{{\"name\": \"{}\", \"scopes\": [\"read\"]}}",
        "x".repeat(keyward::axum::admin::MAX_BODY)
    );
    for path in [server::API_KEYS.to_owned(), rotate_path(&id_of(&key))] {
        let r = s
            .send(
                s.req(Method::POST, &path)
                    .bearer_auth(&admin)
                    .header("content-type", "application/json")
                    .body(admin_big.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {r:?}");
        assert_eq!(r.error(), "payload_too_large", "{path}: {r:?}");
    }
    {
        let path = server::TRACES_BATCH;
        let r = s
            .send(
                s.req(Method::POST, path)
                    .bearer_auth(&admin)
                    .header("content-type", "application/json")
                    .body(big.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            "application/json",
            "{path}: {r:?}"
        );
        assert_eq!(r.error(), "body_too_large", "{path}: {r:?}");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("2097152 bytes"),
            "{path}: {r:?}"
        );
    }
    // Too many events in a body under the limit keep their own code.
    let many: Vec<Value> = (0..=server::MAX_BATCH_EVENTS).map(|_| json!({})).collect();
    let r = s
        .post_json(server::TRACES_BATCH, &admin, &json!({ "events": many }))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(r.error(), "too_many_events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_refused_before_the_body_is_read() {
    let s = TestServer::start().await;
    let r = s
        .send(
            s.req(Method::POST, server::TRACES_BATCH)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
}

// ---------------------------------------------------------------------------------------
// Key management over HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_key_shown_once_that_works_at_once() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let r = s
        .post_json(
            server::API_KEYS,
            &admin,
            &json!({"name": "ingestion", "environment": "dev", "scopes": ["write", "read"],
                    "expires_in": "30d", "metadata": {"team": "obs"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("cache-control"), "no-store");
    let j = r.json();
    let new_key = j["key"].as_str().unwrap().to_owned();
    let parsed = ApiKey::parse(&new_key).unwrap();
    assert!(j["warning"].as_str().unwrap().contains("only time"), "{j}");
    // The key's public view is under "info" (the admin API's shape).
    let info = &j["info"];
    assert_eq!(info["id"], parsed.id().to_string());
    assert_eq!(info["masked"], parsed.masked().to_string());
    assert_eq!(info["project"], "web-app");
    assert_eq!(info["environment"], "dev");
    assert_eq!(info["scopes"], json!(["read", "write"]));
    assert_eq!(info["name"], "ingestion");
    assert_eq!(info["metadata"], json!({"team": "obs"}));
    assert!(info["expires_at"].is_string());
    assert_eq!(s.ping(&new_key).await.status, StatusCode::OK);
    let r = s
        .post_json(server::TRACES_BATCH, &new_key, &json!({"events": [{}]}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Environment defaults to the caller's.
    let r = s
        .post_json(
            server::API_KEYS,
            &admin,
            &json!({"name": "", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json()["info"]["environment"], "dev");
    assert_not_logged(&new_key);
    assert_not_logged(&admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_keys_validates_the_request() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let cases = [
        (
            json!({"name": "", "scopes": []}),
            StatusCode::BAD_REQUEST,
            "scopes",
        ),
        (
            json!({"name": "", "scopes": ["Write!"]}),
            StatusCode::BAD_REQUEST,
            "scope",
        ),
        (json!({"name": "x"}), StatusCode::BAD_REQUEST, "scopes"),
        (
            json!({"name": "", "scopes": ["read"], "expires_in": "soon"}),
            StatusCode::BAD_REQUEST,
            "expires_in",
        ),
        (
            json!({"name": "", "scopes": ["read"], "environment": "PRD"}),
            StatusCode::BAD_REQUEST,
            "environment",
        ),
        (
            json!({"name": "", "scopes": ["read"], "projekt": "x"}),
            StatusCode::BAD_REQUEST,
            "projekt",
        ),
        (
            json!({"scopes": ["read"], "name": "a\u{7}b"}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        // Only the offered scopes (server::OFFERED_SCOPES): admin keys come from the CLI.
        (
            json!({"name": "", "scopes": ["admin"]}),
            StatusCode::BAD_REQUEST,
            "admin",
        ),
        // A dev admin key cannot mint a prd key.
        (
            json!({"name": "", "scopes": ["read"], "environment": "prd"}),
            StatusCode::FORBIDDEN,
            "sign in with an admin key of 'prd'",
        ),
    ];
    for (body, status, hint) in cases {
        let r = s.post_json(server::API_KEYS, &admin, &body).await;
        assert_eq!(r.status, status, "{body}: {r:?}");
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(hint), "{body}: {message}");
    }
    assert_eq!(
        s.manager.list(&ListQuery::default()).await.unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_lists_its_projects_keys_masked() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let write = s.issue("web-app", &["write"]).await;
    let other = s.issue("other", &["write"]).await;
    let r = s.get(server::API_KEYS, &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let list = r.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&id_of(&admin).as_str()));
    assert!(ids.contains(&id_of(&write).as_str()));
    assert!(
        !ids.contains(&id_of(&other).as_str()),
        "another project's key is listed"
    );
    for k in list.as_array().unwrap() {
        assert!(k["masked"].as_str().unwrap().ends_with('…'));
        assert_eq!(k["status"], "active");
    }
    assert_keys_hidden("the key listing", &r.body, &[&admin, &write, &other]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_rejected_on_the_very_next_request() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let key = s.issue("web-app", &["read"]).await;
    // Cached and hot.
    for _ in 0..3 {
        assert_eq!(s.ping(&key).await.status, StatusCode::OK);
    }
    let r = s
        .send(
            s.req(Method::DELETE, &key_path(&id_of(&key)))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["status"], "revoked");
    assert!(r.json()["revoked_at"].is_string());
    let r = s.ping(&key).await;
    assert_invalid_token(&r);
    assert!(r.json()["message"].as_str().unwrap().contains("revoked"));
    // Revoking again is idempotent.
    let r = s
        .send(
            s.req(Method::DELETE, &key_path(&id_of(&key)))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_never_touch_another_projects_or_environments_keys() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let theirs = s.issue("other", &["read"]).await;
    let prd = s
        .issue_req(
            IssueRequest::new("web-app".parse().unwrap(), "prd".parse().unwrap()),
            &["read"],
        )
        .await;
    let unknown = KeyId::generate().unwrap().to_string();
    let mut bodies = Vec::new();
    for id in [id_of(&theirs), id_of(&prd), unknown.clone()] {
        let r = s
            .send(s.req(Method::DELETE, &key_path(&id)).bearer_auth(&admin))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
        bodies.push(r.body);
        let r = s
            .send(s.req(Method::POST, &rotate_path(&id)).bearer_auth(&admin))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
        bodies.push(r.body);
    }
    // The same answer for an unknown id as for another tenant's (it names the id asked for).
    let bodies: Vec<String> = bodies
        .iter()
        .zip(
            [id_of(&theirs), id_of(&theirs), id_of(&prd), id_of(&prd)]
                .iter()
                .chain([&unknown, &unknown]),
        )
        .map(|(b, id)| b.replace(id.as_str(), "<id>"))
        .collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_eq!(s.ping(&theirs).await.status, StatusCode::OK);
    let info = s.manager.get(&KeyId::new(&id_of(&theirs)).unwrap()).await;
    assert!(info.unwrap().unwrap().revoked_at.is_none());
    // Not an id at all: 400, and a whole key in the URL is called out.
    let r = s
        .send(s.req(Method::DELETE, &key_path("nope")).bearer_auth(&admin))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = s
        .send(
            s.req(Method::DELETE, &key_path(&theirs))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("whole API key")
    );
    assert!(!r.body.contains(&theirs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_returns_a_new_key_once_and_the_old_one_works_for_the_grace() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let old = s.issue("web-app", &["read", "write"]).await;
    let r = s
        .post_json(&rotate_path(&id_of(&old)), &admin, &json!({"grace": "1h"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("cache-control"), "no-store");
    let j = r.json();
    let new = j["key"].as_str().unwrap().to_owned();
    assert_ne!(id_of(&new), id_of(&old));
    assert_eq!(j["info"]["scopes"], json!(["read", "write"]));
    assert_eq!(j["info"]["rotated_from"], id_of(&old));
    assert_eq!(j["replaces"]["id"], id_of(&old));
    assert!(j["replaces"]["expires_at"].is_string());
    assert_eq!(s.ping(&new).await.status, StatusCode::OK);
    assert_eq!(s.ping(&old).await.status, StatusCode::OK);
    s.clock.advance(Duration::from_secs(3601));
    assert_invalid_token(&s.ping(&old).await);
    assert_eq!(s.ping(&new).await.status, StatusCode::OK);
    // No body: the default grace (24 h).
    let r = s
        .send(
            s.req(Method::POST, &rotate_path(&id_of(&new)))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    s.clock.advance(Duration::from_secs(23 * 3600));
    assert_eq!(s.ping(&new).await.status, StatusCode::OK);
    s.clock.advance(Duration::from_secs(3600));
    assert_invalid_token(&s.ping(&new).await);
    assert_not_logged(&new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_refuses_bad_grace_and_revoked_keys() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let key = s.issue("web-app", &["read"]).await;
    let path = rotate_path(&id_of(&key));
    let r = s
        .post_json(&path, &admin, &json!({"grace": "forever"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("grace"));
    let r = s
        .send(
            s.req(Method::POST, &path)
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body("{oops"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    // A body that is not labelled JSON (the admin API's 415).
    let r = s
        .send(s.req(Method::POST, &path).bearer_auth(&admin).body("{oops"))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{r:?}");
    let r = s
        .send(
            s.req(Method::DELETE, &key_path(&id_of(&key)))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.post_json(&path, &admin, &json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_rotated_key_is_409_unless_forced_and_both_ends_are_returned() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let old = s.issue("web-app", &["read"]).await;
    let path = rotate_path(&id_of(&old));
    let r = s.post_json(&path, &admin, &json!({"grace": "1h"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let first = r.json();
    assert!(first["info"]["expires_at"].is_null(), "{first}"); // the new key never expires
    let grace_end = first["replaces"]["expires_at"].as_str().unwrap().to_owned();

    let r = s.post_json(&path, &admin, &json!({"grace": "1h"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let j = r.json();
    assert_eq!(j["error"], "conflict");
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("already rotated"), "{message}");
    assert!(
        message.contains(&id_of(first["key"].as_str().unwrap())),
        "{message}"
    );

    // Forced: a second replacement; the old key's end stays the first grace end.
    let r = s
        .post_json(&path, &admin, &json!({"grace": "24h", "force": true}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let second = r.json();
    assert_eq!(second["replaces"]["expires_at"], grace_end.as_str());
    let new = second["key"].as_str().unwrap().to_owned();
    assert_eq!(s.ping(&new).await.status, StatusCode::OK);
    assert_not_logged(&new);
}

// ---------------------------------------------------------------------------------------
// Sessions: /login, the page, the OpenAPI document

impl TestServer {
    /// POSTs the sign-in form (no redirect followed).
    async fn login(&self, key: &str) -> Resp {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = client
            .post(format!("{}/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("key={key}"))
            .send()
            .await
            .unwrap();
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    /// A request carrying the session cookie `cookie` (`name=value`).
    fn with_cookie(&self, method: Method, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        self.req(method, path).header("cookie", cookie.to_owned())
    }
}

/// The `name=value` of a sign-in answer's session cookie.
fn session_cookie(r: &Resp) -> String {
    let set = r.header("set-cookie");
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_opens_a_session_with_a_csrf_token_and_never_the_key() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let r = s.login(&admin).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(r.header("location"), "/settings/api-keys");
    let set = r.header("set-cookie").to_owned();
    assert!(set.starts_with("keyward_session="), "{set}");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert_keys_hidden("the session cookie", &set, &[&admin]);
    let cookie = session_cookie(&r);

    // The session names the admin key by id, with its tenant and a CSRF token.
    let r = s
        .send(s.with_cookie(Method::GET, "/api/v1/me/api-keys/session", &cookie))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let j = r.json();
    assert_eq!(j["actor"], format!("key:{}", id_of(&admin)));
    assert_eq!(j["project"], "web-app");
    assert_eq!(j["scopes"], json!(["read", "write"]));
    let csrf = j["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(csrf.len(), 64);

    // A change without the token is refused; with it, done.
    let body = json!({"name": "from the page", "scopes": ["read"]});
    let r = s
        .send(
            s.with_cookie(Method::POST, server::API_KEYS, &cookie)
                .json(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(r.error(), "csrf");
    let r = s
        .send(
            s.with_cookie(Method::POST, server::API_KEYS, &cookie)
                .header("x-csrf-token", &csrf)
                .json(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let new_key = r.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(s.ping(&new_key).await.status, StatusCode::OK);
    assert_not_logged(&admin);
    assert_not_logged(&new_key);

    // Signing out ends it.
    let r = s
        .send(s.with_cookie(Method::POST, "/logout", &cookie))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "redirected to the sign-in page: {r:?}"
    );
    let r = s
        .send(s.with_cookie(Method::GET, "/api/v1/me/api-keys/session", &cookie))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_its_admin_key_is_revoked() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let cookie = session_cookie(&s.login(&admin).await);
    let session = "/api/v1/me/api-keys/session";
    let r = s.send(s.with_cookie(Method::GET, session, &cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    s.manager
        .revoke(&KeyId::new(&id_of(&admin)).unwrap())
        .await
        .unwrap();
    let r = s.send(s.with_cookie(Method::GET, session, &cookie)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.error(), "unauthenticated");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("no longer valid")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_a_header_is_judged_alone_even_with_a_session() {
    let s = TestServer::start().await;
    let admin = s.issue("web-app", &["admin"]).await;
    let read = s.issue("web-app", &["read"]).await;
    let cookie = session_cookie(&s.login(&admin).await);
    let session = "/api/v1/me/api-keys/session";
    let r = s
        .send(
            s.with_cookie(Method::GET, session, &cookie)
                .bearer_auth(&read),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the read key decides: {r:?}"
    );
    let r = s
        .send(
            s.with_cookie(Method::GET, session, &cookie)
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(
        r.json()["csrf_token"].is_null(),
        "a Bearer caller needs no CSRF token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_bad_keys_keys_without_admin_and_other_sites() {
    let s = TestServer::start().await;
    let read = s.issue("web-app", &["read"]).await;
    let r = s.login(&read).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(
        !r.header("set-cookie").contains("keyward_session="),
        "{r:?}"
    );
    assert!(!r.body.contains(&read));
    let r = s.login("kw_dev_nope").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.body.contains("not accepted"), "{r:?}");
    let admin = s.issue("web-app", &["admin"]).await;
    let r = s
        .send(
            s.req(Method::POST, "/login")
                .header("sec-fetch-site", "cross-site")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("key={admin}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_not_logged(&read);
    assert_not_logged(&admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_the_api_keys_page_and_the_openapi_document_are_served() {
    let s = TestServer::start().await;
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
               img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
    for path in ["/login", "/settings/api-keys", "/settings/api-keys/"] {
        let r = s.send(s.req(Method::GET, path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
        assert!(r.header("content-type").starts_with("text/html"), "{path}");
        assert_eq!(r.header("content-security-policy"), csp, "{path}");
        assert_eq!(r.header("cache-control"), "no-store", "{path}");
        assert!(
            !r.body.contains("<script>") && !r.body.contains("style="),
            "{path}"
        );
    }
    let page = s.send(s.req(Method::GET, "/settings/api-keys")).await;
    assert!(
        page.body.contains("data-api=\"/api/v1/me/api-keys\""),
        "{page:?}"
    );
    let r = s.send(s.req(Method::GET, "/api/v1/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    assert_eq!(doc["servers"][0]["url"], "/api/v1/me/api-keys");
    assert!(doc["paths"]["/{key_id}/rotate/"].is_object(), "{doc}");
}

// ---------------------------------------------------------------------------------------
// With the CLI and the real binary

/// A manager of its own on the server's database, with its own store connection and cache:
/// what the admin CLI (`keyward-cli`, tested in its own package) builds in its process.
async fn admin_manager(db: &str) -> KeyManager {
    KeyManager::builder_arc(open_store(db).await.unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap()
}

/// The first admin key, issued by [`admin_manager`] on the server's database.
async fn admin_issue(db: &str, scopes: &[&str]) -> String {
    let manager = admin_manager(db).await;
    let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(scopes)
        .unwrap();
    let key = manager
        .issue(req)
        .await
        .unwrap()
        .key
        .expose_secret()
        .to_owned();
    manager.shutdown().await.unwrap();
    ApiKey::parse(&key).unwrap();
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_key_comes_from_another_manager_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("keys.db").display());
    let admin = admin_issue(&db, &["admin"]).await;
    let s = TestServer::start_on(dir, db, |s| s).await;
    let r = s
        .post_json(
            server::API_KEYS,
            &admin,
            &json!({"name": "ci", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let key = r.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(s.ping(&key).await.status, StatusCode::OK);
    // The other manager sees the key issued over HTTP, and its revocation reaches the server
    // through the store's change feed within its poll interval.
    let other = admin_manager(&s.db_url).await;
    assert_eq!(other.list(&ListQuery::default()).await.unwrap().len(), 2);
    other
        .revoke(&KeyId::new(&id_of(&key)).unwrap())
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let r = s.ping(&key).await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_invalid_token(&r);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still accepted: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_writes_the_last_used_times() {
    let mut s = TestServer::start().await;
    let key = s.issue("web-app", &["read"]).await;
    let id = KeyId::new(&id_of(&key)).unwrap();
    assert_eq!(s.ping(&key).await.status, StatusCode::OK);
    s.stop().await;
    let info = s.manager.get(&id).await.unwrap().unwrap();
    assert!(info.last_used_at.is_some(), "{info:?}");
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process that is killed (and reaped) if the test panics before it took it back.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_serves_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = &format!("sqlite:{}", dir.path().join("keys.db").display());
    let key = admin_issue(db, &["read", "admin"]).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_keyward-server"))
            .current_dir(dir.path())
            .args(["--db", db, "--addr", &addr, "--env", "dev", "--env", "stg"])
            .env("KEYWARD_INSECURE_FAST_HASH", "1")
            .env("RUST_LOG", "debug")
            .env_remove("KEYWARD_DB")
            .env_remove("KEYWARD_PREFIX")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let child = server.0.as_mut().unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = server.0.take().unwrap().wait_with_output().unwrap();
            panic!("the server exited early ({status}): {out:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no /healthz in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .get(format!("{base}{}", server::PING))
        .header("authorization", format!("bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Core dumps are off: a crash cannot write the keys in its buffers to disk.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    let r = client
        .get(format!("{base}{}", server::API_KEYS))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // SIGTERM: a graceful stop that flushes the last-used time of the key.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(15) {
            panic!("the server did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = server.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stdout.trim(), format!("listening on {base}"));
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert_keys_hidden("keyward-server's log", &stderr, &[&key]);
    let listed = admin_manager(db)
        .await
        .list(&ListQuery::default())
        .await
        .unwrap();
    assert!(listed[0].last_used_at.is_some(), "{listed:?}");
}

#[test]
fn the_real_binary_refuses_a_bad_store_url_without_echoing_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_keyward-server"))
        .args([
            "--db",
            "mysql://root:hunter2@db/keys",
            "--addr",
            "127.0.0.1:0",
        ])
        .env_remove("KEYWARD_DB")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open the key store"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
