//! The driver's side of [`keyward::store::rows`]: rusqlite rows read as column values, and
//! values bound as rusqlite values. Decoding is core's: a bad value is
//! [`StoreError::Corrupt`], never a panic.

use keyward::store::rows::{ColumnError, ColumnReader, Param, RecordRow, join_spaced};
use keyward::{KeyRecord, StoreError};
use rusqlite::Row;
use rusqlite::types::Value;

use crate::STORE;
use crate::error::SqliteError;

/// A SQLite failure, kept as the source.
pub(crate) fn backend(e: impl Into<SqliteError>) -> StoreError {
    StoreError::backend(STORE, e.into())
}

/// A `keyward_keys` row selected with [`COLUMNS`](keyward::store::rows::COLUMNS). Scopes are
/// space-separated text and JSON is text: the readers' defaults.
struct Columns<'a, 'stmt>(&'a Row<'stmt>);

impl ColumnReader for Columns<'_, '_> {
    fn text(&self, index: usize) -> Result<Option<String>, ColumnError> {
        self.0.get(index).map_err(column_error)
    }

    fn integer(&self, index: usize) -> Result<Option<i64>, ColumnError> {
        self.0.get(index).map_err(column_error)
    }
}

/// A value of the wrong type is corruption; anything else is SQLite failing.
fn column_error(e: rusqlite::Error) -> ColumnError {
    match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => ColumnError::WrongType(e.to_string()),
        other => ColumnError::Backend(backend(other)),
    }
}

/// Decodes one `keyward_keys` row selected with [`COLUMNS`](keyward::store::rows::COLUMNS).
pub(crate) fn decode_record(row: &Row<'_>) -> Result<KeyRecord, StoreError> {
    RecordRow::read(&Columns(row), STORE)?.into_record(STORE)
}

/// A parameter as SQLite keeps it: names as one space-separated text, JSON as text.
pub(crate) fn value(param: Param) -> Value {
    match param {
        Param::Text(text) | Param::Json(text) => text.map_or(Value::Null, Value::Text),
        Param::Integer(int) => int.map_or(Value::Null, Value::Integer),
        Param::Names(names) => Value::Text(join_spaced(&names)),
    }
}
