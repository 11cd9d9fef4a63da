//! The cases on the audit trail (docs/ARCHITECTURE.md, "The audit trail"): each change
//! appends its entries in its own transaction, pages newest first, filters, pruning, a
//! refused entry refusing its change, and the manager's entries (actors, summaries, no
//! secret).
//!
//! Every `pub async fn` here is a case, listed in the one table in the parent module; one that
//! is not listed is never used, and `dead_code` is an error here.
#![deny(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::helpers::{SAMPLE_PHC, env, project, sample_record, t};
use super::leaks::assert_keys_hidden;
use super::manager_cases::manager;
use crate::audit::{Actor, AuditAction, AuditEntry, AuditQuery, MAX_AUDIT_SUMMARY_LEN};
use crate::key::KeyId;
use crate::manager::{IssueRequest, RotateOptions, Tenant};
use crate::name::Project;
use crate::quota::{Period, Quota};
use crate::scope::ScopeSet;
use crate::store::{KeyChange, KeyRecord, KeyStore, RotateOutcome, Setting};
use crate::time::{ManualClock, Timestamp};

fn entry(p: &Project, action: AuditAction, key: Option<&KeyRecord>, at: Timestamp) -> AuditEntry {
    let e = AuditEntry::new(
        at,
        Actor::new("user:conformance").expect("actor"),
        action,
        p.clone(),
    )
    .summary(json!({"case": action.as_str(), "n": [1, 2, 3]}));
    match key {
        Some(r) => e.environment(r.environment).key(r.id),
        None => e,
    }
}

/// The trail of `p`, newest first (up to 1000 entries).
async fn trail(store: &Arc<dyn KeyStore>, p: &Project) -> Vec<AuditEntry> {
    store
        .audit(&AuditQuery::new(p.clone()).limit(1000))
        .await
        .expect("audit")
}

/// An entry as written, with the `seq` the store gave it.
fn as_stored(e: &AuditEntry, seq: u64) -> AuditEntry {
    AuditEntry { seq, ..e.clone() }
}

/// `insert`, `insert_many`, `update`, `rotate`, `put_setting` and `append_audit` each append
/// exactly the entries they are given, every field kept, with increasing `seq`s; a change
/// that finds nothing (an unknown id, a refused rotation) appends nothing.
pub async fn every_change_appends_its_entries_once_with_every_field(store: &Arc<dyn KeyStore>) {
    let p = project("audit-each");
    let a = sample_record(&p, env("prd"), t(1));
    let issued = entry(&p, AuditAction::Issued, Some(&a), t(1));
    store
        .insert(&a, std::slice::from_ref(&issued))
        .await
        .expect("insert");

    let batch = vec![
        sample_record(&p, env("dev"), t(2)),
        sample_record(&p, env("dev"), t(3)),
    ];
    let batch_entries: Vec<AuditEntry> = batch
        .iter()
        .map(|r| entry(&p, AuditAction::Issued, Some(r), t(2)))
        .collect();
    store
        .insert_many(&batch, &batch_entries)
        .await
        .expect("insert_many");

    let rename = KeyChange {
        name: Some("renamed".into()),
        ..KeyChange::default()
    };
    let updated = entry(&p, AuditAction::Updated, Some(&a), t(4));
    store
        .update(&a.id, &rename, std::slice::from_ref(&updated))
        .await
        .expect("update")
        .expect("present");

    let unknown = KeyId::generate().expect("rng");
    let lost = entry(&p, AuditAction::Updated, None, t(5));
    assert!(
        store
            .update(&unknown, &rename, &[lost])
            .await
            .expect("update")
            .is_none()
    );

    let mut next = sample_record(&p, env("prd"), t(6));
    next.rotated_to = None;
    let rotated = entry(&p, AuditAction::Rotated, Some(&a), t(6));
    let outcome = store
        .rotate(
            &a.id,
            &next,
            t(100),
            t(6),
            true,
            std::slice::from_ref(&rotated),
        )
        .await
        .expect("rotate");
    assert!(matches!(outcome, RotateOutcome::Rotated(_)));
    let mut again = sample_record(&p, env("prd"), t(7));
    again.rotated_to = None;
    let refused = entry(&p, AuditAction::Rotated, Some(&a), t(7));
    let outcome = store
        .rotate(&a.id, &again, t(100), t(7), false, &[refused])
        .await
        .expect("rotate");
    assert!(matches!(outcome, RotateOutcome::Refused(_)));

    let quota = entry(&p, AuditAction::QuotaChanged, None, t(8));
    store
        .put_setting(
            &Setting::ProjectQuota(&p).name(),
            Some(&json!({"limit": 5})),
            std::slice::from_ref(&quota),
        )
        .await
        .expect("put_setting");

    let flagged = entry(&p, AuditAction::LeakReported, Some(&a), t(9));
    let flagged_seq = store.append_audit(&flagged).await.expect("append");

    let got = trail(store, &p).await;
    assert_eq!(got.len(), 7, "{got:#?}");
    assert!(
        got.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first: {got:#?}"
    );
    assert_eq!(got[0], as_stored(&flagged, flagged_seq));
    let written = [
        &issued,
        &batch_entries[0],
        &batch_entries[1],
        &updated,
        &rotated,
        &quota,
        &flagged,
    ];
    for (e, want) in got.iter().rev().zip(written) {
        assert_eq!(e, &as_stored(want, e.seq));
    }
}

/// Pages come newest first; `before` (the last `seq` of a page) gives the next page; the
/// last page is short and the one after it empty.
pub async fn audit_pages_newest_first_with_before(store: &Arc<dyn KeyStore>) {
    let p = project("audit-pages");
    let mut seqs = Vec::new();
    for i in 0..7 {
        let e = entry(&p, AuditAction::Updated, None, t(i));
        seqs.push(store.append_audit(&e).await.expect("append"));
    }
    seqs.reverse();
    let mut q = AuditQuery::new(p.clone()).limit(3);
    let mut pages = Vec::new();
    loop {
        let page = store.audit(&q).await.expect("audit");
        if page.is_empty() {
            break;
        }
        q.before = page.last().map(|e| e.seq);
        pages.push(page.iter().map(|e| e.seq).collect::<Vec<_>>());
    }
    assert_eq!(pages, [&seqs[0..3], &seqs[3..6], &seqs[6..7]]);
}

/// A query sees only its project's entries, and narrows to one key or one environment.
pub async fn audit_filters_by_project_environment_and_key(store: &Arc<dyn KeyStore>) {
    let p = project("audit-filter");
    let other = project("audit-other");
    let a = sample_record(&p, env("prd"), t(1));
    let b = sample_record(&p, env("dev"), t(2));
    let elsewhere = sample_record(&other, env("prd"), t(3));
    for (r, proj) in [(&a, &p), (&b, &p), (&elsewhere, &other)] {
        store
            .insert(r, &[entry(proj, AuditAction::Issued, Some(r), t(4))])
            .await
            .expect("insert");
    }
    store
        .append_audit(&entry(&p, AuditAction::QuotaChanged, None, t(5)))
        .await
        .expect("append");
    assert_eq!(trail(store, &p).await.len(), 3);
    let of_a = store
        .audit(&AuditQuery::new(p.clone()).key(a.id))
        .await
        .expect("audit");
    assert_eq!(of_a.len(), 1);
    assert_eq!(of_a[0].key_id, Some(a.id));
    let of_dev = store
        .audit(&AuditQuery::new(p.clone()).environment(env("dev")))
        .await
        .expect("audit");
    assert_eq!(of_dev.len(), 1);
    assert_eq!(of_dev[0].key_id, Some(b.id));
    let wrong_project = store
        .audit(&AuditQuery::new(p.clone()).key(elsewhere.id))
        .await
        .expect("audit");
    assert!(wrong_project.is_empty());
}

/// `prune_audit(before)` deletes exactly the entries made before `before`, answers how
/// many, and never lets a `seq` be handed out again.
pub async fn prune_audit_deletes_only_older_entries(store: &Arc<dyn KeyStore>) {
    let p = project("audit-prune");
    // Far in the past, so that other cases' entries (made at t(..)) are not touched.
    let old = Timestamp::from_unix_millis(1_000);
    store
        .append_audit(&entry(&p, AuditAction::Updated, None, old))
        .await
        .expect("append");
    let kept = entry(
        &p,
        AuditAction::Updated,
        None,
        Timestamp::from_unix_millis(3_000),
    );
    let kept_seq = store.append_audit(&kept).await.expect("append");
    let deleted = store
        .prune_audit(Timestamp::from_unix_millis(2_000))
        .await
        .expect("prune");
    assert!(deleted >= 1, "deleted {deleted}");
    assert_eq!(trail(store, &p).await, [as_stored(&kept, kept_seq)]);
    let newer = store
        .append_audit(&entry(&p, AuditAction::Updated, None, t(1)))
        .await
        .expect("append");
    assert!(newer > kept_seq);
}

/// A summary of [`MAX_AUDIT_SUMMARY_LEN`] bytes is stored; one byte more is refused, and
/// then the change it goes with is not applied either: no record inserted, updated or
/// rotated, no setting written, no entry appended.
pub async fn a_change_whose_audit_entry_is_refused_is_not_applied(store: &Arc<dyn KeyStore>) {
    let p = project("audit-refused");
    let sized = |e: AuditEntry, len: usize| e.summary(json!("x".repeat(len - 2)));
    let a = sample_record(&p, env("prd"), t(1));
    let fits = sized(
        entry(&p, AuditAction::Issued, Some(&a), t(1)),
        MAX_AUDIT_SUMMARY_LEN,
    );
    assert!(fits.check_size().is_ok());
    store
        .insert(&a, &[fits])
        .await
        .expect("a summary of the largest size is stored");
    let too_big = |key: Option<&KeyRecord>| {
        sized(
            entry(&p, AuditAction::Updated, key, t(2)),
            MAX_AUDIT_SUMMARY_LEN + 1,
        )
    };
    assert!(too_big(None).check_size().is_err());

    let fresh = sample_record(&p, env("prd"), t(2));
    assert!(
        store
            .insert(&fresh, &[too_big(Some(&fresh))])
            .await
            .is_err()
    );
    assert_eq!(store.get(&fresh.id).await.expect("get"), None);

    let batch = vec![sample_record(&p, env("dev"), t(3))];
    assert!(store.insert_many(&batch, &[too_big(None)]).await.is_err());
    assert_eq!(store.get(&batch[0].id).await.expect("get"), None);

    let revoke = KeyChange {
        revoke_at: Some(t(3)),
        name: Some("changed".into()),
        ..KeyChange::default()
    };
    assert!(
        store
            .update(&a.id, &revoke, &[too_big(Some(&a))])
            .await
            .is_err()
    );
    assert_eq!(store.get(&a.id).await.expect("get").as_ref(), Some(&a));

    let mut next = sample_record(&p, env("prd"), t(4));
    next.rotated_to = None;
    let rotated = store
        .rotate(&a.id, &next, t(100), t(4), true, &[too_big(Some(&a))])
        .await;
    assert!(rotated.is_err(), "{rotated:?}");
    assert_eq!(store.get(&a.id).await.expect("get").as_ref(), Some(&a));
    assert_eq!(store.get(&next.id).await.expect("get"), None);

    let setting = Setting::ProjectQuota(&p).name();
    store
        .put_setting(&setting, Some(&json!(1)), &[])
        .await
        .expect("put_setting");
    assert!(
        store
            .put_setting(&setting, Some(&json!(2)), &[too_big(None)])
            .await
            .is_err()
    );
    assert!(
        store
            .put_setting(&setting, None, &[too_big(None)])
            .await
            .is_err()
    );
    assert_eq!(
        store.get_setting(&setting).await.expect("get"),
        Some(json!(1))
    );

    assert!(store.append_audit(&too_big(None)).await.is_err());
    let got = trail(store, &p).await;
    assert_eq!(got.len(), 1, "only the entry that fits: {got:#?}");
    assert_eq!(got[0].action, AuditAction::Issued);
}

/// Every admin change through a manager appends one entry with the handle's actor, project,
/// environment, key and a summary of what changed; the entries hold no secret and no hash.
pub async fn the_manager_audits_every_admin_change_once_with_its_actor(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("audit-manager");
    let alice = m.acting_as(Actor::new("user:alice").expect("actor"));
    assert_eq!(m.actor(), &Actor::system());

    let issued = alice
        .issue(
            IssueRequest::new(p.clone(), env("dev"))
                .scopes(["read"])
                .expect("scopes")
                .name("ingest")
                .metadata(json!({"owner": "ops"})),
        )
        .await
        .expect("issue");
    let id = issued.record.id;
    let change = KeyChange {
        name: Some("renamed".into()),
        scopes: Some(ScopeSet::parse(["read", "write"]).expect("scopes")),
        ..KeyChange::default()
    };
    alice.update(&id, &change).await.expect("update");
    m.set_expiry(&id, Some(t(86_400_000)))
        .await
        .expect("expiry");
    let rotated = alice
        .rotate_with(&id, RotateOptions::grace(Duration::from_secs(60)))
        .await
        .expect("rotate");
    let bob = m
        .tenant(Tenant::new(p.clone()))
        .acting_as(Actor::new("user:bob").expect("actor"));
    bob.revoke(&rotated.record.id).await.expect("revoke");
    let quota = Quota {
        limit: 10,
        period: Period::Day,
    };
    alice
        .set_project_quota(&p, Some(quota))
        .await
        .expect("quota");

    let got = trail(store, &p).await;
    let seen: Vec<(&str, &str, Option<KeyId>)> = got
        .iter()
        .rev()
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.key_id))
        .collect();
    let new_id = rotated.record.id;
    assert_eq!(
        seen,
        [
            ("issued", "user:alice", Some(id)),
            ("updated", "user:alice", Some(id)),
            ("updated", "system", Some(id)),
            ("rotated", "user:alice", Some(id)),
            ("revoked", "user:bob", Some(new_id)),
            ("quota_changed", "user:alice", None),
        ]
    );
    let summaries: Vec<&serde_json::Value> = got.iter().rev().map(|e| &e.summary).collect();
    assert_eq!(
        summaries[0],
        &json!({"name": "ingest", "scopes": ["read"], "expires_at": null, "metadata": "set"})
    );
    assert_eq!(
        summaries[1],
        &json!({"name": "renamed", "scopes": ["read", "write"]})
    );
    assert_eq!(summaries[2], &json!({"expires_at": t(86_400_000)}));
    assert_eq!(
        summaries[3],
        &json!({"new_key_id": new_id, "grace_end": rotated.grace_end, "forced": false})
    );
    assert_eq!(summaries[4], &json!({"revoked_at": t(0)}));
    assert_eq!(summaries[5], &json!({"quota": quota}));
    for e in &got {
        assert_eq!(e.project, p);
        assert_eq!(e.at, t(0));
        let expected_env = e.key_id.map(|_| env("dev"));
        assert_eq!(e.environment, expected_env);
    }
    let shown = serde_json::to_string(&got).expect("json");
    assert_keys_hidden(
        "the audit trail",
        &shown,
        &[issued.key.expose_secret(), rotated.key.expose_secret()],
    );
    assert!(!shown.contains("$argon2"), "a hash in the trail: {shown}");
    assert!(!shown.contains(SAMPLE_PHC));
    let one = m
        .audit(&AuditQuery::new(p.clone()).key(new_id))
        .await
        .expect("audit");
    assert_eq!(one.len(), 1);
    let tenant_view = m
        .tenant(Tenant::new(p.clone()).with_environment(env("prd")))
        .audit(None, None, 100)
        .await
        .expect("audit");
    assert!(
        tenant_view.is_empty(),
        "another environment's entries: {tenant_view:#?}"
    );
}
