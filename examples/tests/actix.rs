//! The actix-web middleware of `keyward_examples::actix` over real HTTP: an actix-web server
//! on an ephemeral loopback port, driven with reqwest, for every kind of answer.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use keyward::conformance::FailingStore;
use keyward::http::Guard;
use keyward::{HashParams, Identity, IssueRequest, KeyLimits, KeyManager, KeyStore, RateLimit};
use keyward_sqlite::SqliteStore;
use reqwest::StatusCode;
use serde_json::Value;

async fn ingest(who: web::ReqData<Identity>) -> String {
    format!("{}/{}", who.project, who.environment)
}

struct Server {
    base: String,
    keys: KeyManager,
    down: Arc<AtomicBool>,
    http: reqwest::Client,
}

/// Serves `POST /ingest` (scope `write`) and `GET /ping` (scope `read`) behind the
/// middleware, on a store that fails while `down` is set.
async fn start() -> Server {
    let store: Arc<dyn KeyStore> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let down = Arc::new(AtomicBool::new(false));
    let store = FailingStore::new(store, "sqlite", Arc::clone(&down));
    let keys = KeyManager::builder(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let guard = Guard::new(keys.clone()).realm("actix-test");
    let (write, read) = (guard.clone().require(["write"]), guard.require(["read"]));
    let server = HttpServer::new(move || {
        let (write, read) = (write.clone(), read.clone());
        App::new()
            .service(
                web::resource("/ingest")
                    .wrap(from_fn(move |req, next| {
                        keyward_examples::actix::authenticate(write.clone(), req, next)
                    }))
                    .route(web::post().to(ingest)),
            )
            .service(
                web::resource("/ping")
                    .wrap(from_fn(move |req, next| {
                        keyward_examples::actix::authenticate(read.clone(), req, next)
                    }))
                    .route(web::get().to(ingest)),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    Server {
        base: format!("http://{addr}"),
        keys,
        down,
        http: reqwest::Client::new(),
    }
}

impl Server {
    async fn issue(&self, scopes: &[&str]) -> String {
        self.issue_with(scopes, KeyLimits::default()).await
    }

    async fn issue_with(&self, scopes: &[&str], limits: KeyLimits) -> String {
        let request = IssueRequest::new("shop".parse().unwrap(), "dev".parse().unwrap())
            .scopes(scopes.iter().copied())
            .unwrap()
            .limits(limits);
        let issued = self.keys.issue(request).await.unwrap();
        issued.key.expose_secret().to_owned()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, String)],
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (challenge, retry_after) = (header("www-authenticate"), header("retry-after"));
        let body = res.text().await.unwrap();
        Answer {
            status,
            challenge,
            retry_after,
            body,
        }
    }

    async fn post(&self, key: &str) -> Answer {
        let bearer = [("authorization", format!("Bearer {key}"))];
        self.send(reqwest::Method::POST, "/ingest", &bearer).await
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    fn error(&self) -> String {
        let json: Value = serde_json::from_str(&self.body).expect(&self.body);
        json["error"].as_str().unwrap().to_owned()
    }
}

#[actix_web::test]
async fn a_valid_key_reaches_the_route_with_its_identity() {
    let server = start().await;
    let key = server.issue(&["write"]).await;
    // The first request verifies through the store, the second from the verify cache.
    for _ in 0..2 {
        let answer = server.post(&key).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body, "shop/dev");
    }
    let by_header = [("x-api-key", key.clone())];
    let answer = server
        .send(reqwest::Method::POST, "/ingest", &by_header)
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "shop/dev")
    );
}

#[actix_web::test]
async fn refusals_carry_keywards_status_challenge_and_body() {
    let server = start().await;
    let key = server.issue(&["write"]).await;

    let missing = server.send(reqwest::Method::POST, "/ingest", &[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.challenge.as_deref(),
        Some("Bearer realm=\"actix-test\"")
    );
    assert_eq!(missing.error(), "missing_credentials");

    let malformed = server.post("kw_dev_not-a-key").await;
    assert_eq!(
        (malformed.status, malformed.error().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let prd = key.replacen("_dev_", "_prd_", 1);
    let wrong_env = server.post(&prd).await;
    assert_eq!(wrong_env.status, StatusCode::UNAUTHORIZED);
    assert!(
        !wrong_env.body.contains(&prd[20..]),
        "the secret is not echoed"
    );

    let scope = server
        .send(
            reqwest::Method::GET,
            "/ping",
            &[("authorization", format!("Bearer {key}"))],
        )
        .await;
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    assert!(
        scope
            .challenge
            .as_deref()
            .unwrap()
            .contains("scope=\"read\"")
    );
    assert_eq!(scope.error(), "insufficient_scope");

    let two = [
        ("authorization", format!("Bearer {key}")),
        ("x-api-key", key.clone()),
    ];
    let two = server.send(reqwest::Method::POST, "/ingest", &two).await;
    assert_eq!(
        (two.status, two.error().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    let in_query = server
        .send(
            reqwest::Method::POST,
            &format!("/ingest?api_key={key}"),
            &[],
        )
        .await;
    assert_eq!(in_query.status, StatusCode::BAD_REQUEST);

    let id = key.split('_').nth(2).unwrap().parse().unwrap();
    server.keys.revoke(&id).await.unwrap();
    let revoked = server.post(&key).await;
    assert_eq!(
        (revoked.status, revoked.error().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
}

#[actix_web::test]
async fn a_store_outage_is_503_and_quota_is_429_with_retry_after() {
    let server = start().await;
    let key = server.issue(&["write"]).await;
    server.down.store(true, Ordering::SeqCst);
    let down = server.post(&key).await; // not cached yet: the store must answer
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{down:?}");
    assert_eq!(down.error(), "temporarily_unavailable");
    server.down.store(false, Ordering::SeqCst);

    let one_a_minute = KeyLimits {
        rate_limit: Some(RateLimit {
            requests: 1,
            per_seconds: 60,
        }),
        ..KeyLimits::default()
    };
    let limited = server.issue_with(&["write"], one_a_minute).await;
    assert_eq!(server.post(&limited).await.status, StatusCode::OK);
    let refused = server.post(&limited).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(refused.error(), "too_many_requests");
    let retry_after: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}
