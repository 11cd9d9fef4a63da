//! The downstream service's routes answer as Keyward promises: 200 with the right scope,
//! 403 without it, 401 without a key.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use keyward::{HashParams, IssueRequest, KeyManager};
use keyward_sqlite::SqliteStore;
use tower::ServiceExt;

async fn keys(dir: &tempfile::TempDir) -> KeyManager {
    let store = SqliteStore::open(dir.path().join("keys.db")).await.unwrap();
    KeyManager::builder(store)
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap()
}

fn request(method: &str, path: &str, key: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn routes_take_the_scope_they_require() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&dir).await;
    let issued = keys
        .issue(
            IssueRequest::new("shop".parse().unwrap(), "dev".parse().unwrap())
                .scopes(["write"])
                .unwrap(),
        )
        .await
        .unwrap();
    let key = issued.key.expose_secret();
    let app = keyward_downstream::app(keys);

    let ingest = app
        .clone()
        .oneshot(request("POST", "/ingest", Some(key)))
        .await
        .unwrap();
    assert_eq!(ingest.status(), StatusCode::OK);
    let body = ingest.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"project": "shop", "environment": "dev"})
    );

    let ping = app
        .clone()
        .oneshot(request("GET", "/ping", Some(key)))
        .await
        .unwrap();
    assert_eq!(ping.status(), StatusCode::FORBIDDEN);

    let anonymous = app.oneshot(request("GET", "/ping", None)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(challenge.contains("realm=\"downstream\""), "{challenge}");
}
