//! Names: the rule every name-like value follows, project names ([`Project`]) and the rule
//! for a key's display name (at most [`MAX_KEY_NAME_LEN`] characters, no control or invisible
//! format characters).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::invalid::{InvalidValue, ValueKind};

/// The longest display name a key may have, in characters (Unicode scalar values).
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

/// Checks a key's display name: at most [`MAX_KEY_NAME_LEN`] characters (an empty name is
/// allowed), and no character that is invisible or changes how the rest is shown: control
/// characters (Unicode general category Cc, C0 and C1), format characters (Cf: the
/// bidirectional overrides and isolates U+202A–U+202E and U+2066–U+2069, zero-width characters
/// U+200B–U+200F, U+FEFF…), and the line and paragraph separators (Zl, Zp). A name is shown to
/// people in lists and dashboards; such characters let one name pass for another.
pub(crate) fn validate_key_name(name: &str) -> Result<(), InvalidValue> {
    // Characters, not bytes: a name in any script gets the same room. The byte test first
    // keeps a huge input from being walked.
    if name.len() > 4 * MAX_KEY_NAME_LEN || name.chars().count() > MAX_KEY_NAME_LEN {
        return Err(InvalidValue::with_reason(
            ValueKind::Name,
            format!("is longer than {MAX_KEY_NAME_LEN} characters"),
        ));
    }
    for (i, c) in name.char_indices() {
        let what = match c.general_category() {
            GeneralCategory::Control => "the control character",
            GeneralCategory::Format if is_bidi_control(c) => "the bidirectional control character",
            GeneralCategory::Format => "the invisible format character",
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
                "the line or paragraph separator"
            }
            _ => continue,
        };
        return Err(InvalidValue::with_reason(
            ValueKind::Name,
            format!(
                "{what} U+{:04X} at position {i} is not allowed",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// The bidirectional embeddings, overrides, isolates and marks (Unicode's `Bidi_Control`
/// property, all of category Cf): named apart in the error, since they are the ones that
/// reorder what follows.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_control_bidi_and_invisible_format_characters() {
        for bad in [
            "a\u{7}b",             // BEL (C0)
            "a\u{85}b",            // NEXT LINE (C1)
            "a\u{7f}",             // DEL
            "evil\u{202E}gpj.exe", // RIGHT-TO-LEFT OVERRIDE
            "\u{202A}x",           // LEFT-TO-RIGHT EMBEDDING
            "x\u{2066}y\u{2069}",  // isolates
            "zero\u{200B}width",
            "\u{200D}", // ZERO WIDTH JOINER
            "\u{FEFF}bom",
            "soft\u{AD}hyphen",
            "tag\u{E0041}", // TAG LATIN CAPITAL LETTER A
            "line\u{2028}sep",
            "para\u{2029}sep",
        ] {
            let e = validate_key_name(bad).unwrap_err();
            assert_eq!(e.kind, ValueKind::Name, "{bad:?}");
            assert!(e.reason.contains("U+"), "{bad:?}: {e}");
        }
        let e = validate_key_name("evil\u{202E}gpj.exe").unwrap_err();
        assert_eq!(
            e.reason,
            "the bidirectional control character U+202E at position 4 is not allowed"
        );
        let e = validate_key_name("a\u{200B}").unwrap_err();
        assert_eq!(
            e.reason,
            "the invisible format character U+200B at position 1 is not allowed"
        );
    }

    #[test]
    fn ordinary_names_in_any_script_pass() {
        for good in [
            "",
            "ingestion (prod)",
            "Zoë's key — 2026",
            "مفتاح الإنتاج", // Arabic, right-to-left without any override
            "生产密钥",
            "💻 laptop",
            "tab-free name with spaces",
        ] {
            assert!(validate_key_name(good).is_ok(), "{good:?}");
        }
        assert!(validate_key_name(&"a".repeat(MAX_KEY_NAME_LEN)).is_ok());
        assert!(validate_key_name(&"a".repeat(MAX_KEY_NAME_LEN + 1)).is_err());
        // Characters, not bytes: 128 two-byte or four-byte characters fit, 129 do not.
        assert!(validate_key_name(&"é".repeat(MAX_KEY_NAME_LEN)).is_ok());
        assert!(validate_key_name(&"💻".repeat(MAX_KEY_NAME_LEN)).is_ok());
        assert!(validate_key_name(&"é".repeat(MAX_KEY_NAME_LEN + 1)).is_err());
        assert!(validate_key_name(&"a".repeat(1 << 20)).is_err());
    }
}
