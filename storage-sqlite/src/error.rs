//! This crate's own error type, carried as the source of
//! [`StoreError::Backend`](keyward::StoreError::Backend).

/// What went wrong in the SQLite store (named like `keyward_postgres::PostgresError`). It reaches callers as the `source` of
/// [`keyward::StoreError::Backend`]; downcast to inspect it:
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward_sqlite::{SqliteError, SqliteStore};
/// let err = SqliteStore::open_url("postgres://db.example/keys").await.unwrap_err();
/// let source = std::error::Error::source(&err).unwrap();
/// assert!(matches!(
///     source.downcast_ref::<SqliteError>(),
///     Some(SqliteError::NotSqliteUrl { .. })
/// ));
/// # });
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite itself failed (I/O, locking, constraint, …).
    #[error("sqlite failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was migrated by a newer version of keyward-sqlite.
    #[error(
        "the database schema is version {found} but this keyward-sqlite understands up to \
         version {supported}; upgrade keyward-sqlite (never downgrade a migrated database)"
    )]
    SchemaTooNew {
        /// The database's `user_version`.
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// The database's `user_version` is not one keyward-sqlite ever writes.
    #[error(
        "the database has schema version {found}, which keyward-sqlite never writes; \
         is this a keyward database?"
    )]
    SchemaUnknown {
        /// The database's `user_version`.
        found: i64,
    },
    /// The URL given to [`SqliteStore::open_url`](crate::SqliteStore::open_url) is not a
    /// `sqlite:` URL. The URL itself is not repeated (it may hold a password).
    #[error(
        "not a sqlite: URL (got scheme {scheme:?}); use sqlite:path/to/keys.db, \
         sqlite://path/to/keys.db, sqlite:///absolute/path.db or sqlite::memory:"
    )]
    NotSqliteUrl {
        /// The URL's scheme, when it has a readable one.
        scheme: Option<String>,
    },
    /// The `sqlite:` URL has query parameters this store does not support.
    #[error(
        "the sqlite: URL has query parameters other than mode=rwc; remove them \
         (use SqliteOptions for settings)"
    )]
    UnsupportedUrlParameter,
    /// The `sqlite:` URL names no file.
    #[error("the sqlite: URL names no database file; use sqlite:path/to/keys.db")]
    EmptyPath,
    /// No pooled connection was available (a bug: every lease returns its connection).
    #[error("no sqlite connection is available in the pool")]
    PoolExhausted,
}

/// The former name of [`SqliteError`].
#[deprecated(note = "renamed to `SqliteError`, like `keyward_postgres::PostgresError`")]
pub type SqliteStoreError = SqliteError;
