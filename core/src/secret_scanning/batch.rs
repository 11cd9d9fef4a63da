//! The body of a report: a JSON array of `{"token", "type", "url", "source"}` objects. The
//! token is held in a type that zeroizes it and has no `Debug` of its content.

use std::fmt;

use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::ScanError;

/// A reported token's text: zeroized on drop, redacted in `Debug`.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub(crate) struct TokenText(String);

impl TokenText {
    /// The token (a secret).
    pub(crate) fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// One match in a report.
#[derive(Debug, Deserialize)]
pub(crate) struct Match {
    /// The matched text (a secret).
    pub(crate) token: TokenText,
    /// The secret type's name the host registered with GitHub (echoed as `token_type`).
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
    /// Where it was found; may be empty.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// What kind of place (`content`, `commit`, `issue_comment`…).
    #[serde(default)]
    pub(crate) source: Option<String>,
}

/// Parses a report's body.
///
/// # Errors
/// [`ScanError::Malformed`] with serde's position and reason (which never quotes a string
/// value of the body).
pub(crate) fn parse_batch(body: &[u8]) -> Result<Vec<Match>, ScanError> {
    serde_json::from_slice(body).map_err(|e| {
        ScanError::Malformed(format!(
            "{} at line {} column {}",
            category(&e),
            e.line(),
            e.column()
        ))
    })
}

/// serde_json's error category, without its message (which may quote input).
fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_body_error_does_not_quote_the_input() {
        let err = parse_batch(br#"[{"token": 5, "type": "kw_dev_secretsecret"}]"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unexpected value"), "{err}");
        assert!(!err.contains("secretsecret"), "{err}");
        let err = parse_batch(br#"{"token": "kw_dev_secretsecret"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("secretsecret"), "{err}");
    }

    #[test]
    fn debug_of_a_match_hides_the_token() {
        let parsed =
            parse_batch(br#"[{"token":"kw_dev_secretsecret","type":"t"}]"#).unwrap_or_default();
        assert_eq!(parsed.len(), 1);
        assert!(!format!("{parsed:?}").contains("secretsecret"));
    }
}
