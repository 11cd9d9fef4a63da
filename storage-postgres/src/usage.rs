//! Usage counters, their leases, cluster rate limiters and settings in PostgreSQL
//! ([`UsageStore`]; `keyward_usage`, `keyward_rate`, `keyward_settings`; docs/ARCHITECTURE.md,
//! "Metering").

use keyward::store::rows::{from_sql_int, to_sql_int};
use keyward::{
    AuditEntry, Consumption, Lease, RateCells, StoreError, UsageBucket, UsageStore, async_trait,
};

use crate::{PostgresStore, STORE, audit, backend};

/// Leased units count against the limit: `used + leased + amount <= limit`. `$3 <= $4` is
/// checked before and `leased` is at most `i64::MAX`, so `$4 - amount - leased` never
/// overflows, and neither does the sum. Refused: no row comes back.
const CONSUME: &str = "INSERT INTO keyward_usage AS u (counter, period_start, used)
    VALUES ($1, $2, $3)
    ON CONFLICT (counter, period_start)
    DO UPDATE SET used = u.used + EXCLUDED.used WHERE u.used <= $4 - EXCLUDED.used - u.leased
    RETURNING used";
/// A bucket's row, so that [`LOCK_USAGE`] finds one to lock (a new row counts nothing).
const ENSURE_USAGE: &str = "INSERT INTO keyward_usage (counter, period_start, used)
    VALUES ($1, $2, 0)
    ON CONFLICT (counter, period_start) DO NOTHING";
/// The newest committed counts, locked until the transaction ends (READ COMMITTED).
const LOCK_USAGE: &str = "SELECT used, leased FROM keyward_usage
    WHERE counter = $1 AND period_start = $2 FOR UPDATE";
const USAGE_COUNTS: &str =
    "SELECT used, leased FROM keyward_usage WHERE counter = $1 AND period_start = $2";
const SET_LEASED: &str =
    "UPDATE keyward_usage SET leased = $3 WHERE counter = $1 AND period_start = $2";
/// `used += $3` (stopping at i64::MAX), `leased -= $4` (stopping at zero), in one statement:
/// the row lock of the upsert orders it with every other change of the bucket. `$3` and `$4`
/// are at most i64::MAX, so neither expression overflows.
const SETTLE: &str = "INSERT INTO keyward_usage AS u (counter, period_start, used)
    VALUES ($1, $2, $3)
    ON CONFLICT (counter, period_start) DO UPDATE SET
        used = CASE WHEN u.used > 9223372036854775807 - EXCLUDED.used THEN 9223372036854775807
                    ELSE u.used + EXCLUDED.used END,
        leased = GREATEST(u.leased - $4, 0)
    RETURNING used, leased";
/// A new rate limiter's row holds now as its TAT, which [`keyward::RateCells`] treats as a
/// limiter never used (a TAT in the past is one).
const ENSURE_RATE: &str =
    "INSERT INTO keyward_rate (name, tat) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
const LOCK_RATE: &str = "SELECT tat FROM keyward_rate WHERE name = $1 FOR UPDATE";
const SET_RATE: &str = "UPDATE keyward_rate SET tat = $2 WHERE name = $1";
/// The largest count a bigint holds: a total beyond it is refused like one beyond the limit.
const MAX_COUNT: u64 = i64::MAX.unsigned_abs();
/// Never below zero; `$3` is at most `i64::MAX`, so the subtraction cannot overflow.
const RELEASE: &str = "UPDATE keyward_usage SET used = GREATEST(used - $3, 0)
    WHERE counter = $1 AND period_start = $2";
const GET_SETTING: &str = "SELECT value FROM keyward_settings WHERE name = $1";
const PUT_SETTING: &str = "INSERT INTO keyward_settings (name, value) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value";
const DELETE_SETTING: &str = "DELETE FROM keyward_settings WHERE name = $1";
const USAGE: &str = "SELECT used FROM keyward_usage WHERE counter = $1 AND period_start = $2";

/// A bucket's `(used, leased)` as read from its row.
fn counts_of((used, leased): (i64, i64)) -> Result<(u64, u64), StoreError> {
    Ok((
        from_sql_int(STORE, used, "a usage count")?,
        from_sql_int(STORE, leased, "a leased count")?,
    ))
}

#[async_trait]
impl UsageStore for PostgresStore {
    /// One READ COMMITTED transaction: the bucket's row is created if missing, then locked
    /// (`SELECT … FOR UPDATE`) while the grant is decided and written, so leases from every
    /// instance on the database serialize on it and never over-reserve.
    #[tracing::instrument(skip_all, fields(counter = %bucket.counter, want, min, limit))]
    async fn lease(
        &self,
        bucket: &UsageBucket,
        want: u64,
        min: u64,
        limit: u64,
    ) -> Result<Lease, StoreError> {
        let (counter, start) = (&bucket.counter, bucket.period_start.unix_millis());
        if want == 0 {
            let counts: Option<(i64, i64)> = sqlx::query_as(USAGE_COUNTS)
                .bind(counter)
                .bind(start)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
            let (used, leased) = counts_of(counts.unwrap_or((0, 0)))?;
            return Ok(Lease {
                granted: 0,
                used,
                leased,
            });
        }
        let mut tx = self.begin_read_committed().await?;
        sqlx::query(ENSURE_USAGE)
            .bind(counter)
            .bind(start)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let counts: (i64, i64) = sqlx::query_as(LOCK_USAGE)
            .bind(counter)
            .bind(start)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let (used, leased) = counts_of(counts)?;
        // Within the limit and i64::MAX.
        let lease = Lease::grant(limit.min(MAX_COUNT), used, leased, want, min);
        if lease.granted > 0 {
            sqlx::query(SET_LEASED)
                .bind(counter)
                .bind(start)
                .bind(to_sql_int(lease.leased))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(lease)
    }

    #[tracing::instrument(skip_all, fields(counter = %bucket.counter, spent, returned))]
    async fn settle(
        &self,
        bucket: &UsageBucket,
        spent: u64,
        returned: u64,
    ) -> Result<Lease, StoreError> {
        let counts: (i64, i64) = sqlx::query_as(SETTLE)
            .bind(&bucket.counter)
            .bind(bucket.period_start.unix_millis())
            .bind(to_sql_int(spent))
            .bind(to_sql_int(spent.saturating_add(returned)))
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        let (used, leased) = counts_of(counts)?;
        Ok(Lease {
            granted: 0,
            used,
            leased,
        })
    }

    /// One READ COMMITTED transaction: the limiter's row is created if missing, then locked
    /// while [`RateCells`] decides and the new TAT is written.
    #[tracing::instrument(skip_all, fields(limiter = %cells.name, want))]
    async fn take_cells(&self, cells: &RateCells, want: u64) -> Result<u64, StoreError> {
        if want == 0 {
            return Ok(0);
        }
        let mut tx = self.begin_read_committed().await?;
        sqlx::query(ENSURE_RATE)
            .bind(&cells.name)
            .bind(cells.now_micros)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let tat: i64 = sqlx::query_scalar(LOCK_RATE)
            .bind(&cells.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let taken = cells.free_at(Some(tat)).min(want);
        if taken > 0 {
            sqlx::query(SET_RATE)
                .bind(&cells.name)
                .bind(cells.tat_after_taking(Some(tat), taken))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(taken)
    }

    #[tracing::instrument(skip_all, fields(limiter = %cells.name, n))]
    async fn return_cells(&self, cells: &RateCells, n: u64) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        let mut tx = self.begin_read_committed().await?;
        let tat: Option<i64> = sqlx::query_scalar(LOCK_RATE)
            .bind(&cells.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        // A limiter with no row has nothing taken to give back.
        if let Some(tat) = tat {
            sqlx::query(SET_RATE)
                .bind(&cells.name)
                .bind(cells.tat_after_returning(Some(tat), n))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// A database server: other instances share its counters, so rate limits are
    /// cluster-wide by default.
    fn shared(&self) -> bool {
        true
    }

    #[tracing::instrument(skip_all, fields(counter = %bucket.counter, amount, limit))]
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError> {
        // Counts are bigint: a limit above i64::MAX is i64::MAX (no count can pass it).
        let limit = to_sql_int(limit);
        let amount = match i64::try_from(amount) {
            Ok(a) if a <= limit => a,
            _ => {
                return Ok(Consumption::Refused {
                    used: self.usage(bucket).await?,
                });
            }
        };
        let granted: Option<i64> = sqlx::query_scalar(CONSUME)
            .bind(&bucket.counter)
            .bind(bucket.period_start.unix_millis())
            .bind(amount)
            .bind(limit)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        match granted {
            Some(used) => Ok(Consumption::Granted {
                used: from_sql_int(STORE, used, "a usage count")?,
            }),
            // A fresh statement (a fresh snapshot): sees the total that refused us.
            None => Ok(Consumption::Refused {
                used: self.usage(bucket).await?,
            }),
        }
    }

    #[tracing::instrument(skip_all, fields(counter = %bucket.counter, amount))]
    async fn release(&self, bucket: &UsageBucket, amount: u64) -> Result<(), StoreError> {
        sqlx::query(RELEASE)
            .bind(&bucket.counter)
            .bind(bucket.period_start.unix_millis())
            .bind(to_sql_int(amount))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(setting = name))]
    async fn get_setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        sqlx::query_scalar(GET_SETTING)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    #[tracing::instrument(skip_all, fields(setting = name))]
    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let q = match value {
            Some(v) => sqlx::query(PUT_SETTING).bind(name).bind(v),
            None => sqlx::query(DELETE_SETTING).bind(name),
        };
        let mut tx = self.pool.begin().await.map_err(backend)?;
        q.execute(&mut *tx).await.map_err(backend)?;
        audit::append(&mut tx, audit).await?;
        tx.commit().await.map_err(backend)
    }

    #[tracing::instrument(skip_all, fields(counter = %bucket.counter))]
    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError> {
        let used: Option<i64> = sqlx::query_scalar(USAGE)
            .bind(&bucket.counter)
            .bind(bucket.period_start.unix_millis())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        used.map_or(Ok(0), |u| from_sql_int(STORE, u, "a usage count"))
    }
}
