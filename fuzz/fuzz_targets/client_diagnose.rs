//! `keyward::client::diagnose` on any variable value: never panics, says `Ok` only for a
//! well-formed key of the expected prefix and environment, and no diagnosis (nor the
//! `LoadError` that carries it) repeats the value's secret.
#![no_main]

use arbitrary::Arbitrary;
use keyward::ApiKey;
use keyward::client::{Diagnosis, KeyExpectation, LoadError, diagnose};
use keyward_fuzz::{Candidate, assert_no_leak};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    value: Option<Candidate>,
    prefix: u8,
    env: Option<u8>,
}

const PREFIXES: &[&str] = &["kw", "av", "tl"];
const ENVS: &[&str] = &["dev", "prd", "stg"];

fuzz_target!(|input: Input| {
    let prefix = PREFIXES[usize::from(input.prefix) % PREFIXES.len()];
    let expect = match input.env {
        Some(e) => KeyExpectation::new(
            prefix.parse().unwrap_or_default(),
            ENVS[usize::from(e) % ENVS.len()]
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        ),
        None => KeyExpectation::any_environment(prefix.parse().unwrap_or_default()),
    };
    // An environment variable is text: lossy UTF-8, as `std::env::var_os` + `to_string_lossy`.
    let value = input
        .value
        .as_ref()
        .map(|c| String::from_utf8_lossy(&c.bytes()).into_owned());
    let d = diagnose(value.as_deref(), &expect);
    match (&d, value.as_deref()) {
        (Diagnosis::Unset, v) => assert!(v.is_none()),
        (_, None) => panic!("an unset variable diagnosed as {d:?}"),
        (Diagnosis::Empty, Some(v)) => assert!(v.trim().is_empty()),
        (Diagnosis::Ok { masked }, Some(v)) => {
            let key = ApiKey::parse(v).unwrap_or_else(|e| panic!("Ok for a bad key: {e}"));
            assert_eq!(key.prefix(), expect.prefix);
            assert!(
                expect.environments.is_empty() || expect.environments.contains(&key.environment())
            );
            assert_eq!(masked, &key.masked().to_string());
        }
        (_, Some(_)) => assert!(!d.is_ok()),
    }
    let input_bytes = value.unwrap_or_default().into_bytes();
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
        assert_no_leak("a diagnosis", &shown, &input_bytes);
    }
});
