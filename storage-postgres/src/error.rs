//! This crate's own failures. They reach callers as the source of a
//! [`StoreError::Backend`](keyward::StoreError::Backend), next to `sqlx::Error`s.

/// A failure particular to the PostgreSQL store (the database's own errors are `sqlx::Error`).
///
/// ```
/// let err = keyward_postgres::PostgresError::NoSchema;
/// assert!(err.to_string().contains("search_path"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// `current_schema()` is NULL: no schema named in `search_path` exists.
    #[error(
        "the connection's search_path names no existing schema: create the schema, or set search_path to one that exists"
    )]
    NoSchema,
}
