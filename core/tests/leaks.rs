//! Leak tests: every error path of core, run with `tracing` at TRACE (every target, span
//! events included) into an in-memory buffer, and with panics captured by a panic hook. No
//! secret, no full key, no `Authorization` header value (Bearer or Basic) may appear in a log
//! line, an error's `Display` or `Debug`, an HTTP answer, a panic message or the `Debug` of a
//! public type.
//!
//! The log subscriber and the panic hook are process-wide, so every test of this file shares
//! one buffer; each test checks its own secrets against everything captured, and checks that
//! its public key ids *were* captured (so an empty buffer cannot pass).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward::RecordStore;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Uri};
use keyward::client::{KeyExpectation, LoadError, diagnose};
use keyward::conformance::{
    FailingStore, KeyForms, LogBuffer, assert_keys_hidden, fix_checksum, secret_of,
    with_wrong_secret,
};
use keyward::http::{extract_key, reject_key_in_query, rejection};
use keyward::{
    ApiKey, AuthError, CacheConfig, Clock, Credits, Error, HashParams, Hasher, IssueRequest,
    IssuedKey, KeyInfo, KeyLimits, KeyManager, KeyRecord, ManualClock, Period, Quota, RateLimit,
    Requirements, SecretHash, Timestamp,
};
use tracing_subscriber::fmt::format::FmtSpan;

// ---------------------------------------------------------------------------------------
// Capture

/// Everything logged (at TRACE, every target) and every panic message, process-wide.
struct Captured {
    logs: LogBuffer,
    panics: Arc<Mutex<Vec<String>>>,
}

fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let logs = LogBuffer::new();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        let panics = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&panics);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(info.to_string());
            previous(info);
        }));
        Captured { logs, panics }
    })
}

fn logged() -> String {
    captured().logs.text()
}

fn panic_messages() -> String {
    captured()
        .panics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// Helpers

fn t0() -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000)
}

async fn issue(m: &KeyManager, req: IssueRequest) -> (IssuedKey, String) {
    let issued = m.issue(req).await.unwrap();
    let text = issued.key.expose_secret().to_owned();
    (issued, text)
}

fn req() -> IssueRequest {
    IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(["read"])
        .unwrap()
}

/// Everything a caller or client could see of an error.
fn shown_error(e: &Error, now: Timestamp) -> String {
    let r = rejection(e, "api", now);
    let mut s = format!("{e} | {e:?} | {} | {:?}", r.body, r.headers);
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(&format!(" | {inner} | {inner:?}"));
        source = inner.source();
    }
    s
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verify_outcome_logged_at_trace_shows_no_secret_key_or_header() {
    captured();
    let clock = ManualClock::new(t0());
    let down = Arc::new(AtomicBool::new(false));
    let store = Arc::new(FailingStore::new(
        Arc::new(keyward_memory::MemoryStore::new()),
        "test",
        Arc::clone(&down),
    ));
    let m = KeyManager::builder_arc(store.clone())
        .prefix("av".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(clock.clone()))
        .cache(CacheConfig {
            max_failures: 3,
            ..CacheConfig::default()
        })
        .build()
        .unwrap();
    let none = Requirements::none();
    let (plain, plain_t) = issue(&m, req()).await;
    let (_, expiring_t) = issue(&m, req().expires_in(Duration::from_secs(60))).await;
    let limits = |l: KeyLimits| req().limits(l);
    let (_, rated_t) = issue(
        &m,
        limits(KeyLimits {
            rate_limit: Some(RateLimit {
                requests: 1,
                per_seconds: 3600,
            }),
            ..KeyLimits::default()
        }),
    )
    .await;
    let (_, credited_t) = issue(
        &m,
        limits(KeyLimits {
            credits: Some(Credits {
                amount: 1,
                refill: None,
            }),
            ..KeyLimits::default()
        }),
    )
    .await;
    let (_, quota_t) = issue(
        &m,
        limits(KeyLimits {
            quota: Some(Quota {
                limit: 1,
                period: Period::Day,
            }),
            ..KeyLimits::default()
        }),
    )
    .await;
    let (revoked, revoked_t) = issue(&m, req()).await;
    let (_, guessed_t) = issue(&m, req()).await;
    let unknown_t = ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned();
    let prd_t = ApiKey::generate("av".parse().unwrap(), "prd".parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned();
    let foreign_t = fix_checksum(&plain_t.replacen("av_", "tl_", 1));
    // A record whose stored hash is not Argon2: verifying it is a hash error.
    let odd = ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    let odd_t = odd.expose_secret().to_owned();
    store
        .insert(
            &KeyRecord {
                id: odd.id(),
                secret_hash: SecretHash::from_phc(
                    "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
                )
                .unwrap(),
                ..plain.record.clone()
            },
            &[],
        )
        .await
        .unwrap();

    let keys = [
        &plain_t,
        &expiring_t,
        &rated_t,
        &credited_t,
        &quota_t,
        &revoked_t,
        &guessed_t,
        &unknown_t,
        &prd_t,
        &foreign_t,
        &odd_t,
    ];

    let mut outcomes: Vec<(&str, Error)> = Vec::new();
    macro_rules! expect {
        ($name:expr, $result:expr $(,)?) => {
            outcomes.push(($name, $result.expect_err($name)))
        };
    }
    expect!("whitespace", m.verify(&format!("{plain_t}\n"), &none).await);
    expect!("truncated", m.verify(&plain_t[..60], &none).await);
    expect!(
        "typo",
        m.verify(&plain_t.replacen("av_dev_", "av_dev_x", 1), &none)
            .await,
    );
    expect!(
        "two keys",
        m.verify(&format!("{plain_t}{plain_t}"), &none).await,
    );
    expect!("wrong prefix", m.verify(&foreign_t, &none).await);
    expect!("wrong environment", m.verify(&prd_t, &none).await);
    expect!("unknown id", m.verify(&unknown_t, &none).await);
    expect!(
        "wrong secret, cold",
        m.verify(&with_wrong_secret(&plain_t, 0), &none).await,
    );
    m.verify(&plain_t, &none).await.unwrap();
    expect!(
        "wrong secret, warm",
        m.verify(&with_wrong_secret(&plain_t, 42), &none).await,
    );
    expect!(
        "insufficient scope",
        m.verify(&plain_t, &Requirements::scopes(["admin"]).unwrap())
            .await,
    );
    expect!(
        "wrong project",
        m.verify(
            &plain_t,
            &Requirements::none().with_project("other".parse().unwrap()),
        )
        .await,
    );
    for i in 0..3 {
        expect!(
            "guess",
            m.verify(&with_wrong_secret(&guessed_t, i), &none).await
        );
    }
    expect!(
        "too many failures",
        m.verify(&with_wrong_secret(&guessed_t, 3), &none).await,
    );
    m.verify(&rated_t, &none).await.unwrap();
    expect!("rate limited", m.verify(&rated_t, &none).await);
    m.verify(&credited_t, &none).await.unwrap();
    expect!("credits exhausted", m.verify(&credited_t, &none).await);
    let who = m.verify(&quota_t, &none).await.unwrap();
    outcomes.push((
        "quota exceeded",
        m.consume_events(&who, 2).await.unwrap_err(),
    ));
    m.revoke(&revoked.record.id).await.unwrap();
    expect!("revoked", m.verify(&revoked_t, &none).await);
    expect!("hash unreadable", m.verify(&odd_t, &none).await);
    clock.advance(Duration::from_secs(61));
    expect!("expired", m.verify(&expiring_t, &none).await);

    // Admin operations.
    outcomes.push((
        "not found",
        m.revoke(&"000000000000".parse().unwrap())
            .await
            .unwrap_err(),
    ));
    outcomes.push((
        "rotate revoked",
        m.rotate(&revoked.record.id, Duration::ZERO)
            .await
            .unwrap_err(),
    ));
    outcomes.push(("bad name", m.issue(req().name("a\nb")).await.unwrap_err()));
    down.store(true, Ordering::SeqCst);
    // An uncached id that needs the store (the unknown id is remembered as unknown now).
    expect!("store down", m.verify(&odd_t, &none).await);
    outcomes.push(("store down, issue", m.issue(req()).await.unwrap_err()));
    outcomes.push((
        "store down, revoke",
        m.revoke(&plain.record.id).await.unwrap_err(),
    ));
    down.store(false, Ordering::SeqCst);

    // Every variant reached is the one intended.
    let kinds: Vec<String> = outcomes
        .iter()
        .map(|(name, e)| {
            let kind = match e {
                Error::Auth(a) => format!("{a:?}"),
                other => format!("{other:?}"),
            };
            format!("{name}: {}", kind.split([' ', '(', '{']).next().unwrap())
        })
        .collect();
    let joined = kinds.join("\n");
    for wanted in [
        "whitespace: Malformed",
        "truncated: Malformed",
        "typo: Malformed",
        "two keys: Malformed",
        "wrong prefix: WrongPrefix",
        "wrong environment: WrongEnvironment",
        "unknown id: Invalid",
        "wrong secret, cold: Invalid",
        "wrong secret, warm: Invalid",
        "insufficient scope: InsufficientScope",
        "wrong project: WrongProject",
        "guess: Invalid",
        "too many failures: RateLimited",
        "rate limited: RateLimited",
        "credits exhausted: CreditsExhausted",
        "quota exceeded: QuotaExceeded",
        "revoked: Revoked",
        "hash unreadable: Hash",
        "expired: Expired",
        "not found: NotFound",
        "rotate revoked: RotationConflict",
        "bad name: Invalid",
        "store down: Store",
        "store down, issue: Store",
        "store down, revoke: Store",
    ] {
        assert!(joined.contains(wanted), "{wanted} not reached:\n{joined}");
    }
    for (name, e) in &outcomes {
        assert_keys_hidden(name, &shown_error(e, clock.now()), &keys);
    }

    // HTTP: the extraction and query outcomes, with the key in every header form.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut http_errors = Vec::new();
    for (name, value) in [
        ("authorization", format!("Bearer {plain_t}")),
        (
            "authorization",
            format!("Basic {}", b64(&format!("{plain_t}:"))),
        ),
        ("authorization", format!("Token {plain_t}")),
        ("authorization", format!("Bearer {plain_t} {plain_t}")),
        ("x-api-key", format!("{plain_t} ")),
        ("x-api-key", plain_t[..50].to_owned()),
    ] {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(&value).unwrap());
        match extract_key(&h) {
            Ok(k) => {
                assert_keys_hidden("an extracted key", &format!("{k} {k:?}"), &keys);
                h.insert("x-api-key", HeaderValue::from_str(&plain_t).unwrap());
                http_errors.push(extract_key(&h).unwrap_err());
            }
            Err(e) => http_errors.push(e),
        }
    }
    http_errors.push(extract_key(&HeaderMap::new()).unwrap_err());
    let uri: Uri = format!("/v1/traces?q={plain_t}").parse().unwrap();
    http_errors.push(reject_key_in_query(&uri).unwrap_err());
    for wanted in [
        AuthError::Missing,
        AuthError::MultipleCredentials,
        AuthError::UnsupportedScheme,
        AuthError::KeyInQueryString,
    ] {
        assert!(http_errors.contains(&wanted), "{wanted:?} not reached");
    }
    assert!(
        http_errors
            .iter()
            .any(|e| matches!(e, AuthError::Malformed(_)))
    );
    for e in http_errors {
        assert_keys_hidden("an HTTP rejection", &shown_error(&e.into(), t0()), &keys);
    }

    m.flush_usage().await.unwrap();
    m.shutdown().await.unwrap();
    let logs = logged();
    assert!(
        logs.contains(plain.record.id.as_str())
            && logs.contains("DEBUG")
            && logs.contains("time.busy"),
        "the capture works: ids, debug events and span closes are logged"
    );
    assert!(
        logs.contains("rejected API key"),
        "debug events are captured"
    );
    assert_keys_hidden("the TRACE log", &logs, &keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_hasher_answers_503_without_the_key() {
    captured();
    let hasher = Hasher::with_workers(HashParams::INSECURE_TEST_ONLY, 1, 0).unwrap();
    let m = KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hasher(hasher)
        .without_cache()
        .build()
        .unwrap();
    let mut keys = Vec::new();
    for _ in 0..16 {
        keys.push(issue(&m, req()).await.1);
    }
    // Wrong secrets for known ids run Argon2 (an unknown id runs none): many concurrent cold
    // verifies share one worker and no queue, so some are refused.
    let guesses: Vec<String> = keys.iter().map(|k| with_wrong_secret(k, 29)).collect();
    keys.extend(guesses.iter().cloned());
    let results = futures_join(&m, &guesses).await;
    let overloaded: Vec<&Error> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|e| matches!(e, Error::Overloaded))
        .collect();
    assert!(!overloaded.is_empty(), "{results:?}");
    for e in overloaded {
        let shown = shown_error(e, t0());
        assert!(shown.contains("503") || shown.contains("temporarily_unavailable"));
        assert_keys_hidden("an overload error", &shown, &keys);
    }
    assert_keys_hidden("the TRACE log", &logged(), &keys);
}

async fn futures_join(m: &KeyManager, keys: &[String]) -> Vec<Result<keyward::Identity, Error>> {
    let mut set = tokio::task::JoinSet::new();
    for k in keys {
        let (m, k) = (m.clone(), k.clone());
        set.spawn(async move { m.verify(&k, &Requirements::none()).await });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_of_every_public_type_holding_a_key_is_redacted() {
    captured();
    let m = KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let (issued, text) = issue(&m, req()).await;
    let rotated = m
        .rotate(&issued.record.id, Duration::from_secs(60))
        .await
        .unwrap();
    let rotated_t = rotated.key.expose_secret().to_owned();
    let who = m.verify(&text, &Requirements::none()).await.unwrap();
    let info = KeyInfo::from_record(&issued.record, t0());
    let parsed: Result<ApiKey, _> = ApiKey::parse(&text);
    let expect = KeyExpectation::new("kw".parse().unwrap(), "prd".parse().unwrap());
    let diagnoses: Vec<String> = [
        text.clone(),
        format!("\"{text}\""),
        format!(" {text}\n"),
        text[..60].to_owned(),
        with_wrong_secret(&text, 5).replacen("kw_", "kw_x", 1),
    ]
    .iter()
    .map(|v| {
        let d = diagnose(Some(v), &expect);
        let load = LoadError {
            var: "KEYWARD_KEY".to_owned(),
            diagnosis: d.clone(),
        };
        format!("{d} {d:?} {load} {load:?}")
    })
    .collect();
    let shown = [
        format!("{:?}", issued.key),
        format!("{:#?}", issued.key),
        issued.key.to_string(),
        format!("{issued:?}"),
        format!("{issued:#?}"),
        format!("{rotated:?}"),
        format!("{:?}", issued.record),
        format!("{:?}", issued.record.secret_hash),
        format!("{who:?} {}", serde_json::to_string(&who).unwrap()),
        format!("{info:?} {}", serde_json::to_string(&info).unwrap()),
        format!("{:?}", issued.key.masked()),
        format!("{parsed:?}"),
        format!("{m:?}"),
        format!("{:?}", m.hasher()),
        diagnoses.join("\n"),
    ];
    for s in &shown {
        assert_keys_hidden("a Debug/Display", s, &[&text, &rotated_t]);
    }
    assert!(shown[0].contains("[REDACTED]"), "{}", shown[0]);
    assert!(shown[3].contains(issued.record.id.as_str()), "{}", shown[3]);
    // The stored hash's salt and digest are elided too.
    let digest = issued
        .record
        .secret_hash
        .as_str()
        .rsplit('$')
        .next()
        .unwrap();
    assert!(!shown[6].contains(digest), "{}", shown[6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_messages_that_carry_a_key_show_only_its_masked_form() {
    captured();
    let m = KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let (issued, text) = issue(&m, req()).await;
    let (other, other_t) = issue(&m, req()).await;
    let key = issued.key.clone();
    let id = issued.record.id.to_string();
    let attempts: Vec<Box<dyn FnOnce() + Send>> = vec![
        Box::new({
            let key = key.clone();
            move || {
                let r: Result<(), ApiKey> = std::hint::black_box(Err(key));
                r.unwrap();
            }
        }),
        Box::new({
            let (a, b) = (key.clone(), other.key.clone());
            move || assert_eq!(a, b, "keys differ")
        }),
        Box::new({
            let key = key.clone();
            move || assert_ne!(key, key.clone())
        }),
        Box::new({
            let key = key.clone();
            move || panic!("cannot use {key} ({key:?})")
        }),
        Box::new(move || {
            let r: Result<&IssuedKey, ()> = std::hint::black_box(Ok(&issued));
            r.unwrap_err();
        }),
        Box::new({
            let t = text.clone();
            move || {
                let r = ApiKey::parse(&format!("{t}x"));
                let _ = r.expect("a key with a stray character");
            }
        }),
    ];
    let count = attempts.len();
    for f in attempts {
        assert!(
            catch_unwind(AssertUnwindSafe(f)).is_err(),
            "each attempt panics"
        );
    }
    // An async task panicking with a key in scope, joined by the runtime.
    let k = key.clone();
    let joined = tokio::spawn(async move { panic!("task failed for {k:?}") }).await;
    assert!(joined.is_err());
    let messages = panic_messages();
    assert!(
        messages.matches(&id).count() >= count - 2,
        "the panics were captured: {messages}"
    );
    assert_keys_hidden("a panic message", &messages, &[&text, &other_t]);
}

#[test]
fn the_harness_catches_a_deliberately_logged_key() {
    captured();
    let text = ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned();
    let forms = KeyForms::of(&text);
    assert!(catch_unwind(|| forms.assert_hidden_in("the log", &logged())).is_ok());
    let secret = secret_of(&text);
    tracing::trace!(
        leaked = secret,
        "a deliberate leak, to prove the capture sees it"
    );
    assert!(catch_unwind(|| forms.assert_hidden_in("the log", &logged())).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_expired_project_and_scope_outcomes_need_the_secret() {
    captured();
    let clock = ManualClock::new(t0());
    let m = KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let none = Requirements::none();
    let (_, plain) = issue(&m, req()).await;
    let (revoked, revoked_t) = issue(&m, req()).await;
    let (_, expiring) = issue(&m, req().expires_in(Duration::from_secs(60))).await;
    let invalid =
        |r: Result<keyward::Identity, Error>| matches!(r, Err(Error::Auth(AuthError::Invalid)));
    // Warm (cached) and cold: a wrong secret with a scope or project the key lacks is Invalid.
    m.verify(&plain, &none).await.unwrap();
    for (text, cached) in [(&plain, true), (&expiring, false)] {
        let wrong = with_wrong_secret(text, 7);
        let scope = Requirements::scopes(["admin"]).unwrap();
        let project = Requirements::none().with_project("other".parse().unwrap());
        assert!(invalid(m.verify(&wrong, &scope).await), "cached: {cached}");
        assert!(
            invalid(m.verify(&wrong, &project).await),
            "cached: {cached}"
        );
        // With the right secret the specific outcome is reported.
        assert!(matches!(
            m.verify(text, &scope).await,
            Err(Error::Auth(AuthError::InsufficientScope { .. }))
        ));
    }
    m.revoke(&revoked.record.id).await.unwrap();
    assert!(invalid(
        m.verify(&with_wrong_secret(&revoked_t, 3), &none).await
    ));
    assert!(matches!(
        m.verify(&revoked_t, &none).await,
        Err(Error::Auth(AuthError::Revoked { .. }))
    ));
    clock.advance(Duration::from_secs(61));
    assert!(invalid(
        m.verify(&with_wrong_secret(&expiring, 9), &none).await
    ));
    assert!(matches!(
        m.verify(&expiring, &none).await,
        Err(Error::Auth(AuthError::Expired { .. }))
    ));
}
