#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
mod channel;
mod error;
mod listener;
mod migrate;
mod row;
mod usage;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use keyward::store::rows::{
    COLUMNS, ChangeRow, Placeholders, RecordRow, changes_from_log, list_statement, to_sql_int,
};
use keyward::{
    AuditEntry, ChangeEvent, Changes, DEFAULT_CHANGE_LOG_LEN, KeyChange, KeyId, KeyRecord,
    ListQuery, RecordStore, RotateOutcome, StoreError, Timestamp, async_trait,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Row};
use tokio::sync::mpsc;

use crate::channel::{channel_for, truncate};
use crate::row::{arguments, decode, insert_statement};

pub use error::PostgresError;
pub use listener::{
    CONNECT_TIMEOUT, FEED_CAPACITY, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, RECONNECT_INITIAL_DELAY,
    RECONNECT_MAX_DELAY,
};
pub use migrate::{MIGRATIONS, Migration};

const STORE: &str = "postgres";
/// Pool size used by [`PostgresStore::connect`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// How long [`PostgresStore::connect`]'s pool waits for a connection.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

static GET: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM keyward_keys WHERE id = $1"));
/// The old record of a rotation, locked until the transaction ends: a concurrent update
/// (a revoke) or rotation of the same key waits for it, and then sees its result.
static GET_FOR_UPDATE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM keyward_keys WHERE id = $1 FOR UPDATE"));
/// The old record after a rotation: its new expiry and its successor.
const MARK_ROTATED: &str = "UPDATE keyward_keys SET expires_at = $2, rotated_to = $3 WHERE id = $1";
/// Field-wise: each field is replaced only when its flag or value says so. Under READ
/// COMMITTED a concurrent update of the same row is waited for and the expressions are
/// re-evaluated on the newest version, so changes to different fields never undo each other.
/// JSON values are bound as text and cast.
static UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE keyward_keys SET
        revoked_at  = CASE WHEN $2::bigint IS NULL THEN revoked_at ELSE COALESCE(revoked_at, $2) END,
        expires_at  = CASE WHEN $3 THEN $4::bigint ELSE expires_at END,
        scopes      = COALESCE($5::text[], scopes),
        name        = COALESCE($6::text, name),
        metadata    = CASE WHEN $7 THEN $8::jsonb ELSE metadata END,
        secret_hash = COALESCE($9::text, secret_hash),
        limits      = COALESCE($10::jsonb, limits)
     WHERE id = $1
     RETURNING {COLUMNS}"
    )
});
/// Hands out the next revisions, one per id in `$1` (the singleton row's lock orders
/// commits), logs the ids, prunes the log and notifies listeners of each id; all in the
/// transaction of the insert or update that changed them. Answers the last revision.
const LOG_CHANGES: &str = "WITH ids AS (
        SELECT id, ord FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)
    ), rev AS (
        UPDATE keyward_revision SET revision = revision + (SELECT count(*) FROM ids)
        RETURNING revision
    ), logged AS (
        INSERT INTO keyward_changes (revision, key_id)
        SELECT rev.revision - (SELECT count(*) FROM ids) + ids.ord, ids.id FROM rev, ids
    ), pruned AS (
        DELETE FROM keyward_changes WHERE revision <= (SELECT revision FROM rev) - $3
    )
    SELECT revision, (SELECT count(pg_notify($2, id)::text) FROM ids) AS notified FROM rev";
/// Rows are locked in id order first, so concurrent batches never deadlock.
const RECORD_USAGE: &str = "WITH used AS (
        SELECT id, max(at) AS at FROM unnest($1::text[], $2::bigint[]) AS u(id, at) GROUP BY id
    ), locked AS (
        SELECT k.id FROM keyward_keys k JOIN used u ON u.id = k.id
        WHERE k.last_used_at IS NULL OR k.last_used_at < u.at
        ORDER BY k.id
        FOR NO KEY UPDATE OF k
    )
    UPDATE keyward_keys k SET last_used_at = GREATEST(k.last_used_at, u.at)
    FROM used u
    WHERE k.id = u.id AND k.id IN (SELECT id FROM locked)";
/// Rows per multi-row `INSERT` in `insert_many` (15 parameters each; PostgreSQL allows
/// 65,535 per statement).
const INSERT_MANY_CHUNK: usize = 1000;
/// One statement, one snapshot: the revision and the log agree. The current revision is the
/// counter's, which the log may trail (an empty log after pruning by hand still has one).
const CHANGES_SINCE: &str = "SELECT r.revision,
        (SELECT min(c.revision) FROM keyward_changes c) AS oldest_logged,
        ARRAY(SELECT c.key_id FROM keyward_changes c WHERE c.revision > $1 ORDER BY c.revision)
            AS ids
    FROM keyward_revision r";

/// Settings of a [`PostgresStore`], applied with [`PostgresStore::with_options`].
///
/// ```
/// use keyward_postgres::PostgresOptions;
/// let options = PostgresOptions::default().change_log_len(10_000);
/// assert_eq!(options.get_change_log_len(), 10_000);
/// assert_eq!(
///     PostgresOptions::default().get_change_log_len(),
///     keyward::DEFAULT_CHANGE_LOG_LEN
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    change_log_len: u64,
}

impl Default for PostgresOptions {
    /// [`DEFAULT_CHANGE_LOG_LEN`] (100 000) change-log entries.
    fn default() -> Self {
        Self {
            change_log_len: DEFAULT_CHANGE_LOG_LEN,
        }
    }
}

impl PostgresOptions {
    /// How many change-log entries are kept (at least 1). A cache further behind than this is
    /// told to resync (drop everything) by [`RecordStore::changes_since`].
    pub fn change_log_len(mut self, n: u64) -> Self {
        self.change_log_len = n.max(1);
        self
    }

    /// The change-log length.
    pub fn get_change_log_len(&self) -> u64 {
        self.change_log_len
    }
}

/// A [`KeyStore`](keyward::KeyStore) in PostgreSQL, on a sqlx [`PgPool`]. Clones share the
/// pool.
///
/// The tables (`keyward_keys`, `keyward_changes`, `keyward_revision`, `keyward_usage`,
/// `keyward_rate`, `keyward_settings`, `keyward_audit`, `keyward_migrations`) live in the
/// connections' current schema: the first existing schema of `search_path`. Changes are announced on the channel [`PostgresStore::channel`], which
/// names that schema, so stores in different schemas of one database never cross-talk.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use keyward::RecordStore;
/// let store = keyward_postgres::PostgresStore::connect("postgres://postgres@127.0.0.1/app").await?;
/// assert!(store.get(&"7Kq2mZ9xA1bC".parse()?).await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    inner: Arc<Inner>,
    options: PostgresOptions,
}

struct Inner {
    schema: String,
    channel: String,
}

impl fmt::Debug for PostgresStore {
    /// Shows the schema, channel and pool state; never the connection options (they may
    /// hold a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("channel", &self.inner.channel)
            .field("pool_size", &self.pool.size())
            .field("pool_idle", &self.pool.num_idle())
            .field("change_log_len", &self.options.change_log_len)
            .finish()
    }
}

impl PostgresStore {
    /// Connects with a URL (`postgres://user:password@host:port/database`), opens a pool of
    /// [`DEFAULT_MAX_CONNECTIONS`] and applies the migrations.
    ///
    /// The URL is never logged, and errors never repeat it.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), keyward::StoreError> {
    /// let store = keyward_postgres::PostgresStore::connect(
    ///     "postgres://keyward@127.0.0.1:5432/app?options=-c%20search_path%3Dauth",
    /// )
    /// .await?;
    /// println!("{store:?}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL does not parse, the server cannot be reached or
    /// refuses the login, or a migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(backend)?;
        Self::connect_with(options).await
    }

    /// Like [`PostgresStore::connect`], from parsed options.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), keyward::StoreError> {
    /// use sqlx::postgres::PgConnectOptions;
    /// let options = PgConnectOptions::new()
    ///     .host("127.0.0.1")
    ///     .username("keyward")
    ///     .database("app")
    ///     .options([("search_path", "auth")]);
    /// let store = keyward_postgres::PostgresStore::connect_with(options).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        tracing::info!(
            host = options.get_host(),
            port = options.get_port(),
            database = options.get_database(),
            user = options.get_username(),
            "connecting to postgres"
        );
        // One direct connection first: a pool would retry until its timeout and then report
        // only "pool timed out", hiding the cause (refused, unknown host, login failed).
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(backend)?;
        probe.close().await.map_err(backend)?;
        let pool = PgPoolOptions::new()
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Self::from_pool(pool).await
    }

    /// Uses an existing pool (its size, timeouts and `after_connect` hooks are yours) and
    /// applies the migrations. Every connection of the pool must have the same `search_path`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::postgres::PgPoolOptions::new()
    ///     .max_connections(20)
    ///     .connect("postgres://keyward@127.0.0.1/app")
    ///     .await?;
    /// let store = keyward_postgres::PostgresStore::from_pool(pool).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be reached, `search_path` names no
    /// existing schema ([`PostgresError::NoSchema`]), or a migration fails.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await
            .map_err(backend)?;
        let schema = schema.ok_or_else(|| backend(PostgresError::NoSchema))?;
        let channel = channel_for(&schema);
        let store = Self {
            pool,
            inner: Arc::new(Inner { schema, channel }),
            options: PostgresOptions::default(),
        };
        store.migrate().await?;
        tracing::info!(schema = %store.inner.schema, channel = %store.inner.channel, "keyward postgres store ready");
        Ok(store)
    }

    /// Applies the schema steps ([`MIGRATIONS`]) not yet applied. Idempotent, and safe when
    /// several instances run it at once: it holds a transaction-scoped advisory lock for the
    /// schema, and all steps commit together or not at all.
    ///
    /// ```no_run
    /// # async fn demo(store: keyward_postgres::PostgresStore) -> Result<(), keyward::StoreError> {
    /// store.migrate().await?; // a no-op: connect() already did it
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Backend`] when a statement fails (nothing is applied then).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate::run(&self.pool).await
    }

    /// Applies settings to this store (and the clones made from it afterwards); the
    /// constructors use [`PostgresOptions::default`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), keyward::StoreError> {
    /// use keyward_postgres::{PostgresOptions, PostgresStore};
    /// let store = PostgresStore::connect("postgres://keyward@127.0.0.1/app")
    ///     .await?
    ///     .with_options(PostgresOptions::default().change_log_len(10_000));
    /// assert_eq!(store.options().get_change_log_len(), 10_000);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_options(mut self, options: PostgresOptions) -> Self {
        self.options = options;
        self
    }

    /// The store's settings.
    ///
    /// ```no_run
    /// # fn demo(store: keyward_postgres::PostgresStore) {
    /// assert_eq!(store.options().get_change_log_len(), keyward::DEFAULT_CHANGE_LOG_LEN);
    /// # }
    /// ```
    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    /// The pool, for health checks and the application's own queries.
    ///
    /// ```no_run
    /// # async fn demo(store: keyward_postgres::PostgresStore) -> Result<(), sqlx::Error> {
    /// let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(store.pool()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema holding the tables.
    ///
    /// ```no_run
    /// # fn demo(store: keyward_postgres::PostgresStore) {
    /// assert_eq!(store.schema(), "public");
    /// # }
    /// ```
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The `NOTIFY` channel for this schema: `keyward_changes:<schema>`, or for a long schema
    /// name a shortened form ending in a hash of it (channels are limited to 63 bytes).
    ///
    /// ```no_run
    /// # fn demo(store: keyward_postgres::PostgresStore) {
    /// assert_eq!(store.channel(), "keyward_changes:public");
    /// # }
    /// ```
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// The `application_name` of the change feed's connections (shown in
    /// `pg_stat_activity`): `keyward-listener:<schema>`, cut to 63 bytes.
    ///
    /// ```no_run
    /// # fn demo(store: keyward_postgres::PostgresStore) {
    /// assert_eq!(store.listener_application_name(), "keyward-listener:public");
    /// # }
    /// ```
    pub fn listener_application_name(&self) -> String {
        truncate(&format!("keyward-listener:{}", self.inner.schema)).to_owned()
    }

    /// Opens a change feed: a dedicated connection `LISTEN`s on [`PostgresStore::channel`]
    /// and a background task delivers [`ChangeEvent::Changed`] for every key updated through
    /// any store on this schema, committed after this returns.
    ///
    /// When the connection drops, or its heartbeat (`SELECT 1` every [`HEARTBEAT_INTERVAL`])
    /// fails or takes longer than [`HEARTBEAT_TIMEOUT`], the task sends [`ChangeEvent::Lost`]
    /// at once, abandons the connection, reconnects on a new one (each within
    /// [`CONNECT_TIMEOUT`]) with jittered exponential backoff ([`RECONNECT_INITIAL_DELAY`] to
    /// [`RECONNECT_MAX_DELAY`]) and then sends [`ChangeEvent::Resync`], since notifications
    /// sent meanwhile are lost. A subscriber more than [`FEED_CAPACITY`] events behind also
    /// gets a `Resync`. Dropping the receiver stops the task and closes its connection.
    ///
    /// ```no_run
    /// # async fn demo(store: keyward_postgres::PostgresStore) -> Result<(), keyward::StoreError> {
    /// let mut feed = store.listen().await?;
    /// while let Some(event) = feed.recv().await {
    ///     match event {
    ///         keyward::ChangeEvent::Changed(id) => println!("{id} changed"),
    ///         keyward::ChangeEvent::Lost => println!("revalidate cached keys until the resync"),
    ///         keyward::ChangeEvent::Resync => println!("catch up from the change log"),
    ///         _ => println!("unknown event: treat as a resync"),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the first connection or `LISTEN` fails.
    pub async fn listen(&self) -> Result<mpsc::Receiver<ChangeEvent>, StoreError> {
        let options = (*self.pool.connect_options())
            .clone()
            .application_name(&self.listener_application_name());
        listener::spawn(options, self.inner.channel.clone()).await
    }
}

fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::backend(STORE, e)
}

impl PostgresStore {
    /// A READ COMMITTED transaction whatever the server's default: the re-evaluation of a
    /// concurrent update (see `UPDATE`) and `SELECT … FOR UPDATE` rely on it.
    async fn begin_read_committed(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(backend)
    }

    /// Logs `ids` as changed in `tx` (see [`LOG_CHANGES`]); answers the last revision.
    async fn log_changes<S: AsRef<str> + Sync>(
        &self,
        tx: &mut sqlx::PgConnection,
        ids: &[S],
    ) -> Result<i64, StoreError> {
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        sqlx::query_scalar(LOG_CHANGES)
            .bind(ids)
            .bind(&self.inner.channel)
            .bind(to_sql_int(self.options.change_log_len))
            .fetch_one(tx)
            .await
            .map_err(backend)
    }
}

fn is_duplicate_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.constraint() == Some("keyward_keys_pkey"))
}

#[async_trait]
impl RecordStore for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(skip_all, fields(key.id = %record.id))]
    async fn insert(&self, record: &KeyRecord, audit: &[AuditEntry]) -> Result<(), StoreError> {
        let (sql, params) = insert_statement(vec![RecordRow::from_record(record, STORE)?], "");
        // One transaction: the row and its change-log entry (and notification), or neither.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let result = sqlx::query_with(AssertSqlSafe(sql), arguments(params)?)
            .execute(&mut *tx)
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => return Err(StoreError::AlreadyExists(record.id)),
            Err(e) => return Err(backend(e)),
        }
        let revision = self.log_changes(&mut tx, &[record.id.as_str()]).await?;
        audit::append(&mut tx, audit).await?;
        tx.commit().await.map_err(backend)?;
        tracing::debug!(revision, "key inserted");
        Ok(())
    }

    /// One transaction of multi-row `INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id`
    /// statements: a taken id (in the table or twice in the batch) rolls back the whole
    /// batch and is reported as [`StoreError::AlreadyExists`].
    #[tracing::instrument(skip_all, fields(count = records.len()))]
    async fn insert_many(
        &self,
        records: &[KeyRecord],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        if records.is_empty() && audit.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut inserted = HashSet::with_capacity(records.len());
        for chunk in records.chunks(INSERT_MANY_CHUNK) {
            let rows = chunk
                .iter()
                .map(|r| RecordRow::from_record(r, STORE))
                .collect::<Result<Vec<_>, _>>()?;
            let (sql, params) = insert_statement(rows, " ON CONFLICT (id) DO NOTHING RETURNING id");
            let ids: Vec<String> = sqlx::query_scalar_with(AssertSqlSafe(sql), arguments(params)?)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
            self.log_changes(&mut tx, &ids).await?;
            inserted.extend(ids);
        }
        if inserted.len() < records.len() {
            tx.rollback().await.map_err(backend)?;
            // The first record that was not inserted, or repeats an id inserted before it.
            let mut seen = HashSet::with_capacity(records.len());
            let taken = records
                .iter()
                .find(|r| !inserted.contains(r.id.as_str()) || !seen.insert(r.id))
                .map_or(records[0].id, |r| r.id);
            return Err(StoreError::AlreadyExists(taken));
        }
        audit::append(&mut tx, audit).await?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(key.id = %id))]
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query(GET.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(decode)
            .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let statement = list_statement(query, Placeholders::Dollar);
        sqlx::query_with(AssertSqlSafe(statement.sql), arguments(statement.params)?)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(decode)
            .collect()
    }

    #[tracing::instrument(skip_all, fields(key.id = %id))]
    async fn update(
        &self,
        id: &KeyId,
        change: &KeyChange,
        audit: &[AuditEntry],
    ) -> Result<Option<KeyRecord>, StoreError> {
        let change = ChangeRow::from_change(change, STORE)?;
        let mut tx = self.begin_read_committed().await?;
        let row = sqlx::query(UPDATE.as_str())
            .bind(id.as_str())
            .bind(change.revoke_at)
            .bind(change.expires_at.is_some())
            .bind(change.expires_at.flatten())
            .bind(change.scopes)
            .bind(change.name)
            .bind(change.metadata.is_some())
            .bind(change.metadata.flatten())
            .bind(change.secret_hash)
            .bind(change.limits)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(backend)?;
            return Ok(None);
        };
        let record = decode(&row)?;
        let revision = self.log_changes(&mut tx, &[id.as_str()]).await?;
        audit::append(&mut tx, audit).await?;
        tx.commit().await.map_err(backend)?;
        tracing::debug!(revision, "key updated");
        Ok(Some(record))
    }

    /// One READ COMMITTED transaction that locks the old row (`SELECT … FOR UPDATE`) before
    /// deciding, so it serializes with every update of that key.
    #[tracing::instrument(skip_all, fields(key.id = %old, force))]
    async fn rotate(
        &self,
        old: &KeyId,
        successor: &KeyRecord,
        grace_end: Timestamp,
        now: Timestamp,
        force: bool,
        audit: &[AuditEntry],
    ) -> Result<RotateOutcome, StoreError> {
        let row = RecordRow::from_record(successor, STORE)?;
        let mut tx = self.begin_read_committed().await?;
        let current = sqlx::query(GET_FOR_UPDATE.as_str())
            .bind(old.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .as_ref()
            .map(decode)
            .transpose()?;
        let replaced = match RotateOutcome::decide(current, successor.id, grace_end, now, force) {
            Ok(replaced) => replaced,
            Err(outcome) => {
                tx.rollback().await.map_err(backend)?;
                return Ok(outcome);
            }
        };
        let (sql, params) =
            insert_statement(vec![row], " ON CONFLICT (id) DO NOTHING RETURNING id");
        let inserted: Option<String> =
            sqlx::query_scalar_with(AssertSqlSafe(sql), arguments(params)?)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if inserted.is_none() {
            tx.rollback().await.map_err(backend)?;
            return Err(StoreError::AlreadyExists(successor.id));
        }
        sqlx::query(MARK_ROTATED)
            .bind(old.as_str())
            .bind(replaced.expires_at.map(Timestamp::unix_millis))
            .bind(successor.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // The successor's insert and the old key's change, as `insert` and `update` log them.
        let revision = self
            .log_changes(&mut tx, &[successor.id.as_str(), old.as_str()])
            .await?;
        audit::append(&mut tx, audit).await?;
        tx.commit().await.map_err(backend)?;
        tracing::debug!(revision, successor = %successor.id, "key rotated");
        Ok(RotateOutcome::Rotated(Box::new(replaced)))
    }

    #[tracing::instrument(skip_all, fields(count = used.len()))]
    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let (ids, ats): (Vec<String>, Vec<i64>) = used
            .iter()
            .map(|(id, at)| (id.as_str().to_owned(), at.unix_millis()))
            .unzip();
        sqlx::query(RECORD_USAGE)
            .bind(ids)
            .bind(ats)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(revision))]
    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError> {
        let row = sqlx::query(CHANGES_SINCE)
            .bind(to_sql_int(revision))
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        let column = |e: sqlx::Error| StoreError::corrupt(STORE, format_args!("change log: {e}"));
        changes_from_log(
            STORE,
            revision,
            row.try_get("revision").map_err(column)?,
            row.try_get("oldest_logged").map_err(column)?,
            row.try_get("ids").map_err(column)?,
        )
    }

    async fn subscribe(&self) -> Result<Option<mpsc::Receiver<ChangeEvent>>, StoreError> {
        self.listen().await.map(Some)
    }
}
