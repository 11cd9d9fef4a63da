//! GitHub's secret-scanning partner endpoint as an axum router (features `axum` and
//! `secret-scanning`): `POST /` under the mount takes a report and answers GitHub's feedback
//! array. Everything it decides is [`SecretScanning::handle`]'s; this file reads the body
//! within the limit, the two headers, and renders the answer.
//!
//! | answer | when |
//! |---|---|
//! | 200 `[{"token_hash","token_type","label"},…]` | a signed report, processed (see [`crate::secret_scanning`]) |
//! | 400 `{"error":"malformed",…}` | not a JSON array of matches |
//! | 401 `{"error":"missing_signature" \| "unknown_key" \| "bad_signature",…}` | not signed by a configured key: nothing changed |
//! | 413 `{"error":"body_too_large",…}` | over [`SecretScanningConfig::max_body`] |
//! | 503 `{"error":"unavailable",…}` | the store or the hasher failed: GitHub retries |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, body::Body, http::Request};
//! use keyward::secret_scanning::{PublicKeys, SecretScanningConfig};
//! use keyward::{HashParams, KeyManager};
//! use tower::ServiceExt as _;
//!
//! let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
//!     .serve("dev".parse()?)
//!     .hash_params(HashParams::INSECURE_TEST_ONLY)
//!     .build()?;
//! let mut keys = PublicKeys::new();
//! keys.add_pem_with_id("github-key-1", "-----BEGIN PUBLIC KEY-----
//! MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsz9ugWDj5jK5ELBK42ynytbo38gP
//! HzZFI03Exwz8Lh/tCfL3YxwMdLjB+bMznsanlhK0RwcGP3IDb34kQDIo3Q==
//! -----END PUBLIC KEY-----")?;
//! let app: Router = Router::new().nest_service(
//!     "/api/v1/secret-scanning",
//!     keyward::axum::secret_scanning::router(manager, SecretScanningConfig::new(keys)),
//! );
//! let unsigned = Request::post("/api/v1/secret-scanning/").body(Body::from("[]"))?;
//! assert_eq!(app.oneshot(unsigned).await?.status(), 401);
//! # Ok(()) }
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use zeroize::Zeroize as _;

use crate::manager::KeyManager;
use crate::secret_scanning::{
    KEY_ID_HEADER, SIGNATURE_HEADER, ScanError, SecretScanning, SecretScanningConfig,
};

/// The router: `POST /` takes GitHub's reports for `manager`'s keys. Mount it with
/// `nest_service` (e.g. at `/api/v1/secret-scanning`); it needs no other layer (its body limit
/// is its own).
pub fn router(manager: KeyManager, config: SecretScanningConfig) -> Router {
    let limit = config.max_body_bytes();
    Router::new()
        .route("/", post(report))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(SecretScanning::new(manager, config))
}

/// `POST /`: one report.
async fn report(
    State(scanning): State<SecretScanning>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(&ScanError::TooLarge {
                limit: scanning.config().max_body_bytes(),
            });
        }
        Err(rejection) => {
            return error_response(&ScanError::Malformed(format!(
                "cannot read the body: {}",
                rejection.body_text()
            )));
        }
    };
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let answer = scanning
        .handle(header(KEY_ID_HEADER), header(SIGNATURE_HEADER), &body)
        .await;
    // The body holds the reported tokens: wipe it when this is its only owner.
    if let Ok(mut owned) = body.try_into_mut() {
        owned.as_mut().zeroize();
    }
    match answer {
        Ok(answer) => match serde_json::to_vec(&answer.feedback) {
            Ok(json) => {
                let mut response = (StatusCode::OK, json).into_response();
                let h = response.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the secret-scanning answer");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        },
        Err(e) => {
            if let ScanError::Keys(source) = &e {
                tracing::error!(error = %source, "a secret-scanning report failed; GitHub will retry");
            }
            error_response(&e)
        }
    }
}

/// `{"error": code, "message": text}` with the error's status.
fn error_response(e: &ScanError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "error": e.code(), "message": e.to_string() });
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
