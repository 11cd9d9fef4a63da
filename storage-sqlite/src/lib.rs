#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
mod error;
mod options;
mod pool;
mod row;
mod schema;
mod url;
mod usage;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use keyward::store::rows::{
    COLUMN_COUNT, COLUMNS, ChangeRow, Placeholders, RecordRow, changes_from_log, join_spaced,
    list_statement, to_sql_int,
};
use keyward::{
    AuditEntry, Changes, KeyChange, KeyId, KeyRecord, ListQuery, RecordStore, RotateOutcome,
    StoreError, Timestamp, async_trait,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub use crate::error::SqliteError;
#[allow(deprecated)]
pub use crate::error::SqliteStoreError;
pub use crate::options::SqliteOptions;
use crate::pool::{Pool, begin_immediate};
use crate::row::{backend, decode_record, value};

pub(crate) const STORE: &str = "sqlite";

/// The newest schema version this crate writes (the database's `PRAGMA user_version`).
///
/// ```
/// assert!(keyward_sqlite::SCHEMA_VERSION >= 1);
/// ```
pub const SCHEMA_VERSION: i64 = schema::MIGRATIONS.len() as i64;

/// A [`KeyStore`](keyward::KeyStore) in a SQLite database. Clones share the same connections; the database is
/// closed when the last clone is dropped.
///
/// One writer connection runs every change in a `BEGIN IMMEDIATE` transaction; a few reader
/// connections serve lookups concurrently (WAL mode). Every SQLite call runs on tokio's
/// blocking thread pool, never on an executor thread.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::RecordStore;
/// let dir = tempfile::tempdir()?;
/// let store = keyward_sqlite::SqliteStore::open(dir.path().join("keys.db")).await?;
/// assert!(store.get(&"7Kq2mZ9xA1bC".parse()?).await?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the database lives (`None`: in memory).
    path: Option<PathBuf>,
    writer: Arc<Pool>,
    /// `None`: reads go through the writer (in-memory databases, or `readers(0)`).
    readers: Option<Arc<Pool>>,
    change_log_len: u64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("writer", &self.inner.writer)
            .field("readers", &self.inner.readers)
            .field("change_log_len", &self.inner.change_log_len)
            .finish()
    }
}

impl SqliteStore {
    /// Opens the database file at `path` with default [`SqliteOptions`], creating it if it
    /// does not exist and migrating its schema to [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or migrated; its source is a
    /// [`SqliteError`] (e.g. [`SqliteError::SchemaTooNew`]).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let dir = tempfile::tempdir()?;
    /// let store = keyward_sqlite::SqliteStore::open(dir.path().join("keys.db")).await?;
    /// # drop(store);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the database file at `path` with the given options (see [`SqliteStore::open`]).
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward_sqlite::{SqliteOptions, SqliteStore};
    /// let dir = tempfile::tempdir()?;
    /// let options = SqliteOptions::default().readers(2).change_log_len(1_000);
    /// let store = SqliteStore::open_with(dir.path().join("keys.db"), options).await?;
    /// # drop(store);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let inner = tokio::task::spawn_blocking(move || open_file(path, &options))
            .await
            .map_err(|e| StoreError::backend(STORE, e))?
            .map_err(|e| StoreError::backend(STORE, e))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Opens the database a `sqlite:` URL names: `sqlite:keys.db` or `sqlite://keys.db`
    /// (relative), `sqlite:///var/lib/app/keys.db` (absolute), or `sqlite::memory:`.
    /// A `?mode=rwc` suffix is accepted; other query parameters are not.
    ///
    /// # Errors
    /// [`StoreError::Backend`] with [`SqliteError::NotSqliteUrl`] as the source for
    /// other schemes (the URL itself is not repeated, as it may hold a password), or as
    /// [`SqliteStore::open`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward_sqlite::SqliteStore;
    /// let store = SqliteStore::open_url("sqlite::memory:").await?;
    /// assert!(SqliteStore::open_url("postgres://localhost/keys").await.is_err());
    /// # drop(store);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        Self::open_url_with(url, SqliteOptions::default()).await
    }

    /// [`SqliteStore::open_url`] with options.
    ///
    /// # Errors
    /// As [`SqliteStore::open_url`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward_sqlite::{SqliteOptions, SqliteStore};
    /// let options = SqliteOptions::default().change_log_len(10);
    /// let store = SqliteStore::open_url_with("sqlite::memory:", options).await?;
    /// # drop(store);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn open_url_with(url: &str, options: SqliteOptions) -> Result<Self, StoreError> {
        match url::parse(url).map_err(|e| StoreError::backend(STORE, e))? {
            url::Target::Memory => Self::in_memory_with(options).await,
            url::Target::File(path) => Self::open_with(path, options).await,
        }
    }

    /// A private in-memory database, gone when the last clone is dropped. It uses a single
    /// connection (an in-memory database cannot be shared between connections or use WAL).
    ///
    /// # Errors
    /// [`StoreError::Backend`] if SQLite cannot allocate it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::RecordStore;
    /// let store = keyward_sqlite::SqliteStore::in_memory().await?;
    /// assert_eq!(store.changes_since(0).await?.revision, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn in_memory() -> Result<Self, StoreError> {
        Self::in_memory_with(SqliteOptions::default()).await
    }

    async fn in_memory_with(options: SqliteOptions) -> Result<Self, StoreError> {
        let inner = tokio::task::spawn_blocking(move || open_memory(&options))
            .await
            .map_err(|e| StoreError::backend(STORE, e))?
            .map_err(|e| StoreError::backend(STORE, e))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The database file, or `None` for an in-memory database.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = keyward_sqlite::SqliteStore::in_memory().await?;
    /// assert!(store.path().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.writer.run(f).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.inner
            .readers
            .as_ref()
            .unwrap_or(&self.inner.writer)
            .run(f)
            .await
    }
}

/// Settings every connection gets.
fn configure(conn: &Connection, options: &SqliteOptions) -> Result<(), SqliteError> {
    conn.busy_timeout(options.busy_timeout)?;
    // synchronous=FULL: a commit is on stable storage before it returns, so a revocation
    // survives power loss (NORMAL in WAL mode may lose the last commits).
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}

/// Switches the file to WAL mode (a persistent property of the file, so a no-op after the
/// first open). SQLite does not run the busy handler for this pragma, which needs exclusive
/// access, so concurrent first opens would fail at once with "database is locked": retry
/// with backoff within the busy timeout instead.
fn enable_wal(conn: &Connection, budget: Duration) -> Result<String, SqliteError> {
    let deadline = std::time::Instant::now() + budget;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

fn open_file(path: PathBuf, options: &SqliteOptions) -> Result<Inner, SqliteError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut writer = Connection::open_with_flags(&path, flags)?;
    configure(&writer, options)?;
    let mode = enable_wal(&writer, options.busy_timeout)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            path = %path.display(),
            journal_mode = %mode,
            "keyward-sqlite: the file system refused WAL mode; readers will wait for writers"
        );
    }
    let found = schema::migrate(&mut writer)?;
    tracing::debug!(
        path = %path.display(),
        schema.found = found,
        schema.now = schema::latest(),
        "keyward-sqlite: opened"
    );
    let readers = if options.readers == 0 {
        None
    } else {
        let mut conns = Vec::with_capacity(options.readers);
        for _ in 0..options.readers {
            let conn = Connection::open_with_flags(&path, flags)?;
            configure(&conn, options)?;
            conn.execute_batch("PRAGMA query_only = ON;")?;
            conns.push(conn);
        }
        Some(Pool::new(conns))
    };
    Ok(Inner {
        path: Some(path),
        writer: Pool::new(vec![writer]),
        readers,
        change_log_len: options.change_log_len,
    })
}

fn open_memory(options: &SqliteOptions) -> Result<Inner, SqliteError> {
    let mut conn = Connection::open_in_memory()?;
    configure(&conn, options)?;
    schema::migrate(&mut conn)?;
    Ok(Inner {
        path: None,
        writer: Pool::new(vec![conn]),
        readers: None,
        change_log_len: options.change_log_len,
    })
}

fn get_record(conn: &Connection, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM keyward_keys WHERE id = ?1"))
        .map_err(backend)?;
    let mut rows = stmt.query(params![id.as_str()]).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(row) => decode_record(row).map(Some),
        None => Ok(None),
    }
}

/// Inserts one row of [`COLUMNS`], skipping a taken id.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    let values: Vec<String> = (1..=COLUMN_COUNT)
        .map(|n| Placeholders::Question.nth(n))
        .collect();
    format!(
        "INSERT INTO keyward_keys ({COLUMNS}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
        values.join(", ")
    )
});

/// Inserts a record's row; [`StoreError::AlreadyExists`] when the id is taken.
fn insert_row(conn: &Connection, id: KeyId, row: RecordRow) -> Result<(), StoreError> {
    let inserted = conn
        .prepare_cached(&INSERT)
        .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(row.into_params().map(value))))
        .map_err(backend)?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists(id));
    }
    Ok(())
}

/// Logs `ids` as changed, one revision each, and prunes the log to its last `keep` entries;
/// in the caller's transaction (an insert, a batch of inserts or an update).
fn log_changes(
    conn: &Connection,
    ids: impl IntoIterator<Item = KeyId>,
    keep: i64,
) -> Result<(), StoreError> {
    let mut log = conn
        .prepare_cached("INSERT INTO keyward_changes (key_id) VALUES (?1)")
        .map_err(backend)?;
    let mut logged = false;
    for id in ids {
        log.execute(params![id.as_str()]).map_err(backend)?;
        logged = true;
    }
    if !logged {
        return Ok(());
    }
    // The row just logged: its revision.
    let revision = conn.last_insert_rowid();
    conn.prepare_cached("DELETE FROM keyward_changes WHERE revision <= ?1")
        .and_then(|mut stmt| stmt.execute(params![revision.saturating_sub(keep)]))
        .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl RecordStore for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key.id = %record.id))]
    async fn insert(&self, record: &KeyRecord, audit: &[AuditEntry]) -> Result<(), StoreError> {
        let (id, row) = (record.id, RecordRow::from_record(record, STORE)?);
        let keep = to_sql_int(self.inner.change_log_len);
        let audit = audit::pending(audit);
        self.write(move |conn| {
            // One transaction: the row, its change-log entry and its audit entry, or none.
            let tx = begin_immediate(conn)?;
            insert_row(&tx, id, row)?;
            log_changes(&tx, [id], keep)?;
            audit::append(&tx, audit)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(count = records.len()))]
    async fn insert_many(
        &self,
        records: &[KeyRecord],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let audit = audit::pending(audit);
        let rows = records
            .iter()
            .map(|r| Ok((r.id, RecordRow::from_record(r, STORE)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let keep = to_sql_int(self.inner.change_log_len);
        self.write(move |conn| {
            // One transaction: a duplicate id anywhere inserts none of the batch.
            let tx = begin_immediate(conn)?;
            let mut ids = Vec::with_capacity(rows.len());
            for (id, row) in rows {
                insert_row(&tx, id, row)?;
                ids.push(id);
            }
            log_changes(&tx, ids, keep)?;
            audit::append(&tx, audit)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let id = *id;
        self.read(move |conn| get_record(conn, &id)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let statement = list_statement(query, Placeholders::Question);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&statement.sql).map_err(backend)?;
            let params = statement.params.into_iter().map(value);
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(backend)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                out.push(decode_record(row)?);
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key.id = %id))]
    async fn update(
        &self,
        id: &KeyId,
        change: &KeyChange,
        audit: &[AuditEntry],
    ) -> Result<Option<KeyRecord>, StoreError> {
        let id = *id;
        let audit = audit::pending(audit);
        let change = ChangeRow::from_change(change, STORE)?;
        let keep = to_sql_int(self.inner.change_log_len);
        self.write(move |conn| {
            let tx = begin_immediate(conn)?;
            let mut sets: Vec<&str> = Vec::new();
            let mut args: Vec<Value> = Vec::new();
            let mut set = |column: &'static str, v: Value| {
                args.push(v);
                sets.push(column);
            };
            if let Some(at) = change.revoke_at {
                set("revoked_at = COALESCE(revoked_at, ?)", Value::Integer(at));
            }
            if let Some(e) = change.expires_at {
                set("expires_at = ?", e.map_or(Value::Null, Value::Integer));
            }
            if let Some(s) = change.scopes {
                set("scopes = ?", Value::Text(join_spaced(&s)));
            }
            if let Some(n) = change.name {
                set("name = ?", Value::Text(n));
            }
            if let Some(m) = change.metadata {
                set("metadata = ?", m.map_or(Value::Null, Value::Text));
            }
            if let Some(h) = change.secret_hash {
                set("secret_hash = ?", Value::Text(h));
            }
            if let Some(l) = change.limits {
                set("limits = ?", Value::Text(l));
            }
            let exists = if sets.is_empty() {
                tx.query_row(
                    "SELECT 1 FROM keyward_keys WHERE id = ?1",
                    params![id.as_str()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(backend)?
                .is_some()
            } else {
                args.push(Value::Text(id.as_str().to_owned()));
                let sql = format!("UPDATE keyward_keys SET {} WHERE id = ?", sets.join(", "));
                tx.prepare_cached(&sql)
                    .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(args)))
                    .map_err(backend)?
                    > 0
            };
            if !exists {
                return Ok(None);
            }
            log_changes(&tx, [id], keep)?;
            audit::append(&tx, audit)?;
            // Commit before decoding: a change (above all a revocation) takes effect even if
            // some other column of the row was damaged by hand; decoding then reports that.
            tx.commit().map_err(backend)?;
            get_record(conn, &id)
        })
        .await
    }

    /// One `BEGIN IMMEDIATE` transaction: it holds the database's write lock from the read
    /// of the old record to the commit, so it serializes with every update.
    #[tracing::instrument(level = "debug", skip_all, fields(key.id = %old, force))]
    async fn rotate(
        &self,
        old: &KeyId,
        successor: &KeyRecord,
        grace_end: Timestamp,
        now: Timestamp,
        force: bool,
        audit: &[AuditEntry],
    ) -> Result<RotateOutcome, StoreError> {
        let old = *old;
        let audit = audit::pending(audit);
        let (successor_id, row) = (successor.id, RecordRow::from_record(successor, STORE)?);
        let keep = to_sql_int(self.inner.change_log_len);
        self.write(move |conn| {
            let tx = begin_immediate(conn)?;
            let current = get_record(&tx, &old)?;
            let replaced = match RotateOutcome::decide(current, successor_id, grace_end, now, force)
            {
                Ok(replaced) => replaced,
                Err(outcome) => return Ok(outcome),
            };
            insert_row(&tx, successor_id, row)?;
            tx.prepare_cached(
                "UPDATE keyward_keys SET expires_at = ?1, rotated_to = ?2 WHERE id = ?3",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    replaced.expires_at.map(Timestamp::unix_millis),
                    successor_id.as_str(),
                    old.as_str()
                ])
            })
            .map_err(backend)?;
            // The successor's insert and the old key's change, as `insert` and `update` log them.
            log_changes(&tx, [successor_id, old], keep)?;
            audit::append(&tx, audit)?;
            tx.commit().map_err(backend)?;
            Ok(RotateOutcome::Rotated(Box::new(replaced)))
        })
        .await
    }

    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let used = used.to_vec();
        self.write(move |conn| {
            let tx = begin_immediate(conn)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE keyward_keys SET last_used_at = MAX(COALESCE(last_used_at, ?1), ?1)
                         WHERE id = ?2",
                    )
                    .map_err(backend)?;
                for (id, at) in &used {
                    stmt.execute(params![at.unix_millis(), id.as_str()])
                        .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError> {
        self.read(move |conn| {
            // One read transaction: the bounds and the ids come from the same snapshot.
            let tx = conn.transaction().map_err(backend)?;
            let (oldest, newest): (Option<i64>, Option<i64>) = tx
                .query_row(
                    "SELECT MIN(revision), MAX(revision) FROM keyward_changes",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(backend)?;
            let mut ids = Vec::new();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT key_id FROM keyward_changes WHERE revision > ?1 ORDER BY revision",
                    )
                    .map_err(backend)?;
                let mut rows = stmt.query(params![to_sql_int(revision)]).map_err(backend)?;
                while let Some(row) = rows.next().map_err(backend)? {
                    ids.push(row.get(0).map_err(|_| {
                        StoreError::corrupt(STORE, "the change log holds a key id that is not text")
                    })?);
                }
            }
            tx.commit().map_err(backend)?;
            // An empty log: no change was ever made (every update keeps its own entry).
            changes_from_log(STORE, revision, newest.unwrap_or(0), oldest, ids)
        })
        .await
    }

    /// No push feed: the manager polls [`RecordStore::changes_since`].
    async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<keyward::ChangeEvent>>, StoreError> {
        Ok(None)
    }
}
