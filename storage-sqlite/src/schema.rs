//! Versioned schema migrations, applied in order; `PRAGMA user_version` is the version.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::SqliteError;

/// The schema steps, oldest first. Step `i` takes the database from version `i` to `i + 1`.
/// Never edit a released step: append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: keys, the change log and usage counters.
    "CREATE TABLE keys (
        id           TEXT    NOT NULL PRIMARY KEY,
        prefix       TEXT    NOT NULL,
        project      TEXT    NOT NULL,
        environment  TEXT    NOT NULL,
        scopes       TEXT    NOT NULL,          -- space-separated scope names
        name         TEXT    NOT NULL,
        metadata     TEXT,                      -- JSON, NULL when absent
        created_at   INTEGER NOT NULL,          -- unix milliseconds
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER,
        secret_hash  TEXT    NOT NULL,          -- Argon2id PHC string, never the secret
        rotated_from TEXT,
        limits       TEXT    NOT NULL DEFAULT '{}'  -- JSON of KeyLimits
    ) WITHOUT ROWID;
    CREATE INDEX keys_by_project ON keys (project, environment, created_at, id);
    CREATE INDEX keys_by_created ON keys (created_at, id);
    CREATE TABLE changes (
        revision INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id   TEXT NOT NULL
    );
    CREATE TABLE usage (
        counter      TEXT    NOT NULL,
        period_start INTEGER NOT NULL,
        used         INTEGER NOT NULL,
        PRIMARY KEY (counter, period_start)
    ) WITHOUT ROWID;",
    // 2: named settings (project quotas).
    "CREATE TABLE settings (
        name  TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL                     -- JSON
    ) WITHOUT ROWID;",
    // 3: the tables and indexes take the names the PostgreSQL store uses. RENAME keeps the
    // rows, and the change log's AUTOINCREMENT counter (its sqlite_sequence row follows the
    // table), so revisions go on from where they were.
    "ALTER TABLE keys RENAME TO keyward_keys;
    ALTER TABLE changes RENAME TO keyward_changes;
    ALTER TABLE usage RENAME TO keyward_usage;
    ALTER TABLE settings RENAME TO keyward_settings;
    DROP INDEX keys_by_project;
    CREATE INDEX keyward_keys_project_environment_created
        ON keyward_keys (project, environment, created_at, id);
    DROP INDEX keys_by_created;
    CREATE INDEX keyward_keys_created ON keyward_keys (created_at, id);",
    // 4: the successor of a rotated key, so that "already rotated" is known in one read.
    // Keys rotated before this step get their latest successor (by creation) recorded.
    "ALTER TABLE keyward_keys ADD COLUMN rotated_to TEXT;
    UPDATE keyward_keys SET rotated_to = successor.id
    FROM (
        SELECT rotated_from, id, MAX(created_at) FROM keyward_keys
        WHERE rotated_from IS NOT NULL GROUP BY rotated_from
    ) AS successor
    WHERE keyward_keys.id = successor.rotated_from;",
    // 5: a page of one project's keys (all environments) is read in index order, as PostgreSQL
    // does: without it, every page sorted the whole project (issue 13, D5).
    "CREATE INDEX keyward_keys_project_created ON keyward_keys (project, created_at, id);",
    // 6: the audit trail (issue 16). Appended in the transaction of each lifecycle change;
    // the CHECK is keyward::MAX_AUDIT_SUMMARY_LEN, so a refused entry fails its change too.
    // AUTOINCREMENT: a seq is never reused, even after the newest entries are pruned.
    "CREATE TABLE keyward_audit (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,           -- unix milliseconds
        actor       TEXT    NOT NULL,
        action      TEXT    NOT NULL,
        project     TEXT    NOT NULL,
        environment TEXT,
        key_id      TEXT,
        summary     TEXT    NOT NULL CHECK (length(CAST(summary AS BLOB)) <= 8192)  -- JSON
    );
    CREATE INDEX keyward_audit_project ON keyward_audit (project, seq);
    CREATE INDEX keyward_audit_key ON keyward_audit (key_id, seq);
    CREATE INDEX keyward_audit_at ON keyward_audit (at);",
    // 7: leased allotments and cluster rate limiters (issue 17). `leased` counts units an
    // instance reserved and has not settled; existing counts start with none leased.
    // `keyward_rate` holds each rate limiter's theoretical arrival time (microseconds).
    "ALTER TABLE keyward_usage ADD COLUMN leased INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE keyward_rate (
        name TEXT    NOT NULL PRIMARY KEY,
        tat  INTEGER NOT NULL                   -- unix microseconds
    ) WITHOUT ROWID;",
];

/// The schema version this code writes and reads.
pub(crate) fn latest() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Brings the database up to [`latest`] inside one `BEGIN IMMEDIATE` transaction, so that
/// concurrent openers (threads or processes) apply each step exactly once. Returns the
/// version found before migrating.
pub(crate) fn migrate(conn: &mut Connection) -> Result<i64, SqliteError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = latest();
    if found > latest {
        return Err(SqliteError::SchemaTooNew {
            found,
            supported: latest,
        });
    }
    if found < 0 {
        return Err(SqliteError::SchemaUnknown { found });
    }
    for (version, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tracing::info!(
            from = version,
            to = version + 1,
            "keyward-sqlite: applying schema migration"
        );
        tx.execute_batch(step)?;
    }
    if found != latest {
        // PRAGMA takes no parameters; `latest` is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {latest}"))?;
    }
    tx.commit()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_audit_check_is_the_core_summary_limit() {
        let step = super::MIGRATIONS[5];
        let limit = format!("<= {})", keyward::MAX_AUDIT_SUMMARY_LEN);
        assert!(step.contains(&limit), "{step}");
    }
}
