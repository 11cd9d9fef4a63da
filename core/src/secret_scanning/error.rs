//! Why a report was refused, and the HTTP status each reason is answered with. No message
//! contains a token: a report's tokens are secrets.

use crate::error::Error;

/// A secret-scanning report refused as a whole (nothing was changed), or a bad
/// configuration.
///
/// ```
/// use keyward::secret_scanning::ScanError;
/// assert_eq!(ScanError::BadSignature.status(), 401);
/// assert_eq!(ScanError::TooLarge { limit: 10 }.status(), 413);
/// assert_eq!(ScanError::BadSignature.code(), "bad_signature");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// `Github-Public-Key-Identifier` or `Github-Public-Key-Signature` is missing (401).
    #[error(
        "the report is not signed: the Github-Public-Key-Identifier and Github-Public-Key-Signature headers are required"
    )]
    MissingSignature,
    /// No public key is configured under the report's key identifier (401). Add GitHub's
    /// current keys to the configuration.
    #[error("the report is signed with a key identifier this service does not know")]
    UnknownKey,
    /// The signature is not base64 DER, or does not verify over the body (401).
    #[error("the report's signature does not verify")]
    BadSignature,
    /// The body is larger than the configured limit (413).
    #[error("the report is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not a JSON array of `{"token", "type", "url", "source"}` objects (400).
    /// The message names the position, never the content.
    #[error("the report is not a JSON array of token matches: {0}")]
    Malformed(String),
    /// The store or the hasher failed while the batch was processed (503): GitHub sends the
    /// report again later; what was already revoked stays revoked (revoking is idempotent).
    #[error("the report could not be processed: {0}")]
    Keys(#[source] Error),
    /// The configuration is invalid (a public key that is not P-256 PEM, a bad identifier).
    #[error("invalid secret-scanning configuration: {0}")]
    Config(String),
}

impl ScanError {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingSignature | Self::UnknownKey | Self::BadSignature => 401,
            Self::TooLarge { .. } => 413,
            Self::Malformed(_) => 400,
            Self::Keys(_) => 503,
            Self::Config(_) => 500,
        }
    }

    /// A short machine-readable code (`missing_signature`, `unknown_key`, `bad_signature`,
    /// `body_too_large`, `malformed`, `unavailable`, `config`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::TooLarge { .. } => "body_too_large",
            Self::Malformed(_) => "malformed",
            Self::Keys(_) => "unavailable",
            Self::Config(_) => "config",
        }
    }
}
