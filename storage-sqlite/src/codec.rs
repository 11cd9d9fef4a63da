//! Encoding records into columns and decoding rows back, where any bad value is
//! [`StoreError::Corrupt`], never a panic.

use std::str::FromStr;

use keyward::{
    Environment, KeyId, KeyLimits, KeyRecord, Prefix, Project, ScopeSet, SecretHash, StoreError,
    Timestamp,
};
use rusqlite::Row;

use crate::STORE;
use crate::error::SqliteError;

/// The `keys` columns in the order [`decode_record`] reads them.
pub(crate) const COLUMNS: &str = "id, prefix, project, environment, scopes, name, metadata, \
     created_at, expires_at, revoked_at, last_used_at, secret_hash, rotated_from, limits";

/// A SQLite failure, kept as the source.
pub(crate) fn backend(e: impl Into<SqliteError>) -> StoreError {
    StoreError::backend(STORE, e.into())
}

/// Maps a column read error: a value of the wrong type is corruption, anything else is the
/// backend failing.
fn column_err(id: &str, column: &str, e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::corrupt(
            STORE,
            format!("key {id}: column {column} has a value of the wrong type"),
        ),
        other => backend(other),
    }
}

fn get<T: rusqlite::types::FromSql>(
    row: &Row<'_>,
    idx: usize,
    id: &str,
    column: &str,
) -> Result<T, StoreError> {
    row.get(idx).map_err(|e| column_err(id, column, e))
}

fn parse<T: FromStr>(raw: &str, id: &str, column: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    raw.parse()
        .map_err(|e| StoreError::corrupt(STORE, format!("key {id}: column {column}: {e}")))
}

fn json<T: serde::de::DeserializeOwned>(
    raw: &str,
    id: &str,
    column: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| {
        StoreError::corrupt(
            STORE,
            format!("key {id}: column {column} is not valid JSON of its kind ({e})"),
        )
    })
}

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_unix_millis)
}

/// Decodes one `keys` row selected with [`COLUMNS`].
pub(crate) fn decode_record(row: &Row<'_>) -> Result<KeyRecord, StoreError> {
    let raw_id: String = get(row, 0, "?", "id")?;
    // The id is public; it names the bad row in messages. Keep it short if it is garbage.
    let shown: String = raw_id.chars().take(16).collect();
    let id: KeyId = parse(&raw_id, &shown, "id")?;
    let id_s = id.as_str();
    let prefix: Prefix = parse(&get::<String>(row, 1, id_s, "prefix")?, id_s, "prefix")?;
    let project: Project = parse(&get::<String>(row, 2, id_s, "project")?, id_s, "project")?;
    let environment: Environment = parse(
        &get::<String>(row, 3, id_s, "environment")?,
        id_s,
        "environment",
    )?;
    let scopes = ScopeSet::parse_spaced(&get::<String>(row, 4, id_s, "scopes")?)
        .map_err(|e| StoreError::corrupt(STORE, format!("key {id_s}: column scopes: {e}")))?;
    let name: String = get(row, 5, id_s, "name")?;
    let metadata = get::<Option<String>>(row, 6, id_s, "metadata")?
        .map(|m| json::<serde_json::Value>(&m, id_s, "metadata"))
        .transpose()?;
    let created_at = Timestamp::from_unix_millis(get(row, 7, id_s, "created_at")?);
    let expires_at = ts(get(row, 8, id_s, "expires_at")?);
    let revoked_at = ts(get(row, 9, id_s, "revoked_at")?);
    let last_used_at = ts(get(row, 10, id_s, "last_used_at")?);
    let secret_hash =
        SecretHash::from_phc(get::<String>(row, 11, id_s, "secret_hash")?).map_err(|_| {
            StoreError::corrupt(
                STORE,
                format!("key {id_s}: column secret_hash is not a PHC string"),
            )
        })?;
    let rotated_from = get::<Option<String>>(row, 12, id_s, "rotated_from")?
        .map(|r| parse::<KeyId>(&r, id_s, "rotated_from"))
        .transpose()?;
    let limits: KeyLimits = json(&get::<String>(row, 13, id_s, "limits")?, id_s, "limits")?;
    Ok(KeyRecord {
        id,
        prefix,
        project,
        environment,
        scopes,
        name,
        metadata,
        created_at,
        expires_at,
        revoked_at,
        last_used_at,
        secret_hash,
        rotated_from,
        limits,
    })
}

/// JSON text of a metadata value.
pub(crate) fn metadata_json(m: Option<&serde_json::Value>) -> Result<Option<String>, StoreError> {
    m.map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::backend(STORE, e))
}

/// JSON text of limits.
pub(crate) fn limits_json(l: &KeyLimits) -> Result<String, StoreError> {
    serde_json::to_string(l).map_err(|e| StoreError::backend(STORE, e))
}
