//! The cases through a [`KeyManager`] over the store: issue, verify, revoke, rotate, expiry,
//! quotas, credits and rate limits, on an injected clock.
//!
//! Every `pub async fn` here is a case, listed in the one table in the parent module; one that
//! is not listed is never used, and `dead_code` is an error here.
#![deny(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;

use super::helpers::{env, fix_checksum, month, project, secret_of, t};
use crate::error::{AuthError, Error};
use crate::hash::HashParams;
use crate::key::{ApiKey, KeyId};
use crate::manager::{IssueRequest, KeyManager, Requirements};
use crate::scope::ScopeSet;
use crate::store::{KeyLimits, KeyStore, ListQuery};
use crate::time::ManualClock;

/// A manager over `store` on `clock`, serving `envs`, with the `av` prefix and fast hashing.
pub(super) fn manager(store: &Arc<dyn KeyStore>, clock: &ManualClock, envs: &[&str]) -> KeyManager {
    let mut b = KeyManager::builder_arc(Arc::clone(store))
        .prefix("av".parse().expect("prefix"))
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(clock.clone()));
    for e in envs {
        b = b.serve(env(e));
    }
    b.build().expect("manager")
}

fn auth(r: Result<crate::Identity, Error>) -> AuthError {
    match r {
        Err(Error::Auth(a)) => a,
        other => panic!("expected an auth error, got {other:?}"),
    }
}

/// Issue and verify through a [`KeyManager`]: the identity, the binding to environment and
/// project, the missing scopes named, unknown ids and wrong secrets alike.
pub async fn manager_issues_verifies_and_binds_keys(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("web-app");
    let issued = m
        .issue(
            IssueRequest::new(p.clone(), env("dev"))
                .scopes(["write", "read"])
                .expect("scopes")
                .name("ci")
                .metadata(serde_json::json!({"owner": "ops"})),
        )
        .await
        .expect("issue");
    let text = issued.key.expose_secret().to_owned();
    let who = m
        .verify(&text, &Requirements::scopes(["write"]).expect("req"))
        .await
        .expect("verify");
    assert_eq!(who.id, issued.record.id);
    assert_eq!(who.project, p);
    assert_eq!(who.environment, env("dev"));
    assert_eq!(who.name, "ci");
    assert_eq!(who.metadata, Some(serde_json::json!({"owner": "ops"})));

    let e = auth(
        m.verify(
            &text,
            &Requirements::scopes(["write", "admin", "billing"]).expect("req"),
        )
        .await,
    );
    assert_eq!(
        e,
        AuthError::InsufficientScope {
            id: who.id,
            missing: ScopeSet::parse(["admin", "billing"]).expect("s")
        }
    );

    let other_project = project("other");
    let e = auth(
        m.verify(
            &text,
            &Requirements::none().with_project(other_project.clone()),
        )
        .await,
    );
    assert!(
        matches!(e, AuthError::WrongProject { expected, found, .. } if expected == other_project && found == p)
    );

    let prd = manager(store, &clock, &["prd"]);
    let e = auth(prd.verify(&text, &Requirements::none()).await);
    assert!(matches!(e, AuthError::WrongEnvironment { found, .. } if found == env("dev")));

    let tl = KeyManager::builder_arc(Arc::clone(store))
        .prefix("tl".parse().expect("p"))
        .serve(env("dev"))
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .expect("m");
    assert!(matches!(
        auth(tl.verify(&text, &Requirements::none()).await),
        AuthError::WrongPrefix { .. }
    ));

    // Wrong secret for a known id, and an unknown id: the same outcome.
    let forged = ApiKey::generate_with_id(issued.key.prefix(), env("dev"), who.id).expect("rng");
    assert_eq!(
        auth(
            m.verify(forged.expose_secret(), &Requirements::none())
                .await
        ),
        AuthError::Invalid
    );
    let unknown = ApiKey::generate(issued.key.prefix(), env("dev")).expect("rng");
    assert_eq!(
        auth(
            m.verify(unknown.expose_secret(), &Requirements::none())
                .await
        ),
        AuthError::Invalid
    );

    // A dev key relabelled as prd with a recomputed checksum is still refused by a prd server.
    let relabelled = text.replacen("av_dev_", "av_prd_", 1);
    let relabelled = fix_checksum(&relabelled);
    assert_eq!(
        auth(prd.verify(&relabelled, &Requirements::none()).await),
        AuthError::Invalid
    );
}

/// Revoke, rotation with a grace period, and expiry, on an injected clock.
pub async fn manager_revokes_rotates_and_expires_keys(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("lifecycle");
    let req = IssueRequest::new(p.clone(), env("dev"))
        .scopes(["read"])
        .expect("scopes");

    // Revoke: rejected at once, idempotent, unknown id is NotFound.
    let a = m.issue(req.clone()).await.expect("issue");
    m.revoke(&a.record.id).await.expect("revoke");
    let first = m
        .get(&a.record.id)
        .await
        .expect("get")
        .expect("present")
        .revoked_at;
    clock.advance(Duration::from_secs(1));
    m.revoke(&a.record.id).await.expect("revoke again");
    assert_eq!(
        m.get(&a.record.id)
            .await
            .expect("get")
            .expect("present")
            .revoked_at,
        first
    );
    assert!(matches!(
        auth(m.verify(a.key.expose_secret(), &Requirements::none()).await),
        AuthError::Revoked { .. }
    ));
    let unknown = KeyId::generate().expect("rng");
    assert!(matches!(m.revoke(&unknown).await, Err(Error::NotFound(id)) if id == unknown));
    assert!(matches!(
        m.rotate(&a.record.id, Duration::ZERO).await,
        Err(Error::RotationConflict { .. })
    ));

    // Rotation: both work during the grace period, only the new one after it.
    let b = m.issue(req.clone().name("rotating")).await.expect("issue");
    clock.advance(Duration::from_secs(1)); // distinct creation times keep the listing order fixed
    let rotated = m
        .rotate(&b.record.id, Duration::from_secs(3600))
        .await
        .expect("rotate");
    assert_eq!(rotated.record.rotated_from, Some(b.record.id));
    assert_eq!(rotated.record.project, p);
    assert_eq!(rotated.record.scopes, b.record.scopes);
    assert_eq!(rotated.record.name, "rotating");
    assert_ne!(rotated.key.expose_secret(), b.key.expose_secret());
    clock.advance(Duration::from_secs(3599));
    m.verify(b.key.expose_secret(), &Requirements::none())
        .await
        .expect("old key within grace");
    m.verify(rotated.key.expose_secret(), &Requirements::none())
        .await
        .expect("new key");
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        auth(m.verify(b.key.expose_secret(), &Requirements::none()).await),
        AuthError::Expired { .. }
    ));
    m.verify(rotated.key.expose_secret(), &Requirements::none())
        .await
        .expect("new key after grace");
    assert!(matches!(
        m.rotate(&b.record.id, Duration::ZERO).await,
        Err(Error::RotationConflict { .. })
    ));

    // Expiry set at issue and by set_expiry.
    let c = m
        .issue(req.clone().expires_in(Duration::from_secs(60)))
        .await
        .expect("issue");
    clock.advance(Duration::from_secs(59));
    m.verify(c.key.expose_secret(), &Requirements::none())
        .await
        .expect("before expiry");
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        auth(m.verify(c.key.expose_secret(), &Requirements::none()).await),
        AuthError::Expired { .. }
    ));
    m.set_expiry(&c.record.id, None)
        .await
        .expect("clear expiry");
    m.verify(c.key.expose_secret(), &Requirements::none())
        .await
        .expect("expiry cleared");
    m.set_expiry(&c.record.id, Some(m.now()))
        .await
        .expect("expire now");
    assert!(matches!(
        auth(m.verify(c.key.expose_secret(), &Requirements::none()).await),
        AuthError::Expired { .. }
    ));

    // Listing is masked and filtered.
    let listed = m
        .list(&ListQuery {
            project: Some(p.clone()),
            ..ListQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 4);
    let statuses: Vec<&str> = listed.iter().map(|k| k.status.as_str()).collect();
    assert_eq!(statuses, ["revoked", "expired", "active", "expired"]);
    assert!(listed.iter().all(|k| k.masked.ends_with("_…")));
}

/// 32 tasks verify in a loop while one revokes: no verify that starts after `revoke()`
/// returned succeeds.
pub async fn revoke_is_effective_for_every_verify_that_starts_after_it(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let issued = m
        .issue(IssueRequest::new(project("race"), env("dev")))
        .await
        .expect("issue");
    let text = Arc::new(issued.key.expose_secret().to_owned());
    let revoked = Arc::new(AtomicBool::new(false));
    let ok_before = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (m, text, revoked, ok_before) = (
            m.clone(),
            Arc::clone(&text),
            Arc::clone(&revoked),
            Arc::clone(&ok_before),
        );
        tasks.push(tokio::spawn(async move {
            let mut after = 0;
            while after < 5 {
                let started_after_revoke = revoked.load(Ordering::SeqCst);
                let result = m.verify(&text, &Requirements::none()).await;
                if started_after_revoke {
                    assert!(
                        matches!(result, Err(Error::Auth(AuthError::Revoked { .. }))),
                        "a verify that started after revoke() returned gave {result:?}"
                    );
                    after += 1;
                } else if result.is_ok() {
                    ok_before.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    while ok_before.load(Ordering::SeqCst) < 32 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    m.revoke(&issued.record.id).await.expect("revoke");
    revoked.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("verifier task");
    }
}

/// After issuing, no field of the stored record, nor its listing, contains the secret; the
/// stored hash is an Argon2id PHC string.
pub async fn the_store_never_holds_the_secret(store: &Arc<dyn KeyStore>) {
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let p = project("no-secret");
    let issued = m
        .issue(IssueRequest::new(p.clone(), env("dev")))
        .await
        .expect("issue");
    let secret = secret_of(issued.key.expose_secret());
    let stored = store
        .get(&issued.record.id)
        .await
        .expect("get")
        .expect("present");
    assert!(stored.secret_hash.as_str().starts_with("$argon2id$v=19$"));
    let dumped = format!("{stored:?} {}", stored.secret_hash.as_str());
    assert!(!dumped.contains(secret));
    let listed = store
        .list(&ListQuery {
            project: Some(p),
            ..ListQuery::default()
        })
        .await
        .expect("list");
    assert!(!format!("{listed:?}").contains(secret));
}

/// Project and key event quotas: 64 concurrent batches against a limit of 50, a batch crossing
/// the limit refused whole with what is left, the key quota's units given back when the
/// project refuses, and a new period at the calendar boundary.
pub async fn manager_event_quotas_refuse_whole_batches_and_roll_over(store: &Arc<dyn KeyStore>) {
    use crate::quota::{Period, Quota};
    let clock = ManualClock::new(month("2026-01-31T23:59:00Z"));
    let m = manager(store, &clock, &["dev"]);
    let p = project("quota");
    m.set_project_quota(
        &p,
        Some(Quota {
            limit: 50,
            period: Period::Month,
        }),
    )
    .await
    .expect("set quota");
    assert_eq!(
        m.project_quota(&p).await.expect("get"),
        Some(Quota {
            limit: 50,
            period: Period::Month
        })
    );
    let issued = m
        .issue(IssueRequest::new(p.clone(), env("dev")))
        .await
        .expect("issue");
    let who = m
        .verify(issued.key.expose_secret(), &Requirements::none())
        .await
        .expect("verify");

    let tasks = (0..64).map(|_| {
        let (m, who) = (m.clone(), who.clone());
        tokio::spawn(async move { m.consume_events(&who, 1).await })
    });
    let mut granted = 0;
    for r in join_all(tasks).await {
        match r.expect("task") {
            Ok(_) => granted += 1,
            Err(Error::Auth(AuthError::QuotaExceeded {
                scope: "project",
                limit: 50,
                used: 50,
                requested: 1,
                resets_at,
            })) => {
                assert_eq!(resets_at, month("2026-02-01T00:00:00Z"));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(granted, 50);
    let report = m.usage(&p).await.expect("usage");
    let q = report.project_quota.expect("project quota");
    assert_eq!((q.used, q.remaining, q.limit), (50, 0, 50));

    // The boundary: a new month starts at zero.
    clock.set(month("2026-02-01T00:00:00Z"));
    let accepted = m.consume_events(&who, 30).await.expect("new period");
    assert_eq!(accepted.project.expect("project").used, 30);
    // A batch crossing the limit is refused whole and says what is left.
    let err = m
        .consume_events(&who, 21)
        .await
        .expect_err("crossing batch");
    assert!(
        matches!(
            &err,
            Error::Auth(AuthError::QuotaExceeded {
                used: 30,
                requested: 21,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("20 left"), "{err}");
    assert_eq!(
        m.usage(&p)
            .await
            .expect("usage")
            .project_quota
            .expect("q")
            .used,
        30
    );
    m.consume_events(&who, 20)
        .await
        .expect("exactly up to the limit");

    // A key quota alongside: when the project refuses, the key's units are given back.
    let limited = m
        .issue(IssueRequest::new(p.clone(), env("dev")).limits(KeyLimits {
            quota: Some(Quota {
                limit: 10,
                period: Period::Day,
            }),
            ..KeyLimits::default()
        }))
        .await
        .expect("issue");
    let lw = m
        .verify(limited.key.expose_secret(), &Requirements::none())
        .await
        .expect("verify");
    assert!(matches!(
        m.consume_events(&lw, 5).await,
        Err(Error::Auth(AuthError::QuotaExceeded {
            scope: "project",
            ..
        }))
    ));
    m.set_project_quota(&p, None)
        .await
        .expect("remove project quota");
    assert_eq!(
        m.consume_events(&lw, 10)
            .await
            .expect("key quota whole")
            .key
            .expect("key")
            .used,
        10
    );
    assert!(matches!(
        m.consume_events(&lw, 1).await,
        Err(Error::Auth(AuthError::QuotaExceeded { scope: "key", .. }))
    ));
    let keys = m.usage(&p).await.expect("usage").keys;
    assert_eq!(
        keys.iter()
            .find(|k| k.id == lw.id)
            .and_then(|k| k.quota)
            .map(|q| q.used),
        Some(10)
    );
}

/// Credits: one per successful verify, a distinct outcome when used up (not "invalid"), and
/// a refill at the period boundary.
pub async fn manager_credits_are_used_per_verify_and_refill_at_the_boundary(
    store: &Arc<dyn KeyStore>,
) {
    use crate::quota::{Credits, Period, Refill};
    let clock = ManualClock::new(month("2026-03-31T12:00:00Z"));
    let m = manager(store, &clock, &["dev"]);
    let p = project("credits");
    let limits = KeyLimits {
        credits: Some(Credits {
            amount: 3,
            refill: Some(Refill {
                period: Period::Month,
                amount: 2,
            }),
        }),
        ..KeyLimits::default()
    };
    let issued = m
        .issue(IssueRequest::new(p.clone(), env("dev")).limits(limits))
        .await
        .expect("issue");
    let text = issued.key.expose_secret();
    for _ in 0..3 {
        m.verify(text, &Requirements::none())
            .await
            .expect("a credit left");
    }
    let e = auth(m.verify(text, &Requirements::none()).await);
    assert_eq!(
        e,
        AuthError::CreditsExhausted {
            id: issued.record.id,
            resets_at: Some(month("2026-04-01T00:00:00Z"))
        }
    );
    let report = m.usage(&p).await.expect("usage");
    let c = report.keys[0].credits.expect("credits");
    assert_eq!((c.used, c.remaining), (3, 0));
    // A wrong secret never spends credits.
    clock.set(month("2026-04-01T00:00:00Z"));
    for _ in 0..2 {
        m.verify(text, &Requirements::none())
            .await
            .expect("refilled");
    }
    assert!(matches!(
        auth(m.verify(text, &Requirements::none()).await),
        AuthError::CreditsExhausted { .. }
    ));

    let once = m
        .issue(IssueRequest::new(p, env("dev")).limits(KeyLimits {
            credits: Some(Credits {
                amount: 1,
                refill: None,
            }),
            ..KeyLimits::default()
        }))
        .await
        .expect("issue");
    m.verify(once.key.expose_secret(), &Requirements::none())
        .await
        .expect("one use");
    clock.advance(Duration::from_secs(400 * 86_400));
    assert_eq!(
        auth(
            m.verify(once.key.expose_secret(), &Requirements::none())
                .await
        ),
        AuthError::CreditsExhausted {
            id: once.record.id,
            resets_at: None
        }
    );
}

/// A per-key rate limit rejects the burst beyond its allowance and recovers as time passes.
pub async fn manager_rate_limits_reject_the_burst_and_recover(store: &Arc<dyn KeyStore>) {
    use crate::quota::RateLimit;
    let clock = ManualClock::new(t(0));
    let m = manager(store, &clock, &["dev"]);
    let issued = m
        .issue(
            IssueRequest::new(project("rate"), env("dev")).limits(KeyLimits {
                rate_limit: Some(RateLimit {
                    requests: 5,
                    per_seconds: 10,
                }),
                ..KeyLimits::default()
            }),
        )
        .await
        .expect("issue");
    let text = issued.key.expose_secret();
    for _ in 0..5 {
        m.verify(text, &Requirements::none())
            .await
            .expect("within the burst");
    }
    match auth(m.verify(text, &Requirements::none()).await) {
        AuthError::RateLimited { retry_after } => assert!(
            retry_after <= Duration::from_secs(2) && retry_after > Duration::ZERO,
            "{retry_after:?}"
        ),
        other => panic!("{other:?}"),
    }
    clock.advance(Duration::from_secs(2)); // one request's worth (10 s / 5)
    m.verify(text, &Requirements::none())
        .await
        .expect("recovered one");
    assert!(matches!(
        auth(m.verify(text, &Requirements::none()).await),
        AuthError::RateLimited { .. }
    ));
    clock.advance(Duration::from_secs(10));
    for _ in 0..5 {
        m.verify(text, &Requirements::none())
            .await
            .expect("a full burst again");
    }
}

/// Cluster-wide rate limits (`RateLimitMode::Cluster`, docs/ARCHITECTURE.md, "Rate limits
/// across instances") through the store's rate cells: two managers on one store admit a key's
/// burst once between them and refuse the rest, admit one more when one emission interval has
/// passed, and a manager's shutdown gives its unused cells back for the other to spend.
pub async fn manager_cluster_rate_limits_hold_across_two_managers(store: &Arc<dyn KeyStore>) {
    use crate::quota::RateLimit;
    use crate::ratelimit::RateLimitMode;
    let clock = ManualClock::new(t(0));
    let instance = || {
        KeyManager::builder_arc(Arc::clone(store))
            .prefix("av".parse().expect("prefix"))
            .serve(env("dev"))
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .clock(Arc::new(clock.clone()))
            .rate_limits(RateLimitMode::cluster())
            .build()
            .expect("manager")
    };
    let (a, b) = (instance(), instance());
    let limited = |requests, per_seconds| {
        IssueRequest::new(project("rate-cluster"), env("dev")).limits(KeyLimits {
            rate_limit: Some(RateLimit {
                requests,
                per_seconds,
            }),
            ..KeyLimits::default()
        })
    };
    async fn admitted(m: &KeyManager, text: &str) -> usize {
        match m.verify(text, &Requirements::none()).await {
            Ok(_) => 1,
            Err(Error::Auth(AuthError::RateLimited { retry_after })) => {
                assert!(
                    retry_after > Duration::ZERO && retry_after <= Duration::from_secs(6),
                    "{retry_after:?}"
                );
                0
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    // 10 a minute: one cell every 6 s.
    let issued = a.issue(limited(10, 60)).await.expect("issue");
    let text = issued.key.expose_secret();
    let mut n = 0;
    for _ in 0..20 {
        n += admitted(&a, text).await + admitted(&b, text).await;
    }
    assert_eq!(n, 10, "the burst, once for both managers");
    clock.advance(Duration::from_secs(6));
    let mut n = 0;
    for _ in 0..10 {
        n += admitted(&a, text).await + admitted(&b, text).await;
    }
    assert_eq!(n, 1, "one emission interval later, one more");

    // 100 an hour: no cell comes back by itself meanwhile. What `a` holds unused comes back.
    let issued = a.issue(limited(100, 3600)).await.expect("issue");
    let text = issued.key.expose_secret();
    let mut n = 0;
    for _ in 0..40 {
        n += admitted(&a, text).await;
    }
    assert_eq!(n, 40);
    a.shutdown().await.expect("shutdown");
    let mut n = 0;
    for _ in 0..200 {
        n += admitted(&b, text).await;
    }
    assert_eq!(n, 60, "the cells a left unused came back at its shutdown");
}
