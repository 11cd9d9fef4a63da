//! The store contract: what a backend implements, split by concern in the style of
//! object_store and axum-login (docs/ARCHITECTURE.md, "The store contract").
//!
//! - [`RecordStore`]: key records and the change feed;
//! - [`UsageStore`]: usage counters and named settings;
//! - [`KeyStore`]: both, which is what a [`KeyManager`](crate::KeyManager) takes. It is
//!   implemented for every type that implements the parts, so a store cannot compile
//!   without all of them, and no method fails at run time for being left out.
//!
//! Policy (scopes, expiry, environments, caching, quota periods) lives in core; a store only
//! stores. "Not found" is `Ok(None)`; `Err` always means the backend failed.
//!
//! SQL stores share their row handling through [`rows`]: the column values of a record, the
//! list query and the integer conversions, so that each keeps only its SQL.

mod error;
mod record;
mod records;
pub mod rows;
mod usage;

pub use error::StoreError;
pub use record::{KeyChange, KeyLimits, KeyRecord, ListQuery, RotationConflict};
pub use records::{ChangeEvent, Changes, DEFAULT_CHANGE_LOG_LEN, RecordStore, RotateOutcome};
pub use usage::{Consumption, Counter, EventClaim, Setting, UsageBucket, UsageStore};

/// A complete key store: [`RecordStore`] and [`UsageStore`]. Implement those two; this trait
/// follows. Object-safe: a service holds an `Arc<dyn KeyStore>`.
///
/// ```
/// fn takes_any_store(_: std::sync::Arc<dyn keyward::KeyStore>) {}
/// takes_any_store(std::sync::Arc::new(keyward_memory::MemoryStore::new()));
/// ```
pub trait KeyStore: RecordStore + UsageStore {}

impl<T: RecordStore + UsageStore + ?Sized> KeyStore for T {}
