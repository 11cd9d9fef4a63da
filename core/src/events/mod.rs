//! Lifecycle and threshold events for the host (docs/ARCHITECTURE.md, *Events*).
//!
//! - `event`: [`KeyEvent`], what is delivered (never a secret);
//! - `config`: [`EventConfig`], the thresholds and the expiring-key window;
//! - `bus`: delivery to subscribers ([`KeyManager::subscribe_events`](crate::KeyManager::subscribe_events))
//!   and [`EventSink`]s, on background tasks;
//! - `hub`: a manager's event state, and the once-only claims in the store;
//! - `sweep`: the expiring-key sweep.
//!
//! **Where events come from.** `key.issued`, `key.revoked` and `key.rotated` are emitted by
//! the instance that made the change, through its manager: a change made by another process
//! (the CLI, another service) is not seen as a lifecycle event here. `quota.threshold`,
//! `credits.low` and `key.expiring` are cluster-wide: every instance detects them, and a
//! claim in the store ([`UsageStore::consume`](crate::UsageStore::consume) of a
//! [`Counter::EventClaim`](crate::Counter::EventClaim) bucket with limit 1) lets exactly one
//! instance emit each, once per threshold per period (per key and expiry instant for
//! `key.expiring`). An instance with no subscriber and no sink claims nothing.
//!
//! Delivery is at most once: an event whose claim fails in the store, or that a lagging
//! subscriber drops, is not delivered again.

mod bus;
mod config;
mod event;
mod hub;
mod sweep;

pub use bus::EventSink;
pub use config::{CreditsLevel, EventConfig};
pub use event::{KeyEvent, QuotaScope};

pub(crate) use config::{crossed, quota_level};
pub(crate) use hub::EventHub;
pub(crate) use sweep::sweep;
