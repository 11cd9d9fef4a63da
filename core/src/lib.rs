#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// docs.rs (`--cfg docsrs`, see Cargo.toml) marks feature-gated items with their feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

// What may import what: docs/ARCHITECTURE.md, "Layers".
pub mod audit;
pub mod cache;
pub mod client;
pub mod error;
pub mod events;
pub mod hash;
pub mod invalid;
pub mod key;
pub mod manager;
pub mod meter;
pub mod metrics;
pub mod name;
pub mod quota;
mod ratelimit;
pub mod scope;
pub mod store;
pub mod throttle;
pub mod time;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;

#[cfg(feature = "secret-scanning")]
#[cfg_attr(docsrs, doc(cfg(feature = "secret-scanning")))]
pub mod secret_scanning;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod conformance;

pub use audit::{
    Actor, AuditAction, AuditEntry, AuditQuery, MAX_ACTOR_LEN, MAX_AUDIT_PAGE,
    MAX_AUDIT_SUMMARY_LEN, SummaryTooLarge,
};
pub use cache::CacheConfig;
pub use client::{Diagnosis, KeyExpectation, LoadError};
pub use error::{AuthError, Error};
pub use events::{CreditsLevel, EventConfig, EventSink, KeyEvent, QuotaScope};
pub use hash::{HashError, HashParams, Hasher, SecretHash, Verdict};
#[cfg(feature = "http")]
pub use http::Rejection;
pub use invalid::{InvalidValue, ValueKind};
pub use key::{
    ApiKey, CHECK_LEN, CharDescription, Environment, FoundKey, ID_LEN, KeyId, KeyScanner,
    MAX_INPUT_LEN, MalformedKey, MaskedKey, Prefix, RandomError, SCANNER_REGEX, SECRET_LEN,
    find_keys,
};
pub use manager::{
    EventsAccepted, Identity, IssueRequest, IssuedKey, KeyInfo, KeyManager, KeyManagerBuilder,
    KeyStatus, KeyUsage, KeyUsagePage, LeakAction, LeakReport, QUOTA_SETTING_TTL, Requirements,
    RotateOptions, RotatedKey, Tenant, TenantKeys, UsageReport,
};
pub use meter::{LeaseConfig, Metering};
// `self::`: the crate `metrics` (the facade) has the same name as this module.
pub use self::metrics::{CacheResult, HashPurpose, QuotaKind, StoreOp, VerifyOutcome};
pub use name::{MAX_KEY_NAME_LEN, Project};
pub use quota::{Credits, Period, Quota, QuotaUsage, RateLimit, Refill};
pub use ratelimit::RateLimitMode;
pub use scope::{MAX_SCOPES, Scope, ScopeSet};
pub use store::{
    AuditStore, ChangeEvent, Changes, Consumption, Counter, DEFAULT_CHANGE_LOG_LEN, EventClaim,
    KeyChange, KeyLimits, KeyRecord, KeyStore, Lease, ListQuery, RateCells, RecordStore,
    RotateOutcome, RotationConflict, Setting, StoreError, UsageBucket, UsageStore,
};
pub use throttle::{Cause, LogThrottle};
pub use time::{Clock, MAX_EXPIRY, MAX_GRACE, ManualClock, SystemClock, Timestamp, parse_duration};

/// Re-exported so stores implement [`KeyStore`] with the same macro version.
pub use async_trait::async_trait;

/// The workspace README's examples, run as doctests (its axum section needs the `axum`
/// feature, which core's own dev-dependency on itself enables).
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
