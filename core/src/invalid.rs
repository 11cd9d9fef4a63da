//! Invalid input values: which kind of value ([`ValueKind`]) broke which rule
//! ([`InvalidValue`]). This module imports nothing from the crate, so every value type can
//! use it (docs/ARCHITECTURE.md, "Layers").

use std::fmt;

/// Which kind of value was invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueKind {
    /// A key prefix.
    Prefix,
    /// An environment name.
    Environment,
    /// A key id.
    KeyId,
    /// A project name.
    Project,
    /// A scope name.
    Scope,
    /// A key's display name.
    Name,
    /// A key's metadata.
    Metadata,
    /// A duration such as `30d`.
    Duration,
    /// A key's expiry (`expires_in`, or the instant given to `set_expiry`).
    Expiry,
    /// A rotation's grace period.
    Grace,
    /// The set of scopes a key holds (as a whole: see [`Scope`](ValueKind::Scope) for one).
    Scopes,
    /// A configuration value.
    Config,
    /// Who made a change ([`Actor`](crate::Actor)).
    Actor,
    /// The name of an audit action.
    AuditAction,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Prefix => "key prefix (2-10 of a-z, 0-9, starting with a letter)",
            ValueKind::Environment => "environment (2-10 of a-z, 0-9, starting with a letter)",
            ValueKind::KeyId => "key id (12 of 0-9, A-Z, a-z)",
            ValueKind::Project => {
                "project name (1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"
            }
            ValueKind::Scope => {
                "scope (1-64 of a-z, 0-9, ':', '.', '_', '-', starting with a letter or digit)"
            }
            ValueKind::Name => {
                "key name (up to 128 characters, no control, bidirectional-override or other invisible format characters)"
            }
            ValueKind::Metadata => "metadata (a JSON value of at most 16 KiB)",
            ValueKind::Duration => "duration (a number and a unit: 90s, 15m, 24h, 30d)",
            ValueKind::Expiry => "expiry (more than zero and at most 100 years ahead)",
            ValueKind::Grace => "rotation grace period (at most 100 years)",
            ValueKind::Scopes => "scopes (at most 64 per key)",
            ValueKind::Config => "configuration value",
            ValueKind::Actor => "actor (1-256 characters, no control characters)",
            ValueKind::AuditAction => "audit action",
        })
    }
}

/// A value given to Keyward breaks its rule. The message names the rule and, where it helps,
/// the first offending character's position; it does not repeat the value.
///
/// ```
/// let err = "Web App".parse::<keyward::Project>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid project name (1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit): the character 'W' at position 0 is not allowed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct InvalidValue {
    /// What kind of value it was.
    pub kind: ValueKind,
    /// Why it was rejected.
    pub reason: String,
}

impl InvalidValue {
    pub(crate) fn new(kind: ValueKind, reason: &str) -> Self {
        Self {
            kind,
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn with_reason(kind: ValueKind, reason: String) -> Self {
        Self { kind, reason }
    }

    pub(crate) fn too_long(kind: ValueKind, max: usize) -> Self {
        Self {
            kind,
            reason: format!("is longer than {max} bytes"),
        }
    }

    /// Names the byte at `i`: printable ASCII is shown (it is never part of a secret when the
    /// value is a name), anything else is described.
    pub(crate) fn bad_char(kind: ValueKind, s: &[u8], i: usize) -> Self {
        let b = s.get(i).copied().unwrap_or(0);
        let what = if b.is_ascii_graphic() && kind != ValueKind::KeyId {
            format!("the character '{}'", b as char)
        } else if b == b' ' {
            "a space".to_owned()
        } else if b >= 0x80 {
            "a non-ASCII character".to_owned()
        } else {
            "a character".to_owned()
        };
        Self {
            kind,
            reason: format!("{what} at position {i} is not allowed"),
        }
    }
}
