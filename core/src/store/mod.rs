//! The store contract: what a backend implements, split by concern in the style of
//! object_store and axum-login (docs/ARCHITECTURE.md, "The store contract").
//!
//! - [`RecordStore`]: key records and the change feed;
//! - [`UsageStore`]: usage counters and named settings;
//! - [`AuditStore`]: the audit trail, whose entries the changing methods of the other two
//!   append in the same transaction as their change;
//! - [`KeyStore`]: all three, which is what a [`KeyManager`](crate::KeyManager) takes. It is
//!   implemented for every type that implements the parts, so a store cannot compile
//!   without all of them, and no method fails at run time for being left out.
//!
//! Policy (scopes, expiry, environments, caching, quota periods) lives in core; a store only
//! stores. "Not found" is `Ok(None)`; `Err` always means the backend failed.
//!
//! SQL stores share their row handling through [`rows`]: the column values of a record, the
//! list query and the integer conversions, so that each keeps only its SQL.

mod audit;
pub mod audit_rows;
mod detached;
mod error;
mod lease;
mod record;
mod records;
pub mod rows;
mod timed;
mod usage;

pub use audit::{AuditStore, check_entries};
pub use error::StoreError;
pub use lease::{Lease, RateCells};
pub use record::{KeyChange, KeyLimits, KeyRecord, ListQuery, RotationConflict};
pub use records::{ChangeEvent, Changes, DEFAULT_CHANGE_LOG_LEN, RecordStore, RotateOutcome};
pub use usage::{Consumption, Counter, EventClaim, Setting, UsageBucket, UsageStore};

pub(crate) use detached::detached;
pub(crate) use timed::Timed;

/// A complete key store: [`RecordStore`], [`UsageStore`] and [`AuditStore`]. Implement those
/// three; this trait follows. Object-safe: a service holds an `Arc<dyn KeyStore>`.
///
/// ```
/// fn takes_any_store(_: std::sync::Arc<dyn keyward::KeyStore>) {}
/// takes_any_store(std::sync::Arc::new(keyward_memory::MemoryStore::new()));
/// ```
pub trait KeyStore: RecordStore + UsageStore + AuditStore {}

impl<T: RecordStore + UsageStore + AuditStore + ?Sized> KeyStore for T {}
