//! The axum adapter (`keyward::axum`): every outcome through a Router with the layer, its
//! status, challenge, `Retry-After` and JSON `error` code; errors returned by handlers in the
//! layer's realm; the extractor without the layer; and which path a request takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use keyward::axum::{KeywardLayer, VerifiedKey};
use keyward::conformance::{FailingStore, LogBuffer, with_wrong_secret};
use keyward::{
    ApiKey, AuthError, Error, HashParams, IssueRequest, KeyLimits, KeyManager, KeyStore,
    ManualClock, Period, Quota, RateLimit, StoreError, Timestamp,
};
use serde_json::Value;
use tower::{Layer as _, Service as _, ServiceExt as _};

/// The layer's realm in these tests (not the default, `api`).
const REALM: &str = "ingest";

/// 2030-01-01T12:00:00Z: half a day before a daily quota resets.
fn noon() -> Timestamp {
    Timestamp::parse_rfc3339("2030-01-01T12:00:00Z").unwrap()
}

struct App {
    manager: KeyManager,
    clock: ManualClock,
    down: Arc<AtomicBool>,
    router: Router,
}

async fn read(VerifiedKey(who): VerifiedKey) -> String {
    who.id.to_string()
}

/// Counts 10 events: `?` turns a quota into 429, a store failure into 503.
async fn write(
    State(manager): State<KeyManager>,
    VerifiedKey(who): VerifiedKey,
) -> Result<String, Error> {
    let counted = manager.consume_events(&who, 10).await?;
    Ok(counted.accepted.to_string())
}

/// Whether the credential headers the handler sees are marked sensitive.
async fn sensitive(headers: HeaderMap) -> String {
    let marked: Vec<bool> = ["authorization", "x-api-key"]
        .iter()
        .filter_map(|name| headers.get(*name).map(|v| v.is_sensitive()))
        .collect();
    format!("{marked:?}")
}

async fn fails_auth(VerifiedKey(_): VerifiedKey) -> Result<String, AuthError> {
    Err(AuthError::Invalid)
}

async fn fails_store() -> Result<String, Error> {
    Err(Error::Store(StoreError::backend(
        "test",
        "connection refused",
    )))
}

async fn fails_overloaded() -> Result<String, Error> {
    Err(Error::Overloaded)
}

async fn needs_key(VerifiedKey(who): VerifiedKey) -> String {
    who.id.to_string()
}

async fn maybe_key(who: Option<VerifiedKey>) -> &'static str {
    if who.is_some() { "some" } else { "none" }
}

impl App {
    fn new() -> Self {
        let down = Arc::new(AtomicBool::new(false));
        let store: Arc<dyn KeyStore> = Arc::new(FailingStore::new(
            Arc::new(keyward_memory::MemoryStore::new()),
            "memory",
            down.clone(),
        ));
        let clock = ManualClock::new(noon());
        let manager = KeyManager::builder_arc(store)
            .prefix("av".parse().unwrap())
            .serve("dev".parse().unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let auth = KeywardLayer::new(manager.clone()).realm(REALM);
        let router = Router::new()
            .route(
                "/read",
                get(read).route_layer(auth.clone().require(["read"])),
            )
            .route(
                "/write",
                post(write).route_layer(auth.clone().require(["write"])),
            )
            .route(
                "/project",
                get(read).route_layer(auth.clone().project("other-project".parse().unwrap())),
            )
            .route("/sensitive", get(sensitive).route_layer(auth.clone()))
            .route("/fails/auth", get(fails_auth).route_layer(auth.clone()))
            .route("/fails/store", get(fails_store).route_layer(auth.clone()))
            .route(
                "/fails/overloaded",
                get(fails_overloaded).route_layer(auth.clone()),
            )
            .route(
                "/unguarded/auth",
                get(|| async { Err::<(), _>(AuthError::Invalid) }),
            )
            .route("/unguarded/store", get(fails_store))
            .route("/needs", get(needs_key))
            .route("/maybe", get(maybe_key))
            .with_state(manager.clone());
        Self {
            manager,
            clock,
            down,
            router,
        }
    }

    async fn issue_with(
        &self,
        scopes: &[&str],
        change: impl FnOnce(IssueRequest) -> IssueRequest,
    ) -> String {
        let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
            .scopes(scopes)
            .unwrap();
        let issued = self.manager.issue(change(req)).await.unwrap();
        issued.key.expose_secret().to_owned()
    }

    async fn issue(&self, scopes: &[&str]) -> String {
        self.issue_with(scopes, |r| r).await
    }

    async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let r = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        Resp::of(r).await
    }

    async fn get(&self, uri: &str, key: &str) -> Resp {
        self.send("GET", uri, &[("authorization", &format!("Bearer {key}"))])
            .await
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    async fn of(r: Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        Self {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    fn error(&self) -> String {
        let json: Value = serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {}", self.body);
        });
        assert_eq!(
            self.headers["content-type"], "application/json",
            "{}",
            self.body
        );
        json["error"].as_str().unwrap().to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn challenge(&self) -> &str {
        self.header("www-authenticate").unwrap_or_else(|| {
            panic!("no challenge: {} {}", self.status, self.body);
        })
    }

    /// Status, `error` code, and the start of the challenge.
    fn assert(&self, status: StatusCode, error: &str, challenge: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.error(), error, "{}", self.body);
        match challenge {
            Some(start) => assert!(
                self.challenge().starts_with(start),
                "{} does not start with {start}",
                self.challenge()
            ),
            None => assert_eq!(self.header("www-authenticate"), None),
        }
    }

    fn retry_after(&self) -> u64 {
        self.header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {} {}", self.status, self.body))
            .parse()
            .unwrap()
    }
}

fn invalid_token() -> String {
    format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"")
}

// ---------------------------------------------------------------------------------------
// Accepted

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_bearer_any_case_x_api_key_or_basic_is_accepted() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    let id = ApiKey::parse(&key).unwrap().id().to_string();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    for header in [
        ("authorization", format!("Bearer {key}")),
        ("authorization", format!("bEaReR {key}")),
        ("x-api-key", key.clone()),
        ("authorization", format!("Basic {basic}")),
    ] {
        let r = app.send("GET", "/read", &[(header.0, &header.1)]).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, id.as_str()));
        assert_eq!(r.header("www-authenticate"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_sees_the_credential_header_marked_sensitive() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    for name in ["authorization", "x-api-key"] {
        let value = if name == "authorization" {
            format!("Bearer {key}")
        } else {
            key.clone()
        };
        // Twice: the cold path, then the cached one.
        for _ in 0..2 {
            let r = app.send("GET", "/sensitive", &[(name, &value)]).await;
            assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "[true]"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// 401

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_is_401_with_a_bare_challenge_in_the_layers_realm() {
    let app = App::new();
    let r = app.send("GET", "/read", &[]).await;
    r.assert(
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
        Some("Bearer realm="),
    );
    assert_eq!(r.challenge(), format!("Bearer realm=\"{REALM}\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_foreign_and_wrong_environment_keys_are_401_invalid_token() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    let foreign = ApiKey::generate("zz".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    let other_env = ApiKey::generate("av".parse().unwrap(), "prd".parse().unwrap()).unwrap();
    for (what, presented) in [
        ("malformed", "not-a-key".to_owned()),
        ("truncated", key[..key.len() - 1].to_owned()),
        ("wrong prefix", foreign.expose_secret().to_owned()),
        ("wrong environment", other_env.expose_secret().to_owned()),
    ] {
        let r = app.get("/read", &presented).await;
        r.assert(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some(&invalid_token()),
        );
        assert!(!r.body.contains(&presented), "{what}: the key is echoed");
    }
    let r = app
        .send("GET", "/read", &[("authorization", "Token abc")])
        .await;
    r.assert(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        Some(&invalid_token()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_and_a_wrong_secret_are_the_same_401() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    let unknown = ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    let r_unknown = app.get("/read", unknown.expose_secret()).await;
    r_unknown.assert(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        Some(&invalid_token()),
    );
    let r_wrong = app.get("/read", &with_wrong_secret(&key, 7)).await;
    r_wrong.assert(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        Some(&invalid_token()),
    );
    assert_eq!(r_unknown.body, r_wrong.body);
    assert_eq!(r_unknown.headers, r_wrong.headers);
    // And once the id is cached, a wrong secret still gets the same answer.
    assert_eq!(app.get("/read", &key).await.status, StatusCode::OK);
    let r_cached = app.get("/read", &with_wrong_secret(&key, 9)).await;
    assert_eq!(r_cached.body, r_wrong.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_401_on_the_next_request() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    assert_eq!(app.get("/read", &key).await.status, StatusCode::OK);
    app.manager
        .revoke(&ApiKey::parse(&key).unwrap().id())
        .await
        .unwrap();
    let r = app.get("/read", &key).await;
    r.assert(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        Some(&invalid_token()),
    );
    assert!(r.challenge().contains("revoked"), "{}", r.challenge());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_401() {
    let app = App::new();
    let key = app
        .issue_with(&["read"], |r| r.expires_in(Duration::from_secs(3600)))
        .await;
    assert_eq!(app.get("/read", &key).await.status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(7200));
    let r = app.get("/read", &key).await;
    r.assert(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        Some(&invalid_token()),
    );
    assert!(r.challenge().contains("expired"), "{}", r.challenge());
}

// ---------------------------------------------------------------------------------------
// 403

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_is_403_naming_it_in_the_challenge() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    let r = app
        .send(
            "POST",
            "/write",
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await;
    let start = format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\"");
    r.assert(StatusCode::FORBIDDEN, "insufficient_scope", Some(&start));
    assert!(
        r.challenge().ends_with(", scope=\"write\""),
        "{}",
        r.challenge()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_project_is_403() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    let r = app.get("/project", &key).await;
    let start = format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\"");
    r.assert(StatusCode::FORBIDDEN, "insufficient_scope", Some(&start));
    assert!(r.challenge().contains("other-project"), "{}", r.challenge());
}

// ---------------------------------------------------------------------------------------
// 429

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_key_is_429_with_retry_after() {
    let app = App::new();
    let key = app
        .issue_with(&["read"], |r| {
            r.limits(KeyLimits {
                rate_limit: Some(RateLimit {
                    requests: 1,
                    per_seconds: 60,
                }),
                ..KeyLimits::default()
            })
        })
        .await;
    assert_eq!(app.get("/read", &key).await.status, StatusCode::OK);
    let r = app.get("/read", &key).await;
    r.assert(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None);
    assert!((1..=60).contains(&r.retry_after()), "{}", r.retry_after());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_returned_by_a_handler_is_429_with_retry_after_on_the_managers_clock() {
    let app = App::new();
    let key = app
        .issue_with(&["write"], |r| {
            r.limits(KeyLimits {
                quota: Some(Quota {
                    limit: 15,
                    period: Period::Day,
                }),
                ..KeyLimits::default()
            })
        })
        .await;
    let auth = [("authorization", format!("Bearer {key}"))];
    let auth = [(auth[0].0, auth[0].1.as_str())];
    let r = app.send("POST", "/write", &auth).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "10"));
    let r = app.send("POST", "/write", &auth).await;
    r.assert(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None);
    // Noon on the manager's clock: the daily quota resets in 12 hours (the system clock,
    // years earlier, would say otherwise).
    assert_eq!(r.retry_after(), 12 * 3600);
}

// ---------------------------------------------------------------------------------------
// 400

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_credentials_are_400_invalid_request() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    let r = app
        .send(
            "GET",
            "/read",
            &[
                ("authorization", &format!("Bearer {key}")),
                ("x-api-key", &key),
            ],
        )
        .await;
    let start = format!("Bearer realm=\"{REALM}\", error=\"invalid_request\"");
    r.assert(StatusCode::BAD_REQUEST, "invalid_request", Some(&start));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_the_query_is_400_even_with_a_valid_header() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    let start = format!("Bearer realm=\"{REALM}\", error=\"invalid_request\"");
    for query in [
        format!("api_key={key}"),
        format!("q={key}"),
        key.replace('_', "%5F"),
        "access_token=abc".to_owned(),
    ] {
        let r = app.get(&format!("/read?{query}"), &key).await;
        r.assert(StatusCode::BAD_REQUEST, "invalid_request", Some(&start));
        assert!(!r.body.contains(&key));
    }
    // An ordinary query passes.
    assert_eq!(app.get("/read?page=2", &key).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// 503

fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let logs = LogBuffer::new();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread")]
async fn a_cold_key_with_the_store_down_is_503_and_logged_without_the_key() {
    let (logs, _guard) = capture_logs();
    let app = App::new();
    let key = app.issue(&["read"]).await;
    app.down.store(true, Ordering::SeqCst);
    let r = app.get("/read", &key).await;
    r.assert(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        None,
    );
    assert_eq!(r.header("retry-after"), None);
    let text = logs.text();
    let id = ApiKey::parse(&key).unwrap().id().to_string();
    assert!(
        text.lines()
            .any(|l| l.contains("ERROR") && l.contains(&id) && l.contains("could not verify")),
        "{text}"
    );
    keyward::conformance::assert_keys_hidden("the log", &text, &[&key]);
    app.down.store(false, Ordering::SeqCst);
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_error_returned_by_a_handler_is_503_and_logged_with_the_key_id() {
    let (logs, _guard) = capture_logs();
    let app = App::new();
    let key = app.issue(&[]).await;
    let r = app.get("/fails/store", &key).await;
    r.assert(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        None,
    );
    assert!(!r.body.contains("connection refused"), "{}", r.body);
    let text = logs.text();
    let id = ApiKey::parse(&key).unwrap().id().to_string();
    assert!(
        text.lines()
            .any(|l| l.contains("ERROR") && l.contains(&id) && l.contains("connection refused")),
        "{text}"
    );
    keyward::conformance::assert_keys_hidden("the log", &text, &[&key]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_error_returned_without_the_layer_is_503_and_still_logged() {
    let (logs, _guard) = capture_logs();
    let app = App::new();
    let r = app.send("GET", "/unguarded/store", &[]).await;
    r.assert(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        None,
    );
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("ERROR") && l.contains("no KeywardLayer")),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_error_answered_by_the_layer_is_logged_once() {
    let (logs, _guard) = capture_logs();
    let app = App::new();
    let key = app.issue(&[]).await;
    app.get("/fails/store", &key).await;
    let text = logs.text();
    assert_eq!(
        text.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_keys_beyond_the_hashing_pool_are_503_with_retry_after() {
    // One Argon2 worker and no queue: concurrent cold verifies beyond the first are refused.
    let hasher = keyward::Hasher::with_workers(HashParams::OWASP_MINIMUM, 1, 0).unwrap();
    let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hasher(hasher)
        .build()
        .unwrap();
    let mut keys = Vec::new();
    for _ in 0..6 {
        let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap());
        keys.push(
            manager
                .issue(req)
                .await
                .unwrap()
                .key
                .expose_secret()
                .to_owned(),
        );
    }
    let router = Router::new().route(
        "/",
        get(read).route_layer(KeywardLayer::new(manager).realm(REALM)),
    );
    let mut requests = tokio::task::JoinSet::new();
    for key in keys {
        let router = router.clone();
        requests.spawn(async move {
            let req = Request::get("/")
                .header("x-api-key", key)
                .body(Body::empty())
                .unwrap();
            Resp::of(router.oneshot(req).await.unwrap()).await
        });
    }
    let mut overloaded = 0;
    while let Some(r) = requests.join_next().await {
        let r = r.unwrap();
        if r.status == StatusCode::OK {
            continue;
        }
        r.assert(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            None,
        );
        assert_eq!(r.retry_after(), 1);
        overloaded += 1;
    }
    assert!((1..6).contains(&overloaded), "{overloaded} of 6 overloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overload_returned_by_a_handler_is_503_with_retry_after() {
    let app = App::new();
    let key = app.issue(&[]).await;
    let r = app.get("/fails/overloaded", &key).await;
    r.assert(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        None,
    );
    assert_eq!(r.retry_after(), 1);
}

// ---------------------------------------------------------------------------------------
// Errors returned by handlers, the extractor

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_returned_by_a_handler_answers_in_the_layers_realm_cold_and_warm() {
    let app = App::new();
    let key = app.issue(&[]).await;
    for _ in 0..2 {
        let r = app.get("/fails/auth", &key).await;
        r.assert(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some(&invalid_token()),
        );
    }
    // Without a layer, the default realm.
    let r = app.send("GET", "/unguarded/auth", &[]).await;
    let start = format!(
        "Bearer realm=\"{}\", error=\"invalid_token\"",
        keyward::axum::DEFAULT_REALM
    );
    r.assert(StatusCode::UNAUTHORIZED, "invalid_token", Some(&start));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_innermost_layer_answers_a_handlers_error_and_the_outer_one_leaves_it() {
    let app = App::new();
    let key = app.issue(&[]).await;
    let inner = KeywardLayer::new(app.manager.clone()).realm("inner");
    let outer = KeywardLayer::new(app.manager.clone()).realm("outer");
    let router = Router::new()
        .route("/", get(fails_auth).route_layer(inner))
        .layer(outer);
    let request = || {
        Request::get("/")
            .header("x-api-key", &key)
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        let r = Resp::of(router.clone().oneshot(request()).await.unwrap()).await;
        r.assert(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some("Bearer realm=\"inner\", error=\"invalid_token\""),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_verified_key_is_some_behind_the_layer() {
    let app = App::new();
    let key = app.issue(&[]).await;
    let router = Router::new().route(
        "/",
        get(maybe_key).route_layer(KeywardLayer::new(app.manager.clone())),
    );
    let r = router
        .oneshot(
            Request::get("/")
                .header("x-api-key", &key)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let r = Resp::of(r).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "some"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extractor_without_the_layer_answers_500_with_a_hint_and_the_option_none() {
    let app = App::new();
    let key = app.issue(&[]).await;
    let r = app.get("/needs", &key).await;
    r.assert(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None);
    assert!(r.body.contains("KeywardLayer"), "{}", r.body);
    let r = app.get("/maybe", &key).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "none"));
}

// ---------------------------------------------------------------------------------------
// Which path a request takes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_key_gets_the_routes_own_future_and_a_cold_one_a_boxed_verify() {
    let app = App::new();
    let key = app.issue(&["read"]).await;
    let route = tower::service_fn(|req: Request<Body>| async move {
        let who = req.extensions().get::<keyward::Identity>().unwrap();
        Ok::<_, Infallible>(who.project.to_string())
    });
    let mut svc = KeywardLayer::new(app.manager.clone())
        .require(["read"])
        .layer(route);
    let request = |key: &str| {
        Request::get("/")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    async fn answer(f: impl Future<Output = Result<Response, Infallible>>) -> (StatusCode, String) {
        let r = Resp::of(f.await.unwrap()).await;
        (r.status, r.body)
    }

    // Cold: the store is asked, in a boxed future.
    let cold = svc.ready().await.unwrap().call(request(&key));
    assert_eq!(format!("{cold:?}"), "KeywardFuture(verifying)");
    assert_eq!(answer(cold).await, (StatusCode::OK, "web-app".to_owned()));
    // Warm: decided in `call`, the route's own future comes back.
    let warm = svc.ready().await.unwrap().call(request(&key));
    assert_eq!(format!("{warm:?}"), "KeywardFuture(route)");
    assert_eq!(answer(warm).await, (StatusCode::OK, "web-app".to_owned()));
    // A wrong secret for the cached id, or no key: refused on the spot.
    let wrong = svc
        .ready()
        .await
        .unwrap()
        .call(request(&with_wrong_secret(&key, 42)));
    assert_eq!(format!("{wrong:?}"), "KeywardFuture(refused)");
    assert_eq!(answer(wrong).await.0, StatusCode::UNAUTHORIZED);
    let none = svc
        .ready()
        .await
        .unwrap()
        .call(Request::get("/").body(Body::empty()).unwrap());
    assert_eq!(format!("{none:?}"), "KeywardFuture(refused)");
}

#[test]
fn the_layer_is_a_guard_and_prints_no_manager_secret() {
    let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
        .build()
        .unwrap();
    let guard = keyward::http::Guard::new(manager)
        .realm("x")
        .require(["read"]);
    let layer = KeywardLayer::from(guard.clone());
    assert_eq!(layer.guard().realm_name(), "x");
    assert_eq!(layer.requirements().scopes.to_string(), "read");
    assert!(format!("{layer:?}").contains("realm: \"x\""));
    assert!(
        KeywardLayer::new(guard.manager().clone())
            .try_require(["Not A Scope"])
            .is_err()
    );
}
