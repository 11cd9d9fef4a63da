//! The API-keys page (`keyward::axum::admin::page_router`): what it answers under a mount
//! prefix, with which headers, and what its HTML and script may not contain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use keyward::axum::admin::{AdminAuth, AdminCaller, AdminConfig, AdminDenied, page_router};
use keyward::{HashParams, KeyManager, Tenant};
use tower::ServiceExt as _;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const APP_JS: &str = include_str!("../src/axum/admin/page/app.js");
const INDEX_HTML: &str = include_str!("../src/axum/admin/page/index.html");

/// Everyone manages project `web-app`; the page never asks.
#[derive(Clone)]
struct Everyone;

impl AdminAuth for Everyone {
    async fn authorize(
        &self,
        _parts: &mut http::request::Parts,
    ) -> Result<AdminCaller, AdminDenied> {
        Ok(AdminCaller {
            tenant: Tenant::new("web-app".parse().unwrap()),
            actor: "user:alice".into(),
            csrf_token: None,
        })
    }
}

fn config() -> AdminConfig {
    let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    AdminConfig::new(manager).offer_scopes(["read", "write"])
}

fn page(api_base: &str) -> Router {
    page_router(config(), Everyone, api_base)
}

/// The page mounted as the contract's example host does.
fn app() -> Router {
    Router::new().nest_service("/settings/api-keys", page("/api/v1/me/api-keys"))
}

async fn get(app: &Router, uri: &str) -> Response {
    app.clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn assert_page_headers(response: &Response) {
    assert_eq!(header(response, "content-security-policy"), CSP);
    assert_eq!(header(response, "referrer-policy"), "no-referrer");
    assert_eq!(header(response, "x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn page_and_assets_answer_200_with_the_page_headers() {
    let app = app();
    for uri in ["/settings/api-keys", "/settings/api-keys/"] {
        let html = get(&app, uri).await;
        assert_eq!(html.status(), StatusCode::OK, "{uri}");
        assert_page_headers(&html);
        assert_eq!(header(&html, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&html, "cache-control"), "no-store");
    }
    for (uri, content_type) in [
        (
            "/settings/api-keys/app.js",
            "text/javascript; charset=utf-8",
        ),
        ("/settings/api-keys/app.css", "text/css; charset=utf-8"),
    ] {
        let asset = get(&app, uri).await;
        assert_eq!(asset.status(), StatusCode::OK, "{uri}");
        assert_page_headers(&asset);
        assert_eq!(header(&asset, "content-type"), content_type);
    }
    assert_eq!(
        text(get(&app, "/settings/api-keys/app.js").await).await,
        APP_JS
    );
}

#[tokio::test]
async fn unknown_asset_is_404_with_the_page_headers() {
    let app = app();
    for uri in [
        "/settings/api-keys/app.jsx",
        "/settings/api-keys/index.html",
        "/settings/api-keys/page/app.js",
        "/settings/api-keys/app.js/",
    ] {
        let response = get(&app, uri).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_page_headers(&response);
    }
}

#[tokio::test]
async fn nest_serves_the_mount_and_the_assets_but_not_the_mount_with_a_slash() {
    let app = Router::new().nest("/settings/api-keys", page("/api"));
    for uri in [
        "/settings/api-keys",
        "/settings/api-keys/app.js",
        "/settings/api-keys/app.css",
    ] {
        assert_eq!(get(&app, uri).await.status(), StatusCode::OK, "{uri}");
    }
    // axum 0.8 never routes `/mount/` into a router mounted with `nest` (it does with
    // `nest_service`, which the docs recommend): if this changes, the docs can say so.
    assert_eq!(
        get(&app, "/settings/api-keys/").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn html_references_the_assets_under_the_mount_prefix() {
    let nested = Router::new().nest(
        "/tenant-admin",
        Router::new().nest_service("/keys", page("/api")),
    );
    let root = page("/api");
    for (app, uri, base) in [
        (&app(), "/settings/api-keys", "/settings/api-keys/"),
        (&app(), "/settings/api-keys/", "/settings/api-keys/"),
        (&nested, "/tenant-admin/keys", "/tenant-admin/keys/"),
        (&nested, "/tenant-admin/keys/", "/tenant-admin/keys/"),
        (&root, "/", "/"),
    ] {
        let html = text(get(app, uri).await).await;
        assert!(
            html.contains(&format!(r#"<link rel="stylesheet" href="{base}app.css">"#)),
            "{uri}: {html}"
        );
        assert!(
            html.contains(&format!(r#"<script src="{base}app.js" defer></script>"#)),
            "{uri}: {html}"
        );
        assert!(!html.contains("{{"), "{uri}: a placeholder is left");
    }
}

#[tokio::test]
async fn html_has_no_inline_script_or_style() {
    let html = text(get(&app(), "/settings/api-keys").await).await;
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<style"));
    assert!(!lower.contains("style="));
    assert!(!lower.contains("javascript:"));
    // Every <script> has a src and an empty body.
    let scripts: Vec<&str> = lower.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1);
    for script in scripts {
        let (open, rest) = script.split_once('>').unwrap();
        assert!(open.contains(" src=\""), "<script{open}>");
        assert!(rest.starts_with("</script>"), "inline script: {rest}");
    }
    // No event-handler attributes (onclick=, onload=, ...).
    for (i, _) in lower.match_indices(" on") {
        let attr: String = lower[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        assert!(
            !lower[i + 1 + attr.len()..].starts_with('='),
            "event handler attribute {attr}"
        );
    }
}

#[tokio::test]
async fn api_base_and_login_cannot_break_out_of_their_attributes() {
    let hostile = r#"/api"><script>alert(1)</script><x y='"#;
    let app = Router::new().nest_service(
        "/keys",
        page_router(config().login_url(hostile), Everyone, hostile),
    );
    let html = text(get(&app, "/keys").await).await;
    let escaped = "/api&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;x y=&#39;";
    assert!(html.contains(&format!(r#"data-api="{escaped}""#)), "{html}");
    assert!(
        html.contains(&format!(r#"data-login="{escaped}""#)),
        "{html}"
    );
    assert!(!html.contains("alert(1)</script>"));
    assert_eq!(html.matches("<script").count(), 1);
}

#[tokio::test]
async fn data_api_carries_the_api_base_and_no_login_by_default() {
    let html = text(get(&app(), "/settings/api-keys/").await).await;
    assert!(html.contains(r#"<body data-api="/api/v1/me/api-keys" data-login="">"#));
}

#[test]
fn app_js_keeps_the_key_out_of_storage_urls_console_and_markup() {
    for banned in [
        "localStorage",
        "sessionStorage",
        "indexedDB",
        "document.cookie",
        "console.",
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "location.hash",
        "pushState",
        "replaceState",
        "setAttribute(\"value\"",
    ] {
        assert!(!APP_JS.contains(banned), "app.js contains {banned}");
    }
    assert!(APP_JS.contains("\"use strict\";"));
    assert!(APP_JS.contains("credentials: \"same-origin\""));
    assert!(APP_JS.contains("\"X-CSRF-Token\""));
    assert!(APP_JS.contains("X-Next-Cursor"));
    // Closing the one-time dialog empties the input and removes it.
    assert!(APP_JS.contains("input.value = \"\";"));
    assert!(APP_JS.contains("input.remove();"));
}

#[test]
fn every_id_and_class_of_the_contract_is_in_the_page_or_made_by_the_script() {
    for id in [
        "create-key",
        "create-dialog",
        "key-name",
        "create-confirm",
        "secret-dialog",
        "copy-secret",
        "close-secret",
        "keys-table",
        "confirm-dialog",
        "confirm-yes",
        "rotate-dialog",
        "rotate-grace",
        "rotate-confirm",
    ] {
        assert!(
            INDEX_HTML.contains(&format!("id=\"{id}\"")),
            "index.html lacks #{id}"
        );
    }
    assert!(INDEX_HTML.contains(r#"<label for="key-name">Name</label>"#));
    assert!(INDEX_HTML.contains("This is the only time this key is shown."));
    // Made by the script: the one-time input, scope checkboxes, rows and their cells.
    for made in [
        "input.id = \"secret-value\";",
        "input.readOnly = true;",
        "box.name = \"scope\";",
        "box.value = scope;",
        "tr.dataset.keyId = info.id;",
    ] {
        assert!(APP_JS.contains(made), "app.js lacks {made}");
    }
    for class in [
        "masked",
        "name",
        "scopes",
        "environment",
        "created",
        "last-used",
        "status",
        "revoke",
        "rotate",
    ] {
        assert!(
            APP_JS.contains(&format!("(\"td\", \"{class}\""))
                || APP_JS.contains(&format!("(\"button\", \"{class}\"")),
            "app.js makes no .{class}"
        );
    }
}

#[test]
fn the_activity_section_shows_the_audit_trail_as_text() {
    for id in [
        "activity-section",
        "activity-table",
        "activity-body",
        "activity-more",
        "activity-refresh",
    ] {
        assert!(
            INDEX_HTML.contains(&format!("id=\"{id}\"")),
            "index.html lacks #{id}"
        );
    }
    assert!(APP_JS.contains("\"/audit?\""));
    for class in [
        "activity-at",
        "activity-actor",
        "activity-action",
        "activity-key",
        "activity-details",
    ] {
        assert!(
            APP_JS.contains(&format!("(\"td\", \"{class}\"")),
            "app.js makes no .{class}"
        );
    }
}
