//! The values the manager takes and gives: [`Requirements`] of an endpoint, the verified
//! [`Identity`], the public [`KeyInfo`] with its [`KeyStatus`], and issuing's
//! [`IssueRequest`] and [`IssuedKey`], rotation's [`RotateOptions`] and [`RotatedKey`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::invalid::InvalidValue;
use crate::key::{ApiKey, Environment, KeyId, MaskedKey, Prefix};
use crate::name::Project;
use crate::scope::ScopeSet;
use crate::store::{KeyLimits, KeyRecord};
use crate::time::Timestamp;

/// What an endpoint requires of a key beyond being valid.
///
/// ```
/// let req = keyward::Requirements::scopes(["write"])?.with_project("web-app".parse()?);
/// assert_eq!(req.scopes.to_string(), "write");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Scopes the key must all hold.
    pub scopes: ScopeSet,
    /// The project the key must belong to, if the endpoint is project-specific.
    pub project: Option<Project>,
}

impl Requirements {
    /// No scope and no project required: any valid key passes.
    pub fn none() -> Self {
        Self::default()
    }

    /// Requires these scopes.
    ///
    /// # Errors
    /// [`InvalidValue`] for an invalid scope name.
    pub fn scopes<I, S>(names: I) -> Result<Self, InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self {
            scopes: ScopeSet::parse(names)?,
            project: None,
        })
    }

    /// Also requires this project.
    pub fn with_project(mut self, project: Project) -> Self {
        self.project = Some(project);
        self
    }
}

/// Who a verified key belongs to and what it may do. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The key's public id.
    pub id: KeyId,
    /// The key's prefix.
    pub prefix: Prefix,
    /// The project the key is bound to: where its data belongs.
    pub project: Project,
    /// The environment the key is bound to.
    pub environment: Environment,
    /// The scopes the key holds.
    pub scopes: ScopeSet,
    /// The key's name.
    pub name: String,
    /// The key's metadata.
    pub metadata: Option<serde_json::Value>,
    /// When the key expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// The key's usage limits.
    pub limits: KeyLimits,
    /// When the key was issued.
    pub created_at: Timestamp,
}

impl Identity {
    /// The identity of a record, copying only what it exposes (not the hash).
    pub(crate) fn of(r: &KeyRecord) -> Self {
        Self {
            created_at: r.created_at,
            id: r.id,
            prefix: r.prefix,
            project: r.project.clone(),
            environment: r.environment,
            scopes: r.scopes.clone(),
            name: r.name.clone(),
            metadata: r.metadata.clone(),
            expires_at: r.expires_at,
            limits: r.limits.clone(),
        }
    }

    /// The identity of a record, taking what it exposes (not the hash).
    pub(crate) fn from_record(r: KeyRecord) -> Self {
        Self {
            created_at: r.created_at,
            id: r.id,
            prefix: r.prefix,
            project: r.project,
            environment: r.environment,
            scopes: r.scopes,
            name: r.name,
            metadata: r.metadata,
            expires_at: r.expires_at,
            limits: r.limits,
        }
    }
}

/// Where a key stands: the status column of lists and dashboards.
///
/// ```
/// use keyward::KeyStatus;
/// assert_eq!(KeyStatus::Revoked.to_string(), "revoked");
/// assert_eq!(serde_json::to_string(&KeyStatus::Active)?, "\"active\"");
/// assert!(KeyStatus::Expired == "expired");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Usable: not revoked, not expired.
    Active,
    /// Revoked (whether or not it has also expired since).
    Revoked,
    /// Past its expiry, not revoked.
    Expired,
}

impl KeyStatus {
    /// The status of `r` at `now`. Revocation wins over expiry.
    pub fn of(r: &KeyRecord, now: Timestamp) -> Self {
        if r.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if r.is_active(now) {
            KeyStatus::Active
        } else {
            KeyStatus::Expired
        }
    }

    /// The status as lowercase text, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for KeyStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The public view of a key for lists and dashboards: masked, with no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The public id.
    pub id: KeyId,
    /// The masked key, e.g. `av_prd_7Kq2mZ9xA1bC_…`.
    pub masked: String,
    /// The project.
    pub project: Project,
    /// The environment.
    pub environment: Environment,
    /// The scopes.
    pub scopes: ScopeSet,
    /// The name.
    pub name: String,
    /// The metadata.
    pub metadata: Option<serde_json::Value>,
    /// Active, revoked or expired (`"active"`, `"revoked"`, `"expired"` in JSON).
    pub status: KeyStatus,
    /// When issued.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
    /// When last used.
    pub last_used_at: Option<Timestamp>,
    /// The key it replaced by rotation.
    pub rotated_from: Option<KeyId>,
    /// Usage limits.
    pub limits: KeyLimits,
    /// The key that replaced it by rotation.
    pub rotated_to: Option<KeyId>,
}

impl KeyInfo {
    /// The public view of `r` at `now`.
    pub fn from_record(r: &KeyRecord, now: Timestamp) -> Self {
        Self {
            id: r.id,
            masked: MaskedKey {
                prefix: r.prefix,
                environment: r.environment,
                id: r.id,
            }
            .to_string(),
            project: r.project.clone(),
            environment: r.environment,
            scopes: r.scopes.clone(),
            name: r.name.clone(),
            metadata: r.metadata.clone(),
            status: KeyStatus::of(r, now),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
            rotated_from: r.rotated_from,
            limits: r.limits.clone(),
            rotated_to: r.rotated_to,
        }
    }
}

/// What to issue.
///
/// ```
/// use keyward::IssueRequest;
/// let req = IssueRequest::new("web-app".parse()?, "dev".parse()?)
///     .scopes(["write"])?
///     .name("ingestion")
///     .expires_in(std::time::Duration::from_secs(30 * 86400));
/// assert_eq!(req.scopes.to_string(), "write");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IssueRequest {
    /// The project to bind the key to.
    pub project: Project,
    /// The environment to bind the key to.
    pub environment: Environment,
    /// The scopes to grant (at most [`MAX_SCOPES`](crate::MAX_SCOPES)).
    pub scopes: ScopeSet,
    /// A human-readable name (at most 128 characters; no control, bidirectional-override or other
    /// invisible format characters).
    pub name: String,
    /// Free-form JSON metadata (at most 16 KiB).
    pub metadata: Option<serde_json::Value>,
    /// How long until the key expires: more than zero and at most
    /// [`MAX_EXPIRY`](crate::MAX_EXPIRY) (100 years); `None` for a key that does not expire.
    pub expires_in: Option<Duration>,
    /// Usage limits.
    pub limits: KeyLimits,
}

impl IssueRequest {
    /// A key for `project` in `environment`, with no scopes, no name and no expiry.
    pub fn new(project: Project, environment: Environment) -> Self {
        Self {
            project,
            environment,
            scopes: ScopeSet::new(),
            name: String::new(),
            metadata: None,
            expires_in: None,
            limits: KeyLimits::default(),
        }
    }

    /// Grants these scopes.
    ///
    /// # Errors
    /// [`InvalidValue`] for an invalid scope name.
    pub fn scopes<I, S>(mut self, names: I) -> Result<Self, InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.scopes = ScopeSet::parse(names)?;
        Ok(self)
    }

    /// Names the key.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Attaches metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Expires the key this long after issue. [`KeyManager::issue`](crate::KeyManager::issue)
    /// refuses zero and anything beyond [`MAX_EXPIRY`](crate::MAX_EXPIRY) (100 years).
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = Some(d);
        self
    }

    /// Sets usage limits.
    pub fn limits(mut self, limits: KeyLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// A newly issued key: the full key, to be shown once, and its record.
pub struct IssuedKey {
    /// The full key. Show it to the user once; it cannot be recovered later.
    pub key: ApiKey,
    /// The stored record (hash only).
    pub record: KeyRecord,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key", &self.key)
            .field("record", &self.record)
            .finish()
    }
}

/// How to rotate a key: how long the old key keeps working, and whether to force it.
///
/// ```
/// use std::time::Duration;
/// let options = keyward::RotateOptions::grace(Duration::from_secs(3600)).force();
/// assert!(options.force);
/// assert_eq!(options.grace, Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotateOptions {
    /// How long the old key keeps working (never longer than it would have).
    pub grace: Duration,
    /// Rotate even a key that is revoked, expired or already rotated (a second replacement).
    /// Without it such a rotation is refused with
    /// [`Error::RotationConflict`](crate::Error::RotationConflict).
    pub force: bool,
}

impl RotateOptions {
    /// An unforced rotation whose old key keeps working for `grace`.
    pub fn grace(grace: Duration) -> Self {
        Self {
            grace,
            force: false,
        }
    }

    /// Forces the rotation: a revoked, expired or already rotated key is rotated too.
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }
}

/// A rotated key: the replacement, shown once, and when each key stops working.
pub struct RotatedKey {
    /// The new key. Show it to the user once; it cannot be recovered later.
    pub key: ApiKey,
    /// The new key's stored record (hash only).
    pub record: KeyRecord,
    /// When the old key stops working: the end of the grace period, or its own earlier
    /// expiry.
    pub grace_end: Timestamp,
}

impl RotatedKey {
    /// When the new key expires (`None`: never). It keeps the old key's expiry (for a forced
    /// rotation of an already rotated key, the expiry of the key that replaced it), or, for a
    /// forced rotation of an expired key, that lifetime counted from the rotation.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.record.expires_at
    }
}

impl From<RotatedKey> for IssuedKey {
    /// The new key and its record, without the rotation's times.
    fn from(rotated: RotatedKey) -> Self {
        IssuedKey {
            key: rotated.key,
            record: rotated.record,
        }
    }
}

impl fmt::Debug for RotatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatedKey")
            .field("key", &self.key)
            .field("record", &self.record)
            .field("grace_end", &self.grace_end)
            .finish()
    }
}
