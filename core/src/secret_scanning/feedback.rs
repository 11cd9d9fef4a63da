//! The answer to a report: GitHub's feedback array, one element per distinct token, with
//! the token as its SHA-256 (`token_hash`, the default: no secret goes back over the wire)
//! or as sent (`token_raw`), its type, and `true_positive` / `false_positive`.

use std::fmt;

use serde::Serialize;
use serde::ser::{SerializeStruct as _, Serializer};

use super::batch::TokenText;
use super::keys::sha256_hex;

/// How the answer names each token.
///
/// ```
/// assert_eq!(keyward::secret_scanning::TokenEcho::default(), keyward::secret_scanning::TokenEcho::Hash);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenEcho {
    /// `token_hash`: the SHA-256 of the token as sent, in hex (the default).
    #[default]
    Hash,
    /// `token_raw`: the token as sent back (GitHub accepts either; this one sends secrets
    /// back over the wire).
    Raw,
}

/// Whether a reported token is one of this service's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// A real key: its secret matches (it was revoked or flagged).
    TruePositive,
    /// Not a key of this service: malformed, a bad checksum, another prefix, an unknown id
    /// or a wrong secret.
    FalsePositive,
}

/// The token as the answer names it.
enum TokenRef {
    Hash(String),
    Raw(TokenText),
}

/// One element of the answer. `Debug` never shows a raw token.
pub struct Feedback {
    token: TokenRef,
    token_type: String,
    /// The verdict.
    pub label: Label,
}

impl Feedback {
    pub(crate) fn new(token: TokenText, token_type: String, label: Label, echo: TokenEcho) -> Self {
        let token = match echo {
            TokenEcho::Hash => TokenRef::Hash(sha256_hex(token.expose_secret().as_bytes())),
            TokenEcho::Raw => TokenRef::Raw(token),
        };
        Self {
            token,
            token_type,
            label,
        }
    }

    /// The `token_hash` of this element (`None` when the answer echoes raw tokens).
    pub fn token_hash(&self) -> Option<&str> {
        match &self.token {
            TokenRef::Hash(h) => Some(h),
            TokenRef::Raw(_) => None,
        }
    }

    /// The secret type's name, as the report gave it.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }
}

impl fmt::Debug for Feedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feedback")
            .field("token_hash", &self.token_hash())
            .field("token_type", &self.token_type)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Serialize for Feedback {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_struct("Feedback", 3)?;
        match &self.token {
            TokenRef::Hash(h) => out.serialize_field("token_hash", h)?,
            TokenRef::Raw(t) => out.serialize_field("token_raw", t.expose_secret())?,
        }
        out.serialize_field("token_type", &self.token_type)?;
        out.serialize_field("label", &self.label)?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_scanning::batch::parse_batch;

    fn token(text: &str) -> TokenText {
        let body = format!(r#"[{{"token":"{text}"}}]"#);
        parse_batch(body.as_bytes())
            .ok()
            .and_then(|mut v| v.pop())
            .map(|m| m.token)
            .unwrap_or_else(|| panic!("cannot parse"))
    }

    #[test]
    fn hash_echo_sends_sha256_hex_and_no_token() {
        let f = Feedback::new(
            token("abc"),
            "kw".into(),
            Label::FalsePositive,
            TokenEcho::Hash,
        );
        let json = serde_json::to_string(&f).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"token_hash":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","token_type":"kw","label":"false_positive"}"#
        );
    }

    #[test]
    fn raw_echo_sends_the_token_but_debug_does_not() {
        let f = Feedback::new(
            token("abc"),
            "kw".into(),
            Label::TruePositive,
            TokenEcho::Raw,
        );
        let json = serde_json::to_string(&f).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"token_raw":"abc","token_type":"kw","label":"true_positive"}"#
        );
        assert!(!format!("{f:?}").contains("abc"));
    }
}
