//! Names: the rule every name-like value follows, project names ([`Project`]) and the rule
//! for a key's display name (at most [`MAX_KEY_NAME_LEN`] bytes, no control characters).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::invalid::{InvalidValue, ValueKind};

/// The longest display name a key may have, in bytes.
pub const MAX_KEY_NAME_LEN: usize = 128;

/// A validated project name: `[a-z0-9][a-z0-9._-]{0,63}`.
///
/// ```
/// let p: keyward::Project = "web-app".parse()?;
/// assert_eq!(p.as_str(), "web-app");
/// assert!("Web App".parse::<keyward::Project>().is_err());
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Project(std::sync::Arc<str>); // shared: cloning an identity copies no bytes

impl Project {
    /// Validates a project name.
    ///
    /// # Errors
    /// [`InvalidValue`] naming the first character or the length that breaks the rule.
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        validate_name(ValueKind::Project, s, 64, |i, b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        })?;
        Ok(Self(std::sync::Arc::from(s)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a name: not empty, at most `max` bytes, and every byte allowed by `allowed(index,
/// byte)`. The error names the first byte that breaks the rule.
pub(crate) fn validate_name(
    kind: ValueKind,
    s: &str,
    max: usize,
    allowed: impl Fn(usize, u8) -> bool,
) -> Result<(), InvalidValue> {
    if s.is_empty() {
        return Err(InvalidValue::new(kind, "is empty"));
    }
    if s.len() > max {
        return Err(InvalidValue::too_long(kind, max));
    }
    match s.bytes().enumerate().position(|(i, b)| !allowed(i, b)) {
        Some(i) => Err(InvalidValue::bad_char(kind, s.as_bytes(), i)),
        None => Ok(()),
    }
}

impl FromStr for Project {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Project({:?})", self.0)
    }
}

impl<'de> Deserialize<'de> for Project {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a key's display name: at most [`MAX_KEY_NAME_LEN`] bytes, no control characters
/// (an empty name is allowed).
pub(crate) fn validate_key_name(name: &str) -> Result<(), InvalidValue> {
    if name.len() > MAX_KEY_NAME_LEN {
        return Err(InvalidValue::too_long(ValueKind::Name, MAX_KEY_NAME_LEN));
    }
    if let Some(i) = name.bytes().position(|b| b.is_ascii_control()) {
        return Err(InvalidValue::bad_char(ValueKind::Name, name.as_bytes(), i));
    }
    Ok(())
}
