//! The rotation cases: [`RecordStore::rotate`](crate::RecordStore::rotate) is one atomic
//! step that serializes with a revoke, refuses revoked, expired and rotated keys unless
//! forced, and the manager's rotation reports both keys' ends (docs/ARCHITECTURE.md, "The
//! store contract").
//!
//! Every `pub async fn` here is a case, listed in the one table in the parent module; one that
//! is not listed is never used, and `dead_code` is an error here.
#![deny(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use super::helpers::{env, project, sample_record, t};
use super::manager_cases::manager;
use crate::error::Error;
use crate::key::KeyId;
use crate::manager::{IssueRequest, KeyInfo, Requirements, RotateOptions, RotatedKey};
use crate::name::Project;
use crate::store::StoreError;
use crate::store::{KeyChange, KeyRecord, KeyStore, ListQuery, RotateOutcome, RotationConflict};
use crate::time::{ManualClock, Timestamp};

/// How many rotations race one revoke.
const RACERS: usize = 10;

/// An active key of `p` created at `at`, expiring a day later, never rotated.
fn fresh(p: &Project, at: Timestamp) -> KeyRecord {
    let mut r = sample_record(p, env("dev"), at);
    r.rotated_from = None;
    r.rotated_to = None;
    r
}

/// A successor of `old`, as the manager builds one.
fn successor_of(old: &KeyRecord, at: Timestamp) -> KeyRecord {
    KeyRecord {
        id: KeyId::generate().expect("rng"),
        created_at: at,
        rotated_from: Some(old.id),
        ..fresh(&old.project, at)
    }
}

fn revoke_at(at: Timestamp) -> KeyChange {
    KeyChange {
        revoke_at: Some(at),
        ..KeyChange::default()
    }
}

async fn get(store: &Arc<dyn KeyStore>, id: &KeyId) -> Option<KeyRecord> {
    store.get(id).await.expect("get")
}

/// The keys of `p` that replaced `old`.
async fn successors(store: &Arc<dyn KeyStore>, p: &Project, old: &KeyId) -> Vec<KeyRecord> {
    let query = ListQuery {
        project: Some(p.clone()),
        limit: 1000,
        ..ListQuery::default()
    };
    let all = store.list(&query).await.expect("list");
    all.into_iter()
        .filter(|r| r.rotated_from == Some(*old))
        .collect()
}

/// A rotation inserts the successor, ends the old key at the grace end (never later than
/// it would have ended), records the successor on it and logs the old id as changed.
pub async fn rotate_replaces_a_key_in_one_step_and_logs_the_old_id(store: &Arc<dyn KeyStore>) {
    let p = project("rotate");
    let old = fresh(&p, t(0));
    store.insert(&old, &[]).await.expect("insert");
    let before = store
        .changes_since(u64::MAX)
        .await
        .expect("changes")
        .revision;

    let first = successor_of(&old, t(500));
    let outcome = store
        .rotate(&old.id, &first, t(1000), t(500), false, &[])
        .await
        .expect("rotate");
    let mut expected = old.clone();
    expected.expires_at = Some(t(1000));
    expected.rotated_to = Some(first.id);
    assert_eq!(outcome, RotateOutcome::Rotated(Box::new(expected.clone())));
    assert_eq!(get(store, &old.id).await, Some(expected));
    assert_eq!(get(store, &first.id).await, Some(first.clone()));
    let changes = store.changes_since(before).await.expect("changes");
    assert!(changes.ids.contains(&old.id), "{changes:?}");
    assert!(changes.revision > before);

    // A forced second rotation with a later grace end keeps the earlier end.
    let second = successor_of(&old, t(600));
    let outcome = store
        .rotate(&old.id, &second, t(5000), t(600), true, &[])
        .await
        .expect("rotate");
    let RotateOutcome::Rotated(replaced) = outcome else {
        panic!("a forced rotation is done, got {outcome:?}");
    };
    assert_eq!(replaced.expires_at, Some(t(1000)));
    assert_eq!(replaced.rotated_to, Some(second.id));
    assert_eq!(successors(store, &p, &old.id).await.len(), 2);
}

/// Unforced, a revoked, expired or already rotated key is refused with nothing written;
/// forced, each is rotated. An unknown id is `NotFound`.
pub async fn rotate_refuses_revoked_expired_and_rotated_keys_unless_forced(
    store: &Arc<dyn KeyStore>,
) {
    let p = project("refuse");
    let unknown = fresh(&p, t(0));
    let next = successor_of(&unknown, t(1));
    let outcome = store
        .rotate(&unknown.id, &next, t(10), t(1), true, &[])
        .await
        .expect("rotate");
    assert_eq!(outcome, RotateOutcome::NotFound);
    assert_eq!(get(store, &next.id).await, None);

    let revoked = fresh(&p, t(0));
    store.insert(&revoked, &[]).await.expect("insert");
    store
        .update(&revoked.id, &revoke_at(t(5)), &[])
        .await
        .expect("revoke");
    let mut expired = fresh(&p, t(0));
    expired.expires_at = Some(t(100));
    store.insert(&expired, &[]).await.expect("insert");
    let rotated = fresh(&p, t(0));
    store.insert(&rotated, &[]).await.expect("insert");
    let first = successor_of(&rotated, t(50));
    store
        .rotate(&rotated.id, &first, t(1000), t(50), false, &[])
        .await
        .expect("rotate");

    let now = t(100); // `expired` ends exactly now
    let cases = [
        (&revoked, RotationConflict::Revoked { at: t(5) }),
        (&expired, RotationConflict::Expired { at: t(100) }),
        (
            &rotated,
            RotationConflict::AlreadyRotated {
                successor: first.id,
            },
        ),
    ];
    for (old, conflict) in cases {
        let before = get(store, &old.id).await;
        let next = successor_of(old, now);
        let outcome = store
            .rotate(&old.id, &next, t(2000), now, false, &[])
            .await
            .expect("rotate");
        assert_eq!(outcome, RotateOutcome::Refused(conflict));
        assert_eq!(get(store, &next.id).await, None, "{conflict:?}");
        assert_eq!(get(store, &old.id).await, before, "{conflict:?}");

        let outcome = store
            .rotate(&old.id, &next, t(2000), now, true, &[])
            .await
            .expect("forced rotate");
        let RotateOutcome::Rotated(replaced) = outcome else {
            panic!("a forced rotation of {conflict:?} is done, got {outcome:?}");
        };
        assert_eq!(replaced.rotated_to, Some(next.id));
        assert_eq!(
            replaced.revoked_at,
            before.as_ref().and_then(|b| b.revoked_at)
        );
        assert_eq!(get(store, &next.id).await, Some(next));
    }
    // Forced, an expired key's expiry is never moved later.
    assert_eq!(
        get(store, &expired.id).await.and_then(|r| r.expires_at),
        Some(t(100))
    );
}

/// A successor whose id is taken is `AlreadyExists`, and the old key is left as it was.
pub async fn rotate_to_a_taken_id_is_already_exists_and_writes_nothing(store: &Arc<dyn KeyStore>) {
    let p = project("taken");
    let old = fresh(&p, t(0));
    let other = fresh(&p, t(1));
    store.insert(&old, &[]).await.expect("insert");
    store.insert(&other, &[]).await.expect("insert");
    let clash = KeyRecord {
        id: other.id,
        ..successor_of(&old, t(2))
    };
    let result = store.rotate(&old.id, &clash, t(10), t(2), false, &[]).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(id)) if id == other.id),
        "{result:?}"
    );
    assert_eq!(get(store, &old.id).await, Some(old));
    assert_eq!(get(store, &other.id).await, Some(other));
}

/// Ten rotations and a revoke of one key at once, on the store: at most one rotation is
/// done, and only if it came before the revoke (the revoke's answer already names its
/// successor); every other rotation is refused as revoked or already rotated.
pub async fn concurrent_rotations_and_a_revoke_serialize_in_the_store(store: &Arc<dyn KeyStore>) {
    for round in 0..5 {
        let p = project("race");
        let old = fresh(&p, t(round));
        store.insert(&old, &[]).await.expect("insert");
        let mut rotations = Vec::new();
        for _ in 0..RACERS {
            let (store, old) = (Arc::clone(store), old.clone());
            rotations.push(tokio::spawn(async move {
                let next = successor_of(&old, t(10));
                let outcome = store
                    .rotate(&old.id, &next, t(100), t(10), false, &[])
                    .await;
                (next.id, outcome.expect("rotate"))
            }));
        }
        let revoke = {
            let (store, id) = (Arc::clone(store), old.id);
            tokio::spawn(async move { store.update(&id, &revoke_at(t(10)), &[]).await })
        };
        let mut done = Vec::new();
        for rotation in rotations {
            match rotation.await.expect("task") {
                (id, RotateOutcome::Rotated(_)) => done.push(id),
                (
                    _,
                    RotateOutcome::Refused(
                        RotationConflict::Revoked { .. } | RotationConflict::AlreadyRotated { .. },
                    ),
                ) => {}
                (_, other) => panic!("unexpected outcome {other:?}"),
            }
        }
        let revoked = revoke
            .await
            .expect("task")
            .expect("revoke")
            .expect("present");
        assert!(done.len() <= 1, "{} successors of one key", done.len());
        assert_eq!(revoked.rotated_to, done.first().copied());
        let ids: Vec<KeyId> = successors(store, &p, &old.id)
            .await
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, done);
        let after = get(store, &old.id).await.expect("present");
        assert_eq!(after.revoked_at, Some(t(10)));
        assert_eq!(after.rotated_to, done.first().copied());
    }
}

/// Ten rotations and a revoke of one key at once, through the manager: no successor is
/// made after the revocation (so none of a revoked key), at most one at all, and every
/// refused rotation is a typed [`Error::RotationConflict`].
pub async fn concurrent_manager_rotations_and_a_revoke_make_no_successor_of_a_revoked_key(
    store: &Arc<dyn KeyStore>,
) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("manager-race");
    for _ in 0..3 {
        let old = m
            .issue(IssueRequest::new(p.clone(), env("dev")).name("racing"))
            .await
            .expect("issue");
        let id = old.record.id;
        let mut rotations = Vec::new();
        for _ in 0..RACERS {
            let m = m.clone();
            rotations.push(tokio::spawn(async move {
                m.rotate(&id, Duration::from_secs(60)).await
            }));
        }
        let revoke = {
            let m = m.clone();
            tokio::spawn(async move { m.revoke(&id).await })
        };
        let mut done: Vec<RotatedKey> = Vec::new();
        for rotation in rotations {
            match rotation.await.expect("task") {
                Ok(rotated) => done.push(rotated),
                Err(Error::RotationConflict { id: refused, .. }) => assert_eq!(refused, id),
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        let revoked: KeyInfo = revoke.await.expect("task").expect("revoke");
        assert!(done.len() <= 1, "{} successors of one key", done.len());
        assert_eq!(revoked.rotated_to, done.first().map(|r| r.record.id));
        let made = successors(store, &p, &id).await;
        assert_eq!(made.len(), done.len());
        for rotated in &done {
            m.verify(rotated.key.expose_secret(), &Requirements::none())
                .await
                .expect("a successor made before the revocation works");
        }
    }
}

/// The reason a rotation of `id` was refused.
fn conflict(id: &KeyId, result: &Result<RotatedKey, Error>) -> RotationConflict {
    match result {
        Err(Error::RotationConflict {
            id: refused,
            conflict,
        }) if refused == id => *conflict,
        other => panic!("expected a rotation conflict for {id}, got {other:?}"),
    }
}

/// Through the manager: a revoked, expired or rotated key is refused with a typed error
/// that names the reason; forced, each is replaced; the answer says when the new key
/// expires and when the old one stops working.
pub async fn manager_rotation_is_explicit_and_reports_both_ends(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("explicit");
    let day = Duration::from_secs(86_400);
    let req = IssueRequest::new(p.clone(), env("dev")).expires_in(day);

    let a = m.issue(req.clone()).await.expect("issue");
    let hour = Duration::from_secs(3600);
    let rotated = m.rotate(&a.record.id, hour).await.expect("rotate");
    assert_eq!(rotated.expires_at(), a.record.expires_at);
    assert_eq!(rotated.grace_end, t(3_600_000));
    let refused = m.rotate(&a.record.id, hour).await;
    assert_eq!(
        conflict(&a.record.id, &refused),
        RotationConflict::AlreadyRotated {
            successor: rotated.record.id
        }
    );
    // Forced with a longer grace: a second replacement, and the old key's end stays.
    let again = m
        .rotate_with(&a.record.id, RotateOptions::grace(day).force())
        .await
        .expect("forced rotate");
    assert_eq!(again.grace_end, t(3_600_000));
    // The new key lives as long as the first replacement, not until the old key's grace end.
    assert_eq!(again.expires_at(), a.record.expires_at);
    let info = m.get(&a.record.id).await.expect("get").expect("present");
    assert_eq!(info.rotated_to, Some(again.record.id));

    let b = m.issue(req.clone()).await.expect("issue");
    m.revoke(&b.record.id).await.expect("revoke");
    let refused = m.rotate(&b.record.id, hour).await;
    let revoked_at = m.now();
    assert_eq!(
        conflict(&b.record.id, &refused),
        RotationConflict::Revoked { at: revoked_at }
    );
    let message = refused.expect_err("refused").to_string();
    assert!(
        message.contains("revoked") && message.contains("force"),
        "{message}"
    );
    let replacement = m
        .rotate_with(&b.record.id, RotateOptions::grace(hour).force())
        .await
        .expect("forced rotate of a revoked key");
    m.verify(replacement.key.expose_secret(), &Requirements::none())
        .await
        .expect("the replacement of a revoked key works");
    assert!(
        m.verify(b.key.expose_secret(), &Requirements::none())
            .await
            .is_err(),
        "the revoked key stays revoked"
    );

    let c = m.issue(req).await.expect("issue");
    clock.advance(day);
    let refused = m.rotate(&c.record.id, hour).await;
    let expired_at = c.record.expires_at.expect("expiry");
    assert_eq!(
        conflict(&c.record.id, &refused),
        RotationConflict::Expired { at: expired_at }
    );
    let revived = m
        .rotate_with(&c.record.id, RotateOptions::grace(hour).force())
        .await
        .expect("forced rotate of an expired key");
    // The expired key's lifetime, counted from the rotation; the old key stays expired.
    assert_eq!(revived.expires_at(), Some(m.now().saturating_add(day)));
    assert_eq!(revived.grace_end, c.record.expires_at.expect("expiry"));
    m.verify(revived.key.expose_secret(), &Requirements::none())
        .await
        .expect("the replacement of an expired key works");

    let unknown = KeyId::generate().expect("rng");
    assert!(matches!(
        m.rotate(&unknown, hour).await,
        Err(Error::NotFound(id)) if id == unknown
    ));
}
