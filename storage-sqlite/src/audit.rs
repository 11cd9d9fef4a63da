//! The audit trail in SQLite (`keyward_audit`, schema step 6): appending inside the caller's
//! transaction, and [`AuditStore`]. The size rule
//! ([`MAX_AUDIT_SUMMARY_LEN`](keyward::MAX_AUDIT_SUMMARY_LEN)) is the table's `CHECK`
//! constraint, so a refused entry fails the statement and the transaction of its change.

use keyward::store::audit_rows::{AuditRow, StoredAudit, append_statement, audit_statement};
use keyward::store::rows::{Param, Placeholders, from_sql_int};
use keyward::{AuditEntry, AuditQuery, AuditStore, StoreError, Timestamp, async_trait};
use rusqlite::{Connection, params};

use crate::pool::begin_immediate;
use crate::row::{backend, value};
use crate::{STORE, SqliteStore};

/// Entries as the parameters of their appends (owned, to move onto the blocking pool).
pub(crate) type Pending = Vec<[Param; 7]>;

/// The parameters of `entries`' appends.
pub(crate) fn pending(entries: &[AuditEntry]) -> Pending {
    entries
        .iter()
        .map(|e| AuditRow::from_entry(e).into_params())
        .collect()
}

/// Appends the entries in the caller's transaction; answers the last `seq` (0 for none).
pub(crate) fn append(conn: &Connection, entries: Pending) -> Result<i64, StoreError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut stmt = conn
        .prepare_cached(&append_statement(Placeholders::Question))
        .map_err(backend)?;
    for params in entries {
        stmt.execute(rusqlite::params_from_iter(params.into_iter().map(value)))
            .map_err(backend)?;
    }
    Ok(conn.last_insert_rowid())
}

#[async_trait]
impl AuditStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(action = %entry.action))]
    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let entries = pending(std::slice::from_ref(entry));
        let seq = self
            .write(move |conn| {
                let tx = begin_immediate(conn)?;
                let seq = append(&tx, entries)?;
                tx.commit().map_err(backend)?;
                Ok(seq)
            })
            .await?;
        from_sql_int(STORE, seq, "an audit seq")
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let statement = audit_statement(query, Placeholders::Question);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&statement.sql).map_err(backend)?;
            let params = statement.params.into_iter().map(value);
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(backend)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                let stored = StoredAudit {
                    seq: row.get(0).map_err(backend)?,
                    at: row.get(1).map_err(backend)?,
                    actor: row.get(2).map_err(backend)?,
                    action: row.get(3).map_err(backend)?,
                    project: row.get(4).map_err(backend)?,
                    environment: row.get(5).map_err(backend)?,
                    key_id: row.get(6).map_err(backend)?,
                    summary: row.get(7).map_err(backend)?,
                };
                out.push(stored.into_entry(STORE)?);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64, StoreError> {
        let deleted = self
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM keyward_audit WHERE at < ?1")
                    .and_then(|mut stmt| stmt.execute(params![before.unix_millis()]))
                    .map_err(backend)
            })
            .await?;
        Ok(deleted as u64)
    }
}
