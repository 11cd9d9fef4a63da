//! What the SQL stores share about the audit trail (as [`rows`](super::rows) does for
//! records): the columns of `keyward_audit`, how an entry is written to them and read back,
//! and the page query. Each SQL store keeps only its SQL and its driver's row access.

use super::error::StoreError;
use super::rows::{Param, Placeholders, Statement, to_sql_int};
use crate::audit::{AuditEntry, AuditQuery};

/// The audit table's name in every SQL store.
pub const AUDIT_TABLE: &str = "keyward_audit";

/// The columns an append writes, in [`AuditRow::into_params`] order (`seq` is the store's).
pub const AUDIT_INSERT_COLUMNS: &str = "at, actor, action, project, environment, key_id, summary";

/// The columns a page reads, in [`StoredAudit`] order.
pub const AUDIT_COLUMNS: &str = "seq, at, actor, action, project, environment, key_id, summary";

/// An entry as the column values of one append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    params: [Param; 7],
}

impl AuditRow {
    /// The values of `entry` (its `seq` is not written: the store assigns it).
    pub fn from_entry(entry: &AuditEntry) -> Self {
        Self {
            params: [
                Param::Integer(Some(entry.at.unix_millis())),
                Param::Text(Some(entry.actor.as_str().to_owned())),
                Param::Text(Some(entry.action.as_str().to_owned())),
                Param::Text(Some(entry.project.as_str().to_owned())),
                Param::Text(entry.environment.map(|e| e.as_str().to_owned())),
                Param::Text(entry.key_id.map(|k| k.as_str().to_owned())),
                Param::Json(Some(entry.summary_json())),
            ],
        }
    }

    /// The parameters for [`AUDIT_INSERT_COLUMNS`].
    pub fn into_params(self) -> [Param; 7] {
        self.params
    }
}

/// The `INSERT` of one entry with `placeholders`, answering nothing.
///
/// ```
/// use keyward::store::audit_rows::append_statement;
/// use keyward::store::rows::Placeholders;
/// assert!(append_statement(Placeholders::Question).ends_with("VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"));
/// ```
pub fn append_statement(placeholders: Placeholders) -> String {
    let values: Vec<String> = (1..=7).map(|n| placeholders.nth(n)).collect();
    format!(
        "INSERT INTO {AUDIT_TABLE} ({AUDIT_INSERT_COLUMNS}) VALUES ({})",
        values.join(", ")
    )
}

/// The columns of one stored entry, as a driver reads them ([`AUDIT_COLUMNS`] order).
#[derive(Debug, Clone)]
pub struct StoredAudit {
    /// `seq`.
    pub seq: i64,
    /// `at`, Unix milliseconds.
    pub at: i64,
    /// `actor`.
    pub actor: String,
    /// `action`.
    pub action: String,
    /// `project`.
    pub project: String,
    /// `environment`.
    pub environment: Option<String>,
    /// `key_id`.
    pub key_id: Option<String>,
    /// `summary`, JSON text.
    pub summary: String,
}

impl StoredAudit {
    /// The entry, or [`StoreError::Corrupt`] naming the column that cannot be read.
    ///
    /// # Errors
    /// A column that does not hold a valid value.
    pub fn into_entry(self, store: &'static str) -> Result<AuditEntry, StoreError> {
        let seq = self.seq;
        let bad = |column: &str, e: &dyn std::fmt::Display| {
            StoreError::corrupt(
                store,
                format_args!("audit entry {seq}: column {column}: {e}"),
            )
        };
        Ok(AuditEntry {
            seq: u64::try_from(self.seq).map_err(|e| bad("seq", &e))?,
            at: crate::time::Timestamp::from_unix_millis(self.at),
            actor: self.actor.parse().map_err(|e| bad("actor", &e))?,
            action: self.action.parse().map_err(|e| bad("action", &e))?,
            project: self.project.parse().map_err(|e| bad("project", &e))?,
            environment: self
                .environment
                .map(|e| e.parse())
                .transpose()
                .map_err(|e| bad("environment", &e))?,
            key_id: self
                .key_id
                .map(|k| k.parse())
                .transpose()
                .map_err(|e| bad("key_id", &e))?,
            summary: serde_json::from_str(&self.summary).map_err(|e| bad("summary", &e))?,
        })
    }
}

/// The `SELECT` of one page of [`AuditStore::audit`](super::AuditStore::audit): rows of
/// [`AUDIT_COLUMNS`], newest first, only the filters in use in the SQL.
///
/// ```
/// use keyward::AuditQuery;
/// use keyward::store::audit_rows::audit_statement;
/// use keyward::store::rows::Placeholders;
/// let q = AuditQuery::new("web-app".parse()?).before(9).limit(5);
/// let s = audit_statement(&q, Placeholders::Dollar);
/// assert!(s.sql.ends_with("WHERE project = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"));
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
pub fn audit_statement(query: &AuditQuery, placeholders: Placeholders) -> Statement {
    let mut statement = Statement {
        sql: String::new(),
        params: Vec::new(),
    };
    let p = statement.bind(
        placeholders,
        Param::Text(Some(query.project.as_str().to_owned())),
    );
    let mut conditions = vec![format!("project = {p}")];
    if let Some(e) = &query.environment {
        let e = statement.bind(placeholders, Param::Text(Some(e.as_str().to_owned())));
        conditions.push(format!("environment = {e}"));
    }
    if let Some(k) = &query.key_id {
        let k = statement.bind(placeholders, Param::Text(Some(k.as_str().to_owned())));
        conditions.push(format!("key_id = {k}"));
    }
    if let Some(b) = query.before {
        let b = statement.bind(placeholders, Param::Integer(Some(to_sql_int(b))));
        conditions.push(format!("seq < {b}"));
    }
    let limit = statement.bind(
        placeholders,
        Param::Integer(Some(i64::from(query.page_size()))),
    );
    statement.sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM {AUDIT_TABLE} WHERE {} ORDER BY seq DESC LIMIT {limit}",
        conditions.join(" AND ")
    );
    statement
}
