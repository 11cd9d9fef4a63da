//! A fast, always-run smoke version of the cargo-fuzz targets in `fuzz/` (key parsing, header
//! extraction, query-string refusal, environment-variable diagnosis): arbitrary bytes and
//! header maps never panic, and no error's `Display` or `Debug`, no HTTP answer and no
//! diagnosis repeats the input's key-like secret part.
//!
//! The leak oracle is `keyward::conformance::shared_secret_window`, the fuzz targets' own: a key
//! id is public and 12 characters long, so no text shown may hold a run of 13 alphanumerics
//! that also occurs in the input (it could only have come from a secret).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use keyward::client::{Diagnosis, KeyExpectation, LoadError, diagnose};
use keyward::conformance::{assert_no_leak, fix_checksum};
use keyward::http::{auth_rejection, extract_key, reject_key_in_query};
use keyward::{ApiKey, AuthError, Timestamp};
use proptest::prelude::*;

/// A well-formed key text from fuzzed parts (valid checksum), with a chosen prefix and env.
fn key_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["kw", "av", "tl", "k0abcdefgh"]),
        prop::sample::select(vec!["dev", "prd", "stg", "e1"]),
        "[0-9A-Za-z]{12}",
        "[0-9A-Za-z]{43}",
    )
        .prop_map(|(p, e, id, secret)| fix_checksum(&format!("{p}_{e}_{id}_{secret}000000")))
}

/// A key damaged in the ways a person or a program damages one.
fn candidate() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        key_text().prop_map(String::into_bytes),
        (
            key_text(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(k, at, byte, fix)| {
                let mut b = k.into_bytes();
                let i = at.index(b.len());
                b[i] = byte;
                match (fix, std::str::from_utf8(&b)) {
                    (true, Ok(s)) => fix_checksum(s).into_bytes(),
                    _ => b,
                }
            }),
        (key_text(), 0usize..90).prop_map(|(k, n)| k.as_bytes()[..n.min(k.len())].to_vec()),
        (
            key_text(),
            prop::collection::vec(any::<u8>(), 0..8),
            any::<bool>()
        )
            .prop_map(|(k, extra, front)| {
                let mut b = if front { extra.clone() } else { Vec::new() };
                b.extend_from_slice(k.as_bytes());
                if !front {
                    b.extend_from_slice(&extra);
                }
                b
            }),
        (
            key_text(),
            prop::sample::select(vec!["\"", "'", "`", " ", "\n", "\t"])
        )
            .prop_map(|(k, q)| format!("{q}{k}{q}").into_bytes()),
        key_text().prop_map(|k| format!("{k}{k}").into_bytes()),
    ]
}

fn check_parse(input: &[u8]) -> Result<(), TestCaseError> {
    let parsed = ApiKey::parse_bytes(input);
    if let Ok(text) = std::str::from_utf8(input) {
        prop_assert_eq!(&ApiKey::parse(text), &parsed);
    }
    match parsed {
        Ok(key) => {
            prop_assert_eq!(key.expose_secret().as_bytes(), input);
            for shown in [key.to_string(), format!("{key:?}"), format!("{key:#?}")] {
                assert_no_leak("a key's Display/Debug", &shown, input);
            }
        }
        Err(e) => {
            let auth = AuthError::from(e.clone());
            let r = auth_rejection(&auth, "api", Timestamp::from_unix_millis(0));
            for shown in [
                e.to_string(),
                format!("{e:?}"),
                auth.to_string(),
                r.body,
                format!("{:?}", r.headers),
            ] {
                assert_no_leak("a parse error", &shown, input);
            }
        }
    }
    Ok(())
}

/// A header value as sent, and the credential text inside it (for the leak oracle).
type Value = (Vec<u8>, Vec<u8>);
/// Header names and values, in order.
type Pairs = Vec<(&'static str, Value)>;

/// A header value that may carry a credential in any of the accepted forms, or junk.
fn header_value() -> impl Strategy<Value = Value> {
    let scheme = prop::sample::select(vec![
        "Bearer ", "bearer  ", "BEARER ", "Token ", "", "Basic ",
    ]);
    prop_oneof![
        (scheme, candidate()).prop_map(|(s, c)| {
            let mut v = s.as_bytes().to_vec();
            v.extend_from_slice(&c);
            (v, c)
        }),
        (candidate(), any::<bool>()).prop_map(|(c, colon)| {
            let mut creds = c.clone();
            if colon {
                creds.push(b':');
            }
            let v = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(&creds)
            );
            (v.into_bytes(), c)
        }),
    ]
}

fn header_map() -> impl Strategy<Value = Pairs> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["authorization", "x-api-key", "cookie", "x-other"]),
            header_value(),
        ),
        0..4,
    )
}

fn check_headers(pairs: &[(&'static str, Value)]) -> Result<(), TestCaseError> {
    let mut map = HeaderMap::new();
    let mut sent = Vec::new();
    for (name, (value, raw)) in pairs {
        let Ok(v) = HeaderValue::from_bytes(value) else {
            continue;
        };
        sent.extend_from_slice(value);
        sent.push(b'\n');
        sent.extend_from_slice(raw);
        sent.push(b'\n');
        map.append(HeaderName::from_static(name), v);
    }
    let credentials =
        map.get_all("authorization").iter().count() + map.get_all("x-api-key").iter().count();
    match extract_key(&map) {
        Ok(key) => {
            prop_assert_eq!(credentials, 1);
            assert_no_leak("an extracted key", &format!("{key} {key:?}"), &sent);
        }
        Err(e) => {
            match credentials {
                0 => prop_assert_eq!(&e, &AuthError::Missing),
                1 => prop_assert_ne!(&e, &AuthError::MultipleCredentials),
                _ => prop_assert_eq!(&e, &AuthError::MultipleCredentials),
            }
            let r = auth_rejection(&e, "api", Timestamp::from_unix_millis(0));
            for shown in [
                e.to_string(),
                format!("{e:?}"),
                r.body,
                format!("{:?}", r.headers),
            ] {
                assert_no_leak("an extraction error", &shown, &sent);
            }
        }
    }
    Ok(())
}

fn check_query(query: &[u8]) -> Result<(), TestCaseError> {
    let mut uri = b"/v1/traces?".to_vec();
    uri.extend_from_slice(query);
    let Ok(uri) = Uri::try_from(uri) else {
        return Ok(());
    };
    let result = reject_key_in_query(&uri);
    let holds_key = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| ApiKey::parse(pair.split_once('=').map_or("", |(_, v)| v)).is_ok())
    });
    if holds_key {
        prop_assert_eq!(&result, &Err(AuthError::KeyInQueryString));
    }
    if let Err(e) = result {
        let r = auth_rejection(&e, "api", Timestamp::from_unix_millis(0));
        assert_no_leak("a query refusal", &format!("{e} {}", r.body), query);
    }
    Ok(())
}

fn check_diagnose(value: Option<&str>, expect: &KeyExpectation) -> Result<(), TestCaseError> {
    let d = diagnose(value, expect);
    match (&d, value) {
        (Diagnosis::Unset, v) => prop_assert!(v.is_none()),
        (_, None) => prop_assert!(false, "an unset variable diagnosed as {d:?}"),
        (Diagnosis::Empty, Some(v)) => prop_assert!(v.trim().is_empty()),
        (Diagnosis::Ok { masked }, Some(v)) => {
            let key = ApiKey::parse(v).unwrap();
            prop_assert_eq!(key.prefix(), expect.prefix);
            prop_assert!(
                expect.environments.is_empty() || expect.environments.contains(&key.environment())
            );
            prop_assert_eq!(masked, &key.masked().to_string());
        }
        (_, Some(_)) => prop_assert!(!d.is_ok()),
    }
    let input = value.unwrap_or_default().as_bytes();
    let load = LoadError {
        var: "KEY".to_owned(),
        diagnosis: d.clone(),
    };
    for shown in [
        d.to_string(),
        format!("{d:?}"),
        load.to_string(),
        format!("{load:?}"),
    ] {
        assert_no_leak("a diagnosis", &shown, input);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_bytes_never_panics_and_errors_never_repeat_the_secret(input in candidate()) {
        check_parse(&input)?;
    }

    #[test]
    fn header_extraction_never_panics_and_rejections_never_repeat_the_secret(
        pairs in header_map()
    ) {
        check_headers(&pairs)?;
    }

    #[test]
    fn a_key_in_the_query_string_is_always_refused_and_never_echoed(
        name in prop::sample::select(vec!["q", "key", "token", "x", "api_key"]),
        value in candidate(),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut query = format!("{name}=").into_bytes();
        query.extend_from_slice(&value);
        check_query(&query)?;
        check_query(&junk)?;
        let mut mixed = b"a=1&".to_vec();
        mixed.extend_from_slice(&query);
        check_query(&mixed)?;
    }

    #[test]
    fn diagnosis_never_panics_and_never_repeats_the_secret(
        value in prop::option::of(candidate()),
        prefix in prop::sample::select(vec!["kw", "av", "tl"]),
        env in prop::option::of(prop::sample::select(vec!["dev", "prd", "stg"])),
    ) {
        let expect = match env {
            Some(e) => KeyExpectation::new(prefix.parse().unwrap(), e.parse().unwrap()),
            None => KeyExpectation::any_environment(prefix.parse().unwrap()),
        };
        let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
        check_diagnose(value.as_deref(), &expect)?;
    }
}
