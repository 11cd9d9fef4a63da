//! [`StoreError`]: the store (the backend) failed. It belongs to the store contract, so that
//! stores and the contract need nothing from the error union above them.

use std::fmt;

use crate::key::KeyId;

/// The store (the backend) failed. This is an infrastructure problem (HTTP 503), not a verdict
/// on the credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A key with this id exists already.
    #[error("a key with id {0} already exists in the store")]
    AlreadyExists(KeyId),
    /// The backend failed (connection, I/O, constraint, …).
    #[error("the {store} store failed: {source}")]
    Backend {
        /// Which store.
        store: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store holds data that Keyward cannot read back.
    #[error(
        "the {store} store holds a record that cannot be read ({message}); was it edited by hand?"
    )]
    Corrupt {
        /// Which store.
        store: &'static str,
        /// What could not be read.
        message: String,
    },
}

impl StoreError {
    /// Wraps a backend error, keeping it as the source.
    pub fn backend(
        store: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            store,
            source: source.into(),
        }
    }

    /// A record that cannot be decoded.
    pub fn corrupt(store: &'static str, message: impl fmt::Display) -> Self {
        StoreError::Corrupt {
            store,
            message: message.to_string(),
        }
    }
}
