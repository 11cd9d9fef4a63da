//! Scopes: names like `read`, `write`, `admin` or `traces:write`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::invalid::{InvalidValue, ValueKind};
use crate::name::validate_name;

/// The most scopes one key may hold. Issuing or updating a key with more is refused with an
/// [`InvalidValue`] of kind [`Scopes`](ValueKind::Scopes): scopes name what a key may do, and
/// a long list is a sign of a mistake (and makes every list and dashboard row heavy).
pub const MAX_SCOPES: usize = 64;

/// One scope: `[a-z0-9][a-z0-9:._-]{0,63}`.
///
/// ```
/// let s: keyward::Scope = "traces:write".parse()?;
/// assert_eq!(s.as_str(), "traces:write");
/// assert!("Write".parse::<keyward::Scope>().is_err());
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Scope(String);

impl Scope {
    /// Validates a scope name.
    ///
    /// # Errors
    /// [`InvalidValue`] naming the rule broken.
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        validate_name(ValueKind::Scope, s, 64, |i, b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b':' | b'.' | b'_' | b'-'))
        })?;
        Ok(Self(s.to_owned()))
    }

    /// The scope as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Scope {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A sorted set of scopes. `Display` joins them with spaces, as RFC 6750's `scope` does.
///
/// ```
/// use keyward::ScopeSet;
/// let granted = ScopeSet::parse(["read", "write"])?;
/// let required = ScopeSet::parse(["write", "admin"])?;
/// assert_eq!(granted.missing(&required).to_string(), "admin");
/// assert!(granted.missing(&ScopeSet::parse(["read"])?).is_empty());
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScopeSet(Arc<BTreeSet<Scope>>); // shared: cloning an identity copies no scopes

impl ScopeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses each name.
    ///
    /// # Errors
    /// The first [`InvalidValue`] met.
    pub fn parse<I, S>(names: I) -> Result<Self, InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        names
            .into_iter()
            .map(|s| Scope::new(s.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(|set| Self(Arc::new(set)))
    }

    /// Parses a space-separated list (`"read write"`), as stored and as in RFC 6750.
    ///
    /// # Errors
    /// The first [`InvalidValue`] met.
    pub fn parse_spaced(s: &str) -> Result<Self, InvalidValue> {
        Self::parse(s.split_ascii_whitespace())
    }

    /// Adds a scope.
    pub fn insert(&mut self, scope: Scope) -> bool {
        Arc::make_mut(&mut self.0).insert(scope)
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// Whether this set holds every scope of `required`.
    pub fn contains_all(&self, required: &ScopeSet) -> bool {
        // Endpoints require one or two scopes: a lookup each is cheaper than `is_subset`'s
        // general walk (this runs on every verify).
        required.0.iter().all(|scope| self.0.contains(scope))
    }

    /// The scopes of `required` that this set lacks.
    pub fn missing(&self, required: &ScopeSet) -> ScopeSet {
        Self(Arc::new(required.0.difference(&self.0).cloned().collect()))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The scopes in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
}

/// Checks the scopes a key is given: at most [`MAX_SCOPES`].
pub(crate) fn validate_key_scopes(scopes: &ScopeSet) -> Result<(), InvalidValue> {
    if scopes.len() <= MAX_SCOPES {
        return Ok(());
    }
    Err(InvalidValue::with_reason(
        ValueKind::Scopes,
        format!(
            "{} scopes given; a key holds at most {MAX_SCOPES} (keyward::MAX_SCOPES): grant broader scopes, or split the key",
            scopes.len()
        ),
    ))
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        Self(Arc::new(iter.into_iter().collect()))
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.iter().map(|s| s.as_str()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_64_scopes_and_the_error_names_the_limit() {
        let names = |n: usize| (0..n).map(|i| format!("s{i}")).collect::<Vec<_>>();
        let max = ScopeSet::parse(names(MAX_SCOPES)).unwrap();
        assert!(validate_key_scopes(&max).is_ok());
        let e = validate_key_scopes(&ScopeSet::parse(names(20_000)).unwrap()).unwrap_err();
        assert_eq!(e.kind, ValueKind::Scopes);
        assert_eq!(
            e.to_string(),
            "invalid scopes (at most 64 per key): 20000 scopes given; a key holds at most 64 (keyward::MAX_SCOPES): grant broader scopes, or split the key"
        );
        assert!(
            ValueKind::Scopes
                .to_string()
                .contains(&MAX_SCOPES.to_string())
        );
    }
}
