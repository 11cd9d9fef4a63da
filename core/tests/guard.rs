//! The framework-agnostic entry points of `keyward::http`, without axum: extraction from raw
//! header values, the raw query check, and `Guard`'s check / verify / authenticate / reject.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Uri};
use keyward::conformance::{FailingStore, with_wrong_secret};
use keyward::http::{
    Check, Guard, extract_key, extract_key_from, reject_key_in_query, reject_key_in_query_str,
};
use keyward::{ApiKey, AuthError, Error, HashParams, IssueRequest, KeyManager, KeyStore};
use proptest::prelude::*;

const NONE: [&[u8]; 0] = [];

fn key() -> ApiKey {
    ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap()).unwrap()
}

#[test]
fn extract_key_from_raw_values_follows_the_header_rules() {
    let k = key();
    let t = k.expose_secret();
    let bearer = format!("Bearer {t}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{t}:"))
    );
    assert_eq!(extract_key_from([bearer.as_bytes()], NONE), Ok(k.clone()));
    assert_eq!(extract_key_from([basic.as_bytes()], NONE), Ok(k.clone()));
    assert_eq!(extract_key_from(NONE, [t.as_bytes()]), Ok(k.clone()));
    assert_eq!(extract_key_from(NONE, NONE), Err(AuthError::Missing));
    assert_eq!(
        extract_key_from([&b"Bearer  "[..]], NONE),
        Err(AuthError::Missing)
    );
    assert_eq!(
        extract_key_from([bearer.as_bytes()], [t.as_bytes()]),
        Err(AuthError::MultipleCredentials)
    );
    assert_eq!(
        extract_key_from(NONE, [t.as_bytes(), t.as_bytes()]),
        Err(AuthError::MultipleCredentials)
    );
    assert_eq!(
        extract_key_from([&b"Digest x"[..]], NONE),
        Err(AuthError::UnsupportedScheme)
    );
    assert!(matches!(
        extract_key_from(NONE, [&b"av_dev_\xff"[..]]),
        Err(AuthError::Malformed(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `extract_key` is `extract_key_from` on the header map's values, whatever they hold.
    #[test]
    fn extract_key_and_extract_key_from_agree(
        auth in prop::collection::vec(prop::collection::vec(32u8..127, 0..120), 0..3),
        x in prop::collection::vec(prop::collection::vec(32u8..127, 0..90), 0..3),
        with_key in any::<bool>(),
    ) {
        let k = key();
        let mut auth = auth;
        if with_key {
            auth.push(format!("Bearer {}", k.expose_secret()).into_bytes());
        }
        let mut map = HeaderMap::new();
        for v in &auth {
            map.append("authorization", HeaderValue::from_bytes(v).unwrap());
        }
        for v in &x {
            map.append("x-api-key", HeaderValue::from_bytes(v).unwrap());
        }
        let from = extract_key_from(auth.iter().map(Vec::as_slice), x.iter().map(Vec::as_slice));
        prop_assert_eq!(extract_key(&map), from);
    }

    /// `reject_key_in_query` is `reject_key_in_query_str` on the URI's query.
    #[test]
    fn the_uri_and_raw_query_checks_agree(query in "[a-zA-Z0-9_=&+%.-]{0,120}") {
        let uri: Uri = format!("/x?{query}").parse().unwrap();
        prop_assert_eq!(reject_key_in_query(&uri), reject_key_in_query_str(Some(&query)));
    }
}

#[test]
fn no_query_and_an_empty_query_pass() {
    assert_eq!(reject_key_in_query_str(None), Ok(()));
    assert_eq!(reject_key_in_query_str(Some("")), Ok(()));
}

fn manager(store: Arc<dyn KeyStore>) -> KeyManager {
    KeyManager::builder_arc(store)
        .prefix("av".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap()
}

async fn issue(m: &KeyManager, scopes: &[&str]) -> String {
    let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(scopes)
        .unwrap();
    m.issue(req).await.unwrap().key.expose_secret().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_needs_the_store_for_a_cold_key_then_decides_it_from_the_cache() {
    let m = manager(Arc::new(keyward_memory::MemoryStore::new()));
    let guard = Guard::new(m.clone()).realm("ingest").require(["read"]);
    let text = issue(&m, &["read"]).await;
    let header = format!("Bearer {text}");

    let Check::NeedsStore(pending) = guard.check(None, [header.as_bytes()], NONE) else {
        panic!("a cold key needs the store");
    };
    let shown = format!("{pending:?}");
    assert!(
        shown.contains(&ApiKey::parse(&text).unwrap().id().to_string()),
        "{shown}"
    );
    keyward::conformance::assert_keys_hidden("Pending's Debug", &shown, &[&text]);
    assert_eq!(pending.key_id(), ApiKey::parse(&text).unwrap().id());
    let who = pending.verify().await.unwrap();
    assert_eq!(who.project.as_str(), "web-app");

    let Check::Accepted(again) = guard.check(Some("page=2"), [header.as_bytes()], NONE) else {
        panic!("a cached key is decided at once");
    };
    assert_eq!(again, who);
    let wrong = format!("Bearer {}", with_wrong_secret(&text, 3));
    let Check::Refused(r) = guard.check(None, [wrong.as_bytes()], NONE) else {
        panic!("a wrong secret for a cached id is refused at once");
    };
    assert_eq!(r.status, 401);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"ingest\", error=\"invalid_token\"")
    );
    // Another scope: refused from the cache with 403.
    let Check::Refused(r) = guard
        .clone()
        .require(["write"])
        .check(None, [header.as_bytes()], NONE)
    else {
        panic!("a missing scope is decided at once");
    };
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_decides_every_outcome_in_one_call() {
    let m = manager(Arc::new(keyward_memory::MemoryStore::new()));
    let guard = Guard::new(m.clone()).require(["read"]);
    assert_eq!(guard.realm_name(), keyward::http::DEFAULT_REALM);
    let text = issue(&m, &["read"]).await;
    let header = format!("Bearer {text}");

    for _ in 0..2 {
        let who = guard
            .authenticate(None, [header.as_bytes()], NONE)
            .await
            .unwrap();
        assert_eq!(who.id, ApiKey::parse(&text).unwrap().id());
        let who = guard
            .authenticate(None, NONE, [text.as_bytes()])
            .await
            .unwrap();
        assert_eq!(who.id, ApiKey::parse(&text).unwrap().id());
    }
    let missing = guard.authenticate(None, NONE, NONE).await.unwrap_err();
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers["www-authenticate"], "Bearer realm=\"api\"");
    let query = format!("token={text}");
    let in_query = guard
        .authenticate(Some(&query), [header.as_bytes()], NONE)
        .await
        .unwrap_err();
    assert_eq!(in_query.status, 400);
    let two = guard
        .authenticate(None, [header.as_bytes()], [text.as_bytes()])
        .await
        .unwrap_err();
    assert_eq!(two.status, 400);
    let unknown = format!("Bearer {}", key().expose_secret());
    let invalid = guard
        .authenticate(None, [unknown.as_bytes()], NONE)
        .await
        .unwrap_err();
    assert_eq!(invalid.status, 401);
    assert!(invalid.body.contains("\"error\":\"invalid_token\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_verify_with_the_store_down_is_503() {
    let down = Arc::new(AtomicBool::new(false));
    let store = FailingStore::new(
        Arc::new(keyward_memory::MemoryStore::new()),
        "memory",
        down.clone(),
    );
    let m = manager(Arc::new(store));
    let guard = Guard::new(m.clone());
    let text = issue(&m, &[]).await;
    down.store(true, Ordering::SeqCst);
    let r = guard
        .authenticate(None, NONE, [text.as_bytes()])
        .await
        .unwrap_err();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("temporarily_unavailable"));
    assert!(!r.body.contains("connection refused"));
}

#[test]
fn reject_renders_any_error_in_the_guards_realm() {
    let m = manager(Arc::new(keyward_memory::MemoryStore::new()));
    let guard = Guard::new(m).realm("billing");
    let r = guard.reject(&Error::Auth(AuthError::Missing));
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"billing\"");
    let pairs: Vec<(&str, &[u8])> = r.header_pairs().collect();
    assert_eq!(
        pairs,
        [
            ("www-authenticate", &b"Bearer realm=\"billing\""[..]),
            ("content-type", &b"application/json"[..]),
        ]
    );
    assert_eq!(guard.reject(&Error::Overloaded).status, 503);
    assert_eq!(guard.reject(&Error::Overloaded).headers["retry-after"], "1");
    let id = key().id();
    assert_eq!(guard.reject(&Error::NotFound(id)).status, 404);
    let invalid = keyward::Requirements::scopes(["Bad Scope"]).unwrap_err();
    let r = guard.reject(&Error::Invalid(invalid));
    assert_eq!(r.status, 400);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"billing\", error=\"invalid_request\"")
    );
}

#[test]
#[should_panic(expected = "Guard::require")]
fn require_panics_on_an_invalid_scope_name() {
    let m = manager(Arc::new(keyward_memory::MemoryStore::new()));
    let _ = Guard::new(m).require(["Not A Scope"]);
}
