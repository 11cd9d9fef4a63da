//! Backend-neutral rows for SQL stores: how a [`KeyRecord`] and a [`KeyChange`] become plain
//! column values (text, 64-bit integers, JSON text, a list of names) and back, the column
//! list, the list query, and the integer conversions for revisions and counts. A SQL store
//! maps its driver's rows to and from these types and keeps only its SQL
//! (docs/ARCHITECTURE.md, "The store contract").
//!
//! Decoding never panics: a value that cannot be read back is [`StoreError::Corrupt`] naming
//! the key and the column.
//!
//! Every SQL store keeps the same tables: [`KEYS_TABLE`] (one row per key, [`COLUMNS`]),
//! `keyward_changes` (the change log), `keyward_usage` (usage counters: `used` and
//! `leased`), `keyward_rate` (each cluster rate limiter's theoretical arrival time) and
//! `keyward_settings` (named settings).
//!
//! ```
//! use keyward::store::rows::{ColumnError, ColumnReader, RecordRow};
//!
//! // A driver's row, here a vector of optional texts (a real store wraps its driver's row).
//! struct Texts(Vec<Option<String>>);
//! impl ColumnReader for Texts {
//!     fn text(&self, index: usize) -> Result<Option<String>, ColumnError> {
//!         Ok(self.0.get(index).cloned().flatten())
//!     }
//!     fn integer(&self, index: usize) -> Result<Option<i64>, ColumnError> {
//!         let text = self.text(index)?;
//!         text.map(|t| t.parse().map_err(|e| ColumnError::WrongType(format!("{e}"))))
//!             .transpose()
//!     }
//! }
//!
//! let phc = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$\
//!            X34BrkThJYMu+rIISZMN1uQlJp94vR8NMk4ILKRmdLY";
//! let cells = [
//!     Some("7Kq2mZ9xA1bC"), Some("av"), Some("web-app"), Some("dev"), Some("read write"),
//!     Some("ingest"), None, Some("1800000000000"), None, None, None, Some(phc), None,
//!     Some("{}"), None,
//! ];
//! let row = Texts(cells.iter().map(|c| c.map(str::to_owned)).collect());
//! let record = RecordRow::read(&row, "example")?.into_record("example")?;
//! assert_eq!(record.scopes.to_string(), "read write");
//!
//! let mut edited = Texts(row.0.clone());
//! edited.0[7] = Some("yesterday".into()); // created_at
//! let err = RecordRow::read(&edited, "example").unwrap_err().to_string();
//! assert!(err.contains("7Kq2mZ9xA1bC") && err.contains("created_at"), "{err}");
//! # Ok::<(), keyward::StoreError>(())
//! ```

use std::fmt;

use super::error::StoreError;
use crate::hash::SecretHash;
use crate::key::KeyId;
use crate::scope::ScopeSet;
use crate::time::Timestamp;

use super::record::{KeyChange, KeyLimits, KeyRecord, ListQuery};
use super::records::Changes;

/// The table of key records in every SQL store; its columns are [`COLUMNS`].
pub const KEYS_TABLE: &str = "keyward_keys";

/// How many columns a key record has.
pub const COLUMN_COUNT: usize = 15;

/// The key table's column names, in the order [`RecordRow::read`] reads them and
/// [`RecordRow::into_params`] gives their values.
pub const COLUMN_NAMES: [&str; COLUMN_COUNT] = [
    "id",
    "prefix",
    "project",
    "environment",
    "scopes",
    "name",
    "metadata",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "secret_hash",
    "rotated_from",
    "limits",
    "rotated_to",
];

/// [`COLUMN_NAMES`] as one list, for `SELECT {COLUMNS} FROM keyward_keys`,
/// `INSERT INTO keyward_keys ({COLUMNS})` and `RETURNING {COLUMNS}`.
///
/// ```
/// use keyward::store::rows::{COLUMN_NAMES, COLUMNS};
/// assert_eq!(COLUMNS, COLUMN_NAMES.join(", "));
/// ```
pub const COLUMNS: &str = "id, prefix, project, environment, scopes, name, metadata, \
     created_at, expires_at, revoked_at, last_used_at, secret_hash, rotated_from, limits, \
     rotated_to";

// Indexes into COLUMN_NAMES.
const ID: usize = 0;
const PREFIX: usize = 1;
const PROJECT: usize = 2;
const ENVIRONMENT: usize = 3;
const SCOPES: usize = 4;
const NAME: usize = 5;
const METADATA: usize = 6;
const CREATED_AT: usize = 7;
const EXPIRES_AT: usize = 8;
const REVOKED_AT: usize = 9;
const LAST_USED_AT: usize = 10;
const SECRET_HASH: usize = 11;
const ROTATED_FROM: usize = 12;
const LIMITS: usize = 13;
const ROTATED_TO: usize = 14;

/// A key id shown in messages: the first 16 characters of what the row holds, so that
/// garbage stays short.
fn shown(raw_id: &str) -> String {
    raw_id.chars().take(16).collect()
}

/// The one form of a corrupt-column message: `key <id>: column <column>: <detail>`.
fn corrupt_column(
    store: &'static str,
    key: &str,
    column: &str,
    detail: impl fmt::Display,
) -> StoreError {
    StoreError::corrupt(store, format_args!("key {key}: column {column}: {detail}"))
}

/// A value to bind to a statement, of one of the kinds SQL stores keep.
///
/// `Debug` shows the kind and size of a value, not the text (a row holds the secret's hash).
#[derive(Clone, PartialEq, Eq)]
pub enum Param {
    /// Text, or NULL.
    Text(Option<String>),
    /// A 64-bit integer (Unix milliseconds, counts), or NULL.
    Integer(Option<i64>),
    /// A list of names (the scopes): an array where the backend has arrays, otherwise one
    /// text value written by [`join_spaced`].
    Names(Vec<String>),
    /// A JSON document as text, or NULL: stored in a JSON column where the backend has one.
    Json(Option<String>),
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |t: &Option<String>| t.as_ref().map(String::len);
        match self {
            Param::Text(t) => write!(f, "Text({:?} bytes)", size(t)),
            Param::Integer(i) => write!(f, "Integer({i:?})"),
            Param::Names(n) => write!(f, "Names({} names)", n.len()),
            Param::Json(j) => write!(f, "Json({:?} bytes)", size(j)),
        }
    }
}

/// Why a [`ColumnReader`] could not read a column.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ColumnError {
    /// The value is not of the column's kind (text where a number belongs, a blob, text
    /// that is not UTF-8…): the row was edited by hand. [`RecordRow::read`] reports it as
    /// [`StoreError::Corrupt`] naming the key and the column, with this detail.
    #[error("a value of the wrong type ({0})")]
    WrongType(String),
    /// The backend failed while reading: reported as it is.
    #[error(transparent)]
    Backend(StoreError),
}

/// One row of [`COLUMNS`] as a store's driver reads it. A store implements this for a
/// wrapper of its driver's row; [`RecordRow::read`] decides which column is read as what.
/// `index` counts from 0 in [`COLUMN_NAMES`] order. `Ok(None)` is SQL `NULL`.
pub trait ColumnReader {
    /// A text column.
    ///
    /// # Errors
    /// [`ColumnError::WrongType`] for a value that is not text.
    fn text(&self, index: usize) -> Result<Option<String>, ColumnError>;

    /// A 64-bit integer column.
    ///
    /// # Errors
    /// [`ColumnError::WrongType`] for a value that is not such an integer.
    fn integer(&self, index: usize) -> Result<Option<i64>, ColumnError>;

    /// A column holding a list of names (the scopes). By default a text column of
    /// space-separated names ([`split_spaced`]); a backend with arrays overrides this.
    ///
    /// # Errors
    /// As [`ColumnReader::text`].
    fn names(&self, index: usize) -> Result<Option<Vec<String>>, ColumnError> {
        Ok(self.text(index)?.map(|text| split_spaced(&text)))
    }

    /// A column holding a JSON document, as its text. By default a text column; a backend
    /// with a JSON type overrides this.
    ///
    /// # Errors
    /// As [`ColumnReader::text`].
    fn json(&self, index: usize) -> Result<Option<String>, ColumnError> {
        self.text(index)
    }
}

/// Reads the cells of one row, turning read failures into errors that name the key.
struct Cells<'r, R: ?Sized> {
    row: &'r R,
    store: &'static str,
    key: String,
}

impl<R: ColumnReader + ?Sized> Cells<'_, R> {
    fn optional<T>(
        &self,
        index: usize,
        read: fn(&R, usize) -> Result<Option<T>, ColumnError>,
    ) -> Result<Option<T>, StoreError> {
        read(self.row, index).map_err(|e| match e {
            ColumnError::WrongType(_) => corrupt_column(self.store, &self.key, column(index), e),
            ColumnError::Backend(e) => e,
        })
    }

    fn required<T>(
        &self,
        index: usize,
        read: fn(&R, usize) -> Result<Option<T>, ColumnError>,
    ) -> Result<T, StoreError> {
        self.optional(index, read)?
            .ok_or_else(|| corrupt_column(self.store, &self.key, column(index), "is NULL"))
    }
}

fn column(index: usize) -> &'static str {
    COLUMN_NAMES.get(index).copied().unwrap_or("?")
}

/// A key record as plain column values: what a SQL store writes and reads back. Times are
/// Unix milliseconds, `metadata` and `limits` are JSON text, `scopes` are the scope names.
///
/// `Debug` leaves out `secret_hash`.
///
/// ```
/// use keyward::store::rows::RecordRow;
/// let row = RecordRow {
///     id: "7Kq2mZ9xA1bC".into(),
///     prefix: "av".into(),
///     project: "web-app".into(),
///     environment: "dev".into(),
///     scopes: vec!["read".into()],
///     name: "ingest".into(),
///     metadata: Some(r#"{"team":"obs"}"#.into()),
///     created_at: 1_800_000_000_000,
///     expires_at: None,
///     revoked_at: None,
///     last_used_at: None,
///     secret_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$\
///                   X34BrkThJYMu+rIISZMN1uQlJp94vR8NMk4ILKRmdLY"
///         .into(),
///     rotated_from: None,
///     limits: "{}".into(),
///     rotated_to: None,
/// };
/// let record = row.clone().into_record("example")?;
/// assert_eq!(RecordRow::from_record(&record, "example")?, row);
///
/// // A value that does not decode is Corrupt, naming the key and the column.
/// let edited = RecordRow { scopes: vec!["Not A Scope".into()], ..row };
/// let err = edited.into_record("example").unwrap_err().to_string();
/// assert!(err.contains("key 7Kq2mZ9xA1bC: column scopes"), "{err}");
/// # Ok::<(), keyward::StoreError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// The public id.
    pub id: String,
    /// The prefix.
    pub prefix: String,
    /// The project.
    pub project: String,
    /// The environment.
    pub environment: String,
    /// The scope names.
    pub scopes: Vec<String>,
    /// The human-readable name.
    pub name: String,
    /// The metadata as JSON text, `None` when absent.
    pub metadata: Option<String>,
    /// When it was issued.
    pub created_at: i64,
    /// When it expires.
    pub expires_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// When it was last used.
    pub last_used_at: Option<i64>,
    /// The Argon2id PHC string.
    pub secret_hash: String,
    /// The id of the key it replaced.
    pub rotated_from: Option<String>,
    /// The limits as JSON text.
    pub limits: String,
    /// The id of the key that replaced it.
    pub rotated_to: Option<String>,
}

impl fmt::Debug for RecordRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRow")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .field("project", &self.project)
            .field("environment", &self.environment)
            .field("scopes", &self.scopes)
            .field("name", &self.name)
            .field("metadata", &self.metadata)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("last_used_at", &self.last_used_at)
            .field("rotated_from", &self.rotated_from)
            .field("limits", &self.limits)
            .field("rotated_to", &self.rotated_to)
            .finish_non_exhaustive()
    }
}

/// The JSON text of a key's limits; failing to write it is the store's failure.
fn limits_json(limits: &KeyLimits, store: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(limits).map_err(|e| StoreError::backend(store, e))
}

fn scope_names(scopes: &ScopeSet) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

impl RecordRow {
    /// Encodes a record.
    ///
    /// # Errors
    /// [`StoreError::Backend`] of `store` if the limits cannot be written as JSON.
    pub fn from_record(record: &KeyRecord, store: &'static str) -> Result<Self, StoreError> {
        Ok(Self {
            id: record.id.as_str().to_owned(),
            prefix: record.prefix.as_str().to_owned(),
            project: record.project.as_str().to_owned(),
            environment: record.environment.as_str().to_owned(),
            scopes: scope_names(&record.scopes),
            name: record.name.clone(),
            metadata: record.metadata.as_ref().map(ToString::to_string),
            created_at: record.created_at.unix_millis(),
            expires_at: record.expires_at.map(Timestamp::unix_millis),
            revoked_at: record.revoked_at.map(Timestamp::unix_millis),
            last_used_at: record.last_used_at.map(Timestamp::unix_millis),
            secret_hash: record.secret_hash.as_str().to_owned(),
            rotated_from: record.rotated_from.as_ref().map(|r| r.as_str().to_owned()),
            limits: limits_json(&record.limits, store)?,
            rotated_to: record.rotated_to.as_ref().map(|r| r.as_str().to_owned()),
        })
    }

    /// Decodes the record, checking every value.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] of `store`, naming the key and the first column that does not
    /// hold a valid value.
    pub fn into_record(self, store: &'static str) -> Result<KeyRecord, StoreError> {
        let key = shown(&self.id);
        let bad =
            |column: &str, detail: &dyn fmt::Display| corrupt_column(store, &key, column, detail);
        Ok(KeyRecord {
            id: self.id.parse().map_err(|e| bad("id", &e))?,
            prefix: self.prefix.parse().map_err(|e| bad("prefix", &e))?,
            project: self.project.parse().map_err(|e| bad("project", &e))?,
            environment: self
                .environment
                .parse()
                .map_err(|e| bad("environment", &e))?,
            scopes: ScopeSet::parse(&self.scopes).map_err(|e| bad("scopes", &e))?,
            name: self.name,
            metadata: self
                .metadata
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| bad("metadata", &format_args!("not valid JSON ({e})")))?,
            created_at: Timestamp::from_unix_millis(self.created_at),
            expires_at: self.expires_at.map(Timestamp::from_unix_millis),
            revoked_at: self.revoked_at.map(Timestamp::from_unix_millis),
            last_used_at: self.last_used_at.map(Timestamp::from_unix_millis),
            // The parser's message is not repeated: it is about the hash's text.
            secret_hash: SecretHash::from_phc(self.secret_hash)
                .map_err(|_| bad("secret_hash", &"not a PHC string"))?,
            rotated_from: self
                .rotated_from
                .map(|r| r.parse::<KeyId>())
                .transpose()
                .map_err(|e| bad("rotated_from", &e))?,
            limits: serde_json::from_str(&self.limits)
                .map_err(|e| bad("limits", &format_args!("not valid limits ({e})")))?,
            rotated_to: self
                .rotated_to
                .map(|r| r.parse::<KeyId>())
                .transpose()
                .map_err(|e| bad("rotated_to", &e))?,
        })
    }

    /// Reads a row of [`COLUMNS`] through the store's [`ColumnReader`]. Values are checked
    /// only for their kind here; [`RecordRow::into_record`] checks the rest.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] of `store` naming the key and the column for a value of the
    /// wrong kind or a `NULL` where a value belongs; the reader's
    /// [`ColumnError::Backend`] as it is.
    pub fn read(
        row: &(impl ColumnReader + ?Sized),
        store: &'static str,
    ) -> Result<Self, StoreError> {
        let mut cells = Cells {
            row,
            store,
            key: "?".to_owned(),
        };
        let id = cells.required(ID, ColumnReader::text)?;
        cells.key = shown(&id);
        Ok(Self {
            id,
            prefix: cells.required(PREFIX, ColumnReader::text)?,
            project: cells.required(PROJECT, ColumnReader::text)?,
            environment: cells.required(ENVIRONMENT, ColumnReader::text)?,
            scopes: cells.required(SCOPES, ColumnReader::names)?,
            name: cells.required(NAME, ColumnReader::text)?,
            metadata: cells.optional(METADATA, ColumnReader::json)?,
            created_at: cells.required(CREATED_AT, ColumnReader::integer)?,
            expires_at: cells.optional(EXPIRES_AT, ColumnReader::integer)?,
            revoked_at: cells.optional(REVOKED_AT, ColumnReader::integer)?,
            last_used_at: cells.optional(LAST_USED_AT, ColumnReader::integer)?,
            secret_hash: cells.required(SECRET_HASH, ColumnReader::text)?,
            rotated_from: cells.optional(ROTATED_FROM, ColumnReader::text)?,
            limits: cells.required(LIMITS, ColumnReader::json)?,
            rotated_to: cells.optional(ROTATED_TO, ColumnReader::text)?,
        })
    }

    /// The values in [`COLUMN_NAMES`] order, to bind to
    /// `INSERT INTO keyward_keys ({COLUMNS}) VALUES (…)`.
    pub fn into_params(self) -> [Param; COLUMN_COUNT] {
        [
            Param::Text(Some(self.id)),
            Param::Text(Some(self.prefix)),
            Param::Text(Some(self.project)),
            Param::Text(Some(self.environment)),
            Param::Names(self.scopes),
            Param::Text(Some(self.name)),
            Param::Json(self.metadata),
            Param::Integer(Some(self.created_at)),
            Param::Integer(self.expires_at),
            Param::Integer(self.revoked_at),
            Param::Integer(self.last_used_at),
            Param::Text(Some(self.secret_hash)),
            Param::Text(self.rotated_from),
            Param::Json(Some(self.limits)),
            Param::Text(self.rotated_to),
        ]
    }
}

/// A [`KeyChange`] as plain column values, with the same meaning: a field left `None` is
/// untouched. `Debug` leaves out `secret_hash`.
///
/// ```
/// use keyward::{KeyChange, Timestamp};
/// use keyward::store::rows::ChangeRow;
/// let change = KeyChange {
///     revoke_at: Some(Timestamp::from_unix_millis(5)),
///     metadata: Some(None),
///     ..KeyChange::default()
/// };
/// let row = ChangeRow::from_change(&change, "example")?;
/// assert_eq!(row.revoke_at, Some(5));
/// assert_eq!(row.metadata, Some(None)); // clear the metadata
/// assert_eq!(row.limits, None); // keep the limits
/// # Ok::<(), keyward::StoreError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChangeRow {
    /// Revoke at this instant, unless already revoked.
    pub revoke_at: Option<i64>,
    /// Set (`Some(Some(t))`) or clear (`Some(None)`) the expiry.
    pub expires_at: Option<Option<i64>>,
    /// Replace the scope names.
    pub scopes: Option<Vec<String>>,
    /// Replace the name.
    pub name: Option<String>,
    /// Set (JSON text) or clear the metadata.
    pub metadata: Option<Option<String>>,
    /// Replace the PHC string.
    pub secret_hash: Option<String>,
    /// Replace the limits (JSON text).
    pub limits: Option<String>,
}

impl fmt::Debug for ChangeRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeRow")
            .field("revoke_at", &self.revoke_at)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .field("name", &self.name)
            .field("metadata", &self.metadata)
            .field("secret_hash", &self.secret_hash.as_ref().map(|_| "…"))
            .field("limits", &self.limits)
            .finish()
    }
}

impl ChangeRow {
    /// Encodes a change.
    ///
    /// # Errors
    /// [`StoreError::Backend`] of `store` if new limits cannot be written as JSON.
    pub fn from_change(change: &KeyChange, store: &'static str) -> Result<Self, StoreError> {
        Ok(Self {
            revoke_at: change.revoke_at.map(Timestamp::unix_millis),
            expires_at: change.expires_at.map(|e| e.map(Timestamp::unix_millis)),
            scopes: change.scopes.as_ref().map(scope_names),
            name: change.name.clone(),
            metadata: change
                .metadata
                .as_ref()
                .map(|m| m.as_ref().map(ToString::to_string)),
            secret_hash: change.secret_hash.as_ref().map(|h| h.as_str().to_owned()),
            limits: change
                .limits
                .as_ref()
                .map(|l| limits_json(l, store))
                .transpose()?,
        })
    }
}

/// How a SQL dialect writes numbered parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placeholders {
    /// `?1`, `?2`, … (SQLite).
    Question,
    /// `$1`, `$2`, … (PostgreSQL).
    Dollar,
}

impl Placeholders {
    /// The `n`th parameter (counting from 1).
    ///
    /// ```
    /// use keyward::store::rows::Placeholders;
    /// assert_eq!(Placeholders::Question.nth(3), "?3");
    /// assert_eq!(Placeholders::Dollar.nth(3), "$3");
    /// ```
    pub fn nth(self, n: usize) -> String {
        match self {
            Placeholders::Question => format!("?{n}"),
            Placeholders::Dollar => format!("${n}"),
        }
    }
}

/// A statement and the values of its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// The values for placeholders 1, 2, ….
    pub params: Vec<Param>,
}

impl Statement {
    /// Adds a parameter and returns its placeholder.
    pub(super) fn bind(&mut self, placeholders: Placeholders, value: Param) -> String {
        self.params.push(value);
        placeholders.nth(self.params.len())
    }
}

/// The `SELECT` of one page of [`RecordStore::list`](super::RecordStore::list): rows of
/// [`COLUMNS`] in `(created_at, id)` order, after `query.after`, at most `query.limit`.
/// Only the filters in use appear in the SQL, so each shape gets a plan that uses the
/// matching index. The parameters are [`Param::Text`] and [`Param::Integer`] only.
///
/// ```
/// use keyward::ListQuery;
/// use keyward::store::rows::{Param, Placeholders, list_statement};
/// let query = ListQuery {
///     project: Some("web-app".parse()?),
///     limit: 10,
///     ..ListQuery::default()
/// };
/// let statement = list_statement(&query, Placeholders::Dollar);
/// assert!(statement.sql.ends_with(
///     "FROM keyward_keys WHERE project = $1 ORDER BY created_at, id LIMIT $2"
/// ));
/// assert_eq!(
///     statement.params,
///     [Param::Text(Some("web-app".into())), Param::Integer(Some(10))]
/// );
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
pub fn list_statement(query: &ListQuery, placeholders: Placeholders) -> Statement {
    let mut statement = Statement {
        sql: String::new(),
        params: Vec::new(),
    };
    let mut conditions = Vec::new();
    if let Some(p) = &query.project {
        let p = statement.bind(placeholders, Param::Text(Some(p.as_str().to_owned())));
        conditions.push(format!("project = {p}"));
    }
    if let Some(e) = &query.environment {
        let e = statement.bind(placeholders, Param::Text(Some(e.as_str().to_owned())));
        conditions.push(format!("environment = {e}"));
    }
    if let Some((at, id)) = &query.after {
        let at = statement.bind(placeholders, Param::Integer(Some(at.unix_millis())));
        let id = statement.bind(placeholders, Param::Text(Some(id.as_str().to_owned())));
        conditions.push(format!("(created_at, id) > ({at}, {id})"));
    }
    let limit = statement.bind(placeholders, Param::Integer(Some(i64::from(query.limit))));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    statement.sql =
        format!("SELECT {COLUMNS} FROM {KEYS_TABLE}{filter} ORDER BY created_at, id LIMIT {limit}");
    statement
}

/// A list of names (the scopes) as one text value: space-separated, as [`ScopeSet`]'s
/// `Display` writes them.
///
/// ```
/// use keyward::store::rows::{join_spaced, split_spaced};
/// let names = vec!["read".to_owned(), "traces:write".to_owned()];
/// assert_eq!(join_spaced(&names), "read traces:write");
/// assert_eq!(split_spaced("read  traces:write "), names);
/// ```
pub fn join_spaced(names: &[String]) -> String {
    names.join(" ")
}

/// The names in a text value written by [`join_spaced`] (any run of ASCII white space
/// separates them, as [`ScopeSet::parse_spaced`] reads them).
pub fn split_spaced(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(str::to_owned).collect()
}

/// A revision or an amount asked for, as a signed 64-bit SQL integer: values beyond
/// `i64::MAX` become `i64::MAX` (no stored revision or count can exceed it).
///
/// ```
/// use keyward::store::rows::to_sql_int;
/// assert_eq!(to_sql_int(7), 7);
/// assert_eq!(to_sql_int(u64::MAX), i64::MAX);
/// ```
pub fn to_sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A revision or count read back from a signed 64-bit SQL integer.
///
/// ```
/// use keyward::store::rows::from_sql_int;
/// assert_eq!(from_sql_int("example", 7, "a usage count")?, 7);
/// assert!(from_sql_int("example", -1, "a usage count").is_err());
/// # Ok::<(), keyward::StoreError>(())
/// ```
///
/// # Errors
/// [`StoreError::Corrupt`] of `store` for a negative value, saying `what` it is.
pub fn from_sql_int(store: &'static str, value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::corrupt(store, format_args!("{what} is negative ({value})")))
}

/// [`Changes::from_log`] over the column values a SQL store reads in one snapshot: its
/// current revision, the oldest revision still in its change log (`None` when the log is
/// empty), and the key ids logged after `asked`, oldest first.
///
/// ```
/// use keyward::store::rows::changes_from_log;
/// let changes = changes_from_log("example", 3, 9, Some(5), vec!["7Kq2mZ9xA1bC".into()])?;
/// assert_eq!((changes.revision, changes.resync, changes.ids.len()), (9, true, 1));
/// # Ok::<(), keyward::StoreError>(())
/// ```
///
/// # Errors
/// [`StoreError::Corrupt`] of `store` for a negative revision or an id that does not parse.
pub fn changes_from_log(
    store: &'static str,
    asked: u64,
    current: i64,
    oldest_logged: Option<i64>,
    ids: Vec<String>,
) -> Result<Changes, StoreError> {
    let current = from_sql_int(store, current, "the revision")?;
    let oldest_logged = oldest_logged
        .map(|oldest| from_sql_int(store, oldest, "a logged revision"))
        .transpose()?;
    let ids = ids
        .iter()
        .map(|raw| {
            raw.parse::<KeyId>().map_err(|e| {
                StoreError::corrupt(
                    store,
                    format_args!("the change log holds a bad key id: {e}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Changes::from_log(asked, current, oldest_logged, ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SecretHash;
    use crate::quota::{Credits, Refill};

    const PHC: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$X34BrkThJYMu+rIISZMN1uQlJp94vR8NMk4ILKRmdLY";

    fn record() -> KeyRecord {
        KeyRecord {
            id: "7Kq2mZ9xA1bC".parse().unwrap(),
            prefix: "av".parse().unwrap(),
            project: "web-app".parse().unwrap(),
            environment: "dev".parse().unwrap(),
            scopes: ScopeSet::parse(["read", "traces:write"]).unwrap(),
            name: "ingest – ünïcode".into(),
            metadata: Some(serde_json::json!({"team": "obs", "n": 3})),
            created_at: Timestamp::from_unix_millis(1_800_000_000_000),
            expires_at: Some(Timestamp::from_unix_millis(1_800_000_086_400)),
            revoked_at: None,
            last_used_at: Some(Timestamp::from_unix_millis(1_800_000_000_500)),
            secret_hash: SecretHash::from_phc(PHC).unwrap(),
            rotated_from: Some("9Zz8yY7xX6wW".parse().unwrap()),
            limits: KeyLimits {
                credits: Some(Credits {
                    amount: 100,
                    refill: Some(Refill {
                        period: crate::quota::Period::Month,
                        amount: 50,
                    }),
                }),
                ..KeyLimits::default()
            },
            rotated_to: Some("5Yy4xX3wW2vV".parse().unwrap()),
        }
    }

    /// A row as one store's driver would give it: every cell as the reader's kinds.
    struct Cells(Vec<Param>);

    impl ColumnReader for Cells {
        fn text(&self, index: usize) -> Result<Option<String>, ColumnError> {
            match &self.0[index] {
                Param::Text(t) | Param::Json(t) => Ok(t.clone()),
                other => Err(ColumnError::WrongType(format!("{other:?}"))),
            }
        }
        fn integer(&self, index: usize) -> Result<Option<i64>, ColumnError> {
            match &self.0[index] {
                Param::Integer(i) => Ok(*i),
                other => Err(ColumnError::WrongType(format!("{other:?}"))),
            }
        }
        fn names(&self, index: usize) -> Result<Option<Vec<String>>, ColumnError> {
            match &self.0[index] {
                Param::Names(n) => Ok(Some(n.clone())),
                other => Err(ColumnError::WrongType(format!("{other:?}"))),
            }
        }
    }

    fn corrupt_message(result: Result<impl fmt::Debug, StoreError>) -> String {
        match result {
            Err(StoreError::Corrupt { store, message }) => {
                assert_eq!(store, "test");
                message
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_row_and_params() {
        let r = record();
        let row = RecordRow::from_record(&r, "test").unwrap();
        assert_eq!(row.scopes, ["read", "traces:write"]);
        assert_eq!(row.created_at, 1_800_000_000_000);
        assert_eq!(row.clone().into_record("test").unwrap(), r);
        let cells = Cells(row.clone().into_params().to_vec());
        let read = RecordRow::read(&cells, "test").unwrap();
        assert_eq!(read, row);
        assert_eq!(read.into_record("test").unwrap(), r);
    }

    #[test]
    fn scopes_stored_as_spaced_text_read_back_through_the_default_reader() {
        struct Spaced(Cells);
        impl ColumnReader for Spaced {
            fn text(&self, index: usize) -> Result<Option<String>, ColumnError> {
                match &self.0.0[index] {
                    Param::Names(n) => Ok(Some(join_spaced(n))),
                    _ => self.0.text(index),
                }
            }
            fn integer(&self, index: usize) -> Result<Option<i64>, ColumnError> {
                self.0.integer(index)
            }
        }
        let r = record();
        let row = RecordRow::from_record(&r, "test").unwrap();
        let spaced = Spaced(Cells(row.into_params().to_vec()));
        let read = RecordRow::read(&spaced, "test").unwrap();
        assert_eq!(read.into_record("test").unwrap(), r);
        assert_eq!(join_spaced(&scope_names(&r.scopes)), r.scopes.to_string());
    }

    #[test]
    fn every_bad_value_is_corrupt_naming_the_key_and_the_column() {
        let good = RecordRow::from_record(&record(), "test").unwrap();
        let cases: Vec<(&str, RecordRow)> = vec![
            (
                "id",
                RecordRow {
                    id: "short".into(),
                    ..good.clone()
                },
            ),
            (
                "prefix",
                RecordRow {
                    prefix: String::new(),
                    ..good.clone()
                },
            ),
            (
                "project",
                RecordRow {
                    project: "Not A Project".into(),
                    ..good.clone()
                },
            ),
            (
                "environment",
                RecordRow {
                    environment: "??".into(),
                    ..good.clone()
                },
            ),
            (
                "scopes",
                RecordRow {
                    scopes: vec!["BAD SCOPE!".into()],
                    ..good.clone()
                },
            ),
            (
                "metadata",
                RecordRow {
                    metadata: Some("{not json".into()),
                    ..good.clone()
                },
            ),
            (
                "secret_hash",
                RecordRow {
                    secret_hash: "plain".into(),
                    ..good.clone()
                },
            ),
            (
                "rotated_from",
                RecordRow {
                    rotated_from: Some("x".into()),
                    ..good.clone()
                },
            ),
            (
                "rotated_to",
                RecordRow {
                    rotated_to: Some("y".into()),
                    ..good.clone()
                },
            ),
            (
                "limits",
                RecordRow {
                    limits: r#"{"credits": -1}"#.into(),
                    ..good.clone()
                },
            ),
            (
                "limits",
                RecordRow {
                    limits: r#"{"unknown": 1}"#.into(),
                    ..good.clone()
                },
            ),
        ];
        for (column, row) in cases {
            let id = row.id.clone();
            let message = corrupt_message(row.into_record("test"));
            assert!(message.contains(&format!("column {column}")), "{message}");
            assert!(message.contains(&format!("key {id}")), "{message}");
        }
    }

    #[test]
    fn a_cell_of_the_wrong_kind_or_null_is_corrupt_and_a_backend_error_is_kept() {
        let params = RecordRow::from_record(&record(), "test")
            .unwrap()
            .into_params()
            .to_vec();
        let with = |index: usize, value: Param| {
            let mut cells = params.clone();
            cells[index] = value;
            Cells(cells)
        };
        let message = corrupt_message(RecordRow::read(
            &with(CREATED_AT, Param::Text(Some("yesterday".into()))),
            "test",
        ));
        assert!(
            message.starts_with("key 7Kq2mZ9xA1bC: column created_at: a value of the wrong type"),
            "{message}"
        );
        let message = corrupt_message(RecordRow::read(&with(NAME, Param::Text(None)), "test"));
        assert_eq!(message, "key 7Kq2mZ9xA1bC: column name: is NULL");
        let message = corrupt_message(RecordRow::read(&with(ID, Param::Integer(Some(1))), "test"));
        assert!(message.starts_with("key ?: column id:"), "{message}");
        let garbage = "x".repeat(100);
        let message = corrupt_message(
            RecordRow::read(&with(ID, Param::Text(Some(garbage))), "test")
                .unwrap()
                .into_record("test"),
        );
        assert!(
            message.starts_with(&format!("key {}: column id:", "x".repeat(16))),
            "{message}"
        );

        struct Failing;
        impl ColumnReader for Failing {
            fn text(&self, _: usize) -> Result<Option<String>, ColumnError> {
                Err(ColumnError::Backend(StoreError::backend(
                    "test",
                    "disk gone",
                )))
            }
            fn integer(&self, _: usize) -> Result<Option<i64>, ColumnError> {
                Ok(None)
            }
        }
        assert!(matches!(
            RecordRow::read(&Failing, "test"),
            Err(StoreError::Backend { .. })
        ));
    }

    #[test]
    fn a_change_keeps_untouched_fields_none_and_clears_with_some_none() {
        let r = record();
        let change = KeyChange {
            expires_at: Some(None),
            scopes: Some(ScopeSet::parse(["write"]).unwrap()),
            metadata: Some(Some(serde_json::json!([1]))),
            limits: Some(KeyLimits::default()),
            secret_hash: Some(r.secret_hash.clone()),
            ..KeyChange::default()
        };
        let row = ChangeRow::from_change(&change, "test").unwrap();
        assert_eq!(
            row,
            ChangeRow {
                revoke_at: None,
                expires_at: Some(None),
                scopes: Some(vec!["write".into()]),
                name: None,
                metadata: Some(Some("[1]".into())),
                secret_hash: Some(PHC.into()),
                limits: Some("{}".into()),
            }
        );
        assert_eq!(
            ChangeRow::from_change(&KeyChange::default(), "test").unwrap(),
            ChangeRow::default()
        );
    }

    #[test]
    fn debug_leaves_out_the_hash() {
        let row = RecordRow::from_record(&record(), "test").unwrap();
        let change = ChangeRow {
            secret_hash: Some(PHC.into()),
            ..ChangeRow::default()
        };
        let params = format!("{:?}", row.clone().into_params());
        for text in [format!("{row:?}"), format!("{change:?}"), params] {
            assert!(!text.contains("c2FsdHNhbHRzYWx0c2FsdA"), "{text}");
        }
    }

    #[test]
    fn list_statements_bind_only_the_filters_in_use() {
        let all = list_statement(&ListQuery::default(), Placeholders::Question);
        assert_eq!(
            all.sql,
            format!("SELECT {COLUMNS} FROM keyward_keys ORDER BY created_at, id LIMIT ?1")
        );
        assert_eq!(all.params, [Param::Integer(Some(100))]);
        let id: KeyId = "7Kq2mZ9xA1bC".parse().unwrap();
        let query = ListQuery {
            project: Some("web-app".parse().unwrap()),
            environment: Some("prd".parse().unwrap()),
            after: Some((Timestamp::from_unix_millis(5), id)),
            limit: 3,
        };
        let page = list_statement(&query, Placeholders::Dollar);
        assert_eq!(
            page.sql,
            format!(
                "SELECT {COLUMNS} FROM keyward_keys WHERE project = $1 AND environment = $2 \
                 AND (created_at, id) > ($3, $4) ORDER BY created_at, id LIMIT $5"
            )
        );
        assert_eq!(
            page.params,
            [
                Param::Text(Some("web-app".into())),
                Param::Text(Some("prd".into())),
                Param::Integer(Some(5)),
                Param::Text(Some("7Kq2mZ9xA1bC".into())),
                Param::Integer(Some(3)),
            ]
        );
    }

    #[test]
    fn the_column_list_matches_the_names() {
        assert_eq!(COLUMNS, COLUMN_NAMES.join(", "));
        for (index, name) in [
            (ID, "id"),
            (SCOPES, "scopes"),
            (METADATA, "metadata"),
            (SECRET_HASH, "secret_hash"),
            (LIMITS, "limits"),
        ] {
            assert_eq!(COLUMN_NAMES[index], name);
        }
    }

    #[test]
    fn changes_from_log_converts_and_applies_the_resync_rule() {
        let id = "7Kq2mZ9xA1bC".to_owned();
        let c = changes_from_log("test", 4, 9, Some(5), vec![id.clone()]).unwrap();
        assert_eq!((c.revision, c.resync, c.ids.len()), (9, false, 1));
        assert!(
            changes_from_log("test", 3, 9, Some(5), vec![])
                .unwrap()
                .resync
        );
        assert!(!changes_from_log("test", 9, 9, None, vec![]).unwrap().resync);
        assert!(changes_from_log("test", 2, 9, None, vec![]).unwrap().resync);
        corrupt_message(changes_from_log("test", 0, -1, None, vec![]));
        corrupt_message(changes_from_log("test", 0, 1, Some(-1), vec![]));
        let message = corrupt_message(changes_from_log("test", 0, 1, Some(1), vec!["x".into()]));
        assert!(message.contains("change log"), "{message}");
    }

    #[test]
    fn sql_integers_clamp_going_in_and_refuse_negatives_coming_out() {
        assert_eq!(to_sql_int(u64::MAX), i64::MAX);
        assert_eq!(to_sql_int(i64::MAX as u64), i64::MAX);
        assert_eq!(
            from_sql_int("test", i64::MAX, "x").unwrap(),
            i64::MAX as u64
        );
        let message = corrupt_message(from_sql_int("test", -3, "a usage count"));
        assert_eq!(message, "a usage count is negative (-3)");
    }
}
