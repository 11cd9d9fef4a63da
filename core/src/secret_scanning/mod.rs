//! GitHub secret-scanning partner reports (feature `secret-scanning`), independent of any web
//! framework: GitHub finds a token matching the host's registered pattern in a public place
//! and POSTs it; [`SecretScanning::handle`] checks the report's signature, proves each token
//! to be one of this service's keys, revokes it (or only flags it, [`LeakAction::Flag`]) and
//! builds GitHub's feedback array. `keyward::axum::secret_scanning::router` (features `axum`
//! and `secret-scanning`) serves it over HTTP.
//!
//! | file | concern |
//! |---|---|
//! | `keys.rs` | [`PublicKeys`]: GitHub's P-256 keys by identifier (PEM, configured; nothing is fetched), the signature check |
//! | `batch.rs` | the body: a JSON array of `{"token", "type", "url", "source"}`; tokens zeroized, never in `Debug` |
//! | `process.rs` | distinct tokens once, parse and checksum, [`KeyManager::report_leak`] a few at a time |
//! | `feedback.rs` | [`Feedback`], [`Label`], [`TokenEcho`]: the answer |
//! | `error.rs` | [`ScanError`] and its HTTP status |
//!
//! **What happens to a report**, in order; a step that refuses changes nothing:
//!
//! 1. a body over [`SecretScanningConfig::max_body`] (2 MiB by default) is 413;
//! 2. a missing `Github-Public-Key-Identifier` or `Github-Public-Key-Signature`, an
//!    identifier with no configured key, or a signature that does not verify (ECDSA P-256,
//!    SHA-256 over the raw body, base64 DER) is 401;
//! 3. a body that is not a JSON array of matches is 400;
//! 4. each distinct token is answered once, in the report's order: a token that does not
//!    parse (shape, checksum) is `false_positive` with no store access; so is a token past
//!    [`MAX_SECRETS_PER_ID`] distinct secrets for one id; every other one goes to
//!    [`KeyManager::report_leak`], which answers a key of another prefix, an unknown id
//!    (one store read, no Argon2) or a wrong secret for a real id (one Argon2) as not this
//!    service's key: `false_positive`, nothing changed. A proven key is revoked (or
//!    flagged) and answered `true_positive`. At most
//!    [`SecretScanningConfig::concurrency`] tokens are checked at once across all reports
//!    (by default the hasher's worker count), so reports never fill the hasher's queue and
//!    a live verification waits for at most one of their hashes;
//! 5. the answer waits for the checks until [`SecretScanningConfig::deadline`] (20 s; GitHub
//!    waits 30): tokens still being checked then are left out of it (GitHub's feedback is
//!    optional) and finished in the background, so a large report of real keys is still
//!    revoked whole;
//! 6. if the store or the hasher fails, the report is 503 and GitHub sends it again; keys
//!    already revoked stay revoked and are answered `true_positive` again.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use base64::Engine as _;
//! use p256::ecdsa::{DerSignature, SigningKey, signature::Signer as _};
//! use p256::elliptic_curve::Generate as _;
//! use p256::pkcs8::{EncodePublicKey as _, LineEnding};
//! use keyward::secret_scanning::{Label, PublicKeys, SecretScanning, SecretScanningConfig};
//! use keyward::{HashParams, IssueRequest, KeyManager, KeyStatus};
//!
//! let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
//!     .serve("dev".parse()?)
//!     .hash_params(HashParams::INSECURE_TEST_ONLY)
//!     .build()?;
//! let leaked = manager.issue(IssueRequest::new("web-app".parse()?, "dev".parse()?)).await?;
//!
//! // GitHub's side (a key pair made for the example).
//! let github = SigningKey::generate();
//! let pem = github.verifying_key().to_public_key_pem(LineEnding::LF)?;
//! let body = serde_json::to_vec(&serde_json::json!([{
//!     "token": leaked.key.expose_secret(), "type": "keyward_api_key",
//!     "url": "https://github.com/octo/app/blob/1a2b/.env", "source": "content",
//! }]))?;
//! let signature: DerSignature = github.sign(&body);
//! let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_bytes());
//!
//! // The service's side.
//! let mut keys = PublicKeys::new();
//! let key_id = keys.add_pem(&pem)?;
//! let scanning = SecretScanning::new(manager.clone(), SecretScanningConfig::new(keys));
//! let answer = scanning.handle(Some(&key_id), Some(&signature), &body).await?;
//! assert_eq!(answer.feedback[0].label, Label::TruePositive);
//! assert_eq!(manager.get(&leaked.key.id()).await?.map(|k| k.status), Some(KeyStatus::Revoked));
//!
//! // Anyone else's report changes nothing.
//! assert_eq!(scanning.handle(Some(&key_id), Some("MEUCIQ=="), &body).await.unwrap_err().status(), 401);
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::manager::{KeyManager, LeakAction};

mod batch;
mod error;
mod feedback;
mod keys;
mod process;

pub use error::ScanError;
pub use feedback::{Feedback, Label, TokenEcho};
pub use keys::{PublicKeys, key_identifier};
pub use process::{MAX_SECRETS_PER_ID, ScanSummary};

/// The header naming GitHub's signing key.
pub const KEY_ID_HEADER: &str = "github-public-key-identifier";
/// The header carrying the signature (base64 DER).
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";
/// The default body limit: 2 MiB.
pub const DEFAULT_MAX_BODY: usize = 2 * 1024 * 1024;
/// The default deadline of an answer: 20 s (GitHub waits 30 s for partners that answer
/// feedback; the rest is left for the network and the body).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);

/// How reports are checked and acted on.
///
/// ```
/// use keyward::LeakAction;
/// use keyward::secret_scanning::{PublicKeys, SecretScanningConfig, TokenEcho};
/// let config = SecretScanningConfig::new(PublicKeys::new())
///     .action(LeakAction::Flag)
///     .echo(TokenEcho::Raw)
///     .max_body(1024 * 1024);
/// assert_eq!(config.max_body_bytes(), 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct SecretScanningConfig {
    keys: PublicKeys,
    action: LeakAction,
    echo: TokenEcho,
    max_body: usize,
    concurrency: Option<usize>,
    deadline: Duration,
}

impl SecretScanningConfig {
    /// Reports signed by one of `keys`; proven keys are revoked; the answer names tokens by
    /// their SHA-256; bodies up to [`DEFAULT_MAX_BODY`].
    pub fn new(keys: PublicKeys) -> Self {
        Self {
            keys,
            action: LeakAction::Revoke,
            echo: TokenEcho::Hash,
            max_body: DEFAULT_MAX_BODY,
            concurrency: None,
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// What to do with a proven key (default [`LeakAction::Revoke`]).
    pub fn action(mut self, action: LeakAction) -> Self {
        self.action = action;
        self
    }

    /// How the answer names tokens (default [`TokenEcho::Hash`]).
    pub fn echo(mut self, echo: TokenEcho) -> Self {
        self.echo = echo;
        self
    }

    /// The largest body read, in bytes; larger is 413.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How many tokens of a report are checked at once (default: the manager's hashing
    /// workers, [`Hasher::workers`](crate::Hasher::workers)); at least 1.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// How long the answer waits for the tokens' checks (default [`DEFAULT_DEADLINE`]).
    /// Tokens not decided by then are left out of the answer (GitHub's feedback is
    /// optional) and their checks go on in the background: a proven key is still revoked.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The body limit in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body
    }

    /// The configured public keys.
    pub fn keys(&self) -> &PublicKeys {
        &self.keys
    }
}

/// The answer to a processed report.
#[derive(Debug)]
#[non_exhaustive]
pub struct ScanAnswer {
    /// GitHub's feedback array, one element per distinct token decided within the
    /// deadline, in the report's order; serialize it as the response body.
    pub feedback: Vec<Feedback>,
    /// The counts.
    pub summary: ScanSummary,
}

/// Handles GitHub secret-scanning reports for one manager. Cheap to clone; clones share the
/// limit on tokens checked at once.
#[derive(Clone)]
pub struct SecretScanning {
    inner: Arc<Inner>,
}

struct Inner {
    config: SecretScanningConfig,
    processor: process::Processor,
}

impl fmt::Debug for SecretScanning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretScanning")
            .field("config", &self.inner.config)
            .field("concurrency", &self.inner.processor.concurrency)
            .finish_non_exhaustive()
    }
}

/// The actor of the audit entries of GitHub's reports.
pub const GITHUB_ACTOR: &str = "github-secret-scanning";

fn scanner_actor() -> crate::audit::Actor {
    // A constant that passes the actor rules: `Actor::new` cannot refuse it (a test checks).
    crate::audit::Actor::new(GITHUB_ACTOR).unwrap_or_else(|_| crate::audit::Actor::system())
}

impl SecretScanning {
    /// A handler of reports for `manager`'s keys; their audit entries are by
    /// [`GITHUB_ACTOR`].
    pub fn new(manager: KeyManager, config: SecretScanningConfig) -> Self {
        let concurrency = config
            .concurrency
            .unwrap_or_else(|| manager.hasher().workers())
            .max(1);
        let processor = process::Processor {
            action: config.action,
            echo: config.echo,
            limiter: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            deadline: config.deadline,
            manager: manager.acting_as(scanner_actor()),
        };
        Self {
            inner: Arc::new(Inner { config, processor }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SecretScanningConfig {
        &self.inner.config
    }

    /// Handles one report: `key_id` and `signature` are the raw values of
    /// [`KEY_ID_HEADER`] and [`SIGNATURE_HEADER`], `body` the raw request body. See the
    /// module docs for the steps.
    ///
    /// # Errors
    /// [`ScanError`], with the HTTP status to answer ([`ScanError::status`]); nothing was
    /// changed, except keys already revoked before a [`ScanError::Keys`] failure.
    pub async fn handle(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<ScanAnswer, ScanError> {
        let config = &self.inner.config;
        if body.len() > config.max_body {
            return Err(ScanError::TooLarge {
                limit: config.max_body,
            });
        }
        if let Err(e) = config.keys.verify(key_id, signature, body) {
            tracing::warn!(reason = e.code(), "refused a secret-scanning report");
            return Err(e);
        }
        let matches = batch::parse_batch(body)?;
        let (feedback, summary) = self.inner.processor.process(matches).await?;
        tracing::info!(
            reported = summary.reported,
            distinct = summary.distinct,
            true_positives = summary.true_positives,
            pending = summary.pending,
            action = ?config.action,
            "processed a secret-scanning report"
        );
        Ok(ScanAnswer { feedback, summary })
    }
}
