//! Client side: load a key from an environment variable and diagnose the common wiring
//! mistakes (unset, empty, whitespace or quotes around it, a pasted `Bearer ` prefix or
//! `Authorization:` header, another product's or
//! environment's key, truncated or mistyped) without ever printing the secret: only the
//! length and the masked form.
//!
//! ```
//! use keyward::client::{Diagnosis, KeyExpectation, diagnose};
//!
//! let expect = KeyExpectation::new("av".parse()?, "prd".parse()?);
//! assert_eq!(diagnose(None, &expect), Diagnosis::Unset);
//! assert_eq!(diagnose(Some("  "), &expect), Diagnosis::Empty);
//! assert!(matches!(diagnose(Some("sk-proj-abc"), &expect), Diagnosis::Malformed { .. }));
//! # Ok::<(), keyward::InvalidValue>(())
//! ```

use std::fmt;

use crate::key::{ApiKey, Environment, MalformedKey, Prefix};

/// What the loader expects the key to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExpectation {
    /// The product's prefix.
    pub prefix: Prefix,
    /// The environments the key may be for (empty: any).
    pub environments: Vec<Environment>,
}

impl KeyExpectation {
    /// Expects a key of `prefix` for `environment`.
    pub fn new(prefix: Prefix, environment: Environment) -> Self {
        Self {
            prefix,
            environments: vec![environment],
        }
    }

    /// Expects a key of `prefix`, for any environment.
    pub fn any_environment(prefix: Prefix) -> Self {
        Self {
            prefix,
            environments: Vec::new(),
        }
    }
}

/// The verdict on the value of a key variable. `Display` explains it and what to do; it shows
/// at most the value's length and the key's masked form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Diagnosis {
    /// A well-formed key of the expected product and environment.
    Ok {
        /// The masked key, e.g. `av_prd_7Kq2mZ9xA1bC_…`.
        masked: String,
    },
    /// The variable is not set.
    Unset,
    /// The variable is set but empty (or only whitespace).
    Empty,
    /// The variable holds a valid key with whitespace around it.
    SurroundingWhitespace {
        /// Length of the raw value.
        len: usize,
        /// The masked key found inside.
        masked: String,
    },
    /// The variable holds a valid key wrapped in quotes.
    Quoted {
        /// Length of the raw value.
        len: usize,
        /// The masked key found inside.
        masked: String,
    },
    /// The value starts with an HTTP authorization scheme: `Bearer ` (any case), possibly after
    /// `Authorization:`, as when a whole header was pasted. The variable must hold the key
    /// alone.
    BearerPrefix {
        /// Length of the raw value.
        len: usize,
        /// The masked key found after the prefix, if what follows it is a well-formed key.
        masked: Option<String>,
    },
    /// A valid key of another product or deployment.
    WrongPrefix {
        /// The prefix expected.
        expected: Prefix,
        /// The masked key found.
        masked: String,
    },
    /// A valid key of another environment.
    WrongEnvironment {
        /// The environments expected.
        expected: Vec<Environment>,
        /// The masked key found.
        masked: String,
    },
    /// Not a well-formed key.
    Malformed {
        /// Length of the value.
        len: usize,
        /// What is wrong with it.
        reason: MalformedKey,
    },
}

impl Diagnosis {
    /// Whether the key can be used as it is.
    pub fn is_ok(&self) -> bool {
        matches!(self, Diagnosis::Ok { .. })
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnosis::Ok { masked } => write!(f, "ok: {masked} is a well-formed key of the expected product and environment"),
            Diagnosis::Unset => f.write_str("the variable is not set: export it, or check that your .env file is loaded by this process"),
            Diagnosis::Empty => f.write_str("the variable is set but empty: paste the key after the '='"),
            Diagnosis::SurroundingWhitespace { len, masked } => write!(f, "the variable holds the key {masked} with whitespace around it ({len} characters in all): remove the spaces or the newline"),
            Diagnosis::Quoted { len, masked } => write!(f, "the variable holds the key {masked} wrapped in quotes ({len} characters in all): remove the quotes (your .env loader keeps them)"),
            Diagnosis::BearerPrefix { len, masked } => {
                match masked {
                    Some(masked) => write!(f, "the variable holds the key {masked} after an HTTP authorization scheme ({len} characters in all)")?,
                    None => write!(f, "the variable's value ({len} characters) starts with an HTTP authorization scheme")?,
                }
                f.write_str(": remove the 'Bearer ' prefix: the variable must hold the key alone")
            }
            Diagnosis::WrongPrefix { expected, masked } => write!(f, "the variable holds {masked}, a key of another product or deployment: this one expects '{expected}_' keys"),
            Diagnosis::WrongEnvironment { expected, masked } => {
                write!(f, "the variable holds {masked}, a key of another environment: this one expects ")?;
                for (i, e) in expected.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "'{e}'")?;
                }
                f.write_str(" keys")
            }
            Diagnosis::Malformed { len, reason } => write!(f, "the variable's value ({len} characters) is not a usable key: {reason}"),
        }
    }
}

/// Diagnoses a variable's value (`None` when unset). Never copies the secret anywhere.
pub fn diagnose(value: Option<&str>, expect: &KeyExpectation) -> Diagnosis {
    let Some(raw) = value else {
        return Diagnosis::Unset;
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Diagnosis::Empty;
    }
    let unquoted = strip_quotes(trimmed);
    if let Some(rest) = strip_bearer(unquoted) {
        return Diagnosis::BearerPrefix {
            len: raw.len(),
            masked: ApiKey::parse(strip_quotes(rest))
                .ok()
                .map(|key| key.masked().to_string()),
        };
    }
    match ApiKey::parse(unquoted) {
        Ok(key) => {
            let masked = key.masked().to_string();
            if unquoted.len() != trimmed.len() {
                return Diagnosis::Quoted {
                    len: raw.len(),
                    masked,
                };
            }
            if trimmed.len() != raw.len() {
                return Diagnosis::SurroundingWhitespace {
                    len: raw.len(),
                    masked,
                };
            }
            check_expectation(&key, expect)
        }
        Err(reason) => Diagnosis::Malformed {
            len: raw.len(),
            reason,
        },
    }
}

fn check_expectation(key: &ApiKey, expect: &KeyExpectation) -> Diagnosis {
    let masked = key.masked().to_string();
    if key.prefix() != expect.prefix {
        return Diagnosis::WrongPrefix {
            expected: expect.prefix,
            masked,
        };
    }
    if !expect.environments.is_empty() && !expect.environments.contains(&key.environment()) {
        return Diagnosis::WrongEnvironment {
            expected: expect.environments.clone(),
            masked,
        };
    }
    Diagnosis::Ok { masked }
}

/// What follows `Bearer ` (the scheme in any case, then whitespace), itself possibly after an
/// `Authorization:` header name (any case), trimmed; `None` if `s` does not start so.
fn strip_bearer(s: &str) -> Option<&str> {
    let s = strip_prefix_ignore_case(s, "authorization:").map_or(s, str::trim_start);
    let rest = strip_prefix_ignore_case(s, "bearer")?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

/// `s` without `prefix`, compared ASCII-case-insensitively.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn strip_quotes(s: &str) -> &str {
    for q in ['"', '\'', '`'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.trim();
        }
    }
    s
}

/// Loading a key from the environment failed; the message names the variable and the
/// diagnosis, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("${var}: {diagnosis}")]
pub struct LoadError {
    /// The variable's name.
    pub var: String,
    /// What is wrong.
    pub diagnosis: Diagnosis,
}

/// Reads the key in variable `var` and checks it against `expect`. Strict: a key with
/// whitespace or quotes around it is refused with a diagnosis rather than silently fixed,
/// so the mistake is mended where it was made.
///
/// ```
/// use keyward::client::{KeyExpectation, load_key};
/// let expect = KeyExpectation::new("av".parse()?, "prd".parse()?);
/// let err = load_key("KEYWARD_DOC_EXAMPLE_UNSET_VARIABLE", &expect).unwrap_err();
/// assert!(err.to_string().contains("not set"));
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
///
/// # Errors
/// [`LoadError`] with the [`Diagnosis`] when the variable does not hold a usable key.
pub fn load_key(var: &str, expect: &KeyExpectation) -> Result<ApiKey, LoadError> {
    let value = std::env::var(var).ok().map(zeroize::Zeroizing::new);
    match diagnose(value.as_deref().map(String::as_str), expect) {
        Diagnosis::Ok { .. } => value
            .as_deref()
            .map(|v| ApiKey::parse(v))
            .and_then(Result::ok)
            .ok_or_else(|| LoadError {
                var: var.to_owned(),
                diagnosis: Diagnosis::Unset,
            }),
        diagnosis => Err(LoadError {
            var: var.to_owned(),
            diagnosis,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn expect() -> KeyExpectation {
        KeyExpectation::any_environment("kw".parse().unwrap())
    }

    #[test]
    fn a_pasted_bearer_prefix_or_authorization_header_is_diagnosed_as_such() {
        let key = ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap()).unwrap();
        let secret = key.expose_secret();
        let masked = Some(key.masked().to_string());
        for value in [
            format!("Bearer {secret}"),
            format!("bearer {secret}"),
            format!("BEARER\t{secret}"),
            format!("  Bearer   {secret}\n"),
            format!("Authorization: Bearer {secret}"),
            format!("authorization:bearer {secret}"),
            format!("\"Bearer {secret}\""),
            format!("Bearer '{secret}'"),
        ] {
            let d = diagnose(Some(&value), &expect());
            assert_eq!(
                d,
                Diagnosis::BearerPrefix {
                    len: value.len(),
                    masked: masked.clone()
                },
                "{value:?}"
            );
            let shown = d.to_string();
            assert!(
                shown.contains("remove the 'Bearer ' prefix: the variable must hold the key alone"),
                "{shown}"
            );
            assert!(!shown.contains(secret), "{shown}");
            assert!(!d.is_ok());
        }
        // After the prefix, something that is not a key: still the prefix is what to fix first.
        let d = diagnose(Some("Bearer not-a-key"), &expect());
        assert_eq!(
            d,
            Diagnosis::BearerPrefix {
                len: 16,
                masked: None
            }
        );
        assert!(d.to_string().contains("remove the 'Bearer ' prefix"), "{d}");
        // Not a prefix: "Bearer" alone, or glued to what follows.
        for value in ["Bearer", "Bearerkw_dev_x", "Bearer:"] {
            assert!(
                !matches!(
                    diagnose(Some(value), &expect()),
                    Diagnosis::BearerPrefix { .. }
                ),
                "{value}"
            );
        }
    }
}
