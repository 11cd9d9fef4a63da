//! `ApiKey::parse_bytes` on any bytes: never panics, accepts exactly the well-formed keys
//! (round-tripping them), and no error, `Debug` or `Display` repeats the input's secret.
#![no_main]

use keyward::ApiKey;
use keyward::http::auth_rejection;
use keyward_fuzz::{Candidate, assert_no_leak};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|candidate: Candidate| {
    let input = candidate.bytes();
    let parsed = ApiKey::parse_bytes(&input);
    if let Ok(text) = std::str::from_utf8(&input) {
        assert_eq!(
            ApiKey::parse(text),
            parsed,
            "parse and parse_bytes disagree"
        );
    }
    match parsed {
        Ok(key) => {
            assert_eq!(key.expose_secret().as_bytes(), &input[..]);
            assert_eq!(ApiKey::parse(key.expose_secret()).as_ref(), Ok(&key));
            let masked = format!("{}_{}_{}_…", key.prefix(), key.environment(), key.id());
            assert_eq!(key.to_string(), masked);
            for shown in [
                key.to_string(),
                format!("{key:?}"),
                format!("{key:#?}"),
                format!("{:?}", key.masked()),
            ] {
                assert_no_leak("a key's Display/Debug", &shown, &input);
            }
        }
        Err(e) => {
            let auth = keyward::AuthError::from(e.clone());
            let r = auth_rejection(&auth, "fuzz", keyward::Timestamp::from_unix_millis(0));
            for shown in [
                e.to_string(),
                format!("{e:?}"),
                auth.to_string(),
                r.body.clone(),
                format!("{:?}", r.headers),
            ] {
                assert_no_leak("a parse error", &shown, &input);
            }
        }
    }
});
