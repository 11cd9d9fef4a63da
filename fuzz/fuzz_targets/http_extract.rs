//! `keyward::http::extract_key` on header maps built from fuzz bytes, and
//! `reject_key_in_query` on query strings: never panic; one credential at most is accepted;
//! a key in the query is always refused; no error or HTTP answer repeats a secret.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use keyward::http::{auth_rejection, extract_key, reject_key_in_query};
use keyward::{ApiKey, AuthError, Timestamp};
use keyward_fuzz::{Candidate, assert_no_leak};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Name {
    Authorization,
    XApiKey,
    AuthorizationUpper,
    Cookie,
    Other(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Value {
    /// `<scheme> <candidate>` with one of several schemes and spacings.
    Scheme {
        scheme: u8,
        spaces: u8,
        token: Candidate,
    },
    /// `Basic base64(user:password)`.
    Basic {
        user: Candidate,
        password: Candidate,
        colon: bool,
    },
    /// The candidate alone.
    Plain(Candidate),
}

#[derive(Debug, Arbitrary)]
struct Input {
    headers: Vec<(Name, Value)>,
    query: Vec<(Candidate, Candidate)>,
    raw_query: Option<Vec<u8>>,
}

const SCHEMES: &[&[u8]] = &[
    b"Bearer", b"bearer", b"BEARER", b"Basic", b"Token", b"", b"Digest",
];

fn base64(data: &[u8]) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Scheme {
            scheme,
            spaces,
            token,
        } => {
            let mut out = SCHEMES[usize::from(*scheme) % SCHEMES.len()].to_vec();
            out.extend(std::iter::repeat_n(b' ', usize::from(spaces % 4)));
            out.extend(token.bytes());
            out
        }
        Value::Basic {
            user,
            password,
            colon,
        } => {
            let mut creds = user.bytes();
            if *colon {
                creds.push(b':');
                creds.extend(password.bytes());
            }
            let mut out = b"Basic ".to_vec();
            out.extend(base64(&creds));
            out
        }
        Value::Plain(c) => c.bytes(),
    }
}

fn check_headers(input: &Input) {
    let mut map = HeaderMap::new();
    // Everything the client sent: the oracle's "input".
    let mut sent = Vec::new();
    for (name, value) in &input.headers {
        let name = match name {
            Name::Authorization => HeaderName::from_static("authorization"),
            Name::XApiKey => HeaderName::from_static("x-api-key"),
            Name::AuthorizationUpper => match HeaderName::from_bytes(b"AUTHORIZATION") {
                Ok(n) => n,
                Err(_) => continue,
            },
            Name::Cookie => HeaderName::from_static("cookie"),
            Name::Other(b) => match HeaderName::from_bytes(b) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        let bytes = value_bytes(value);
        let Ok(v) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        sent.extend_from_slice(&bytes);
        sent.push(b'\n');
        // Basic values hide the key in base64: the oracle must see the decoded text too.
        if let Value::Basic { user, password, .. } = value {
            sent.extend(user.bytes());
            sent.push(b'\n');
            sent.extend(password.bytes());
            sent.push(b'\n');
        }
        map.append(name, v);
    }
    let credentials =
        map.get_all("authorization").iter().count() + map.get_all("x-api-key").iter().count();
    match extract_key(&map) {
        Ok(key) => {
            assert_eq!(
                credentials, 1,
                "a key was taken from {credentials} credentials"
            );
            assert!(ApiKey::parse(key.expose_secret()).is_ok());
            assert_no_leak("an extracted key's Debug", &format!("{key:?} {key}"), &sent);
        }
        Err(e) => {
            match credentials {
                0 => assert_eq!(e, AuthError::Missing),
                1 => assert_ne!(e, AuthError::MultipleCredentials),
                _ => assert_eq!(e, AuthError::MultipleCredentials),
            }
            let r = auth_rejection(&e, "fuzz", Timestamp::from_unix_millis(0));
            for shown in [
                e.to_string(),
                format!("{e:?}"),
                r.body.clone(),
                format!("{:?}", r.headers),
            ] {
                assert_no_leak("an extraction error", &shown, &sent);
            }
        }
    }
}

fn check_query(input: &Input) {
    let mut query = Vec::new();
    for (i, (name, value)) in input.query.iter().enumerate() {
        if i > 0 {
            query.push(b'&');
        }
        query.extend(name.bytes());
        query.push(b'=');
        query.extend(value.bytes());
    }
    for q in [Some(query), input.raw_query.clone()].into_iter().flatten() {
        let mut uri = b"/v1/traces?".to_vec();
        uri.extend_from_slice(&q);
        let Ok(uri) = Uri::try_from(uri) else {
            continue;
        };
        let result = reject_key_in_query(&uri);
        let holds_key = uri.query().is_some_and(|q| {
            q.split('&')
                .any(|pair| ApiKey::parse(pair.split_once('=').map_or("", |(_, v)| v)).is_ok())
        });
        if holds_key {
            assert_eq!(
                result,
                Err(AuthError::KeyInQueryString),
                "a key in {uri} got through"
            );
        }
        if let Err(e) = result {
            assert_eq!(e, AuthError::KeyInQueryString);
            let r = auth_rejection(&e, "fuzz", Timestamp::from_unix_millis(0));
            assert_no_leak(
                "a query refusal",
                &format!("{e} {} {:?}", r.body, r.headers),
                &q,
            );
        }
    }
}

fuzz_target!(|input: Input| {
    check_headers(&input);
    check_query(&input);
});
