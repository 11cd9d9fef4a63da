//! Errors: the credential's outcome ([`AuthError`]) and the union of every failure
//! ([`Error`]), which sits above the value types, the hasher and the store contract (whose
//! [`StoreError`] it wraps) (docs/ARCHITECTURE.md, "Layers").
//!
//! No error ever contains a secret or a full key: values presented by a client are described
//! (length, position, character class), not repeated.

use std::fmt;
use std::time::Duration;

use crate::hash::HashError;
use crate::invalid::InvalidValue;
use crate::key::{Environment, KeyId, MalformedKey, Prefix, RandomError};
use crate::metrics::VerifyOutcome;
use crate::name::Project;
use crate::scope::ScopeSet;
use crate::store::{RotationConflict, StoreError};
use crate::time::Timestamp;

/// The outcome of presenting a credential, when it is not accepted.
///
/// Format errors come from the token alone and are specific. An unknown id and a wrong secret
/// are one variant, [`AuthError::Invalid`], so a client cannot tell which ids exist. Revoked,
/// expired, project, scope and quota outcomes are only reported once the secret is proven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credential was presented.
    #[error(
        "no API key was presented: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    )]
    Missing,
    /// The presented text is not a well-formed key.
    #[error("malformed API key: {0}")]
    Malformed(#[from] MalformedKey),
    /// The key belongs to another deployment or product (its prefix differs).
    #[error(
        "this API key has prefix '{found}', but this service issues '{expected}' keys: it belongs to another product or deployment"
    )]
    WrongPrefix {
        /// The prefix this service issues.
        expected: Prefix,
        /// The prefix of the presented key.
        found: Prefix,
    },
    /// The key is for an environment this service does not serve.
    #[error("this is a '{found}' API key, but this service accepts {} keys: use a key of that environment", EnvList(.accepted))]
    WrongEnvironment {
        /// The key's environment.
        found: Environment,
        /// The environments this service accepts.
        accepted: Vec<Environment>,
    },
    /// Unknown id or wrong secret (deliberately indistinguishable).
    #[error(
        "the API key is not valid: it is unknown or its secret is wrong; check that the whole key was copied, or issue a new one"
    )]
    Invalid,
    /// The key was revoked.
    #[error("API key {id} was revoked at {at}; issue a new key")]
    Revoked {
        /// The key's id.
        id: KeyId,
        /// When it was revoked.
        at: Timestamp,
    },
    /// The key has expired.
    #[error("API key {id} expired at {at}; issue a new key or rotate it before expiry")]
    Expired {
        /// The key's id.
        id: KeyId,
        /// When it expired.
        at: Timestamp,
    },
    /// The key belongs to another project than the one this endpoint requires.
    #[error(
        "API key {id} belongs to project '{found}', but this endpoint requires project '{expected}'"
    )]
    WrongProject {
        /// The key's id.
        id: KeyId,
        /// The project required.
        expected: Project,
        /// The key's project.
        found: Project,
    },
    /// The key lacks scopes the endpoint requires.
    #[error("API key {id} lacks the scope(s) {missing} that this endpoint requires")]
    InsufficientScope {
        /// The key's id.
        id: KeyId,
        /// The required scopes the key does not have.
        missing: ScopeSet,
    },
    /// An event quota would be exceeded by this request; nothing of it was counted.
    #[error("the {scope} event quota would be exceeded: {used} of {limit} used this period, {} left, this request needs {requested}; it resets at {resets_at}", limit.saturating_sub(*used))]
    QuotaExceeded {
        /// Whose quota: `"project"` or `"key"`.
        scope: &'static str,
        /// The limit for the period.
        limit: u64,
        /// The amount used in the period.
        used: u64,
        /// The amount this request asked for.
        requested: u64,
        /// When the period ends and the quota resets.
        resets_at: Timestamp,
    },
    /// The key's credits are used up.
    #[error("API key {id} has no credits left{}", match resets_at { Some(t) => format!("; they refill at {t}"), None => String::new() })]
    CreditsExhausted {
        /// The key's id.
        id: KeyId,
        /// When the credits refill, if they do.
        resets_at: Option<Timestamp>,
    },
    /// Too many requests or failed attempts in a short time.
    #[error("too many requests: retry after {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// How long to wait before retrying.
        retry_after: Duration,
    },
    /// More than one credential was presented (e.g. both `Authorization` and `X-API-Key`).
    #[error("more than one API key was presented: send exactly one, in one header")]
    MultipleCredentials,
    /// The key was sent in the URL's query string, where it leaks into logs.
    #[error(
        "API keys are not accepted in the URL query string, where they end up in logs: send it in the Authorization header; then revoke this key, since it may have leaked"
    )]
    KeyInQueryString,
    /// The `Authorization` header uses a scheme other than Bearer or Basic.
    #[error("unsupported Authorization scheme: use 'Bearer <key>'")]
    UnsupportedScheme,
}

struct EnvList<'a>(&'a [Environment]);

impl fmt::Display for EnvList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no");
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(if i + 1 == self.0.len() { " or " } else { ", " })?;
            }
            write!(f, "'{e}'")?;
        }
        Ok(())
    }
}

/// Any failure of a [`KeyManager`](crate::KeyManager) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The credential was not accepted.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An admin operation named a key that does not exist.
    #[error("no key with id {0}")]
    NotFound(KeyId),
    /// An admin operation is not possible in the key's state (e.g. rotating a revoked key).
    #[error("key {id} cannot be changed: {reason}")]
    InvalidState {
        /// The key's id.
        id: KeyId,
        /// Why not.
        reason: &'static str,
    },
    /// A rotation was refused: the key is revoked, expired or already rotated, and the
    /// rotation was not forced (HTTP 409 Conflict). Nothing was changed.
    #[error("key {id} cannot be rotated: {conflict}")]
    RotationConflict {
        /// The key that was to be rotated.
        id: KeyId,
        /// Why not.
        conflict: RotationConflict,
    },
    /// An input value is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// Hashing failed or a stored hash cannot be read.
    #[error(transparent)]
    Hash(HashError),
    /// The random number generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Too much hashing work is queued; try again shortly (HTTP 503).
    #[error("the server is overloaded with key verifications; retry shortly")]
    Overloaded,
}

impl Error {
    /// The credential outcome, if this error is one.
    pub fn as_auth(&self) -> Option<&AuthError> {
        match self {
            Error::Auth(e) => Some(e),
            _ => None,
        }
    }
}

impl From<MalformedKey> for Error {
    fn from(e: MalformedKey) -> Self {
        Error::Auth(AuthError::Malformed(e))
    }
}

impl From<HashError> for Error {
    /// A full hashing queue is [`Error::Overloaded`] (HTTP 503 with a retry hint); every other
    /// hashing failure is [`Error::Hash`].
    fn from(e: HashError) -> Self {
        match e {
            HashError::Overloaded => Error::Overloaded,
            other => Error::Hash(other),
        }
    }
}

impl From<&Error> for VerifyOutcome {
    /// The `outcome` label of a verification that failed with this error (`keyward::metrics`).
    /// Exhaustive on purpose: a new variant needs its label decided here.
    fn from(e: &Error) -> Self {
        match e {
            Error::Auth(auth) => match auth {
                AuthError::Missing => VerifyOutcome::Missing,
                AuthError::Malformed(_)
                | AuthError::MultipleCredentials
                | AuthError::KeyInQueryString
                | AuthError::UnsupportedScheme => VerifyOutcome::Malformed,
                AuthError::WrongPrefix { .. } => VerifyOutcome::WrongPrefix,
                AuthError::WrongEnvironment { .. } => VerifyOutcome::WrongEnvironment,
                AuthError::Invalid => VerifyOutcome::Invalid,
                AuthError::Revoked { .. } => VerifyOutcome::Revoked,
                AuthError::Expired { .. } => VerifyOutcome::Expired,
                AuthError::WrongProject { .. } => VerifyOutcome::WrongProject,
                AuthError::InsufficientScope { .. } => VerifyOutcome::InsufficientScope,
                AuthError::QuotaExceeded { .. } | AuthError::CreditsExhausted { .. } => {
                    VerifyOutcome::Quota
                }
                AuthError::RateLimited { .. } => VerifyOutcome::RateLimited,
            },
            Error::Overloaded => VerifyOutcome::Overloaded,
            Error::Store(_) => VerifyOutcome::StoreError,
            Error::NotFound(_)
            | Error::InvalidState { .. }
            | Error::RotationConflict { .. }
            | Error::Invalid(_)
            | Error::Hash(_)
            | Error::Random(_) => VerifyOutcome::InternalError,
        }
    }
}
