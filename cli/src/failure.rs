//! A command's failure: its message and exit code.

use keyward::Error;
use keyward_cli::OpenStoreError;

/// `verify`: the key was rejected; `doctor`: it is not usable as it is.
pub(crate) const EXIT_REJECTED: u8 = 1;
/// A usage error (bad arguments, unknown id) or an infrastructure error (the store failed).
pub(crate) const EXIT_USAGE: u8 = 2;
/// `doctor --db`: the key is well-formed, but the store does not accept it.
pub(crate) const EXIT_STORE_REFUSES: u8 = 3;

/// A failure that ends the command with a message on stderr and an exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The process's exit code.
    pub code: u8,
    /// What went wrong, printed after `error: `.
    pub message: String,
}

impl Failure {
    /// A usage error (exit code 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = if e.as_auth().is_some() {
            EXIT_REJECTED
        } else {
            EXIT_USAGE
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

impl From<OpenStoreError> for Failure {
    fn from(e: OpenStoreError) -> Self {
        Failure::usage(e.to_string())
    }
}

impl From<keyward::InvalidValue> for Failure {
    fn from(e: keyward::InvalidValue) -> Self {
        Failure::usage(e.to_string())
    }
}
