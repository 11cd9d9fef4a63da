//! Building blocks for tests: sample records, key texts changed on purpose (a recomputed
//! checksum, a wrong secret), fixed times and unique names.

use crate::hash::SecretHash;
use crate::key::{ApiKey, CHECK_LEN, Environment, KeyId, SECRET_LEN};
use crate::name::Project;
use crate::scope::ScopeSet;
use crate::store::{KeyLimits, KeyRecord};
use crate::time::Timestamp;

/// A PHC string for store-level cases (the stores never interpret it).
pub const SAMPLE_PHC: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$X34BrkThJYMu+rIISZMN1uQlJp94vR8NMk4ILKRmdLY";

/// `base` and a random suffix: a name no other case (nor an earlier run on the same database)
/// uses.
pub(super) fn unique(base: &str) -> String {
    let id = KeyId::generate().map(|i| i.to_string()).unwrap_or_default();
    format!("{base}-{}", id.to_ascii_lowercase())
}

/// A project with a [`unique`] name.
pub(super) fn project(base: &str) -> Project {
    Project::new(&unique(base)).expect("valid project")
}

/// A valid environment label.
pub(super) fn env(s: &str) -> Environment {
    Environment::new(s).expect("valid environment")
}

/// A complete record with every optional field set.
pub fn sample_record(
    project: &Project,
    environment: Environment,
    created_at: Timestamp,
) -> KeyRecord {
    KeyRecord {
        id: KeyId::generate().expect("rng"),
        prefix: "av".parse().expect("prefix"),
        project: project.clone(),
        environment,
        scopes: ScopeSet::parse(["read", "traces:write"]).expect("scopes"),
        name: "ingest – ünïcode name".into(),
        metadata: Some(serde_json::json!({"team": "obs", "n": 3, "tags": ["a", "b"]})),
        created_at,
        expires_at: Some(Timestamp::from_unix_millis(
            created_at.unix_millis() + 86_400_000,
        )),
        revoked_at: None,
        last_used_at: None,
        secret_hash: SecretHash::from_phc(SAMPLE_PHC).expect("phc"),
        rotated_from: Some(KeyId::generate().expect("rng")),
        limits: KeyLimits {
            credits: Some(crate::quota::Credits {
                amount: 100,
                refill: Some(crate::quota::Refill {
                    period: crate::quota::Period::Month,
                    amount: 50,
                }),
            }),
            quota: Some(crate::quota::Quota {
                limit: 1000,
                period: crate::quota::Period::Seconds(3600),
            }),
            rate_limit: Some(crate::quota::RateLimit {
                requests: 10,
                per_seconds: 1,
            }),
        },
        rotated_to: Some(KeyId::generate().expect("rng")),
    }
}

/// `ms` milliseconds after a fixed instant (in 2027), the cases' clock origin.
pub(super) fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + ms)
}

/// Recomputes the checksum of a (tampered) key text.
pub fn fix_checksum(text: &str) -> String {
    let body = &text[..text.len() - CHECK_LEN];
    let check = crate::key::checksum(body.as_bytes());
    format!("{body}{}", String::from_utf8_lossy(&check))
}

/// The secret part of a key text: the [`SECRET_LEN`] characters before the checksum.
pub fn secret_of(text: &str) -> &str {
    &text[text.len() - CHECK_LEN - SECRET_LEN..text.len() - CHECK_LEN]
}

/// `text` with its secret's character at `at` (`0..SECRET_LEN`) changed and the checksum
/// recomputed: a well-formed key (when `text` is one) with the same id and a wrong secret.
///
/// # Panics
/// When `at` is not inside the secret.
pub fn with_wrong_secret(text: &str, at: usize) -> String {
    assert!(at < SECRET_LEN, "the secret has {SECRET_LEN} characters");
    let i = text.len() - CHECK_LEN - SECRET_LEN + at;
    let mut bytes = text.as_bytes().to_vec();
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    let wrong = fix_checksum(std::str::from_utf8(&bytes).expect("a base62 character replaced"));
    assert_eq!(ApiKey::parse(&wrong).is_ok(), ApiKey::parse(text).is_ok());
    wrong
}

/// An RFC 3339 instant, for cases that cross a calendar boundary.
pub(super) fn month(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("rfc3339")
}
