//! Tenant-scoped admin operations: a handle bound to a project (and environment) sees and
//! changes only its own keys; everything else is "not found", exactly as an unknown id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use keyward::{
    Error, HashParams, IssueRequest, IssuedKey, KeyChange, KeyId, KeyLimits, KeyManager, ListQuery,
    Quota, Requirements, Tenant, TenantKeys,
};

fn manager() -> KeyManager {
    KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .serve("prd".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap()
}

fn tenant(m: &KeyManager, project: &str, env: Option<&str>) -> TenantKeys {
    let mut t = Tenant::new(project.parse().unwrap());
    if let Some(e) = env {
        t = t.with_environment(e.parse().unwrap());
    }
    m.tenant(t)
}

async fn try_issue(t: &TenantKeys, project: &str, env: &str) -> Result<IssuedKey, Error> {
    t.issue(IssueRequest::new(
        project.parse().unwrap(),
        env.parse().unwrap(),
    ))
    .await
}

async fn issue(t: &TenantKeys, project: &str, env: &str) -> KeyId {
    try_issue(t, project, env).await.unwrap().record.id
}

/// The error for `id`, with the id itself blanked, so errors of two ids can be compared.
fn shape(e: &Error, id: &KeyId) -> (String, String) {
    let id = id.to_string();
    (
        e.to_string().replace(&id, "<id>"),
        format!("{e:?}").replace(&id, "<id>"),
    )
}

#[tokio::test]
async fn a_key_of_another_tenant_is_not_found_exactly_like_an_unknown_id() {
    let m = manager();
    let ours = tenant(&m, "web-app", None);
    let theirs = tenant(&m, "other-app", None);
    let id = issue(&ours, "web-app", "dev").await;
    let unknown: KeyId = "7Kq2mZ9xA1bC".parse().unwrap();

    assert!(theirs.get(&id).await.unwrap().is_none());
    let change = KeyChange {
        name: Some("taken over".into()),
        ..KeyChange::default()
    };
    let attempts = [
        (
            theirs.revoke(&id).await.map(|_| ()).unwrap_err(),
            theirs.revoke(&unknown).await.map(|_| ()).unwrap_err(),
        ),
        (
            theirs.update(&id, &change).await.map(|_| ()).unwrap_err(),
            theirs
                .update(&unknown, &change)
                .await
                .map(|_| ())
                .unwrap_err(),
        ),
        (
            theirs.set_expiry(&id, None).await.map(|_| ()).unwrap_err(),
            theirs
                .set_expiry(&unknown, None)
                .await
                .map(|_| ())
                .unwrap_err(),
        ),
        (
            theirs
                .rotate(&id, Duration::from_secs(60))
                .await
                .map(|_| ())
                .unwrap_err(),
            theirs
                .rotate(&unknown, Duration::from_secs(60))
                .await
                .map(|_| ())
                .unwrap_err(),
        ),
    ];
    for (foreign, missing) in &attempts {
        assert!(
            matches!(foreign, Error::NotFound(x) if *x == id),
            "{foreign:?}"
        );
        assert_eq!(shape(foreign, &id), shape(missing, &unknown));
    }
    // Nothing happened to the key.
    let info = ours.get(&id).await.unwrap().expect("still there");
    assert_eq!(info.status, "active");
    assert_eq!(info.name, "");
    assert_eq!(
        m.list(&ListQuery::default()).await.unwrap().len(),
        1,
        "the rotation made no successor"
    );
}

#[tokio::test]
async fn a_tenant_of_one_environment_sees_and_changes_only_that_environment() {
    let m = manager();
    let project = tenant(&m, "web-app", None);
    let dev = tenant(&m, "web-app", Some("dev"));
    let dev_key = issue(&project, "web-app", "dev").await;
    let prd_key = issue(&project, "web-app", "prd").await;

    let listed: Vec<KeyId> = dev
        .list(&ListQuery::default())
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed, [dev_key]);
    let asked_prd = ListQuery {
        environment: Some("prd".parse().unwrap()),
        ..ListQuery::default()
    };
    assert!(dev.list(&asked_prd).await.unwrap().is_empty());
    assert_eq!(project.list(&asked_prd).await.unwrap().len(), 1);
    let other_project = ListQuery {
        project: Some("other-app".parse().unwrap()),
        ..ListQuery::default()
    };
    assert!(project.list(&other_project).await.unwrap().is_empty());

    assert!(dev.get(&prd_key).await.unwrap().is_none());
    assert!(matches!(
        dev.revoke(&prd_key).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        project.get(&prd_key).await.unwrap().unwrap().status,
        "active"
    );
    assert_eq!(dev.revoke(&dev_key).await.unwrap().status, "revoked");
}

#[tokio::test]
async fn issuing_outside_the_tenant_is_refused_with_a_typed_error() {
    let m = manager();
    let dev = tenant(&m, "web-app", Some("dev"));
    let other_project = try_issue(&dev, "other-app", "dev").await.unwrap_err();
    assert!(
        matches!(&other_project, Error::Invalid(v) if v.kind == keyward::ValueKind::Project),
        "{other_project:?}"
    );
    let other_env = try_issue(&dev, "web-app", "prd").await.unwrap_err();
    assert!(
        matches!(&other_env, Error::Invalid(v) if v.kind == keyward::ValueKind::Environment),
        "{other_env:?}"
    );
    assert!(
        other_env
            .to_string()
            .contains("outside this tenant (project 'web-app', environment 'dev')"),
        "{other_env}"
    );
    assert!(m.list(&ListQuery::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn rotation_and_verification_work_through_the_handle() {
    let m = manager();
    let ours = tenant(&m, "web-app", Some("dev"));
    let issued = try_issue(&ours, "web-app", "dev").await.unwrap();
    let rotated = ours
        .rotate(&issued.record.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(rotated.record.rotated_from, Some(issued.record.id));
    let who = m
        .verify(rotated.key.expose_secret(), &Requirements::none())
        .await
        .unwrap();
    assert_eq!(who.project.as_str(), "web-app");
    assert!(ours.get(&rotated.record.id).await.unwrap().is_some());
}

#[tokio::test]
async fn usage_of_a_tenant_reports_only_its_keys() {
    let m = manager();
    let project = tenant(&m, "web-app", None);
    let dev = tenant(&m, "web-app", Some("dev"));
    let limits = KeyLimits {
        quota: Some(Quota {
            limit: 100,
            period: keyward::Period::Month,
        }),
        ..KeyLimits::default()
    };
    for env in ["dev", "prd"] {
        project
            .issue(
                IssueRequest::new("web-app".parse().unwrap(), env.parse().unwrap())
                    .limits(limits.clone()),
            )
            .await
            .unwrap();
    }
    assert_eq!(project.usage().await.unwrap().keys.len(), 2);
    let dev_usage = dev.usage().await.unwrap();
    assert_eq!(dev_usage.keys.len(), 1);
    let dev_ids: Vec<KeyId> = dev
        .list(&ListQuery::default())
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(dev_usage.keys[0].id, dev_ids[0]);
}
