//! [`Actor`]: who made a change, as the caller names it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::invalid::{InvalidValue, ValueKind};

/// The longest actor name, in characters.
pub const MAX_ACTOR_LEN: usize = 256;

/// Who made a change: `user:alice`, `key:<id>`, `cli:<user>@<host>`, `system`,
/// `github-secret-scanning`… The caller chooses the form; Keyward only checks that it is 1 to
/// [`MAX_ACTOR_LEN`] characters without control characters. `Debug` and `Display` print it:
/// an actor is a name, never a secret.
///
/// ```
/// use keyward::Actor;
/// let alice = Actor::new("user:alice")?;
/// assert_eq!(alice.as_str(), "user:alice");
/// assert_eq!(Actor::system().to_string(), "system");
/// assert!(Actor::new("").is_err());
/// assert!(Actor::new("bad\nname").is_err());
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Actor(Arc<str>);

impl Actor {
    /// Validates an actor name.
    ///
    /// # Errors
    /// [`InvalidValue`] (kind [`ValueKind::Actor`]) when it is empty, longer than
    /// [`MAX_ACTOR_LEN`] characters or holds a control character.
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidValue> {
        let s: String = s.into();
        if s.is_empty() {
            return Err(InvalidValue::new(ValueKind::Actor, "is empty"));
        }
        if s.chars().count() > MAX_ACTOR_LEN {
            return Err(InvalidValue::with_reason(
                ValueKind::Actor,
                format!("is longer than {MAX_ACTOR_LEN} characters"),
            ));
        }
        if let Some(i) = s.chars().position(char::is_control) {
            return Err(InvalidValue::with_reason(
                ValueKind::Actor,
                format!("a control character at position {i} is not allowed"),
            ));
        }
        Ok(Self(Arc::from(s)))
    }

    /// `system`: changes Keyward or the host makes on its own (the default actor of a
    /// [`KeyManager`](crate::KeyManager)).
    pub fn system() -> Self {
        Self(Arc::from("system"))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actor({:?})", &*self.0)
    }
}

impl std::str::FromStr for Actor {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_is_one_to_256_characters_without_control_characters() {
        assert!(Actor::new("x".repeat(MAX_ACTOR_LEN)).is_ok());
        assert!(Actor::new("é".repeat(MAX_ACTOR_LEN)).is_ok());
        assert!(Actor::new("x".repeat(MAX_ACTOR_LEN + 1)).is_err());
        assert!(Actor::new("a\u{7f}b").is_err());
        assert!(Actor::new("cli:alice@host-1").is_ok());
    }

    #[test]
    fn an_actor_round_trips_through_json_and_is_checked_on_the_way_in() {
        let a = Actor::new("user:alice").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"user:alice\"");
        assert_eq!(serde_json::from_str::<Actor>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Actor>("\"\"").is_err());
    }
}
