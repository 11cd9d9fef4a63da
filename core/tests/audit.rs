//! The audit trail through the manager: retention (explicit pruning and the background task),
//! and the actor of handles derived from one another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use keyward::{
    Actor, AuditQuery, HashParams, IssueRequest, KeyManager, ManualClock, Requirements, Tenant,
    Timestamp,
};

fn manager(clock: &ManualClock, retention: Option<Duration>) -> KeyManager {
    let mut b = KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(clock.clone()));
    if let Some(r) = retention {
        b = b.audit_retention(r);
    }
    b.build().unwrap()
}

fn query() -> AuditQuery {
    AuditQuery::new("web-app".parse().unwrap())
}

fn request() -> IssueRequest {
    IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
}

#[tokio::test]
async fn without_a_retention_nothing_is_pruned() {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000));
    let m = manager(&clock, None);
    m.issue(request()).await.unwrap();
    clock.advance(Duration::from_secs(10 * 365 * 86_400));
    assert_eq!(m.prune_audit().await.unwrap(), 0);
    assert_eq!(m.audit(&query()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn prune_audit_deletes_entries_older_than_the_retention() {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000));
    let m = manager(&clock, Some(Duration::from_secs(3600)));
    m.issue(request()).await.unwrap();
    clock.advance(Duration::from_secs(1800));
    let kept = m.issue(request()).await.unwrap();
    clock.advance(Duration::from_secs(1801));
    assert_eq!(m.prune_audit().await.unwrap(), 1);
    let trail = m.audit(&query()).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].key_id, Some(kept.record.id));
}

#[tokio::test]
async fn the_background_tasks_prune_the_trail_once_started() {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000));
    let m = manager(&clock, Some(Duration::from_secs(3600)));
    let issued = m.issue(request()).await.unwrap();
    clock.advance(Duration::from_secs(7200));
    // The first verify starts the background tasks; the pruning runs at once, then hourly.
    m.verify(issued.key.expose_secret(), &Requirements::none())
        .await
        .unwrap();
    for _ in 0..200 {
        if m.audit(&query()).await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the background task never pruned the trail");
}

#[tokio::test]
async fn handles_keep_their_actor_and_share_everything_else() {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000));
    let m = manager(&clock, None);
    let ops = m.acting_as(Actor::new("user:ops").unwrap());
    assert_eq!(ops.actor().as_str(), "user:ops");
    assert_eq!(m.actor(), &Actor::system());
    let tenant = ops.tenant(Tenant::new("web-app".parse().unwrap()));
    let issued = tenant.issue(request()).await.unwrap();
    // The same store and cache: the plain manager sees the key and its entry.
    assert!(m.get(&issued.record.id).await.unwrap().is_some());
    let trail = m.audit(&query()).await.unwrap();
    assert_eq!(trail[0].actor.as_str(), "user:ops");
    let bob = tenant.acting_as(Actor::new("user:bob").unwrap());
    bob.revoke(&issued.record.id).await.unwrap();
    let trail = tenant
        .audit(Some(issued.record.id), None, 10)
        .await
        .unwrap();
    let actors: Vec<&str> = trail.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["user:bob", "user:ops"]);
}
