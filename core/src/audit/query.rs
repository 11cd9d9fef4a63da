//! [`AuditQuery`]: one page of a project's audit trail, newest first.

use super::entry::AuditEntry;
use crate::key::{Environment, KeyId};
use crate::name::Project;

/// The most entries one page of the audit trail holds.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Which audit entries to read: one project's (optionally one environment's, one key's),
/// newest first, in pages. Pass the `seq` of a page's last entry as `before` for the next.
///
/// ```
/// use keyward::AuditQuery;
/// let q = AuditQuery::new("web-app".parse()?).key("7Kq2mZ9xA1bC".parse()?).before(42).limit(20);
/// assert_eq!((q.before, q.limit), (Some(42), 20));
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries of this project.
    pub project: Project,
    /// Only entries of this environment (project-level entries, which have none, are left
    /// out then).
    pub environment: Option<Environment>,
    /// Only entries of this key.
    pub key_id: Option<KeyId>,
    /// Only entries with a smaller `seq` (the previous page's last).
    pub before: Option<u64>,
    /// At most this many entries (stores cap it at [`MAX_AUDIT_PAGE`]).
    pub limit: u32,
}

impl AuditQuery {
    /// The newest 100 entries of `project`.
    pub fn new(project: Project) -> Self {
        Self {
            project,
            environment: None,
            key_id: None,
            before: None,
            limit: 100,
        }
    }

    /// Only entries of `environment`.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Only entries of the key `id`.
    #[must_use]
    pub fn key(mut self, id: KeyId) -> Self {
        self.key_id = Some(id);
        self
    }

    /// Only entries older than `seq`.
    #[must_use]
    pub fn before(mut self, seq: u64) -> Self {
        self.before = Some(seq);
        self
    }

    /// At most `n` entries.
    #[must_use]
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = n;
        self
    }

    /// The page size a store uses: `limit`, at most [`MAX_AUDIT_PAGE`].
    pub fn page_size(&self) -> u32 {
        self.limit.min(MAX_AUDIT_PAGE)
    }

    /// Whether `entry` passes the filters and lies before `before` (the page size aside).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        entry.project == self.project
            && self
                .environment
                .is_none_or(|e| entry.environment == Some(e))
            && self.key_id.is_none_or(|k| entry.key_id == Some(k))
            && self.before.is_none_or(|b| entry.seq < b)
    }
}
