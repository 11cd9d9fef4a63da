//! GitHub secret-scanning reports against the real `keyward-server` binary over HTTP, with a
//! P-256 key pair the test makes (GitHub's side): a correctly signed report revokes the key
//! and the next request with it is 401; a wrongly signed one changes nothing; a look-alike of
//! a real key revokes nothing; `--secret-scanning-key-id` and `--secret-scanning-flag-only`;
//! without `--secret-scanning-public-key` there is no endpoint. Keys are issued by another
//! manager on the same SQLite file, as the admin CLI does.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyward::conformance::{assert_keys_hidden, with_wrong_secret};
use keyward::secret_scanning::key_identifier;
use keyward::{HashParams, IssueRequest, KeyManager};
use keyward_cli::open_store;
use keyward_examples::server;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Kills the server (a child this test started) when the test ends, however it ends.
struct Server {
    child: Option<Child>,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Server {
    /// Starts `keyward-server` on `db` with `args`, on a free port; waits for its address.
    fn start(dir: &Path, db: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyward-server"))
            .current_dir(dir)
            .args(["--db", db, "--addr", "127.0.0.1:0", "--env", "dev"])
            .args(args)
            .env("KEYWARD_INSECURE_FAST_HASH", "1")
            .env("RUST_LOG", "debug")
            .env_remove("KEYWARD_DB")
            .env_remove("KEYWARD_PREFIX")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address on stdout: {line:?}"))
            .to_owned();
        Self {
            child: Some(child),
            base,
        }
    }

    /// Stops the server and answers what it logged.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    async fn ping(&self, key: &str) -> StatusCode {
        reqwest::Client::new()
            .get(format!("{}{}", self.base, server::PING))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// POSTs a report with the two headers; answers the status and the JSON body.
    async fn report(&self, body: &[u8], key_id: &str, signature: &str) -> (StatusCode, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/secret-scanning/", self.base))
            .header("content-type", "application/json")
            .header("Github-Public-Key-Identifier", key_id)
            .header("Github-Public-Key-Signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// GitHub's side: a signing key, its PEM written to `dir/github.pem`.
struct Github {
    key: SigningKey,
    pem: String,
    path: String,
}

impl Github {
    fn new(dir: &Path) -> Self {
        let key = SigningKey::generate();
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let path = dir.join("github.pem");
        std::fs::write(&path, &pem).unwrap();
        Self {
            key,
            pem,
            path: path.display().to_string(),
        }
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature: DerSignature = self.key.sign(body);
        STANDARD.encode(signature.as_bytes())
    }
}

/// Issues a `read` key with a manager of its own on `db` (as the CLI does).
async fn issue(db: &str) -> String {
    let manager = KeyManager::builder_arc(open_store(db).await.unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let req = IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(["read"])
        .unwrap();
    manager
        .issue(req)
        .await
        .unwrap()
        .key
        .expose_secret()
        .to_owned()
}

fn report_of(tokens: &[&str]) -> Vec<u8> {
    let matches: Vec<Value> = tokens
        .iter()
        .map(|t| {
            json!({
                "token": t,
                "type": "keyward_api_key",
                "url": "https://github.com/octo/app/blob/1a2b/.env",
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&matches).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_report_revokes_the_key_and_the_next_request_is_401() {
    let dir = tempfile::tempdir().unwrap();
    let db = &format!("sqlite:{}", dir.path().join("keys.db").display());
    let leaked = issue(db).await;
    let other = issue(db).await;
    let github = Github::new(dir.path());
    let server = Server::start(
        dir.path(),
        db,
        &["--secret-scanning-public-key", &github.path],
    );
    let key_id = key_identifier(github.pem.as_bytes());
    assert_eq!(server.ping(&leaked).await, StatusCode::OK);

    // Wrongly signed: 401, nothing changes.
    let body = report_of(&[&leaked]);
    let (status, answer) = server.report(&body, &key_id, &github.sign(b"[]")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"], "bad_signature");
    assert_eq!(server.ping(&leaked).await, StatusCode::OK);

    // Correctly signed: the leaked key is revoked; a look-alike of the other changes nothing.
    let look_alike = with_wrong_secret(&other, 5);
    let body = report_of(&[&leaked, &look_alike]);
    let (status, answer) = server.report(&body, &key_id, &github.sign(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!([
            {"token_hash": key_identifier(leaked.as_bytes()), "token_type": "keyward_api_key", "label": "true_positive"},
            {"token_hash": key_identifier(look_alike.as_bytes()), "token_type": "keyward_api_key", "label": "false_positive"},
        ])
    );
    assert_eq!(server.ping(&leaked).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.ping(&other).await, StatusCode::OK);

    let logged = server.stop();
    assert!(
        logged.contains("leaked API key reported: revoked"),
        "{logged}"
    );
    assert_keys_hidden(
        "keyward-server's log",
        &logged,
        &[&leaked, &other, &look_alike],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_id_option_names_the_key_and_flag_only_revokes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = &format!("sqlite:{}", dir.path().join("keys.db").display());
    let leaked = issue(db).await;
    let github = Github::new(dir.path());
    let server = Server::start(
        dir.path(),
        db,
        &[
            "--secret-scanning-public-key",
            &github.path,
            "--secret-scanning-key-id",
            "github-2026",
            "--secret-scanning-flag-only",
        ],
    );
    let body = report_of(&[&leaked]);
    let sig = github.sign(&body);
    // The file's hash is not the identifier now.
    let (status, answer) = server
        .report(&body, &key_identifier(github.pem.as_bytes()), &sig)
        .await;
    assert_eq!(
        (status, &answer["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unknown_key"))
    );
    let (status, answer) = server.report(&body, "github-2026", &sig).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer[0]["label"], "true_positive");
    assert_eq!(
        server.ping(&leaked).await,
        StatusCode::OK,
        "flagged, not revoked"
    );
    let logged = server.stop();
    assert!(logged.contains("flagged, not revoked"), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_key_there_is_no_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = &format!("sqlite:{}", dir.path().join("keys.db").display());
    let server = Server::start(dir.path(), db, &[]);
    let (status, _) = server.report(b"[]", "x", "y").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn a_public_key_file_that_is_not_pem_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("bad.pem");
    std::fs::write(&pem, "not a key").unwrap();
    let db = format!("sqlite:{}", dir.path().join("keys.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_keyward-server"))
        .args(["--db", &db, "--addr", "127.0.0.1:0"])
        .args(["--secret-scanning-public-key", &pem.display().to_string()])
        .env("KEYWARD_INSECURE_FAST_HASH", "1")
        .env_remove("KEYWARD_DB")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a P-256 public key"), "{stderr}");
    assert!(out.stdout.is_empty(), "refused before listening");
}
