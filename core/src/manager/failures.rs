//! Logging the manager's infrastructure failures without flooding the log (see
//! [`LogThrottle`]): a store outage under load is one ERROR line per interval per cause, with
//! the count of the ones suppressed.

use crate::error::Error;
use crate::key::KeyId;
use crate::throttle::{Cause, LogThrottle};

use super::KeyManager;

impl Error {
    /// The logging cause of this error: [`Cause::Store`], [`Cause::Overloaded`], or
    /// [`Cause::Other`].
    pub fn cause(&self) -> Cause {
        match self {
            Error::Store(_) => Cause::Store,
            Error::Overloaded => Cause::Overloaded,
            _ => Cause::Other,
        }
    }
}

impl KeyManager {
    /// Logs a failed operation for operators. A credential outcome ([`Error::Auth`]) and an
    /// admin error (not found, invalid input or state) go to DEBUG, since they are the
    /// client's, not the service's. An infrastructure failure (the store, hashing) goes to
    /// ERROR at most once per [`KeyManagerBuilder::failure_log_interval`] per cause, with
    /// `suppressed` counting the ones not logged since the previous line. Only the key's
    /// public id is logged, never a secret.
    ///
    /// [`KeyManagerBuilder::failure_log_interval`]: super::KeyManagerBuilder::failure_log_interval
    pub fn log_failure(&self, e: &Error, key: Option<&KeyId>, what: &str) {
        match e {
            Error::Auth(_)
            | Error::NotFound(_)
            | Error::Invalid(_)
            | Error::InvalidState { .. } => {
                tracing::debug!(key.id = key.map(tracing::field::display), error = %e, "{what}");
            }
            _ => {
                let cause = e.cause();
                if let Some(suppressed) = self.inner.failure_log.admit(cause) {
                    tracing::error!(
                        key.id = key.map(tracing::field::display),
                        error = %e,
                        %cause,
                        suppressed,
                        "{what}"
                    );
                }
            }
        }
    }

    /// The throttle behind [`KeyManager::log_failure`], for a host's own failure logs.
    pub fn failure_log(&self) -> &LogThrottle {
        &self.inner.failure_log
    }
}
