//! The admin API (`keyward::axum::admin::api_router`) over tower `oneshot`: every endpoint's
//! success, every refusal with its status and code, tenant scoping (a key of another tenant is
//! the same 404, byte for byte, as an unknown id), CSRF, pagination with filters, the full key
//! only in the one-time answers (never in lists, reads, usage or logs), the store down, and the
//! OpenAPI document against the routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http::request::Parts;
use keyward::axum::admin::{
    AdminAuth, AdminCaller, AdminConfig, AdminDenied, BearerAdminAuth, api_router, openapi,
    openapi_json, openapi_router,
};
use keyward::conformance::{FailingStore, KeyForms, LogBuffer};
use keyward::{
    HashParams, IssueRequest, KeyId, KeyManager, KeyStore, ManualClock, Tenant, Timestamp,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn noon() -> Timestamp {
    Timestamp::parse_rfc3339("2030-01-01T12:00:00Z").unwrap()
}

/// A host's session in a header: `x-test-tenant: <project>[/<environment>]`, and
/// `x-test-csrf: <token>` for a cookie-like caller that needs the CSRF token.
#[derive(Clone)]
struct HeaderAuth;

impl AdminAuth for HeaderAuth {
    async fn authorize(&self, parts: &mut Parts) -> Result<AdminCaller, AdminDenied> {
        let Some(tenant) = parts.headers.get("x-test-tenant") else {
            return Err(AdminDenied::Unauthenticated("sign in first".into()));
        };
        let tenant = tenant.to_str().unwrap();
        if tenant == "nobody" {
            return Err(AdminDenied::Forbidden("you may not manage keys".into()));
        }
        if tenant == "throttled" {
            return Err(AdminDenied::TooManyRequests {
                message: "too many failed attempts".into(),
                retry_after: 30,
            });
        }
        let tenant = match tenant.split_once('/') {
            Some((p, e)) => Tenant::new(p.parse().unwrap()).with_environment(e.parse().unwrap()),
            None => Tenant::new(tenant.parse().unwrap()),
        };
        Ok(AdminCaller {
            tenant,
            actor: "user:alice".into(),
            csrf_token: parts
                .headers
                .get("x-test-csrf")
                .map(|v| v.to_str().unwrap().to_owned()),
        })
    }
}

struct App {
    manager: KeyManager,
    down: Arc<AtomicBool>,
    router: Router,
    bearer: Router,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_owned()
    }

    #[track_caller]
    fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.error(), code, "{}", self.body);
        assert_eq!(self.headers["content-type"], "application/json");
        self
    }

    fn message(&self) -> String {
        self.json()["message"].as_str().unwrap().to_owned()
    }
}

impl App {
    fn new() -> Self {
        capture_logs();
        let down = Arc::new(AtomicBool::new(false));
        let store: Arc<dyn KeyStore> = Arc::new(FailingStore::new(
            Arc::new(keyward_memory::MemoryStore::new()),
            "memory",
            down.clone(),
        ));
        let manager = KeyManager::builder_arc(store)
            .prefix("av".parse().unwrap())
            .serve("dev".parse().unwrap())
            .serve("prd".parse().unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .clock(Arc::new(ManualClock::new(noon())))
            .build()
            .unwrap();
        let config = AdminConfig::new(manager.clone())
            .offer_scopes(["read", "write"])
            .max_page(50);
        Self {
            router: api_router(config.clone(), HeaderAuth),
            bearer: api_router(config, BearerAdminAuth::new(manager.clone())),
            manager,
            down,
        }
    }

    async fn send(router: &Router, request: Request<Body>) -> Answer {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    /// A request as `tenant` (no CSRF token), with a JSON body when `body` is given.
    async fn call(&self, tenant: &str, method: &str, uri: &str, body: Option<Value>) -> Answer {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-test-tenant", tenant);
        let body = match body {
            Some(v) => {
                r = r.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        Self::send(&self.router, r.body(body).unwrap()).await
    }

    async fn create(&self, tenant: &str, body: Value) -> Answer {
        let a = self.call(tenant, "POST", "/", Some(body)).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a
    }

    /// A key issued directly (not through the API), returning its id.
    async fn issue(&self, project: &str, env: &str, scopes: &[&str]) -> (KeyId, String) {
        let issued = self
            .manager
            .issue(
                IssueRequest::new(project.parse().unwrap(), env.parse().unwrap())
                    .scopes(scopes)
                    .unwrap(),
            )
            .await
            .unwrap();
        (issued.record.id, issued.key.expose_secret().to_owned())
    }

    async fn bearer(
        &self,
        key: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut r = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
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

/// Everything every test in this binary logged: one global subscriber (a thread's own default
/// would race with the callsite interest cache of tests running beside it).
fn capture_logs() -> (LogBuffer, ()) {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        let logs = LogBuffer::new();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    });
    (logs.clone(), ())
}

// ---------------------------------------------------------------------------------------
// Success

#[tokio::test]
async fn session_names_the_caller_the_tenant_and_the_offered_scopes() {
    let app = App::new();
    let a = app.call("web-app/dev", "GET", "/session", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        json!({"actor": "user:alice", "project": "web-app", "environments": ["dev"],
               "scopes": ["read", "write"], "csrf_token": null})
    );
    let all = app.call("web-app", "GET", "/session", None).await;
    assert_eq!(all.json()["environments"], json!([]));
}

#[tokio::test]
async fn every_endpoint_works_and_the_key_is_shown_only_once() {
    let (logs, _guard) = capture_logs();
    let app = App::new();
    let t = "web-app/dev";

    let created = app
        .create(
            t,
            json!({"name": "ci", "scopes": ["read"], "expires_in": "90d", "metadata": {"team": "data"}}),
        )
        .await;
    assert_eq!(created.headers["cache-control"], "no-store");
    let body = created.json();
    let key = body["key"].as_str().unwrap().to_owned();
    let id = body["info"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("av_dev_"));
    assert_eq!(body["info"]["name"], "ci");
    assert_eq!(body["info"]["status"], "active");
    assert_eq!(body["info"]["environment"], "dev");
    assert_eq!(body["info"]["metadata"], json!({"team": "data"}));
    assert_eq!(body["info"]["expires_at"], "2030-04-01T12:00:00.000Z");
    assert!(body["warning"].as_str().unwrap().contains("only time"));
    let forms = KeyForms::of(&key);

    let listed = app.call(t, "GET", "/", None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    assert!(listed.headers.get("link").is_none());
    forms.assert_hidden_in("the list", &listed.body);

    let got = app.call(t, "GET", &format!("/{id}/"), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["id"], id.as_str());
    forms.assert_hidden_in("a read", &got.body);

    let patched = app
        .call(
            t,
            "PATCH",
            &format!("/{id}/"),
            Some(json!({"name": "ci-2", "scopes": ["read", "write"], "metadata": null, "expires_at": "2031-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let p = patched.json();
    assert_eq!(p["name"], "ci-2");
    assert_eq!(p["scopes"], json!(["read", "write"]));
    assert_eq!(p["metadata"], Value::Null);
    assert_eq!(p["expires_at"], "2031-01-01T00:00:00.000Z");
    let cleared = app
        .call(
            t,
            "PATCH",
            &format!("/{id}/"),
            Some(json!({"expires_at": null})),
        )
        .await;
    assert_eq!(cleared.json()["expires_at"], Value::Null);
    assert_eq!(cleared.json()["name"], "ci-2");

    let usage = app.call(t, "GET", &format!("/{id}/usage/"), None).await;
    assert_eq!(usage.status, 200);
    assert_eq!(
        usage.json(),
        json!({"id": id, "quota": null, "credits": null})
    );
    forms.assert_hidden_in("usage", &usage.body);

    let rotated = app
        .call(
            t,
            "POST",
            &format!("/{id}/rotate/"),
            Some(json!({"grace": "1h"})),
        )
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    assert_eq!(rotated.headers["cache-control"], "no-store");
    let r = rotated.json();
    let new_key = r["key"].as_str().unwrap().to_owned();
    let new_id = r["info"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r["replaces"]["id"], id.as_str());
    assert_eq!(r["replaces"]["expires_at"], "2030-01-01T13:00:00.000Z");
    assert_eq!(r["info"]["rotated_from"], id.as_str());
    assert!(r["warning"].is_string());
    forms.assert_hidden_in("the rotation", &rotated.body);

    let revoked = app.call(t, "DELETE", &format!("/{new_id}/"), None).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.json()["status"], "revoked");
    let again = app
        .call(t, "POST", &format!("/{new_id}/revoke/"), None)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["revoked_at"], revoked.json()["revoked_at"]);
    let old = app.call(t, "POST", &format!("/{id}/revoke/"), None).await;
    assert_eq!(old.json()["status"], "revoked");

    for (what, text) in [
        ("every later answer", &again.body),
        ("the logs", &logs.text()),
    ] {
        forms.assert_hidden_in(what, text);
        KeyForms::of(&new_key).assert_hidden_in(what, text);
    }
    let log = logs.text();
    for line in [
        "issued an API key",
        "changed an API key",
        "rotated an API key",
        "revoked an API key",
    ] {
        assert!(log.contains(line), "{line} not logged: {log}");
    }
    assert!(log.contains("actor=user:alice"), "{log}");
    assert!(log.contains(&id), "{log}");
}

#[tokio::test]
async fn a_tenant_of_every_environment_issues_in_the_one_it_names() {
    let app = App::new();
    let a = app
        .create(
            "web-app",
            json!({"name": "p", "scopes": ["read"], "environment": "prd"}),
        )
        .await;
    assert_eq!(a.json()["info"]["environment"], "prd");
    let missing = app
        .call(
            "web-app",
            "POST",
            "/",
            Some(json!({"name": "p", "scopes": ["read"]})),
        )
        .await;
    missing.expect(400, "invalid_request");
    assert!(missing.message().contains("'environment'"));
}

#[tokio::test]
async fn rotation_of_a_revoked_key_is_a_conflict_unless_forced() {
    let app = App::new();
    let (id, _) = app.issue("web-app", "dev", &["read"]).await;
    let t = "web-app/dev";
    app.call(t, "DELETE", &format!("/{id}/"), None).await;
    let refused = app.call(t, "POST", &format!("/{id}/rotate/"), None).await;
    refused.expect(409, "conflict");
    let forced = app
        .call(
            t,
            "POST",
            &format!("/{id}/rotate/"),
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(forced.status, 201, "{}", forced.body);
    // Default grace (24 h), empty body.
    let (id2, _) = app.issue("web-app", "dev", &["read"]).await;
    let r = app.call(t, "POST", &format!("/{id2}/rotate/"), None).await;
    assert_eq!(
        r.json()["replaces"]["expires_at"],
        "2030-01-02T12:00:00.000Z"
    );
}

// ---------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn without_a_session_or_permission_nothing_is_answered() {
    let app = App::new();
    let (id, _) = app.issue("web-app", "dev", &["read"]).await;
    let no_session = App::send(
        &app.router,
        Request::get(format!("/{id}/")).body(Body::empty()).unwrap(),
    )
    .await;
    no_session.expect(401, "unauthenticated");
    assert_eq!(no_session.message(), "sign in first");
    app.call("nobody", "GET", "/", None)
        .await
        .expect(403, "forbidden");
    // Authentication comes before the body and the id are looked at.
    let bad = App::send(
        &app.router,
        Request::post("/").body(Body::from("{")).unwrap(),
    )
    .await;
    bad.expect(401, "unauthenticated");
}

#[tokio::test]
async fn bearer_admin_keys_manage_their_own_project_and_environment() {
    let app = App::new();
    let (_, admin) = app.issue("web-app", "dev", &["admin"]).await;
    let (_, reader) = app.issue("web-app", "dev", &["read"]).await;
    let (ours, _) = app.issue("web-app", "dev", &["read"]).await;
    let (prd, _) = app.issue("web-app", "prd", &["read"]).await;

    let none = app.bearer(None, "GET", "/", None).await;
    none.expect(401, "unauthenticated");
    assert!(none.message().contains("no API key was presented"));
    let bad = app.bearer(Some("av_dev_nonsense"), "GET", "/", None).await;
    bad.expect(401, "unauthenticated");
    assert!(
        bad.message().starts_with("malformed API key"),
        "{}",
        bad.body
    );
    let lacking = app.bearer(Some(&reader), "GET", "/", None).await;
    lacking.expect(403, "forbidden");
    assert!(lacking.message().contains("admin"));

    let session = app.bearer(Some(&admin), "GET", "/session", None).await;
    assert_eq!(session.status, 200);
    let s = session.json();
    assert!(s["actor"].as_str().unwrap().starts_with("key:"));
    assert_eq!(s["environments"], json!(["dev"]));
    assert_eq!(s["csrf_token"], Value::Null);

    let listed = app.bearer(Some(&admin), "GET", "/", None).await;
    assert_eq!(listed.json().as_array().unwrap().len(), 3);
    let got = app
        .bearer(Some(&admin), "GET", &format!("/{ours}/"), None)
        .await;
    assert_eq!(got.status, 200);
    app.bearer(Some(&admin), "GET", &format!("/{prd}/"), None)
        .await
        .expect(404, "not_found");
    let prd_key = app
        .bearer(
            Some(&admin),
            "POST",
            "/",
            Some(json!({"name": "x", "scopes": ["read"], "environment": "prd"})),
        )
        .await;
    prd_key.expect(403, "forbidden");
    assert!(
        prd_key.message().contains("environment 'dev' only"),
        "{}",
        prd_key.body
    );
    // No CSRF token needed for a Bearer caller.
    let created = app
        .bearer(
            Some(&admin),
            "POST",
            "/",
            Some(json!({"name": "x", "scopes": ["write"]})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

// ---------------------------------------------------------------------------------------
// Not found, ids

#[tokio::test]
async fn another_tenants_key_is_the_same_404_as_an_unknown_id() {
    let app = App::new();
    let (theirs, _) = app.issue("other-app", "dev", &["read"]).await;
    let (their_prd, _) = app.issue("web-app", "prd", &["read"]).await;
    let unknown = KeyId::generate().unwrap();
    let routes: [(&str, &str, Option<Value>); 6] = [
        ("GET", "/{}/", None),
        ("PATCH", "/{}/", Some(json!({"name": "x"}))),
        ("DELETE", "/{}/", None),
        ("POST", "/{}/revoke/", None),
        ("POST", "/{}/rotate/", None),
        ("GET", "/{}/usage/", None),
    ];
    for (method, path, body) in routes {
        let mut answers = Vec::new();
        for id in [&theirs, &their_prd, &unknown] {
            let uri = path.replace("{}", &id.to_string());
            let a = app.call("web-app/dev", method, &uri, body.clone()).await;
            a.expect(404, "not_found");
            answers.push(a);
        }
        let [foreign, foreign_env, missing] = &answers[..] else {
            unreachable!()
        };
        let (foreign, foreign_env, missing) = (foreign, foreign_env, missing);
        let same = |a: &Answer, id: &KeyId| a.body.replace(&id.to_string(), "ID");
        assert_eq!(
            same(foreign, &theirs),
            same(missing, &unknown),
            "{method} {path}"
        );
        assert_eq!(
            same(foreign_env, &their_prd),
            same(missing, &unknown),
            "{method} {path}"
        );
        assert_eq!(foreign.headers, missing.headers, "{method} {path}");
    }
    // Byte for byte for one id: a key that exists in another tenant, and the same id as
    // seen by a tenant in which no key has it.
    let (id, _) = app.issue("third-app", "dev", &["read"]).await;
    let as_other = app
        .call("web-app/dev", "GET", &format!("/{id}/"), None)
        .await;
    let store_has_none = App::new()
        .call("web-app/dev", "GET", &format!("/{id}/"), None)
        .await;
    assert_eq!(as_other.body, store_has_none.body);
    assert_eq!(as_other.status, store_has_none.status);
    // Untouched.
    let info = app.manager.get(&theirs).await.unwrap().unwrap();
    assert_eq!(info.status, "active");
}

#[tokio::test]
async fn malformed_ids_are_400_and_a_whole_key_is_called_out() {
    let app = App::new();
    let (_, key) = app.issue("web-app", "dev", &["read"]).await;
    for path in ["/short/", "/not-an-id!!/", "/session/"] {
        app.call("web-app/dev", "GET", path, None)
            .await
            .expect(400, "invalid_request");
    }
    let whole = app
        .call("web-app/dev", "DELETE", &format!("/{key}/"), None)
        .await;
    whole.expect(400, "invalid_request");
    assert!(whole.message().starts_with("that is a whole API key"));
    KeyForms::of(&key).assert_hidden_in("the refusal", &whole.body);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = App::new();
    app.call("web-app/dev", "GET", "/nope/deeper/still/", None)
        .await
        .expect(404, "not_found");
    app.call("web-app/dev", "PUT", "/", None)
        .await
        .expect(405, "method_not_allowed");
}

// ---------------------------------------------------------------------------------------
// Bad input

#[tokio::test]
async fn create_refuses_each_bad_field_with_400() {
    let app = App::new();
    let cases = [
        (json!({"scopes": ["read"]}), "name"),
        (json!({"name": "x"}), "scopes"),
        (json!({"name": "x", "scopes": []}), "'scopes' is empty"),
        (json!({"name": "x", "scopes": ["admin"]}), "not offered"),
        (json!({"name": "x", "scopes": ["Not A Scope"]}), "'scopes'"),
        (
            json!({"name": "x", "scopes": ["read"], "environment": "Bad Env"}),
            "'environment'",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expires_in": "soon"}),
            "'expires_in'",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expires_in": "0s"}),
            "",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "metadata": [1]}),
            "'metadata'",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "metadata": {"a": "x".repeat(17_000)}}),
            "metadata",
        ),
        (json!({"name": "x".repeat(200), "scopes": ["read"]}), "name"),
        (
            json!({"name": "x", "scopes": ["read"], "owner": "me"}),
            "unknown field",
        ),
        (json!({"name": 5, "scopes": ["read"]}), "invalid JSON body"),
    ];
    for (body, says) in cases {
        let a = app
            .call("web-app/dev", "POST", "/", Some(body.clone()))
            .await;
        a.expect(400, "invalid_request");
        assert!(a.message().contains(says), "{body}: {}", a.body);
    }
    assert!(
        app.manager
            .list(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bodies_that_are_not_json_or_too_large_are_typed_answers() {
    let app = App::new();
    let (id, _) = app.issue("web-app", "dev", &["read"]).await;
    let post = |uri: String, content_type: Option<&str>, body: Vec<u8>| {
        let mut r = Request::post(uri).header("x-test-tenant", "web-app/dev");
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        r.body(Body::from(body)).unwrap()
    };
    let syntax = App::send(
        &app.router,
        post("/".into(), Some("application/json"), b"{".to_vec()),
    )
    .await;
    syntax.expect(400, "invalid_request");
    let plain = App::send(
        &app.router,
        post("/".into(), Some("text/plain"), b"{}".to_vec()),
    )
    .await;
    plain.expect(415, "unsupported_media_type");
    let none = App::send(&app.router, post("/".into(), None, b"{}".to_vec())).await;
    none.expect(415, "unsupported_media_type");
    let big = format!(
        r#"{{"name":"x","scopes":["read"],"metadata":{{"a":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    let large = App::send(
        &app.router,
        post(
            "/".into(),
            Some("application/json"),
            big.clone().into_bytes(),
        ),
    )
    .await;
    large.expect(413, "payload_too_large");
    // Rotation: an optional body, but JSON when present.
    let rotate = format!("/{id}/rotate/");
    App::send(
        &app.router,
        post(
            rotate.clone(),
            Some("text/plain"),
            b"{\"force\":true}".to_vec(),
        ),
    )
    .await
    .expect(415, "unsupported_media_type");
    App::send(
        &app.router,
        post(
            rotate.clone(),
            Some("application/json"),
            b"{\"grace\":".to_vec(),
        ),
    )
    .await
    .expect(400, "invalid_request");
    App::send(
        &app.router,
        post(
            rotate.clone(),
            Some("application/json"),
            b"{\"grace\":\"soon\"}".to_vec(),
        ),
    )
    .await
    .expect(400, "invalid_request");
    App::send(
        &app.router,
        post(rotate.clone(), Some("application/json"), big.into_bytes()),
    )
    .await
    .expect(413, "payload_too_large");
    // PATCH
    let mut r = Request::patch(format!("/{id}/"))
        .header("x-test-tenant", "web-app/dev")
        .body(Body::from("{}"))
        .unwrap();
    r.headers_mut().remove("content-type");
    App::send(&app.router, r)
        .await
        .expect(415, "unsupported_media_type");
}

#[tokio::test]
async fn update_refuses_each_bad_field_with_400() {
    let app = App::new();
    let (id, _) = app.issue("web-app", "dev", &["read"]).await;
    let cases = [
        (json!({}), "changes nothing"),
        (json!({"scopes": []}), "'scopes' is empty"),
        (json!({"scopes": ["admin"]}), "not offered"),
        (json!({"metadata": "text"}), "'metadata'"),
        (json!({"expires_at": "tomorrow"}), "'expires_at'"),
        (json!({"name": "a\u{202e}b"}), "name"),
        (json!({"status": "active"}), "unknown field"),
    ];
    for (body, says) in cases {
        let a = app
            .call(
                "web-app/dev",
                "PATCH",
                &format!("/{id}/"),
                Some(body.clone()),
            )
            .await;
        a.expect(400, "invalid_request");
        assert!(a.message().contains(says), "{body}: {}", a.body);
    }
}

// ---------------------------------------------------------------------------------------
// CSRF

#[tokio::test]
async fn cookie_callers_need_the_csrf_token_to_change_anything() {
    let app = App::new();
    let (id, _) = app.issue("web-app", "dev", &["read"]).await;
    let request = |method: &str, uri: String, token: Option<&str>, site: Option<&str>| {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-test-tenant", "web-app/dev")
            .header("x-test-csrf", "s3cret-token");
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        if let Some(s) = site {
            r = r.header("sec-fetch-site", s);
        }
        r.body(Body::empty()).unwrap()
    };
    let session = App::send(&app.router, request("GET", "/session".into(), None, None)).await;
    assert_eq!(session.json()["csrf_token"], "s3cret-token");
    let read = App::send(
        &app.router,
        request("GET", format!("/{id}/"), None, Some("cross-site")),
    )
    .await;
    assert_eq!(read.status, 200, "reads need no token");

    for (method, uri) in [
        ("DELETE", format!("/{id}/")),
        ("POST", format!("/{id}/revoke/")),
        ("POST", format!("/{id}/rotate/")),
        ("PATCH", format!("/{id}/")),
        ("POST", "/".to_owned()),
    ] {
        App::send(&app.router, request(method, uri.clone(), None, None))
            .await
            .expect(403, "csrf");
        App::send(
            &app.router,
            request(method, uri.clone(), Some("s3cret-tokeN"), None),
        )
        .await
        .expect(403, "csrf");
        App::send(&app.router, request(method, uri.clone(), Some(""), None))
            .await
            .expect(403, "csrf");
        App::send(
            &app.router,
            request(
                method,
                uri.clone(),
                Some("s3cret-token"),
                Some("cross-site"),
            ),
        )
        .await
        .expect(403, "csrf");
    }
    assert_eq!(
        app.manager.get(&id).await.unwrap().unwrap().status,
        "active"
    );
    let ok = App::send(
        &app.router,
        request(
            "POST",
            format!("/{id}/revoke/"),
            Some("s3cret-token"),
            Some("same-origin"),
        ),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

// ---------------------------------------------------------------------------------------
// Pagination

fn next_link(a: &Answer) -> Option<String> {
    let link = a.headers.get("link")?.to_str().unwrap().to_owned();
    let cursor = a.headers["x-next-cursor"].to_str().unwrap();
    let uri = link.strip_prefix('<')?.split_once('>')?.0.to_owned();
    assert!(link.ends_with("; rel=\"next\""));
    assert!(uri.contains(&format!("after={cursor}")));
    Some(uri)
}

async fn all_pages(app: &App, tenant: &str, first: &str) -> (Vec<Vec<String>>, usize) {
    let mut pages = Vec::new();
    let mut uri = Some(first.to_owned());
    let mut requests = 0;
    while let Some(u) = uri {
        let a = app.call(tenant, "GET", &u, None).await;
        assert_eq!(a.status, 200, "{u}: {}", a.body);
        requests += 1;
        pages.push(
            a.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["id"].as_str().unwrap().to_owned())
                .collect(),
        );
        uri = next_link(&a);
        assert!(requests < 50);
    }
    (pages, requests)
}

#[tokio::test]
async fn lists_page_through_the_tenants_keys_with_filters() {
    let app = App::new();
    let mut dev = Vec::new();
    for _ in 0..7 {
        dev.push(app.issue("web-app", "dev", &["read"]).await.0.to_string());
    }
    let mut prd = Vec::new();
    for _ in 0..3 {
        prd.push(app.issue("web-app", "prd", &["read"]).await.0.to_string());
    }
    app.issue("other-app", "dev", &["read"]).await;
    for id in [&dev[1], &dev[4], &prd[0]] {
        app.manager.revoke(&id.parse().unwrap()).await.unwrap();
    }

    let (pages, _) = all_pages(&app, "web-app", "/?limit=3").await;
    let seen: Vec<String> = pages.concat();
    assert_eq!(seen.len(), 10);
    let mut expected: Vec<String> = dev.iter().chain(&prd).cloned().collect();
    expected.sort();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "every key once");
    assert!(pages.iter().all(|p| p.len() <= 3));

    let (pages, _) = all_pages(&app, "web-app", "/?limit=2&environment=prd").await;
    let mut got = pages.concat();
    got.sort();
    let mut want = prd.clone();
    want.sort();
    assert_eq!(got, want);

    let (pages, _) = all_pages(&app, "web-app", "/?limit=1&status=revoked").await;
    let mut got = pages.concat();
    got.sort();
    let mut want = vec![dev[1].clone(), dev[4].clone(), prd[0].clone()];
    want.sort();
    assert_eq!(got, want);

    let (pages, _) = all_pages(&app, "web-app/dev", "/?limit=2&status=active").await;
    assert_eq!(pages.concat().len(), 5);
    assert!(pages.iter().all(|p| p.len() <= 2));

    // An environment outside the tenant: an empty page, not an error.
    let outside = app
        .call("web-app/dev", "GET", "/?environment=prd", None)
        .await;
    assert_eq!(outside.status, 200);
    assert_eq!(outside.json(), json!([]));

    // The page keeps the filters in its link, and the default page size applies.
    let first = app
        .call(
            "web-app",
            "GET",
            "/?limit=1&environment=dev&status=active",
            None,
        )
        .await;
    let link = next_link(&first).unwrap();
    assert!(link.starts_with("/?limit=1&after="));
    assert!(link.ends_with("&environment=dev&status=active"), "{link}");
    let all = app.call("web-app", "GET", "/", None).await;
    assert_eq!(all.json().as_array().unwrap().len(), 10);
    assert!(all.headers.get("link").is_none());
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let app = App::new();
    for (q, says) in [
        ("limit=0", "'limit'"),
        ("limit=51", "'limit'"),
        ("limit=ten", "limit"),
        ("after=garbage", "'after'"),
        ("environment=Not%20One", "'environment'"),
        ("status=sleeping", "'status'"),
        ("sort=name", "sort"),
    ] {
        let a = app.call("web-app", "GET", &format!("/?{q}"), None).await;
        a.expect(400, "invalid_request");
        assert!(a.message().contains(says), "{q}: {}", a.body);
    }
}

// ---------------------------------------------------------------------------------------
// Store down

#[tokio::test]
async fn a_store_that_is_down_is_503_on_every_endpoint() {
    let (logs, _guard) = capture_logs();
    let app = App::new();
    let (id, admin) = app.issue("web-app", "dev", &["admin"]).await;
    app.down.store(true, Ordering::SeqCst);
    let cases: [(&str, String, Option<Value>); 8] = [
        ("GET", "/".into(), None),
        (
            "POST",
            "/".into(),
            Some(json!({"name": "x", "scopes": ["read"]})),
        ),
        ("GET", format!("/{id}/"), None),
        ("PATCH", format!("/{id}/"), Some(json!({"name": "y"}))),
        ("DELETE", format!("/{id}/"), None),
        ("POST", format!("/{id}/revoke/"), None),
        ("POST", format!("/{id}/rotate/"), None),
        ("GET", format!("/{id}/usage/"), None),
    ];
    for (method, uri, body) in cases {
        app.call("web-app/dev", method, &uri, body)
            .await
            .expect(503, "temporarily_unavailable");
    }
    // The Bearer check itself needs the store for a key it has not cached.
    app.bearer(Some(&admin), "GET", "/", None)
        .await
        .expect(503, "temporarily_unavailable");
    assert!(logs.text().contains("ERROR"), "{}", logs.text());
    KeyForms::of(&admin).assert_hidden_in("the logs", &logs.text());
}

// ---------------------------------------------------------------------------------------
// OpenAPI

/// Every route the router answers, as the test drives it.
const ROUTES: [(&str, &str); 10] = [
    ("get", "/session"),
    ("get", "/audit"),
    ("get", "/"),
    ("post", "/"),
    ("get", "/{key_id}/"),
    ("patch", "/{key_id}/"),
    ("post", "/{key_id}/rotate/"),
    ("get", "/{key_id}/usage/"),
    ("delete", "/{key_id}/"),
    ("post", "/{key_id}/revoke/"),
];

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes() {
    let doc: Value = serde_json::from_str(&openapi_json("/api/v1/me/api-keys")).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(doc["servers"], json!([{"url": "/api/v1/me/api-keys"}]));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["parameters", "summary", "description", "servers"].contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.clone(), path.clone()));
            let statuses: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            assert!(
                statuses.iter().any(|s| s.starts_with('2')),
                "{method} {path}"
            );
            assert!(statuses.contains(&&"401".to_owned()), "{method} {path}");
            assert!(statuses.contains(&&"503".to_owned()), "{method} {path}");
        }
    }
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routes);
    // The schemas the answers use are there.
    for name in [
        "KeyInfo",
        "KeyUsage",
        "ErrorBody",
        "CreatedKey",
        "RotatedKeyBody",
        "Session",
        "AuditPage",
        "AuditEntry",
    ] {
        assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
    }
    assert!(openapi().paths.paths.contains_key("/{key_id}/usage/"));
    // Every reference resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(doc["components"]["schemas"].get(name).is_some(), "{r}");
    }

    // Every documented route answers (not 404 or 405 from the router itself), with one of its
    // documented statuses.
    let app = App::new();
    let (id, _) = app.issue("web-app", "dev", &["read"]).await;
    for (method, path) in ROUTES {
        let uri = path.replace("{key_id}", &id.to_string());
        let body = match (method, path) {
            ("post", "/") => Some(json!({"name": "x", "scopes": ["read"]})),
            ("patch", _) => Some(json!({"name": "y"})),
            _ => None,
        };
        let a = app
            .call("web-app/dev", &method.to_uppercase(), &uri, body)
            .await;
        assert!(a.status.is_success(), "{method} {path}: {}", a.body);
        let op = &doc["paths"][path][method];
        assert!(
            op["responses"].get(a.status.as_str()).is_some(),
            "{method} {path} answered {} which is not documented",
            a.status
        );
    }
    // A method the document does not list is refused.
    app.call("web-app/dev", "PUT", &format!("/{id}/"), None)
        .await
        .expect(405, "method_not_allowed");

    let served = App::send(
        &openapi_router(
            &AdminConfig::new(app.manager.clone()),
            "/api/v1/me/api-keys",
        ),
        Request::get("/").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["content-type"], "application/json");
    assert_eq!(served.json(), doc);
}

#[tokio::test]
async fn nested_at_a_prefix_the_link_keeps_the_prefix() {
    let app = App::new();
    for _ in 0..3 {
        app.issue("web-app", "dev", &["read"]).await;
    }
    let host = Router::new().nest_service("/api/v1/me/api-keys", app.router.clone());
    let a = App::send(
        &host,
        Request::get("/api/v1/me/api-keys/?limit=2")
            .header("x-test-tenant", "web-app/dev")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let link = next_link(&a).unwrap();
    assert!(
        link.starts_with("/api/v1/me/api-keys/?limit=2&after="),
        "{link}"
    );
    let b = App::send(
        &host,
        Request::get(link)
            .header("x-test-tenant", "web-app/dev")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(b.json().as_array().unwrap().len(), 1);
    let bare = App::send(
        &host,
        Request::get("/api/v1/me/api-keys")
            .header("x-test-tenant", "web-app/dev")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(bare.json().as_array().unwrap().len(), 3);
}

/// Drives every route into each outcome it has, and checks that the statuses it answered are
/// exactly the ones its operation documents.
#[tokio::test]
async fn every_documented_status_is_one_the_route_answers() {
    let doc: Value = serde_json::from_str(&openapi_json("/")).unwrap();
    let big = json!({"name": "x".repeat(70_000)});
    for (method, path) in ROUTES {
        let app = App::new();
        let (id, _) = app.issue("web-app", "dev", &["read"]).await;
        let (revoked, _) = app.issue("web-app", "dev", &["read"]).await;
        app.manager.revoke(&revoked).await.unwrap();
        let m = method.to_uppercase();
        let with_id = |id: &str| path.replace("{key_id}", id);
        let has_id = path.contains("{key_id}");
        let has_body =
            (method == "post" && path == "/") || method == "patch" || path.ends_with("/rotate/");
        let good_body = match (method, path) {
            ("post", "/") => Some(json!({"name": "x", "scopes": ["read"]})),
            ("patch", _) => Some(json!({"name": "y"})),
            _ => None,
        };
        let mut observed = BTreeSet::new();
        let mut note = |a: Answer| {
            observed.insert(a.status.as_u16().to_string());
        };
        note(
            app.call(
                "web-app/dev",
                &m,
                &with_id(&id.to_string()),
                good_body.clone(),
            )
            .await,
        );
        note(
            App::send(
                &app.router,
                Request::builder()
                    .method(m.as_str())
                    .uri(with_id(&id.to_string()))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await,
        );
        note(
            app.call("nobody", &m, &with_id(&id.to_string()), None)
                .await,
        );
        let throttled = app
            .call("throttled", &m, &with_id(&id.to_string()), None)
            .await;
        assert_eq!(throttled.headers["retry-after"], "30", "{method} {path}");
        note(throttled);
        if has_id {
            note(
                app.call("web-app/dev", &m, &with_id("bad"), good_body.clone())
                    .await,
            );
            let unknown = KeyId::generate().unwrap().to_string();
            note(
                app.call("web-app/dev", &m, &with_id(&unknown), good_body.clone())
                    .await,
            );
        }
        if has_body {
            let uri = with_id(&id.to_string());
            let bad = if path.ends_with("/rotate/") {
                json!({"grace": "soon"})
            } else {
                json!({"unknown": 1})
            };
            note(app.call("web-app/dev", &m, &uri, Some(bad)).await);
            note(app.call("web-app/dev", &m, &uri, Some(big.clone())).await);
            note(
                App::send(
                    &app.router,
                    Request::builder()
                        .method(m.as_str())
                        .uri(uri)
                        .header("x-test-tenant", "web-app/dev")
                        .header("content-type", "text/plain")
                        .body(Body::from("{\"force\": true}"))
                        .unwrap(),
                )
                .await,
            );
        }
        if path == "/" && method == "get" {
            note(app.call("web-app/dev", "GET", "/?limit=0", None).await);
        }
        if path == "/audit" {
            note(app.call("web-app/dev", "GET", "/audit?limit=0", None).await);
        }
        if path.ends_with("/rotate/") {
            note(
                app.call("web-app/dev", &m, &with_id(&revoked.to_string()), None)
                    .await,
            );
        }
        let (_, admin) = app.issue("web-app", "dev", &["admin"]).await;
        app.down.store(true, Ordering::SeqCst);
        note(
            app.call("web-app/dev", &m, &with_id(&id.to_string()), good_body)
                .await,
        );
        // The session needs no store, unless the caller's own check does (an admin key).
        note(
            app.bearer(Some(&admin), &m, &with_id(&id.to_string()), None)
                .await,
        );

        let documented: BTreeSet<String> = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(documented, observed, "{method} {path}");
    }
}
