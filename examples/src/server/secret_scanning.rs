//! GitHub's secret-scanning partner endpoint in the example server: the library's router
//! ([`keyward::axum::secret_scanning::router`]) mounted at [`SECRET_SCANNING`] when the server
//! is given GitHub's public key (`--secret-scanning-public-key FILE`). A correctly signed
//! report revokes the reported keys of this server's store; the next request with one is 401.
//!
//! GitHub's identifier of a key is the SHA-256 of its PEM file in hex, which is the default
//! here; `--secret-scanning-key-id` names it otherwise. Nothing is fetched from GitHub: copy
//! its current keys from `https://api.github.com/meta/public_keys/secret_scanning` into files.

use std::path::Path;

use axum::Router;
use keyward::secret_scanning::{PublicKeys, SecretScanningConfig};
use keyward::{KeyManager, LeakAction};

/// Where the endpoint is mounted (GitHub POSTs to `/api/v1/secret-scanning/`).
pub const SECRET_SCANNING: &str = "/api/v1/secret-scanning";

/// The configuration for one public key read from `pem_file`, under `key_id` or, without
/// one, GitHub's identifier of it (the file's SHA-256 in hex). `flag_only` leaves reported
/// keys working (they are logged, not revoked).
///
/// # Errors
/// The file cannot be read, or is not a P-256 public key in PEM.
pub fn config_from_file(
    pem_file: &Path,
    key_id: Option<String>,
    flag_only: bool,
) -> Result<SecretScanningConfig, String> {
    let pem = std::fs::read_to_string(pem_file)
        .map_err(|e| format!("cannot read {}: {e}", pem_file.display()))?;
    let mut keys = PublicKeys::new();
    let id = match key_id {
        Some(id) => keys.add_pem_with_id(id.clone(), &pem).map(|()| id),
        None => keys.add_pem(&pem),
    }
    .map_err(|e| format!("{}: {e}", pem_file.display()))?;
    tracing::info!(key_id = %id, path = SECRET_SCANNING, "accepting GitHub secret-scanning reports");
    let action = if flag_only {
        LeakAction::Flag
    } else {
        LeakAction::Revoke
    };
    Ok(SecretScanningConfig::new(keys).action(action))
}

/// `app` with the endpoint mounted at [`SECRET_SCANNING`] for `manager`'s keys.
pub fn mount(app: Router, manager: KeyManager, config: SecretScanningConfig) -> Router {
    // nest_service, not nest: axum 0.8's nest would not route `{mount}/` to the nested `/`.
    app.nest_service(
        SECRET_SCANNING,
        keyward::axum::secret_scanning::router(manager, config),
    )
}
