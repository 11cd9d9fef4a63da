//! The audit trail's values (docs/ARCHITECTURE.md, "The audit trail"): who made a change
//! ([`Actor`]), what kind of change it was ([`AuditAction`]), the entry a store appends in the
//! same transaction as the change ([`AuditEntry`]) and the page a reader asks for
//! ([`AuditQuery`]).
//!
//! An entry names the key, its project and environment, the actor and a summary of what
//! changed; it never holds a secret or a hash. The store contract for it is
//! [`AuditStore`](crate::AuditStore).

mod actor;
mod entry;
mod query;

pub use actor::{Actor, MAX_ACTOR_LEN};
pub use entry::{AuditAction, AuditEntry, MAX_AUDIT_SUMMARY_LEN, SummaryTooLarge};
pub use query::{AuditQuery, MAX_AUDIT_PAGE};
