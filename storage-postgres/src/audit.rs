//! The audit trail in PostgreSQL (`keyward_audit`, migration 4): appending inside the
//! caller's transaction, and [`AuditStore`]. The size rule
//! ([`MAX_AUDIT_SUMMARY_LEN`](keyward::MAX_AUDIT_SUMMARY_LEN)) is the table's `CHECK`
//! constraint, so a refused entry fails the statement and the transaction of its change.
//!
//! `seq` is an identity column: it increases in the order entries are inserted, which under
//! concurrent transactions may differ a little from the order they commit, so a reader paging
//! while changes are made may see an entry appear behind the page it has read. An audit view
//! accepts that; nothing relies on it for correctness.

use keyward::store::audit_rows::{AuditRow, StoredAudit, append_statement, audit_statement};
use keyward::store::rows::{Placeholders, from_sql_int};
use keyward::{AuditEntry, AuditQuery, AuditStore, StoreError, Timestamp, async_trait};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::row::arguments;
use crate::{PostgresStore, STORE, backend};

/// Appends the entries in the caller's transaction; answers the last `seq` (0 for none).
pub(crate) async fn append(
    tx: &mut PgConnection,
    entries: &[AuditEntry],
) -> Result<i64, StoreError> {
    let sql = format!("{} RETURNING seq", append_statement(Placeholders::Dollar));
    let mut last = 0;
    for e in entries {
        let params = AuditRow::from_entry(e).into_params().to_vec();
        last = sqlx::query_scalar_with(AssertSqlSafe(sql.clone()), arguments(params)?)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
    }
    Ok(last)
}

#[async_trait]
impl AuditStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(action = %entry.action))]
    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(backend)?;
        let seq = append(&mut conn, std::slice::from_ref(entry)).await?;
        from_sql_int(STORE, seq, "an audit seq")
    }

    #[tracing::instrument(skip_all)]
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let statement = audit_statement(query, Placeholders::Dollar);
        let rows = sqlx::query_with(AssertSqlSafe(statement.sql), arguments(statement.params)?)
            .fetch_all(self.pool())
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let column =
                    |e: sqlx::Error| StoreError::corrupt(STORE, format_args!("audit: {e}"));
                StoredAudit {
                    seq: row.try_get(0).map_err(column)?,
                    at: row.try_get(1).map_err(column)?,
                    actor: row.try_get(2).map_err(column)?,
                    action: row.try_get(3).map_err(column)?,
                    project: row.try_get(4).map_err(column)?,
                    environment: row.try_get(5).map_err(column)?,
                    key_id: row.try_get(6).map_err(column)?,
                    summary: row.try_get(7).map_err(column)?,
                }
                .into_entry(STORE)
            })
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn prune_audit(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM keyward_audit WHERE at < $1")
            .bind(before.unix_millis())
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }
}
