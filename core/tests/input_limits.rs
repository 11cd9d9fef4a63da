//! Admin input beyond the documented limits (issue 13, D7 and D11): expiries and graces over
//! 100 years, more than 64 scopes, names with control, bidi or invisible characters. Each is
//! refused with a typed error naming the limit, before anything is stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use keyward::{
    Error, HashParams, IssueRequest, KeyChange, KeyManager, ListQuery, MAX_EXPIRY, MAX_GRACE,
    MAX_SCOPES, ManualClock, ScopeSet, Timestamp, ValueKind, parse_duration,
};

const NOW: i64 = 1_800_000_000_000;

fn manager() -> KeyManager {
    KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(ManualClock::new(Timestamp::from_unix_millis(NOW))))
        .build()
        .unwrap()
}

fn request() -> IssueRequest {
    IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(["read"])
        .unwrap()
}

fn kind_of(result: Result<impl std::fmt::Debug, Error>) -> (ValueKind, String) {
    match result {
        Err(Error::Invalid(e)) => (e.kind, e.to_string()),
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

fn many_scopes(n: usize) -> ScopeSet {
    ScopeSet::parse((0..n).map(|i| format!("scope{i}"))).unwrap()
}

async fn stored(m: &KeyManager) -> usize {
    m.list(&ListQuery::default()).await.unwrap().len()
}

#[tokio::test]
async fn an_expiry_over_100_years_or_of_zero_is_refused_at_issue() {
    let m = manager();
    for text in ["999999999w", "18446744073709551615s", "36526d"] {
        let d = parse_duration(text).unwrap();
        let (kind, message) = kind_of(m.issue(request().expires_in(d)).await);
        assert_eq!(kind, ValueKind::Expiry, "{text}");
        assert!(message.contains("keyward::MAX_EXPIRY"), "{text}: {message}");
    }
    let (kind, message) = kind_of(m.issue(request().expires_in(Duration::ZERO)).await);
    assert_eq!(kind, ValueKind::Expiry);
    assert!(message.contains("zero"), "{message}");
    assert_eq!(
        stored(&m).await,
        0,
        "nothing is stored for a refused request"
    );

    // The limit itself is accepted, and its expiry prints as the right year.
    let issued = m.issue(request().expires_in(MAX_EXPIRY)).await.unwrap();
    let at = issued.record.expires_at.unwrap();
    assert_eq!(at.to_string(), "2127-01-16T08:00:00.000Z");
}

#[tokio::test]
async fn set_expiry_beyond_100_years_is_refused_and_the_past_is_allowed() {
    let m = manager();
    let id = m.issue(request()).await.unwrap().record.id;
    let now = Timestamp::from_unix_millis(NOW);
    let (kind, _) = kind_of(m.set_expiry(&id, Some(Timestamp::MAX)).await);
    assert_eq!(kind, ValueKind::Expiry);
    let too_far = now.saturating_add(MAX_EXPIRY + Duration::from_millis(1));
    assert_eq!(
        kind_of(m.set_expiry(&id, Some(too_far)).await).0,
        ValueKind::Expiry
    );
    assert_eq!(m.get(&id).await.unwrap().unwrap().expires_at, None);
    let limit = now.saturating_add(MAX_EXPIRY);
    let info = m.set_expiry(&id, Some(limit)).await.unwrap();
    assert_eq!(info.expires_at, Some(limit));
    let info = m
        .set_expiry(&id, Some(Timestamp::from_unix_millis(NOW - 1)))
        .await
        .unwrap();
    assert_eq!(info.status, keyward::KeyStatus::Expired);
}

#[tokio::test]
async fn a_grace_over_100_years_is_refused_before_anything_is_issued() {
    let m = manager();
    let id = m.issue(request()).await.unwrap().record.id;
    let (kind, message) = kind_of(m.rotate(&id, Duration::from_secs(u64::MAX)).await);
    assert_eq!(kind, ValueKind::Grace);
    assert!(message.contains("keyward::MAX_GRACE"), "{message}");
    assert_eq!(stored(&m).await, 1, "no successor was issued");
    assert_eq!(m.get(&id).await.unwrap().unwrap().expires_at, None);
    let rotated = m.rotate(&id, MAX_GRACE).await.unwrap();
    assert_ne!(rotated.record.id, id);
}

#[tokio::test]
async fn more_than_64_scopes_are_refused_at_issue_and_update() {
    let m = manager();
    let mut req = request();
    req.scopes = many_scopes(20_000);
    let (kind, message) = kind_of(m.issue(req).await);
    assert_eq!(kind, ValueKind::Scopes);
    assert!(message.contains("20000 scopes"), "{message}");
    assert!(message.contains("keyward::MAX_SCOPES"), "{message}");
    assert_eq!(stored(&m).await, 0);

    let mut req = request();
    req.scopes = many_scopes(MAX_SCOPES);
    let id = m.issue(req).await.unwrap().record.id;
    let change = KeyChange {
        scopes: Some(many_scopes(MAX_SCOPES + 1)),
        ..KeyChange::default()
    };
    assert_eq!(kind_of(m.update(&id, &change).await).0, ValueKind::Scopes);
    assert_eq!(m.get(&id).await.unwrap().unwrap().scopes.len(), MAX_SCOPES);
}

#[tokio::test]
async fn names_with_bidi_overrides_or_invisible_characters_are_refused_at_issue_and_update() {
    let m = manager();
    for name in [
        "invoice\u{202E}fdp.exe",
        "a\u{200B}b",
        "\u{FEFF}x",
        "x\u{2066}y",
    ] {
        let (kind, message) = kind_of(m.issue(request().name(name)).await);
        assert_eq!(kind, ValueKind::Name, "{name:?}");
        assert!(message.contains("U+"), "{name:?}: {message}");
    }
    let id = m.issue(request().name("ingest")).await.unwrap().record.id;
    let change = KeyChange {
        name: Some("ingest\u{202E}".to_owned()),
        ..KeyChange::default()
    };
    assert_eq!(kind_of(m.update(&id, &change).await).0, ValueKind::Name);
    assert_eq!(m.get(&id).await.unwrap().unwrap().name, "ingest");
}
