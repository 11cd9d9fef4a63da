//! Credential extraction from headers and the RFC 6750 mapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use keyward::http::{auth_rejection, extract_key, reject_key_in_query, rejection};
use keyward::{ApiKey, AuthError, Error, MalformedKey, ScopeSet, StoreError, Timestamp};

fn key() -> ApiKey {
    ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap()).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn bearer_with_any_case_x_api_key_and_basic_are_accepted() {
    let k = key();
    let t = k.expose_secret();
    for h in [
        headers(&[("authorization", &format!("Bearer {t}"))]),
        headers(&[("authorization", &format!("bearer {t}"))]),
        headers(&[("authorization", &format!("BEARER   {t}"))]),
        headers(&[("x-api-key", t)]),
        headers(&[(
            "authorization",
            &format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{t}:"))
            ),
        )]),
        headers(&[(
            "authorization",
            &format!(
                "basic {}",
                base64::engine::general_purpose::STANDARD.encode(t)
            ),
        )]),
    ] {
        assert_eq!(extract_key(&h).unwrap(), k, "{h:?}");
    }
}

#[test]
fn missing_double_and_foreign_credentials_are_typed() {
    let k = key();
    let t = k.expose_secret();
    assert_eq!(extract_key(&HeaderMap::new()), Err(AuthError::Missing));
    assert_eq!(
        extract_key(&headers(&[("authorization", "Bearer ")])),
        Err(AuthError::Missing)
    );
    assert_eq!(
        extract_key(&headers(&[
            ("authorization", &format!("Bearer {t}")),
            ("x-api-key", t)
        ])),
        Err(AuthError::MultipleCredentials)
    );
    assert_eq!(
        extract_key(&headers(&[("x-api-key", t), ("x-api-key", t)])),
        Err(AuthError::MultipleCredentials)
    );
    assert_eq!(
        extract_key(&headers(&[("authorization", &format!("Token {t}"))])),
        Err(AuthError::UnsupportedScheme)
    );
    assert!(matches!(
        extract_key(&headers(&[("authorization", "Basic !!!")])),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn non_ascii_and_oversized_header_values_are_malformed_not_panics() {
    let mut h = HeaderMap::new();
    h.insert(
        "x-api-key",
        HeaderValue::from_bytes(b"av_dev_\xff\xfe").unwrap(),
    );
    assert!(matches!(
        extract_key(&h),
        Err(AuthError::Malformed(MalformedKey::InvalidCharacter { .. }))
    ));
    let big = "a".repeat(16 * 1024);
    assert!(matches!(
        extract_key(&headers(&[("authorization", &format!("Bearer {big}"))])),
        Err(AuthError::Malformed(MalformedKey::TooLong { .. }))
    ));
    assert!(matches!(
        extract_key(&headers(&[("authorization", &format!("Basic {big}"))])),
        Err(AuthError::Malformed(MalformedKey::TooLong { .. }))
    ));
}

#[test]
fn keys_in_the_query_string_are_refused() {
    let k = key();
    let uri: Uri = format!("/api/v1/ping?api_key={}", k.expose_secret())
        .parse()
        .unwrap();
    assert_eq!(reject_key_in_query(&uri), Err(AuthError::KeyInQueryString));
    let uri: Uri = format!("/x?q={}", k.expose_secret()).parse().unwrap();
    assert_eq!(reject_key_in_query(&uri), Err(AuthError::KeyInQueryString));
    let uri: Uri = "/x?ACCESS_TOKEN=abc".parse().unwrap();
    assert_eq!(reject_key_in_query(&uri), Err(AuthError::KeyInQueryString));
    assert_eq!(
        reject_key_in_query(&"/x?page=2&q=hello".parse().unwrap()),
        Ok(())
    );
}

#[test]
fn statuses_and_challenges_follow_rfc_6750() {
    let now = Timestamp::from_unix_millis(1_800_000_000_000);
    let missing = auth_rejection(&AuthError::Missing, "keyward", now);
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers["www-authenticate"],
        "Bearer realm=\"keyward\""
    );

    let invalid = auth_rejection(&AuthError::Invalid, "keyward", now);
    assert_eq!(invalid.status, StatusCode::UNAUTHORIZED);
    assert!(
        invalid.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );

    let id = "7Kq2mZ9xA1bC".parse().unwrap();
    let scope = auth_rejection(
        &AuthError::InsufficientScope {
            id,
            missing: ScopeSet::parse(["admin", "write"]).unwrap(),
        },
        "keyward",
        now,
    );
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    let challenge = scope.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.ends_with("scope=\"admin write\""),
        "{challenge}"
    );

    let quota = auth_rejection(
        &AuthError::QuotaExceeded {
            scope: "project",
            limit: 10,
            used: 10,
            requested: 1,
            resets_at: Timestamp::from_unix_millis(now.unix_millis() + 90_500),
        },
        "keyward",
        now,
    );
    assert_eq!(quota.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(quota.headers["retry-after"], "91");
    assert!(!quota.headers.contains_key("www-authenticate"));

    let rate = auth_rejection(
        &AuthError::RateLimited {
            retry_after: Duration::from_millis(200),
        },
        "keyward",
        now,
    );
    assert_eq!(rate.headers["retry-after"], "1");

    assert_eq!(
        auth_rejection(&AuthError::MultipleCredentials, "k", now).status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        auth_rejection(&AuthError::KeyInQueryString, "k", now).status,
        StatusCode::BAD_REQUEST
    );

    let store = rejection(
        &Error::Store(StoreError::backend(
            "sqlite",
            std::io::Error::other("disk gone"),
        )),
        "k",
        now,
    );
    assert_eq!(store.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !store.body.contains("disk gone"),
        "operators' details stay in logs: {}",
        store.body
    );
    let busy = rejection(&Error::Overloaded, "k", now);
    assert_eq!(
        (busy.status, busy.headers["retry-after"].to_str().unwrap()),
        (StatusCode::SERVICE_UNAVAILABLE, "1")
    );
}

#[test]
fn unknown_id_and_wrong_secret_answers_are_byte_identical() {
    // Both are AuthError::Invalid by construction; the answer depends on nothing else.
    let now = Timestamp::from_unix_millis(0);
    let a = auth_rejection(&AuthError::Invalid, "r", now);
    let b = auth_rejection(&AuthError::Invalid, "r", Timestamp::from_unix_millis(99));
    assert_eq!(
        (a.status, &a.body, &a.headers),
        (b.status, &b.body, &b.headers)
    );
}

#[test]
fn header_values_stay_valid_whatever_the_message() {
    let now = Timestamp::from_unix_millis(0);
    let e = AuthError::Malformed(MalformedKey::InvalidCharacter {
        position: 3,
        what: keyward::CharDescription::Punctuation('"'),
    });
    let r = auth_rejection(&e, "realm \"x\" ü", now);
    let v = r.headers["www-authenticate"].to_str().unwrap();
    assert!(v.starts_with("Bearer realm=\"realm 'x' ?\""), "{v}");
    assert_eq!(v.matches('"').count() % 2, 0);
}
