//! Credential extraction from headers and the RFC 6750 mapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use keyward::conformance::{KeyForms, LogBuffer, fix_checksum, with_wrong_secret};
use keyward::http::{auth_rejection, extract_key, invalid_request, reject_key_in_query, rejection};
use keyward::{ApiKey, AuthError, Error, MalformedKey, ScopeSet, StoreError, Timestamp};
use proptest::prelude::*;

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

/// Whether `reject_key_in_query` refuses `/x?{query}`, and what it logged meanwhile.
fn query_refused(query: &str) -> (bool, String) {
    let logs = LogBuffer::new();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let uri: Uri = format!("/x?{query}").parse().unwrap();
    let refused = tracing::subscriber::with_default(subscriber, || reject_key_in_query(&uri));
    if let Err(e) = &refused {
        assert_eq!(*e, AuthError::KeyInQueryString);
    }
    (refused.is_err(), logs.text())
}

#[test]
fn a_key_shaped_token_anywhere_in_the_decoded_query_is_refused_and_its_id_logged() {
    let k = key();
    let text = k.expose_secret();
    let id = k.id().to_string();
    let encoded = text.replace('_', "%5F");
    let lower_encoded = text.replace('_', "%5f");
    let shapes = [
        text.to_owned(),                           // ?KEY
        format!("{text}="),                        // ?KEY=
        format!("{text}=1"),                       // ?KEY=1
        format!("a=x&{text}"),                     // ?a=x&KEY
        format!("a=x&b={text}&c=y"),               // a value in the middle
        format!("innocent={text}"),                // any parameter name
        encoded.clone(),                           // kw%5Fdev%5F…
        format!("q={lower_encoded}"),              // lowercase hex
        format!("q={}", text.replace('a', "%61")), // any byte percent-encoded
        format!("q=Bearer+{text}"),                // `+` as a space
        format!("q=Bearer%20{text}"),
        format!("next=%2Fcallback%3Fk%3D{encoded}"), // a URL inside a value
        format!("q=see:{text}."),                    // punctuation around it
        format!("q=x_{text}"),                       // glued with `_` before
        format!("q={text}_more"),                    // glued with `_` after
        format!("q=99{text}"),                       // glued to digits before
        format!("q={text}abc"),                      // longer than a key
        with_wrong_secret(text, 3),                  // checksum no longer matches
        format!("k={}", "ab_cd_0123456789AB_".to_owned() + &"x".repeat(49)), // any prefix and env
    ];
    for query in &shapes {
        let (refused, log) = query_refused(query);
        assert!(refused, "not refused: {query}");
        KeyForms::of(text).assert_hidden_in("the log", &log);
        if query.contains(&id) {
            assert!(log.contains(&format!("key.id={id}")), "{query}: {log}");
        }
    }
    // Other known credential parameter names, whatever their value, any case, encoded.
    for query in [
        "api_key=abc",
        "ACCESS_TOKEN=abc",
        "api%5Fkey=abc",
        "x=1&token",
    ] {
        assert!(query_refused(query).0, "not refused: {query}");
    }
}

#[test]
fn ordinary_queries_and_near_misses_pass() {
    let k = key();
    let text = k.expose_secret();
    let id = k.id();
    let secret_len = text.len() - text.rfind('_').unwrap() - 1;
    let near_misses = [
        String::new(),
        "page=2&q=hello".to_owned(),
        "q=hello+world&sort=-created_at&filter%5Bstatus%5D=active".to_owned(),
        "monkey=1&keys=2&tokens=3&key_id=x".to_owned(), // names that only contain `key`/`token`
        format!("id={id}"),                             // a public key id is not a secret
        format!(
            "masked={}",
            k.masked().to_string().replace('…', "%E2%80%A6")
        ), // nor the masked form
        format!("q={}", &text[..text.len() - 1]),       // 48 characters after the id
        format!("q={}", text.replacen('_', "-", 1)),    // not the grammar
        format!("q={}", text.replacen('_', "+", 3)),    // spaces between the parts
        "q=AB_dev_0123456789AB_".to_owned() + &"x".repeat(secret_len), // prefix not lowercase
        "q=a_dev_0123456789AB_".to_owned() + &"x".repeat(secret_len), // prefix of one letter
        "q=ab_dev_0123456789A_".to_owned() + &"x".repeat(secret_len), // 11-character id
        "q=ab_d%2Dv_0123456789AB_".to_owned() + &"x".repeat(secret_len),
        "broken=%zz%5".to_owned(),
        "u=snake_case_value_with_many_parts".to_owned(),
    ];
    for query in &near_misses {
        let (refused, log) = query_refused(query);
        assert!(!refused, "refused: {query}");
        assert!(log.is_empty(), "{query}: {log}");
    }
}

#[test]
fn a_huge_query_is_scanned_in_linear_time() {
    // 60,000 bytes of underscores and id-like segments: every position starts a candidate,
    // a quadratic scan would take seconds.
    let chunk = "ab_cd_0123456789AB_";
    let query = format!("q={}", chunk.repeat(60_000 / chunk.len()));
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert!(!query_refused(&query).0);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn every_400_carries_an_invalid_request_challenge() {
    let now = Timestamp::from_unix_millis(1_800_000_000_000);
    for err in [AuthError::MultipleCredentials, AuthError::KeyInQueryString] {
        let r = auth_rejection(&err, "keyward", now);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with(
                "Bearer realm=\"keyward\", error=\"invalid_request\", error_description=\""
            ),
            "{challenge}"
        );
        assert!(
            r.body.contains("\"error\":\"invalid_request\""),
            "{}",
            r.body
        );
    }
    let r = invalid_request("k\"eyward", "bad \"value\"\n\u{202E}");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer realm=\"k'eyward\", error=\"invalid_request\", error_description=\"bad 'value'??\""
    );
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["message"], "bad \"value\"\n\u{202E}");
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

/// `text` with each byte percent-encoded where `encode` says so.
fn encode_some(text: &str, encode: &[bool]) -> String {
    text.bytes()
        .zip(encode.iter().cycle())
        .map(|(b, &e)| {
            if e {
                format!("%{b:02X}")
            } else {
                char::from(b).to_string()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_key_anywhere_in_a_query_however_encoded_is_refused(
        parts in ("[a-z][a-z0-9]{1,9}", "[a-z][a-z0-9]{1,9}", "[0-9A-Za-z]{12}", "[0-9A-Za-z]{43}"),
        before in "[a-z0-9=&+.,:/ -]{0,40}",
        after in "[a-z0-9=&+.,:/ -]{0,40}",
        encode in prop::collection::vec(any::<bool>(), 1..16),
    ) {
        let (p, e, id, secret) = parts;
        let key = fix_checksum(&format!("{p}_{e}_{id}_{secret}000000"));
        let raw = format!("{before} {} {after}", encode_some(&key, &encode)).replace(' ', "+");
        let uri: Uri = format!("/x?{raw}").parse().unwrap();
        prop_assert_eq!(reject_key_in_query(&uri), Err(AuthError::KeyInQueryString));
    }

    #[test]
    fn queries_without_an_underscore_or_credential_name_pass(
        query in "[a-jl-z0-9=&+.,:/-]{0,200}",
    ) {
        // No `_` (nothing is percent-encoded) and no `k`: no key, and no credential parameter
        // name but `token`.
        prop_assume!(!query.contains("token"));
        let uri: Uri = format!("/x?{query}").parse().unwrap();
        prop_assert_eq!(reject_key_in_query(&uri), Ok(()));
    }
}
