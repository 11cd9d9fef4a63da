//! The request and response bodies of the admin API, with their OpenAPI schemas. Core types
//! the API answers with ([`KeyInfo`](crate::KeyInfo), [`KeyUsage`](crate::KeyUsage)) are
//! described by mirror types here (`KeyInfoSchema`, `KeyUsageSchema`) that are never
//! serialized: the answers are core's own serialization.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::key::KeyId;
use crate::manager::KeyInfo;
use crate::time::Timestamp;

/// What the one-time answers say about the key they carry.
pub(crate) const SHOWN_ONCE: &str =
    "this is the only time the full key is shown: store it now; only its hash is kept";

/// `GET /session`: who is signed in and what the page may offer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Session {
    /// Who acts, e.g. `key:AbCdEf123456` or `user:alice`.
    pub actor: String,
    /// The project whose keys the caller manages.
    pub project: String,
    /// The one environment the caller manages, or empty for every environment of the project.
    pub environments: Vec<String>,
    /// The scopes a new key may be granted; empty when the service does not restrict them.
    pub scopes: Vec<String>,
    /// The token to send in `X-CSRF-Token` on POST, PATCH and DELETE (`null`: none needed).
    pub csrf_token: Option<String>,
}

/// A scope's name, as the API reads it: `[a-z0-9][a-z0-9:._-]{0,63}`. When the service
/// offers only some scopes, the document it serves lists them ([`super::openapi_json_for`]).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(pattern = r"^[a-z0-9][a-z0-9:._-]{0,63}$")]
pub(crate) struct ScopeName(pub String);

/// The path parameter of the routes on one key; it documents the parameter only (handlers
/// read the raw text and answer 400 with what is wrong with it).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a parameter description only
pub(crate) struct KeyIdPath {
    /// The key's 12-character id
    #[param(pattern = r"^[0-9A-Za-z]{12}$", min_length = 12, max_length = 12)]
    key_id: String,
}

/// `POST /`: a key to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKeyRequest {
    /// A human-readable name: at most 128 characters, no control or invisible characters.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u180E\u200B-\u200F\u2028-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\uD800-\uDFFF]*$",
        max_length = 128
    )]
    pub name: String,
    /// At least one scope, each among the offered scopes when the service restricts them.
    #[schema(min_items = 1, max_items = 32)]
    pub scopes: Vec<ScopeName>,
    /// The key's environment; default: the caller's environment.
    #[serde(default)]
    #[schema(pattern = r"^[a-z][a-z0-9]{1,9}$")]
    pub environment: Option<String>,
    /// How long until the key expires: `90s`, `15m`, `24h`, `90d`; default: never. At most
    /// 100 years.
    #[serde(default)]
    #[schema(pattern = r"^[1-9][0-9]{0,3}[smhd]$")]
    pub expires_in: Option<String>,
    /// Free-form JSON object (at most 16 KiB).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// `PATCH /{key_id}/`: the fields to change; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateKeyRequest {
    /// A new name (as in `POST /`).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u180E\u200B-\u200F\u2028-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\uD800-\uDFFF]*$",
        max_length = 128,
        nullable = false
    )]
    pub name: Option<String>,
    /// New scopes (at least one, each among the offered scopes when restricted).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(min_items = 1, max_items = 32, nullable = false)]
    pub scopes: Option<Vec<ScopeName>>,
    /// New metadata (a JSON object), or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<serde_json::Value>>,
    /// A new expiry (RFC 3339; one in the past expires the key at once, at most 100 years
    /// ahead), or `null` for a key that does not expire.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime, pattern = r"^(19[7-9][0-9]|20[0-9][0-9])-")]
    pub expires_at: Option<Option<String>>,
}

/// A field that may be left out but is never `null` (`null` is refused with serde's message).
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A field that is present (`Some`), with its value or `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /{key_id}/rotate/`: how to rotate; the body may also be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateKeyRequest {
    /// How long the old key keeps working: `0s` (not at all), `90s`, `15m`, `24h` (the
    /// default), `30d`; at most 100 years.
    #[serde(default)]
    #[schema(pattern = r"^[0-9]{1,4}[smhd]$")]
    pub grace: Option<String>,
    /// Rotate even a revoked, expired or already rotated key (otherwise 409 `conflict`).
    #[serde(default)]
    pub force: bool,
}

/// `201` of `POST /`: the new key, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedKey<'a> {
    /// The full key: shown once; only its hash is stored.
    pub key: &'a str,
    /// The key's public view.
    #[schema(value_type = KeyInfoSchema)]
    pub info: KeyInfo,
    /// That the key is shown only this once.
    pub warning: &'static str,
}

/// `201` of `POST /{key_id}/rotate/`: the replacement key, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct RotatedKeyBody<'a> {
    /// The full new key: shown once; only its hash is stored.
    pub key: &'a str,
    /// The new key's public view.
    #[schema(value_type = KeyInfoSchema)]
    pub info: KeyInfo,
    /// The key it replaces, and when that one stops working.
    pub replaces: ReplacedKey,
    /// That the key is shown only this once.
    pub warning: &'static str,
}

/// The old key of a rotation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplacedKey {
    /// The old key's id.
    #[schema(value_type = String)]
    pub id: KeyId,
    /// When the old key stops working (the end of the grace period).
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// Every error: a code and a human explanation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// `unauthenticated`, `forbidden`, `csrf`, `not_found`, `invalid_request`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type` or `temporarily_unavailable`.
    pub error: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// A key's status (`keyward::KeyStatus`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KeyStatus)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
pub(crate) enum KeyStatusSchema {
    /// Usable.
    Active,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
}

/// The public view of a key (`keyward::KeyInfo`): masked, with no secret and no hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KeyInfo)]
#[allow(dead_code)] // a schema only
pub(crate) struct KeyInfoSchema {
    /// The public id (12 characters).
    pub id: String,
    /// The masked key, e.g. `av_prd_7Kq2mZ9xA1bC_…`.
    pub masked: String,
    /// The project.
    pub project: String,
    /// The environment.
    pub environment: String,
    /// The scopes.
    pub scopes: Vec<String>,
    /// The name.
    pub name: String,
    /// The metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// `active`, `revoked` or `expired`.
    pub status: KeyStatusSchema,
    /// When issued.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it expires (`null`: never).
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// When revoked.
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    /// When last used.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    /// The key it replaced by rotation.
    pub rotated_from: Option<String>,
    /// Usage limits (`credits`, `quota`, `rate_limit`, each present only when set).
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
    /// The key that replaced it by rotation.
    pub rotated_to: Option<String>,
}

/// Where a quota or a credit budget stands in the current period (`keyward::QuotaUsage`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = QuotaUsage)]
#[allow(dead_code)] // a schema only
pub(crate) struct QuotaUsageSchema {
    /// The limit for the period.
    pub limit: u64,
    /// Used in the period.
    pub used: u64,
    /// Left in the period.
    pub remaining: u64,
    /// When the period started.
    #[schema(format = DateTime)]
    pub period_start: String,
    /// When it resets (`null`: never).
    #[schema(format = DateTime)]
    pub resets_at: Option<String>,
}

/// One key's usage in the current period (`keyward::KeyUsage`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KeyUsage)]
#[allow(dead_code)] // a schema only
pub(crate) struct KeyUsageSchema {
    /// The key's id.
    pub id: String,
    /// The key's own event quota (`null`: none).
    pub quota: Option<QuotaUsageSchema>,
    /// The key's credits (`null`: none).
    pub credits: Option<QuotaUsageSchema>,
}

/// What kind of change an audit entry records (`keyward::AuditAction`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditAction)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
pub(crate) enum AuditActionSchema {
    /// A key was issued.
    Issued,
    /// A key's name, scopes, metadata, expiry or limits changed.
    Updated,
    /// A key was replaced (the summary names the new key).
    Rotated,
    /// A key was revoked.
    Revoked,
    /// The project's quota changed.
    QuotaChanged,
    /// A leak of the key was reported.
    LeakReported,
}

/// One entry of the audit trail (`keyward::AuditEntry`): never a secret or a hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
#[allow(dead_code)] // a schema only
pub(crate) struct AuditEntrySchema {
    /// The entry's position: newer entries have larger numbers; pass the last of a page as
    /// `before` for the next.
    pub seq: u64,
    /// When the change was made.
    #[schema(format = DateTime)]
    pub at: String,
    /// Who made it: `user:alice`, `key:AbCdEf123456`, `cli:ops@host`, `system`…
    pub actor: String,
    /// What kind of change.
    pub action: AuditActionSchema,
    /// The project.
    pub project: String,
    /// The key's environment (`null` for a project-level change).
    pub environment: Option<String>,
    /// The key's id (`null` for a project-level change).
    pub key_id: Option<String>,
    /// What changed: field names and their new values, e.g. `{"name": "ci"}`.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditPage)]
#[allow(dead_code)] // a schema only
pub(crate) struct AuditPageSchema {
    /// The entries, newest first.
    pub items: Vec<AuditEntrySchema>,
    /// The `before` of the next page (`null`: this is the last).
    pub next: Option<u64>,
}
