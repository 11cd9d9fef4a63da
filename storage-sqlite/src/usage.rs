//! Usage counters, their leases, cluster rate limiters and settings in SQLite
//! ([`UsageStore`]; `keyward_usage`, `keyward_rate`, `keyward_settings`; docs/ARCHITECTURE.md,
//! "Metering"). Every write is one `BEGIN IMMEDIATE` transaction.

use keyward::store::rows::{from_sql_int, to_sql_int};
use keyward::{
    AuditEntry, Consumption, Lease, RateCells, StoreError, UsageBucket, UsageStore, async_trait,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::pool::begin_immediate;
use crate::row::backend;
use crate::{STORE, SqliteStore, audit};

/// The largest count a SQLite integer holds: a total beyond it is refused like one beyond
/// the limit.
const MAX_COUNT: u64 = i64::MAX.unsigned_abs();

/// A bucket's `(used, leased)` counts, `(0, 0)` when it has no row.
fn read_counts(conn: &Connection, bucket: &UsageBucket) -> Result<(u64, u64), StoreError> {
    let counts: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT used, leased FROM keyward_usage WHERE counter = ?1 AND period_start = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![bucket.counter, bucket.period_start.unix_millis()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .map_err(backend)?;
    let (used, leased) = counts.unwrap_or((0, 0));
    Ok((
        from_sql_int(STORE, used, "a usage count")?,
        from_sql_int(STORE, leased, "a leased count")?,
    ))
}

/// Writes a bucket's counts (each at most [`MAX_COUNT`]), creating its row if needed; in the
/// caller's transaction.
fn write_counts(
    conn: &Connection,
    bucket: &UsageBucket,
    used: u64,
    leased: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO keyward_usage (counter, period_start, used, leased) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (counter, period_start)
         DO UPDATE SET used = excluded.used, leased = excluded.leased",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            bucket.counter,
            bucket.period_start.unix_millis(),
            to_sql_int(used),
            to_sql_int(leased)
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// A rate limiter's theoretical arrival time, `None` when it has no row.
fn read_tat(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT tat FROM keyward_rate WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row(params![name], |r| r.get(0)).optional())
        .map_err(backend)
}

/// Writes a rate limiter's theoretical arrival time; in the caller's transaction.
fn write_tat(conn: &Connection, name: &str, tat: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO keyward_rate (name, tat) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET tat = excluded.tat",
    )
    .and_then(|mut stmt| stmt.execute(params![name, tat]))
    .map_err(backend)?;
    Ok(())
}

/// Every method that writes runs in one `BEGIN IMMEDIATE` transaction: it takes the
/// database's write lock before its read, so no other connection or process can change the
/// counts (or a rate limiter's TAT) between the read and the write.
#[async_trait]
impl UsageStore for SqliteStore {
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError> {
        let bucket = bucket.clone();
        self.write(move |conn| {
            let tx = begin_immediate(conn)?;
            let (used, leased) = read_counts(&tx, &bucket)?;
            // Leased units count against the limit. SQLite integers are signed: a total
            // beyond i64::MAX is refused like one beyond the limit.
            let cap = limit.min(MAX_COUNT);
            let total = used
                .checked_add(amount)
                .filter(|t| t.checked_add(leased).is_some_and(|all| all <= cap));
            let Some(total) = total else {
                return Ok(Consumption::Refused { used });
            };
            write_counts(&tx, &bucket, total, leased)?;
            tx.commit().map_err(backend)?;
            Ok(Consumption::Granted { used: total })
        })
        .await
    }

    async fn lease(
        &self,
        bucket: &UsageBucket,
        want: u64,
        min: u64,
        limit: u64,
    ) -> Result<Lease, StoreError> {
        let bucket = bucket.clone();
        if want == 0 {
            let (used, leased) = self.read(move |conn| read_counts(conn, &bucket)).await?;
            return Ok(Lease {
                granted: 0,
                used,
                leased,
            });
        }
        self.write(move |conn| {
            let tx = begin_immediate(conn)?;
            let (used, leased) = read_counts(&tx, &bucket)?;
            // Within the limit and i64::MAX.
            let lease = Lease::grant(limit.min(MAX_COUNT), used, leased, want, min);
            if lease.granted > 0 {
                write_counts(&tx, &bucket, used, lease.leased)?;
                tx.commit().map_err(backend)?;
            }
            Ok(lease)
        })
        .await
    }

    async fn settle(
        &self,
        bucket: &UsageBucket,
        spent: u64,
        returned: u64,
    ) -> Result<Lease, StoreError> {
        let bucket = bucket.clone();
        self.write(move |conn| {
            let tx = begin_immediate(conn)?;
            let (used, leased) = read_counts(&tx, &bucket)?;
            let after = (
                used.saturating_add(spent).min(MAX_COUNT),
                leased.saturating_sub(spent.saturating_add(returned)),
            );
            if after != (used, leased) {
                write_counts(&tx, &bucket, after.0, after.1)?;
                tx.commit().map_err(backend)?;
            }
            Ok(Lease {
                granted: 0,
                used: after.0,
                leased: after.1,
            })
        })
        .await
    }

    async fn take_cells(&self, cells: &RateCells, want: u64) -> Result<u64, StoreError> {
        if want == 0 {
            return Ok(0);
        }
        let cells = cells.clone();
        self.write(move |conn| {
            let tx = begin_immediate(conn)?;
            let tat = read_tat(&tx, &cells.name)?;
            let taken = cells.free_at(tat).min(want);
            if taken > 0 {
                write_tat(&tx, &cells.name, cells.tat_after_taking(tat, taken))?;
                tx.commit().map_err(backend)?;
            }
            Ok(taken)
        })
        .await
    }

    async fn return_cells(&self, cells: &RateCells, n: u64) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        let cells = cells.clone();
        self.write(move |conn| {
            let tx = begin_immediate(conn)?;
            // A limiter with no row has nothing taken to give back.
            if let Some(tat) = read_tat(&tx, &cells.name)? {
                write_tat(&tx, &cells.name, cells.tat_after_returning(Some(tat), n))?;
                tx.commit().map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    /// A file on one machine: rate limits stay per process by default.
    fn shared(&self) -> bool {
        false
    }

    async fn release(&self, bucket: &UsageBucket, amount: u64) -> Result<(), StoreError> {
        let bucket = bucket.clone();
        // Amounts beyond i64::MAX release everything.
        let amount = to_sql_int(amount);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE keyward_usage SET used = MAX(used - ?3, 0) WHERE counter = ?1 AND period_start = ?2",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    bucket.counter,
                    bucket.period_start.unix_millis(),
                    amount
                ])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT value FROM keyward_settings WHERE name = ?1")
                .and_then(|mut stmt| stmt.query_row(params![name], |r| r.get(0)).optional())
                .map_err(backend)?;
            text.map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::corrupt(STORE, format!("setting {name}: {e}")))
            })
            .transpose()
        })
        .await
    }

    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        let value = value.map(serde_json::Value::to_string);
        let audit = audit::pending(audit);
        self.write(move |conn| {
            // One transaction: the setting and its audit entry, or neither.
            let tx = begin_immediate(conn)?;
            match value {
                Some(v) => tx
                    .prepare_cached(
                        "INSERT INTO keyward_settings (name, value) VALUES (?1, ?2)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    )
                    .and_then(|mut stmt| stmt.execute(params![name, v])),
                None => tx
                    .prepare_cached("DELETE FROM keyward_settings WHERE name = ?1")
                    .and_then(|mut stmt| stmt.execute(params![name])),
            }
            .map_err(backend)?;
            audit::append(&tx, audit)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError> {
        let bucket = bucket.clone();
        self.read(move |conn| {
            let used: Option<i64> = conn
                .prepare_cached(
                    "SELECT used FROM keyward_usage WHERE counter = ?1 AND period_start = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![bucket.counter, bucket.period_start.unix_millis()],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(backend)?;
            from_sql_int(STORE, used.unwrap_or(0), "a usage count")
        })
        .await
    }
}
