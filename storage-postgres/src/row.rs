//! The driver's side of [`keyward::store::rows`]: sqlx rows read as column values, and
//! values bound as sqlx arguments. Decoding is core's: a bad value is
//! [`StoreError::Corrupt`], never a panic.

use keyward::store::rows::{
    COLUMN_COUNT, COLUMNS, ColumnError, ColumnReader, Param, Placeholders, RecordRow,
};
use keyward::{KeyRecord, StoreError};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::types::JsonRawValue;
use sqlx::{Arguments, Row};

use crate::{STORE, backend};

/// A `keyward_keys` row selected with [`COLUMNS`]: scopes are a `text[]` and JSON is
/// `jsonb`, read as its text.
struct Columns<'r>(&'r PgRow);

impl ColumnReader for Columns<'_> {
    fn text(&self, index: usize) -> Result<Option<String>, ColumnError> {
        self.0.try_get(index).map_err(wrong_type)
    }

    fn integer(&self, index: usize) -> Result<Option<i64>, ColumnError> {
        self.0.try_get(index).map_err(wrong_type)
    }

    fn names(&self, index: usize) -> Result<Option<Vec<String>>, ColumnError> {
        self.0.try_get(index).map_err(wrong_type)
    }

    fn json(&self, index: usize) -> Result<Option<String>, ColumnError> {
        let raw: Option<&JsonRawValue> = self.0.try_get(index).map_err(wrong_type)?;
        Ok(raw.map(|raw| raw.get().to_owned()))
    }
}

/// Any column sqlx cannot decode as asked is taken for a value edited by hand.
fn wrong_type(e: sqlx::Error) -> ColumnError {
    ColumnError::WrongType(e.to_string())
}

/// Decodes one `keyward_keys` row selected (or returned) with [`COLUMNS`].
pub(crate) fn decode(row: &PgRow) -> Result<KeyRecord, StoreError> {
    RecordRow::read(&Columns(row), STORE)?.into_record(STORE)
}

/// A statement's arguments: names as a `text[]`, JSON as text (its placeholder casts it to
/// `jsonb`, see [`insert_statement`]).
pub(crate) fn arguments(params: Vec<Param>) -> Result<PgArguments, StoreError> {
    let mut args = PgArguments::default();
    for param in params {
        match param {
            Param::Text(text) | Param::Json(text) => args.add(text),
            Param::Integer(int) => args.add(int),
            Param::Names(names) => args.add(names),
        }
        .map_err(backend)?;
    }
    Ok(args)
}

/// `INSERT INTO keyward_keys ({COLUMNS}) VALUES (…), …` for the rows, followed by `tail`,
/// with the values to bind.
pub(crate) fn insert_statement(rows: Vec<RecordRow>, tail: &str) -> (String, Vec<Param>) {
    let mut sql = format!("INSERT INTO keyward_keys ({COLUMNS}) VALUES ");
    let mut params = Vec::with_capacity(rows.len() * COLUMN_COUNT);
    for (i, row) in rows.into_iter().enumerate() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for (j, param) in row.into_params().into_iter().enumerate() {
            if j > 0 {
                sql.push_str(", ");
            }
            let cast = if matches!(param, Param::Json(_)) {
                "::jsonb"
            } else {
                ""
            };
            params.push(param);
            sql.push_str(&Placeholders::Dollar.nth(params.len()));
            sql.push_str(cast);
        }
        sql.push(')');
    }
    sql.push_str(tail);
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_number_every_value_and_cast_json() {
        let row = RecordRow {
            id: "7Kq2mZ9xA1bC".into(),
            prefix: "av".into(),
            project: "web-app".into(),
            environment: "dev".into(),
            scopes: vec!["read".into()],
            name: "n".into(),
            metadata: None,
            created_at: 1,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            secret_hash: "$argon2id$…".into(),
            rotated_from: None,
            limits: "{}".into(),
            rotated_to: None,
        };
        let (sql, params) = insert_statement(vec![row.clone(), row], " RETURNING id");
        assert_eq!(params.len(), 2 * COLUMN_COUNT);
        assert!(
            sql.starts_with(&format!(
                "INSERT INTO keyward_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, \
                 $8, $9, $10, $11, $12, $13, $14::jsonb, $15), ($16, "
            )),
            "{sql}"
        );
        assert!(sql.ends_with("$29::jsonb, $30) RETURNING id"), "{sql}");
    }
}
