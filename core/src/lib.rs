#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cache;
pub mod client;
pub mod error;
pub mod hash;
pub mod key;
pub mod manager;
pub mod quota;
pub mod scope;
pub mod store;
pub mod time;

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "test-util")]
pub mod conformance;

pub use cache::CacheConfig;
pub use error::{AuthError, Error, InvalidValue, StoreError, ValueKind};
pub use hash::{HashError, HashParams, Hasher, SecretHash, Verdict};
pub use key::{
    ApiKey, CharDescription, Environment, KeyId, MalformedKey, MaskedKey, Prefix, Project,
    RandomError, SCANNER_REGEX,
};
pub use manager::{
    Identity, IssueRequest, IssuedKey, KeyInfo, KeyManager, KeyManagerBuilder, Requirements,
};
pub use quota::{Credits, Period, Quota, QuotaUsage, RateLimit, Refill};
pub use scope::{Scope, ScopeSet};
pub use store::{
    ChangeEvent, Changes, Consumption, KeyChange, KeyLimits, KeyRecord, KeyStore, ListQuery,
    UsageBucket,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp, parse_duration};

/// Re-exported so stores implement [`KeyStore`] with the same macro version.
pub use async_trait::async_trait;

/// The workspace README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
