//! `GET /metrics` of the example server over real HTTP: every verify outcome a client can cause
//! is driven through the server, and the scrape right after each request shows exactly that
//! outcome counted once more (issue 16). The Prometheus recorder is the process's global one,
//! installed once before any manager is built, as `keyward-server` does.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keyward::conformance::{FailingStore, with_wrong_secret};
use keyward::{
    ApiKey, Credits, HashParams, Hasher, IssueRequest, KeyLimits, KeyManager, KeyRecord, KeyStore,
    ManualClock, RateLimit, SecretHash, Timestamp,
};
use keyward_cli::open_store;
use keyward_examples::server;
use metrics_exporter_prometheus::PrometheusHandle;
use reqwest::StatusCode;
use tokio::sync::oneshot;

fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| server::metrics::install().expect("the only recorder of this process"))
        .clone()
}

/// The server on 127.0.0.1:0 with `/metrics` mounted, over SQLite behind a store that can be
/// switched off; one hashing worker and no queue, so a verify arriving while it hashes is
/// refused as overloaded.
struct MetricsServer {
    base: String,
    client: reqwest::Client,
    manager: KeyManager,
    store: Arc<dyn KeyStore>,
    clock: ManualClock,
    down: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl MetricsServer {
    async fn start() -> Self {
        let handle = prometheus(); // before the manager
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite:{}", dir.path().join("keys.db").display());
        let down = Arc::new(AtomicBool::new(false));
        let store: Arc<dyn KeyStore> = Arc::new(FailingStore::new(
            open_store(&db_url).await.unwrap(),
            "sqlite",
            Arc::clone(&down),
        ));
        let clock = ManualClock::new(Timestamp::now());
        // Slow enough (tens of ms) that a request arrives while the only worker is busy.
        let params = HashParams {
            m_cost: 19_456,
            t_cost: 10,
            p_cost: 1,
        };
        let manager = KeyManager::builder_arc(Arc::clone(&store))
            .serve("dev".parse().unwrap())
            .hasher(Hasher::with_workers(params, 1, 0).unwrap())
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let app = server::router(manager.clone()).merge(server::metrics::router(handle));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(server::serve_app(listener, app, manager.clone(), async {
            let _ = rx.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            manager,
            store,
            clock,
            down,
            _dir: dir,
            stop: Some(tx),
        }
    }

    async fn issue(&self, req: IssueRequest) -> (KeyRecord, String) {
        let issued = self.manager.issue(req).await.unwrap();
        (issued.record, issued.key.expose_secret().to_owned())
    }

    /// The scrape, as text.
    async fn scrape(&self) -> String {
        let r = self
            .client
            .get(format!("{}{}", self.base, server::metrics::METRICS))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        r.text().await.unwrap()
    }

    /// `keyward_verify_total` by outcome, as scraped.
    async fn outcomes(&self) -> BTreeMap<String, u64> {
        outcomes(&self.scrape().await)
    }

    /// Sends `request` to the ping route and checks that exactly `outcome` was counted, once,
    /// and that the answer has `status`.
    async fn expect(
        &self,
        outcome: &str,
        status: StatusCode,
        request: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) {
        let before = self.outcomes().await;
        let url = format!("{}{}", self.base, server::PING);
        let answer = request(self.client.get(url)).send().await.unwrap();
        assert_eq!(answer.status(), status, "{outcome}");
        let after = self.outcomes().await;
        let moved: BTreeMap<&String, u64> = after
            .iter()
            .filter_map(|(k, v)| {
                let d = v - before.get(k).copied().unwrap_or(0);
                (d > 0).then_some((k, d))
            })
            .collect();
        assert_eq!(
            moved,
            BTreeMap::from([(&outcome.to_owned(), 1)]),
            "counted for {outcome}"
        );
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The `keyward_verify_total{outcome="…"} N` lines of a scrape.
fn outcomes(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("keyward_verify_total{outcome=\"")?;
            let (outcome, rest) = rest.split_once("\"} ")?;
            Some((outcome.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn read_req() -> IssueRequest {
    IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(["read"])
        .unwrap()
}

fn generated(prefix: &str, env: &str) -> String {
    ApiKey::generate(prefix.parse().unwrap(), env.parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_each_verify_outcome_counted_as_it_happened() {
    let s = MetricsServer::start().await;
    let (_, ok_t) = s.issue(read_req()).await;
    let (_, write_t) = s
        .issue(
            IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                .scopes(["write"])
                .unwrap(),
        )
        .await;
    let (revoked, revoked_t) = s.issue(read_req()).await;
    let (_, expiring_t) = s
        .issue(read_req().expires_in(Duration::from_secs(60)))
        .await;
    let (_, rated_t) = s
        .issue(read_req().limits(KeyLimits {
            rate_limit: Some(RateLimit {
                requests: 1,
                per_seconds: 3600,
            }),
            ..KeyLimits::default()
        }))
        .await;
    let (_, credited_t) = s
        .issue(read_req().limits(KeyLimits {
            credits: Some(Credits {
                amount: 1,
                refill: None,
            }),
            ..KeyLimits::default()
        }))
        .await;
    let (template, uncached_t) = s.issue(read_req()).await;
    let (_, busy_t) = s.issue(read_req()).await;
    // A record whose stored hash is not Argon2: the server fails on it, not the store.
    let odd = ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    s.store
        .insert(
            &KeyRecord {
                id: odd.id(),
                secret_hash: SecretHash::from_phc(
                    "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
                )
                .unwrap(),
                ..template
            },
            &[],
        )
        .await
        .unwrap();

    let bearer = |t: &str| {
        let t = t.to_owned();
        move |r: reqwest::RequestBuilder| r.bearer_auth(t)
    };
    use StatusCode as S;
    s.expect("missing", S::UNAUTHORIZED, |r| r).await;
    s.expect("malformed", S::UNAUTHORIZED, bearer("not-a-key"))
        .await;
    let query = format!("api_key={ok_t}");
    s.expect("malformed", S::BAD_REQUEST, |r| r.query(&[("q", &query)]))
        .await;
    s.expect(
        "wrong_prefix",
        S::UNAUTHORIZED,
        bearer(&generated("zz", "dev")),
    )
    .await;
    s.expect(
        "wrong_environment",
        S::UNAUTHORIZED,
        bearer(&generated("kw", "prd")),
    )
    .await;
    s.expect("invalid", S::UNAUTHORIZED, bearer(&generated("kw", "dev")))
        .await;
    s.expect("ok", S::OK, bearer(&ok_t)).await;
    s.expect("ok", S::OK, bearer(&ok_t)).await; // warm
    s.expect(
        "invalid",
        S::UNAUTHORIZED,
        bearer(&with_wrong_secret(&ok_t, 5)),
    )
    .await;
    s.expect("insufficient_scope", S::FORBIDDEN, bearer(&write_t))
        .await;
    s.manager.revoke(&revoked.id).await.unwrap();
    s.expect("revoked", S::UNAUTHORIZED, bearer(&revoked_t))
        .await;
    s.expect("ok", S::OK, bearer(&rated_t)).await;
    s.expect("rate_limited", S::TOO_MANY_REQUESTS, bearer(&rated_t))
        .await;
    s.expect("ok", S::OK, bearer(&credited_t)).await;
    s.expect("quota", S::TOO_MANY_REQUESTS, bearer(&credited_t))
        .await;
    s.expect(
        "internal_error",
        S::SERVICE_UNAVAILABLE,
        bearer(odd.expose_secret()),
    )
    .await;
    s.clock.advance(Duration::from_secs(61));
    s.expect("expired", S::UNAUTHORIZED, bearer(&expiring_t))
        .await;

    s.down.store(true, Ordering::SeqCst);
    s.expect("store_error", S::SERVICE_UNAVAILABLE, bearer(&uncached_t))
        .await;
    s.down.store(false, Ordering::SeqCst);

    // The only hashing worker busy: a cold verify is refused, not queued.
    let hasher = s.manager.hasher().clone();
    let before = hasher.runs();
    let holding = tokio::spawn({
        let hasher = hasher.clone();
        async move { hasher.hash(b"hold the only worker").await }
    });
    while hasher.runs() == before {
        tokio::task::yield_now().await;
    }
    s.expect("overloaded", S::SERVICE_UNAVAILABLE, bearer(&busy_t))
        .await;
    holding.await.unwrap().unwrap();

    // The other metrics are in the same scrape.
    let text = s.scrape().await;
    for line in [
        "keyward_cache_total{result=\"hit\"} ",
        "keyward_hash_runs_total{purpose=\"issue\"} ",
        "keyward_hash_runs_total{purpose=\"verify\"} ",
        "keyward_quota_refusals_total{kind=\"credits\"} 1",
        "keyward_credits_spent_total 1",
        "keyward_store_seconds_count{op=\"get\",store=\"custom\"} ",
        "# HELP keyward_verify_total ",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    for key in [&ok_t, &revoked_t, &credited_t] {
        let id = ApiKey::parse(key).unwrap().id().to_string();
        assert!(
            !text.contains(&id) && !text.contains(key.as_str()),
            "no key or id"
        );
    }
    assert!(!text.contains("web-app"), "no project name");
}
