//! The routes of a small ingestion service protected by Keyward, written as the README's
//! "Protecting axum routes" section shows, with nothing copied from Keyward's examples.

use axum::routing::{get, post};
use axum::{Json, Router};
use keyward::KeyManager;
use keyward::axum::{KeywardLayer, VerifiedKey};

/// `GET /ping` needs a key with scope `read`; `POST /ingest` one with scope `write`.
pub fn app(keys: KeyManager) -> Router {
    let auth = KeywardLayer::new(keys).realm("downstream");
    Router::new()
        .route(
            "/ping",
            get(ping).route_layer(auth.clone().require(["read"])),
        )
        .route("/ingest", post(ingest).route_layer(auth.require(["write"])))
}

async fn ping() -> &'static str {
    "pong"
}

async fn ingest(VerifiedKey(who): VerifiedKey) -> Result<Json<serde_json::Value>, keyward::Error> {
    Ok(Json(serde_json::json!({
        "project": who.project.as_str(),
        "environment": who.environment.as_str(),
    })))
}
