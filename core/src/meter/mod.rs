//! Metering: how quota and credit units are taken from the store's budgets
//! (docs/ARCHITECTURE.md, "Metering").
//!
//! [`Metering::Leased`] (the default) reserves a chunk of a bucket's remaining budget in the
//! store ([`UsageStore::lease`](crate::UsageStore::lease)), grants from it in memory, and
//! settles what it granted every [`LeaseConfig::settle_interval`] (25 ms): a request does not wait
//! for a store write, and the budget is never over-spent because every unit granted was
//! reserved first. Chunks follow the recent rate and shrink to single units as the budget
//! nears its limit, so the edge stays exact. [`Metering::Direct`] writes every request
//! through [`UsageStore::consume`](crate::UsageStore::consume), as before.

mod allotment;
mod config;
mod pool;

pub use config::{LeaseConfig, Metering};
pub(crate) use pool::{Meter, Returning, Taken};
