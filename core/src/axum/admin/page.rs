//! The API-keys page: `index.html`, `app.js` and `app.css` from `page/`, embedded with
//! `include_str!`, and [`page_router`], which serves them (its docs say what the page does
//! and how to mount it).

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, StatusCode, Uri};

use super::{AdminAuth, AdminConfig};

/// The page's `Content-Security-Policy`, on the HTML, the assets and the page's 404s: its
/// own script, style and API only; nothing inline, no frames, no `<base>`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

/// What every page answer renders: the attributes, HTML-escaped once.
#[derive(Debug)]
struct Page {
    api: String,
    login: String,
}

/// Serves the API-keys page: one HTML document, one script and one style sheet, embedded in
/// the crate with `include_str!` (no build step, no CDN, no framework).
///
/// The page holds no data: it is served to anyone, and everything it shows comes from the
/// JSON API (`api_router`), which authorizes every call. In the browser it
///
/// - asks `GET {api}/session` first (`credentials: "same-origin"`), shows a sign-in
///   message on 401 (with a link when [`AdminConfig::login_url`] is set), and keeps the
///   session's CSRF token in a variable only, sending it as `X-CSRF-Token` on every POST,
///   PATCH and DELETE;
/// - lists the tenant's keys (masked, never the key), a page at a time (`X-Next-Cursor`);
/// - creates, revokes and rotates keys, in `<dialog>`s, and shows a new key exactly once,
///   in a read-only input that is emptied and removed from the document when the dialog
///   closes. The key is never written to storage, the URL, the console or an attribute.
///
/// Every answer carries `Content-Security-Policy: default-src 'none'; script-src 'self';
/// style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self';
/// frame-ancestors 'none'` (the page's own script, style and API only, nothing inline), `Referrer-Policy: no-referrer` and `X-Content-Type-Options:
/// nosniff`; the HTML also `Cache-Control: no-store`. The HTML names its script and style by
/// absolute paths built from the request's [`OriginalUri`], so the page works under any
/// prefix the host mounts it at, and carries the API's base URL in `<body data-api>`,
/// HTML-escaped.
///
/// **Mounting.** `Router::nest_service(mount, page_router(..))` serves the page at both
/// `/mount` and `/mount/`. With `Router::nest`, axum 0.8 routes `/mount` (and the assets)
/// but never `/mount/` to a nested router.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, body::Body, http::Request};
/// use keyward::axum::admin::{AdminAuth, AdminCaller, AdminConfig, AdminDenied, page_router};
/// use keyward::{HashParams, KeyManager};
/// use tower::ServiceExt as _;
///
/// /// Every caller manages project `web-app` (a real host reads its session cookie).
/// #[derive(Clone)]
/// struct Everyone;
///
/// impl AdminAuth for Everyone {
///     async fn authorize(
///         &self,
///         _parts: &mut http::request::Parts,
///     ) -> Result<AdminCaller, AdminDenied> {
///         Ok(AdminCaller {
///             tenant: keyward::Tenant::new("web-app".parse().map_err(|_| {
///                 AdminDenied::Forbidden("no project".into())
///             })?),
///             actor: "user:alice".into(),
///             csrf_token: None,
///         })
///     }
/// }
///
/// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
///     .serve("dev".parse()?)
///     .hash_params(HashParams::INSECURE_TEST_ONLY) // tests only
///     .build()?;
/// let config = AdminConfig::new(manager).offer_scopes(["read", "write"]).login_url("/login");
/// let app: Router = Router::new().nest_service(
///     "/settings/api-keys",
///     page_router(config, Everyone, "/api/v1/me/api-keys"),
/// );
///
/// for uri in ["/settings/api-keys", "/settings/api-keys/"] {
///     let page = app.clone().oneshot(Request::get(uri).body(Body::empty())?).await?;
///     assert_eq!(page.status(), 200);
///     assert_eq!(page.headers()["cache-control"], "no-store");
/// }
/// let script = app.oneshot(Request::get("/settings/api-keys/app.js").body(Body::empty())?).await?;
/// assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
/// # Ok(()) }
/// ```
///
/// **Routes.** `/` answers the HTML, `/app.js` and `/app.css` the assets, anything else 404
/// (with the same headers).
///
/// `api_base` is the path the API router is mounted at, as the browser reaches it (e.g.
/// `/api/v1/me/api-keys`), on the page's own origin (the CSP allows `connect-src 'self'`
/// only); it is HTML-escaped into the page, a trailing slash dropped. `auth` is not
/// consulted: the page holds no data, and the API it calls authorizes every request.
pub fn page_router<A: AdminAuth>(config: AdminConfig, auth: A, api_base: &str) -> Router {
    drop(auth);
    let page = Arc::new(Page {
        api: escape_html(api_base.trim_end_matches('/')),
        login: escape_html(config.login().unwrap_or_default()),
    });
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .fallback(not_found)
        .with_state(page)
}

async fn index(State(page): State<Arc<Page>>, OriginalUri(uri): OriginalUri) -> Response {
    let base = asset_base(&uri);
    let html = render(INDEX_HTML, |name| match name {
        "base" => Some(base.as_str()),
        "api" => Some(page.api.as_str()),
        "login" => Some(page.login.as_str()),
        _ => None,
    });
    answer(StatusCode::OK, "text/html; charset=utf-8", "no-store", html)
}

async fn script() -> Response {
    answer(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        "no-cache",
        APP_JS,
    )
}

async fn style() -> Response {
    answer(
        StatusCode::OK,
        "text/css; charset=utf-8",
        "no-cache",
        APP_CSS,
    )
}

async fn not_found() -> Response {
    answer(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "no-store",
        "not found",
    )
}

/// A page answer with the page's headers.
fn answer(
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: impl IntoResponse,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The absolute path the page's assets are under: the request's path with one trailing
/// slash (`/settings/api-keys` and `/settings/api-keys/` give `/settings/api-keys/`),
/// HTML-escaped. Leading slashes are collapsed to one, so that the path can never read as
/// a scheme-relative URL (`//host/…`).
fn asset_base(uri: &Uri) -> String {
    let path = uri.path().trim_matches('/');
    if path.is_empty() {
        "/".to_owned()
    } else {
        escape_html(&format!("/{path}/"))
    }
}

/// Fills `{{name}}` placeholders in one pass, so that a value can never be read as a
/// placeholder; unknown names are left as they are.
fn render<'a>(template: &str, value: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after
            .find("}}")
            .and_then(|end| Some((end, value(&after[..end])?)))
        {
            Some((end, v)) => {
                out.push_str(v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for an HTML attribute value in double quotes (and for text content).
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_placeholders_once_and_leaves_unknown_ones() {
        let html = render("<a b=\"{{x}}\">{{y}}{{x}}", |n| {
            (n == "x").then_some("{{x}}")
        });
        assert_eq!(html, "<a b=\"{{x}}\">{{y}}{{x}}");
        assert_eq!(render("{{x}}-{{x}}", |_| Some("v")), "v-v");
        assert_eq!(render("{{open", |_| Some("v")), "{{open");
    }

    #[test]
    fn asset_base_has_one_leading_and_one_trailing_slash() {
        let base = |p: &str| asset_base(&p.parse().unwrap_or_default());
        assert_eq!(base("/"), "/");
        assert_eq!(base("/settings/api-keys"), "/settings/api-keys/");
        assert_eq!(base("/settings/api-keys/"), "/settings/api-keys/");
        assert_eq!(base("//evil.example/x"), "/evil.example/x/");
        assert_eq!(base("/a'b&c/"), "/a&#39;b&amp;c/");
    }

    #[test]
    fn escape_html_escapes_what_breaks_out_of_an_attribute() {
        assert_eq!(
            escape_html("\"><script>'&"),
            "&quot;&gt;&lt;script&gt;&#39;&amp;"
        );
    }
}
