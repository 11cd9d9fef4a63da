//! The admin API's audit trail: every change made through the router appears once in
//! `GET /audit` with the caller's actor (a signed-in user, or an admin key), pages newest first
//! through `next`, stays inside the caller's tenant, and never shows a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http::request::Parts;
use keyward::axum::admin::{
    AdminAuth, AdminCaller, AdminConfig, AdminDenied, BearerAdminAuth, api_router,
};
use keyward::conformance::assert_keys_hidden;
use keyward::{
    AuditQuery, HashParams, IssueRequest, KeyManager, ManualClock, Period, Project, Quota, Tenant,
    Timestamp,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// `x-test-tenant: <project>[/<environment>]`, `x-test-actor: <actor>`.
#[derive(Clone)]
struct HeaderAuth;

impl AdminAuth for HeaderAuth {
    async fn authorize(&self, parts: &mut Parts) -> Result<AdminCaller, AdminDenied> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let Some(tenant) = header("x-test-tenant") else {
            return Err(AdminDenied::Unauthenticated("sign in first".into()));
        };
        let tenant = match tenant.split_once('/') {
            Some((p, e)) => Tenant::new(p.parse().unwrap()).with_environment(e.parse().unwrap()),
            None => Tenant::new(tenant.parse().unwrap()),
        };
        Ok(AdminCaller {
            tenant,
            actor: header("x-test-actor").unwrap_or_else(|| "user:alice".into()),
            csrf_token: None,
        })
    }
}

struct App {
    manager: KeyManager,
    router: Router,
    bearer: Router,
}

impl App {
    fn new() -> Self {
        let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
            .prefix("av".parse().unwrap())
            .serve("dev".parse().unwrap())
            .serve("prd".parse().unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .clock(Arc::new(ManualClock::new(
                Timestamp::parse_rfc3339("2030-01-01T12:00:00Z").unwrap(),
            )))
            .build()
            .unwrap();
        let config = AdminConfig::new(manager.clone()).offer_scopes(["read", "write"]);
        Self {
            router: api_router(config.clone(), HeaderAuth),
            bearer: api_router(config, BearerAdminAuth::new(manager.clone())),
            manager,
        }
    }

    async fn send(router: &Router, r: Request<Body>) -> (StatusCode, Value) {
        let response = router.clone().oneshot(r).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, body)
    }

    async fn call(
        &self,
        tenant: &str,
        actor: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-test-tenant", tenant)
            .header("x-test-actor", actor);
        let body = match body {
            Some(v) => {
                r = r.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        Self::send(&self.router, r.body(body).unwrap()).await
    }

    async fn bearer(
        &self,
        key: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {key}"));
        let body = match body {
            Some(v) => {
                r = r.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        Self::send(&self.bearer, r.body(body).unwrap()).await
    }
}

fn project() -> Project {
    "web-app".parse().unwrap()
}

#[tokio::test]
async fn every_change_through_the_router_appears_once_in_the_audit_trail_with_its_actor() {
    let app = App::new();
    let t = "web-app/dev";
    let (status, created) = app
        .call(
            t,
            "user:alice",
            "POST",
            "/",
            Some(json!({"name": "ci", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["info"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .call(
            t,
            "user:bob",
            "PATCH",
            &format!("/{id}/"),
            Some(json!({"name": "ci-2", "scopes": ["read", "write"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, rotated) = app
        .call(
            t,
            "user:carol",
            "POST",
            &format!("/{id}/rotate/"),
            Some(json!({"grace": "1h"})),
        )
        .await;
    assert!(status.is_success(), "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["info"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .call(t, "user:dave", "DELETE", &format!("/{new_id}/"), None)
        .await;
    assert!(status.is_success(), "{status}");
    let (status, _) = app
        .call(t, "user:erin", "POST", &format!("/{id}/revoke/"), None)
        .await;
    assert!(status.is_success(), "{status}");

    // An admin key acts as `key:<its id>`.
    let admin = app
        .manager
        .issue(
            IssueRequest::new(project(), "dev".parse().unwrap())
                .scopes(["admin"])
                .unwrap(),
        )
        .await
        .unwrap();
    let (status, by_key) = app
        .bearer(
            admin.key.expose_secret(),
            "POST",
            "/",
            Some(json!({"name": "bot", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{by_key}");
    let bot_id = by_key["info"]["id"].as_str().unwrap().to_owned();

    let (status, page) = app.call(t, "user:alice", "GET", "/audit", None).await;
    assert_eq!(status, 200, "{page}");
    let seen: Vec<(String, String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["key_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let admin_id = admin.record.id.to_string();
    let expected: Vec<(String, String, String)> = [
        ("issued", "user:alice", id.as_str()),
        ("updated", "user:bob", id.as_str()),
        ("rotated", "user:carol", id.as_str()),
        ("revoked", "user:dave", new_id.as_str()),
        ("revoked", "user:erin", id.as_str()),
        ("issued", "system", admin_id.as_str()),
        ("issued", &format!("key:{admin_id}"), bot_id.as_str()),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(page["next"], Value::Null);
    assert_eq!(
        page["items"][6]["summary"],
        json!({"name": "ci", "scopes": ["read"], "expires_at": null})
    );
    assert_eq!(
        page["items"][5]["summary"],
        json!({"name": "ci-2", "scopes": ["read", "write"]})
    );
    assert_eq!(page["items"][4]["summary"]["new_key_id"], json!(new_id));
    assert_keys_hidden("the audit page", &page.to_string(), &[&key, &new_key]);
    assert!(!page.to_string().contains("$argon2"));

    // One key's entries; the manager sees the same trail.
    let (_, of_new) = app
        .call(
            t,
            "user:alice",
            "GET",
            &format!("/audit?key_id={new_id}"),
            None,
        )
        .await;
    assert_eq!(of_new["items"].as_array().unwrap().len(), 1);
    let trail = app
        .manager
        .audit(&AuditQuery::new(project()))
        .await
        .unwrap();
    assert_eq!(trail.len(), 7);
}

#[tokio::test]
async fn the_audit_trail_pages_newest_first_and_stays_inside_the_tenant() {
    let app = App::new();
    for i in 0..5 {
        let (status, _) = app
            .call(
                "web-app/dev",
                "user:alice",
                "POST",
                "/",
                Some(json!({"name": format!("k{i}"), "scopes": ["read"]})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, _) = app
        .call(
            "web-app/prd",
            "user:alice",
            "POST",
            "/",
            Some(json!({"name": "prod", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201);
    app.manager
        .acting_as(keyward::Actor::new("user:ops").unwrap())
        .set_project_quota(
            &project(),
            Some(Quota {
                limit: 10,
                period: Period::Day,
            }),
        )
        .await
        .unwrap();
    let (status, _) = app
        .call(
            "other-app",
            "user:mallory",
            "POST",
            "/",
            Some(json!({"name": "x", "scopes": ["read"], "environment": "dev"})),
        )
        .await;
    assert_eq!(status, 201);

    // The project's tenant sees its 7 entries (with the quota change), in pages of 3.
    let mut names = Vec::new();
    let mut uri = "/audit?limit=3".to_owned();
    loop {
        let (status, page) = app.call("web-app", "user:alice", "GET", &uri, None).await;
        assert_eq!(status, 200, "{page}");
        for e in page["items"].as_array().unwrap() {
            names.push(e["action"].as_str().unwrap().to_owned());
        }
        match page["next"].as_u64() {
            Some(next) => uri = format!("/audit?limit=3&before={next}"),
            None => break,
        }
    }
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(names[0], "quota_changed");
    // A tenant of one environment sees only that environment's keys' entries.
    let (_, dev) = app
        .call("web-app/dev", "user:alice", "GET", "/audit", None)
        .await;
    assert_eq!(dev["items"].as_array().unwrap().len(), 5);
    let (_, other) = app
        .call("other-app", "user:mallory", "GET", "/audit", None)
        .await;
    assert_eq!(other["items"].as_array().unwrap().len(), 1);
    // Bad parameters are 400.
    for bad in [
        "/audit?limit=0",
        "/audit?limit=201",
        "/audit?before=x",
        "/audit?key_id=nope",
        "/audit?what=1",
    ] {
        let (status, body) = app.call("web-app", "user:alice", "GET", bad, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_request");
    }
}

#[tokio::test]
async fn an_invalid_actor_id_from_the_host_is_recorded_cleaned_up() {
    let app = App::new();
    let (status, _) = app
        .call(
            "web-app/dev",
            "user:\talice",
            "POST",
            "/",
            Some(json!({"name": "ci", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .call(
            "web-app/dev",
            "",
            "POST",
            "/",
            Some(json!({"name": "ci", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201);
    let trail = app
        .manager
        .audit(&AuditQuery::new(project()))
        .await
        .unwrap();
    assert_eq!(trail[0].actor.as_str(), "unknown");
    assert_eq!(trail[1].actor.as_str(), "user:\u{FFFD}alice");
}
