//! The key format: round trips, and every corruption caught offline, before any store access.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keyward::conformance::{CountingStore, fix_checksum};
use keyward::{
    ApiKey, AuthError, Error, HashParams, KeyManager, KeyStore, MalformedKey, Requirements,
};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{1,9}"
}

/// Any well-formed key text: random parts, correct checksum.
fn key_text() -> impl Strategy<Value = String> {
    (label(), label(), "[0-9A-Za-z]{12}", "[0-9A-Za-z]{43}")
        .prop_map(|(p, e, id, secret)| fix_checksum(&format!("{p}_{e}_{id}_{secret}000000")))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A manager serving every environment the generator can produce is not needed: format
/// errors are decided before the environment check, and the counting store proves no call.
fn counting_manager() -> (KeyManager, Arc<CountingStore>) {
    let counting = Arc::new(CountingStore::new(Arc::new(
        keyward_memory::MemoryStore::new(),
    )));
    let store: Arc<dyn KeyStore> = counting.clone();
    let m = KeyManager::builder_arc(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    (m, counting)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_well_formed_key_round_trips_through_parse_and_expose(text in key_text()) {
        let key = ApiKey::parse(&text).unwrap();
        prop_assert_eq!(key.expose_secret(), text.as_str());
        let again: ApiKey = key.expose_secret().parse().unwrap();
        prop_assert_eq!(&again, &key);
        let masked = key.to_string();
        prop_assert_eq!(masked, format!("{}_{}_{}_…", key.prefix(), key.environment(), key.id()));
    }

    #[test]
    fn every_single_character_substitution_is_rejected_without_a_store_call(
        text in key_text(),
        pos in any::<prop::sample::Index>(),
        replacement in prop::sample::select(
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-+/= \"'\u{0}\u{ff3f}é".chars().collect::<Vec<_>>()
        ),
    ) {
        let i = pos.index(text.chars().count());
        let original = text.chars().nth(i).unwrap();
        prop_assume!(original != replacement);
        let mutated: String = text.chars().enumerate().map(|(j, c)| if j == i { replacement } else { c }).collect();
        prop_assert!(ApiKey::parse(&mutated).is_err(), "accepted {mutated:?}");
        let (m, counting) = counting_manager();
        let result = runtime().block_on(m.verify(&mutated, &Requirements::none()));
        prop_assert!(matches!(result, Err(Error::Auth(AuthError::Malformed(_)))), "{result:?}");
        prop_assert_eq!(counting.calls(), 0);
    }

    #[test]
    fn every_deletion_or_insertion_is_rejected(text in key_text(), pos in any::<prop::sample::Index>(), c in "[0-9A-Za-z_]") {
        let i = pos.index(text.len());
        let mut deleted = text.clone();
        deleted.remove(i);
        prop_assert!(ApiKey::parse(&deleted).is_err());
        let mut inserted = text.clone();
        inserted.insert_str(i, &c);
        prop_assert!(ApiKey::parse(&inserted).is_err());
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = ApiKey::parse_bytes(&bytes);
    }

    #[test]
    fn parsing_arbitrary_strings_never_panics(s in ".{0,300}") {
        let _ = ApiKey::parse(&s);
    }
}

#[test]
fn a_generated_key_matches_the_published_scanner_regex_shape() {
    let key = ApiKey::generate("av".parse().unwrap(), "prd".parse().unwrap()).unwrap();
    let text = key.expose_secret();
    let parts: Vec<&str> = text.split('_').collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[2].len(), 12);
    assert_eq!(parts[3].len(), 49);
    assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    assert!(keyward::SCANNER_REGEX.contains("[0-9A-Za-z]{49}"));
}

#[test]
fn well_formed_keys_of_other_environments_are_refused_before_the_store() {
    let (m, counting) = counting_manager();
    let prd = ApiKey::generate("kw".parse().unwrap(), "prd".parse().unwrap()).unwrap();
    let err = runtime()
        .block_on(m.verify(prd.expose_secret(), &Requirements::none()))
        .unwrap_err();
    assert!(
        matches!(err, Error::Auth(AuthError::WrongEnvironment { .. })),
        "{err:?}"
    );
    let other = ApiKey::generate("tl".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    let err = runtime()
        .block_on(m.verify(other.expose_secret(), &Requirements::none()))
        .unwrap_err();
    assert!(
        matches!(err, Error::Auth(AuthError::WrongPrefix { .. })),
        "{err:?}"
    );
    assert_eq!(counting.calls(), 0);
    assert_eq!(
        err.to_string(),
        "this API key has prefix 'tl', but this service issues 'kw' keys: it belongs to another product or deployment"
    );
}

#[test]
fn checksum_failure_is_named_as_a_typo() {
    let key = ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    let mut text = key.expose_secret().to_owned();
    let last = text.pop().unwrap();
    text.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(ApiKey::parse(&text), Err(MalformedKey::BadChecksum));
}
