//! Schema migrations: ordered SQL steps, recorded in a version table, applied under an
//! advisory lock so that instances starting together apply each step exactly once.

use keyward::StoreError;
use sqlx::{PgPool, Row};

use crate::STORE;

/// One schema step. Steps are applied in `version` order, each at most once per schema.
///
/// ```
/// let steps = keyward_postgres::MIGRATIONS;
/// assert_eq!(steps[0].version, 1);
/// assert!(steps.windows(2).all(|w| w[0].version < w[1].version));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The step's number: strictly increasing, never reused.
    pub version: i64,
    /// What the step does (stored in `keyward_migrations`).
    pub description: &'static str,
    /// The SQL, run as one simple-protocol batch inside the migration transaction.
    pub sql: &'static str,
}

/// Every schema step this version of the crate knows, in order. A released step is never
/// edited: a change to the schema is a new step.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "keys, change log, revision counter, usage counters",
        sql: r#"
CREATE TABLE keyward_keys (
    id           text COLLATE "C" PRIMARY KEY,
    prefix       text NOT NULL,
    project      text COLLATE "C" NOT NULL,
    environment  text COLLATE "C" NOT NULL,
    scopes       text[] NOT NULL DEFAULT '{}',
    name         text NOT NULL DEFAULT '',
    metadata     jsonb,
    created_at   bigint NOT NULL,
    expires_at   bigint,
    revoked_at   bigint,
    last_used_at bigint,
    secret_hash  text NOT NULL,
    rotated_from text COLLATE "C",
    limits       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX keyward_keys_project_environment_created
    ON keyward_keys (project, environment, created_at, id);
CREATE INDEX keyward_keys_project_created ON keyward_keys (project, created_at, id);
CREATE INDEX keyward_keys_created ON keyward_keys (created_at, id);

-- One row. Updates take its row lock, so revisions commit in the order they are handed out
-- and a reader never sees revision n+1 before n.
CREATE TABLE keyward_revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision  bigint NOT NULL CHECK (revision >= 0)
);
INSERT INTO keyward_revision (singleton, revision) VALUES (true, 0);

-- Bounded: update() prunes entries older than the newest 65536.
CREATE TABLE keyward_changes (
    revision bigint PRIMARY KEY,
    key_id   text COLLATE "C" NOT NULL
);

CREATE TABLE keyward_usage (
    counter      text COLLATE "C" NOT NULL,
    period_start bigint NOT NULL,
    used         bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (counter, period_start)
);
"#,
    },
    Migration {
        version: 2,
        description: "named settings (project quotas)",
        sql: r#"
CREATE TABLE keyward_settings (
    name  text COLLATE "C" PRIMARY KEY,
    value jsonb NOT NULL
);
"#,
    },
    Migration {
        version: 3,
        description: "the successor of a rotated key (rotated_to)",
        sql: r#"
ALTER TABLE keyward_keys ADD COLUMN rotated_to text COLLATE "C";
-- Keys rotated before this step get their latest successor (by creation) recorded.
UPDATE keyward_keys k SET rotated_to = successor.id
FROM (
    SELECT DISTINCT ON (rotated_from) rotated_from, id FROM keyward_keys
    WHERE rotated_from IS NOT NULL
    ORDER BY rotated_from, created_at DESC, id DESC
) AS successor
WHERE k.id = successor.rotated_from;
"#,
    },
    Migration {
        version: 4,
        description: "the audit trail (keyward_audit)",
        // The CHECK is keyward::MAX_AUDIT_SUMMARY_LEN: a refused entry fails its change too.
        sql: r#"
CREATE TABLE keyward_audit (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          bigint NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    project     text COLLATE "C" NOT NULL,
    environment text COLLATE "C",
    key_id      text COLLATE "C",
    summary     text NOT NULL CHECK (octet_length(summary) <= 8192)
);
CREATE INDEX keyward_audit_project ON keyward_audit (project, seq);
CREATE INDEX keyward_audit_key ON keyward_audit (key_id, seq);
CREATE INDEX keyward_audit_at ON keyward_audit (at);
"#,
    },
    Migration {
        version: 5,
        description: "leased units of usage counters, cluster rate limiters (keyward_rate)",
        // `leased`: units an instance reserved and has not settled (existing counts have
        // none). `keyward_rate`: each rate limiter's theoretical arrival time (microseconds).
        sql: r#"
ALTER TABLE keyward_usage ADD COLUMN leased bigint NOT NULL DEFAULT 0 CHECK (leased >= 0);
CREATE TABLE keyward_rate (
    name text COLLATE "C" PRIMARY KEY,
    tat  bigint NOT NULL
);
"#,
    },
];

/// Applies the steps the current schema lacks, in one transaction holding a
/// transaction-scoped advisory lock keyed on the schema name.
pub(crate) async fn run(pool: &PgPool) -> Result<(), StoreError> {
    let be = |e: sqlx::Error| StoreError::backend(STORE, e);
    let mut tx = pool.begin().await.map_err(be)?;
    // Two instances starting at once: the second waits here until the first commits, then
    // sees the steps as applied. The lock is released by COMMIT or ROLLBACK.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('keyward:migrate'), hashtext(current_schema()))",
    )
    .execute(&mut *tx)
    .await
    .map_err(be)?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS keyward_migrations (
            version     bigint PRIMARY KEY,
            description text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(be)?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM keyward_migrations ORDER BY version")
        .fetch_all(&mut *tx)
        .await
        .map_err(be)?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()
        .map_err(be)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(&newest) = applied.last()
        && newest > known
    {
        tracing::warn!(
            schema.version = newest,
            known.version = known,
            "the database schema was migrated by a newer keyward-postgres; carrying on, since steps only add"
        );
    }
    let mut count = 0;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(
            migration.version = m.version,
            migration.description = m.description,
            "applying keyward schema migration"
        );
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(be)?;
        sqlx::query("INSERT INTO keyward_migrations (version, description) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.description)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
        count += 1;
    }
    tx.commit().await.map_err(be)?;
    tracing::debug!(
        applied = count,
        version = known,
        "keyward schema is up to date"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_audit_check_is_the_core_summary_limit() {
        let step = super::MIGRATIONS[3];
        let limit = format!("<= {})", keyward::MAX_AUDIT_SUMMARY_LEN);
        assert!(step.sql.contains(&limit), "{}", step.sql);
    }
}
