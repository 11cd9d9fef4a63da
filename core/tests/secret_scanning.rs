//! GitHub secret-scanning reports (`keyward::secret_scanning` and
//! `keyward::axum::secret_scanning::router`) over tower `oneshot`, signed with a P-256 key pair
//! each test makes: a signed report revokes a proven key and the next verify fails as revoked;
//! a missing, wrong or unknown-key signature is 401 and changes nothing; malformed tokens,
//! unknown ids and real ids with a wrong secret are false positives that revoke nothing;
//! flag mode revokes nothing; limits (413, 400), duplicates, the feedback's token hash,
//! GitHub's documented test vector, the cost in Argon2 runs, and no token in the logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyward::conformance::{LogBuffer, assert_keys_hidden, with_wrong_secret};
use keyward::secret_scanning::{
    Label, MAX_SECRETS_PER_ID, PublicKeys, SecretScanning, SecretScanningConfig, TokenEcho,
    key_identifier,
};
use keyward::{
    AuthError, Error, HashParams, IssueRequest, IssuedKey, KeyManager, KeyStatus, LeakAction,
    Requirements,
};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// A response body's bytes.
async fn collect(body: Body) -> Vec<u8> {
    axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

/// GitHub's side: a signing key and its PEM.
struct Github {
    key: SigningKey,
    pem: String,
}

impl Github {
    fn new() -> Self {
        let key = SigningKey::generate();
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        Self { key, pem }
    }

    fn id(&self) -> String {
        key_identifier(self.pem.as_bytes())
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature: DerSignature = self.key.sign(body);
        STANDARD.encode(signature.as_bytes())
    }
}

struct App {
    manager: KeyManager,
    github: Github,
    app: Router,
}

impl App {
    fn new() -> Self {
        Self::with(|c| c)
    }

    fn with(configure: impl FnOnce(SecretScanningConfig) -> SecretScanningConfig) -> Self {
        capture_logs();
        let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
            .prefix("kw".parse().unwrap())
            .serve("dev".parse().unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .build()
            .unwrap();
        let github = Github::new();
        let mut keys = PublicKeys::new();
        keys.add_pem(&github.pem).unwrap();
        let config = configure(SecretScanningConfig::new(keys));
        let app = Router::new().nest_service(
            "/api/v1/secret-scanning",
            keyward::axum::secret_scanning::router(manager.clone(), config),
        );
        Self {
            manager,
            github,
            app,
        }
    }

    async fn issue(&self) -> IssuedKey {
        self.manager
            .issue(IssueRequest::new(
                "web-app".parse().unwrap(),
                "dev".parse().unwrap(),
            ))
            .await
            .unwrap()
    }

    /// POSTs `body` with the given headers; answers the status and the JSON body.
    async fn post(&self, body: Vec<u8>, key_id: Option<&str>, sig: Option<&str>) -> (u16, Value) {
        let mut req =
            Request::post("/api/v1/secret-scanning/").header("content-type", "application/json");
        if let Some(id) = key_id {
            req = req.header("Github-Public-Key-Identifier", id);
        }
        if let Some(sig) = sig {
            req = req.header("Github-Public-Key-Signature", sig);
        }
        let response = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = collect(response.into_body()).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// POSTs `body` signed by GitHub's key.
    async fn report(&self, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let sig = self.github.sign(&bytes);
        self.post(bytes, Some(&self.github.id()), Some(&sig)).await
    }

    async fn status(&self, key: &IssuedKey) -> KeyStatus {
        self.manager
            .get(&key.key.id())
            .await
            .unwrap()
            .unwrap()
            .status
    }
}

fn one(token: &str) -> Value {
    json!([{
        "token": token,
        "type": "keyward_api_key",
        "url": "https://github.com/octo/app/blob/1a2b/.env",
        "source": "content",
    }])
}

/// The key's audit trail, newest first, as `(action, actor, summary)`.
async fn trail(app: &App, leaked: &keyward::IssuedKey) -> Vec<(String, String, Value)> {
    let query = keyward::AuditQuery::new(leaked.record.project.clone()).key(leaked.record.id);
    app.manager
        .audit(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.action.as_str().to_owned(),
                e.actor.as_str().to_owned(),
                e.summary,
            )
        })
        .collect()
}

fn sha256_hex(s: &str) -> String {
    key_identifier(s.as_bytes())
}

/// Every test's logs (one global subscriber).
fn capture_logs() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::new();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

#[tokio::test]
async fn a_signed_report_revokes_the_key_and_the_next_verify_fails_as_revoked() {
    let app = App::new();
    let leaked = app.issue().await;
    let text = leaked.key.expose_secret();
    app.manager
        .verify(text, &Requirements::none())
        .await
        .unwrap(); // cached, working

    let (status, answer) = app.report(&one(text)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!([{
            "token_hash": sha256_hex(text),
            "token_type": "keyward_api_key",
            "label": "true_positive",
        }])
    );
    assert_eq!(app.status(&leaked).await, KeyStatus::Revoked);
    assert!(matches!(
        app.manager.verify(text, &Requirements::none()).await,
        Err(Error::Auth(AuthError::Revoked { .. }))
    ));

    // The revocation is in the audit trail, by GitHub, with where the key was found.
    let url = "https://github.com/octo/app/blob/1a2b/.env";
    let leak = |outcome: &str| {
        (
            "leak_reported".to_owned(),
            keyward::secret_scanning::GITHUB_ACTOR.to_owned(),
            json!({"url": url, "source": "content", "outcome": outcome}),
        )
    };
    assert_eq!(trail(&app, &leaked).await[0], leak("revoked"));

    // Reported again (GitHub retries): still a true positive, still revoked, recorded again.
    let (status, answer) = app.report(&one(text)).await;
    assert_eq!(
        (status, &answer[0]["label"]),
        (200, &json!("true_positive"))
    );
    let entries = trail(&app, &leaked).await;
    assert_eq!(entries[..2], [leak("already_revoked"), leak("revoked")]);
    assert_eq!(entries.len(), 3, "and the issue before: {entries:?}");
}

#[tokio::test]
async fn a_wrong_signature_is_401_and_the_key_still_works() {
    let app = App::new();
    let leaked = app.issue().await;
    let text = leaked.key.expose_secret();
    let body = serde_json::to_vec(&one(text)).unwrap();
    let id = app.github.id();

    // Signed over another body.
    let other = app.github.sign(b"[]");
    let (status, answer) = app.post(body.clone(), Some(&id), Some(&other)).await;
    assert_eq!((status, &answer["error"]), (401, &json!("bad_signature")));
    // Signed by another key under the configured identifier.
    let forged = Github::new().sign(&body);
    assert_eq!(
        app.post(body.clone(), Some(&id), Some(&forged)).await.0,
        401
    );
    // Not base64, not DER.
    assert_eq!(app.post(body.clone(), Some(&id), Some("%%%")).await.0, 401);
    assert_eq!(app.post(body.clone(), Some(&id), Some("AAAA")).await.0, 401);
    // Missing headers.
    let good = app.github.sign(&body);
    let (status, answer) = app.post(body.clone(), None, Some(&good)).await;
    assert_eq!(
        (status, &answer["error"]),
        (401, &json!("missing_signature"))
    );
    assert_eq!(app.post(body.clone(), Some(&id), None).await.0, 401);
    assert_eq!(app.post(body, Some(&id), Some("")).await.0, 401);

    assert_eq!(app.status(&leaked).await, KeyStatus::Active);
    let entries = trail(&app, &leaked).await;
    assert_eq!(entries.len(), 1, "only the issue: {entries:?}");
    app.manager
        .verify(text, &Requirements::none())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_key_identifier_is_401_and_changes_nothing() {
    let app = App::new();
    let leaked = app.issue().await;
    let body = serde_json::to_vec(&one(leaked.key.expose_secret())).unwrap();
    // Correctly signed, but by a key the host did not configure.
    let stranger = Github::new();
    let sig = stranger.sign(&body);
    let (status, answer) = app.post(body, Some(&stranger.id()), Some(&sig)).await;
    assert_eq!((status, &answer["error"]), (401, &json!("unknown_key")));
    assert_eq!(app.status(&leaked).await, KeyStatus::Active);
}

#[tokio::test]
async fn malformed_tokens_and_unknown_ids_are_false_positives() {
    let app = App::new();
    let real = app.issue().await;
    let text = real.key.expose_secret();
    let bad_checksum = {
        let mut t = text.to_owned();
        let last = t.pop().unwrap();
        t.push(if last == 'a' { 'b' } else { 'a' });
        t
    };
    let other_prefix = keyward::ApiKey::generate("zz".parse().unwrap(), "dev".parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned();
    let unknown_id = keyward::ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned();
    let tokens = [
        "",
        "not a key",
        "kw_dev_short",
        &bad_checksum,
        &other_prefix,
        &unknown_id,
    ];
    let body: Vec<Value> = tokens
        .iter()
        .map(|t| json!({"token": t, "type": "keyward_api_key", "url": "", "source": "commit"}))
        .collect();
    let runs = app.manager.hasher().runs();
    let (status, answer) = app.report(&Value::Array(body)).await;
    assert_eq!(status, 200, "{answer}");
    let answer = answer.as_array().unwrap();
    assert_eq!(answer.len(), tokens.len());
    for (t, a) in tokens.iter().zip(answer) {
        assert_eq!(a["label"], "false_positive", "{t:?}");
        assert_eq!(a["token_hash"], sha256_hex(t));
    }
    // None of them is a known id: no Argon2 ran.
    assert_eq!(app.manager.hasher().runs(), runs);
    assert_eq!(app.status(&real).await, KeyStatus::Active);
}

#[tokio::test]
async fn a_real_id_with_a_wrong_secret_is_a_false_positive_and_revokes_nothing() {
    let app = App::new();
    let real = app.issue().await;
    let text = real.key.expose_secret();
    let look_alike = with_wrong_secret(text, 7);
    keyward::ApiKey::parse(&look_alike).unwrap(); // well formed, same id
    // Also while the real key is cached (the warm digest decides, no Argon2).
    for cached in [false, true] {
        if cached {
            app.manager
                .verify(text, &Requirements::none())
                .await
                .unwrap();
        }
        let (status, answer) = app.report(&one(&look_alike)).await;
        assert_eq!(
            (status, &answer[0]["label"]),
            (200, &json!("false_positive"))
        );
        assert_eq!(
            app.status(&real).await,
            KeyStatus::Active,
            "cached: {cached}"
        );
    }
    app.manager
        .verify(text, &Requirements::none())
        .await
        .unwrap();
}

#[tokio::test]
async fn flag_mode_answers_true_positive_and_revokes_nothing() {
    let app = App::with(|c| c.action(LeakAction::Flag));
    let leaked = app.issue().await;
    let text = leaked.key.expose_secret();
    let (status, answer) = app.report(&one(text)).await;
    assert_eq!(
        (status, &answer[0]["label"]),
        (200, &json!("true_positive"))
    );
    assert_eq!(app.status(&leaked).await, KeyStatus::Active);
    let (action, actor, summary) = trail(&app, &leaked).await.remove(0);
    assert_eq!(
        (action.as_str(), actor.as_str(), &summary["outcome"]),
        ("leak_reported", "github-secret-scanning", &json!("flagged"))
    );
    app.manager
        .verify(text, &Requirements::none())
        .await
        .unwrap();
}

#[tokio::test]
async fn raw_echo_answers_token_raw() {
    let app = App::with(|c| c.echo(TokenEcho::Raw));
    let leaked = app.issue().await;
    let text = leaked.key.expose_secret();
    let (_, answer) = app.report(&one(text)).await;
    assert_eq!(
        answer,
        json!([{"token_raw": text, "token_type": "keyward_api_key", "label": "true_positive"}])
    );
}

#[tokio::test]
async fn duplicates_in_a_batch_are_answered_once() {
    let app = App::new();
    let a = app.issue().await;
    let b = app.issue().await;
    let (ta, tb) = (a.key.expose_secret(), b.key.expose_secret());
    let body = json!([
        {"token": ta, "type": "t", "url": "u1", "source": "content"},
        {"token": "junk", "type": "t"},
        {"token": ta, "type": "t", "url": "u2", "source": "commit"},
        {"token": tb, "type": "t"},
        {"token": "junk", "type": "t"},
    ]);
    let runs = app.manager.hasher().runs();
    let (status, answer) = app.report(&body).await;
    assert_eq!(status, 200, "{answer}");
    let hashes: Vec<&str> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["token_hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes, [sha256_hex(ta), sha256_hex("junk"), sha256_hex(tb)]);
    assert_eq!(
        app.manager.hasher().runs() - runs,
        2,
        "one Argon2 per distinct real key"
    );
    assert_eq!(app.status(&a).await, KeyStatus::Revoked);
    assert_eq!(app.status(&b).await, KeyStatus::Revoked);
}

#[tokio::test]
async fn forgeries_of_one_id_cost_at_most_max_secrets_per_id_hashes() {
    let app = App::new();
    let real = app.issue().await;
    let text = real.key.expose_secret();
    let body: Vec<Value> = (0..20)
        .map(|i| json!({"token": with_wrong_secret(text, i), "type": "t"}))
        .collect();
    let runs = app.manager.hasher().runs();
    let (status, answer) = app.report(&Value::Array(body)).await;
    assert_eq!(status, 200);
    assert!(
        answer
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["label"] == "false_positive")
    );
    assert_eq!(app.manager.hasher().runs() - runs, MAX_SECRETS_PER_ID);
    assert_eq!(app.status(&real).await, KeyStatus::Active);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_malformed_json_is_400() {
    let app = App::with(|c| c.max_body(1024));
    let leaked = app.issue().await;
    let big: Vec<Value> = (0..40)
        .map(|_| one(leaked.key.expose_secret())[0].clone())
        .collect();
    let (status, answer) = app.report(&Value::Array(big)).await;
    assert_eq!((status, &answer["error"]), (413, &json!("body_too_large")));
    assert_eq!(app.status(&leaked).await, KeyStatus::Active);

    for bad in [
        &b"{\"token\": \"x\"}"[..],
        b"[{\"type\": \"t\"}]",
        b"[1,",
        b"not json",
    ] {
        let sig = app.github.sign(bad);
        let (status, answer) = app
            .post(bad.to_vec(), Some(&app.github.id()), Some(&sig))
            .await;
        assert_eq!(
            (status, &answer["error"]),
            (400, &json!("malformed")),
            "{bad:?}"
        );
    }
    // An empty batch is fine.
    assert_eq!(app.report(&json!([])).await, (200, json!([])));
}

#[tokio::test]
async fn several_configured_keys_each_verify_their_own_reports() {
    let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
        .prefix("kw".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let (old, current) = (Github::new(), Github::new());
    let mut keys = PublicKeys::new();
    keys.add_pem_with_id("old", &old.pem).unwrap();
    keys.add_pem_with_id("current", &current.pem).unwrap();
    let scanning = SecretScanning::new(manager, SecretScanningConfig::new(keys));
    let body = serde_json::to_vec(&json!([{"token": "x", "type": "t"}])).unwrap();
    for (id, github) in [("old", &old), ("current", &current)] {
        let answer = scanning
            .handle(Some(id), Some(&github.sign(&body)), &body)
            .await
            .unwrap();
        assert_eq!(answer.feedback[0].label, Label::FalsePositive);
    }
    let err = scanning
        .handle(Some("old"), Some(&current.sign(&body)), &body)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 401);
}

#[tokio::test]
async fn githubs_documented_test_vector_verifies() {
    // docs.github.com, "Secret scanning partner program": the sample request and test key.
    let pem = "-----BEGIN PUBLIC KEY-----\n\
               MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsz9ugWDj5jK5ELBK42ynytbo38gP\n\
               HzZFI03Exwz8Lh/tCfL3YxwMdLjB+bMznsanlhK0RwcGP3IDb34kQDIo3Q==\n\
               -----END PUBLIC KEY-----\n";
    let mut keys = PublicKeys::new();
    let id = keys.add_pem(pem).unwrap();
    assert_eq!(
        id,
        "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d"
    );
    let body =
        br#"[{"token":"some_token","type":"some_type","url":"some_url","source":"some_source"}]"#;
    let sig = "MEUCIFLZzeK++IhS+y276SRk2Pe5LfDrfvTXu6iwKKcFGCrvAiEAhHN2kDOhy2I6eGkOFmxNkOJ+L2y8oQ9A2T9GGJo6WJY=";
    keys.verify(Some(&id), Some(sig), body).unwrap();
    // One byte changed (the raw body is signed, not its JSON value).
    let mut spaced = body.to_vec();
    spaced.insert(1, b' ');
    assert!(keys.verify(Some(&id), Some(sig), &spaced).is_err());
}

#[tokio::test]
async fn no_reported_token_reaches_the_logs() {
    let logs = capture_logs();
    let app = App::new();
    let leaked = app.issue().await;
    let text = leaked.key.expose_secret().to_owned();
    let look_alike = with_wrong_secret(&text, 3);
    let body = json!([{"token": text, "type": "t"}, {"token": look_alike, "type": "t"}]);
    assert_eq!(app.report(&body).await.0, 200);
    // Refused reports log their reason, never the body.
    let bytes = serde_json::to_vec(&body).unwrap();
    assert_eq!(
        app.post(bytes, Some(&app.github.id()), Some("AAAA"))
            .await
            .0,
        401
    );
    let logged = logs.text();
    assert!(logged.contains("processed a secret-scanning report"));
    assert!(logged.contains(&leaked.key.id().to_string()));
    assert_keys_hidden("logs", &logged, &[&text, &look_alike]);
}

/// Holds every store `get` while the gate is closed (on a worker thread of a multi-thread
/// runtime), so a check is still running when the deadline comes.
#[derive(Clone, Default)]
struct Gate(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl keyward::conformance::StoreHook for Gate {
    fn before(&self, method: &'static str) -> Result<(), keyward::StoreError> {
        while method == "get" && !self.0.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_past_its_deadline_answers_what_is_decided_and_revokes_the_rest_in_the_background()
{
    let gate = Gate::default();
    gate.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let store = keyward::conformance::Wrapped::with_hook(
        std::sync::Arc::new(keyward_memory::MemoryStore::new()),
        gate.clone(),
    );
    let manager = KeyManager::builder(store)
        .prefix("kw".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let github = Github::new();
    let mut leaked = Vec::new();
    for _ in 0..8 {
        let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap());
        leaked.push(manager.issue(req).await.unwrap());
    }
    let mut keys = PublicKeys::new();
    keys.add_pem(&github.pem).unwrap();
    let scanning = SecretScanning::new(
        manager.clone(),
        SecretScanningConfig::new(keys)
            .deadline(std::time::Duration::from_millis(200))
            .concurrency(1),
    );
    let mut matches = vec![json!({"token": "junk", "type": "t"})];
    matches.extend(
        leaked
            .iter()
            .map(|k| json!({"token": k.key.expose_secret(), "type": "t"})),
    );
    let body = serde_json::to_vec(&matches).unwrap();
    gate.0.store(false, std::sync::atomic::Ordering::SeqCst); // the store hangs
    let answer = scanning
        .handle(Some(&github.id()), Some(&github.sign(&body)), &body)
        .await
        .unwrap();
    // The malformed token is decided at once; the keys were still being checked.
    assert_eq!(answer.summary.distinct, 9);
    assert_eq!(answer.summary.pending, 8);
    assert_eq!(answer.feedback.len(), 1);
    assert_eq!(
        answer.feedback[0].token_hash(),
        Some(sha256_hex("junk").as_str())
    );
    // The store comes back; the checks go on: every leaked key is revoked soon after.
    gate.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let start = std::time::Instant::now();
    for k in &leaked {
        while manager.get(&k.key.id()).await.unwrap().unwrap().status != KeyStatus::Revoked {
            assert!(
                start.elapsed().as_secs() < 10,
                "not revoked in the background"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
