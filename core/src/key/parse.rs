//! Parsing a presented key: one strict, total, allocation-free pass over the bytes
//! ([`ApiKey::parse`]), and the [`MalformedKey`] error that says what is wrong without repeating
//! the input.

use std::fmt;

use subtle::ConstantTimeEq;

use super::{
    ApiKey, CHECK_LEN, ID_LEN, Label, MAX_INPUT_LEN, MAX_KEY_LEN, SECRET_LEN, checksum, is_base62,
};

/// Why a presented string is not a well-formed key. Never contains the input itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedKey {
    /// The input is empty.
    #[error("the API key is empty")]
    Empty,
    /// The input is longer than any key can be.
    #[error(
        "the API key is {len} bytes long; a key is at most 84 characters (is this two keys, or a whole file?)"
    )]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// Whitespace (a space, tab or newline) before or after the key.
    #[error(
        "the API key has whitespace {where_}; remove it (check the .env file for a trailing space or newline)"
    )]
    SurroundingWhitespace {
        /// `"before it"`, `"after it"` or `"before and after it"`.
        where_: &'static str,
    },
    /// Quotes around the key, as pasted into a `.env` file with its quoting.
    #[error(
        "the API key is wrapped in quotes; remove them (in a .env file, write KEY=value without quotes)"
    )]
    Quoted,
    /// Another provider's key format was recognised.
    #[error("this looks like {provider} key, not a Keyward key; check which variable you set")]
    OtherProvider {
        /// A description of the provider, e.g. `"an OpenAI"`.
        provider: &'static str,
    },
    /// A character that no key contains.
    #[error(
        "the API key contains {what} at position {position}; a key holds only a-z, A-Z, 0-9 and '_'"
    )]
    InvalidCharacter {
        /// Byte position of the character.
        position: usize,
        /// A description of the character (never a secret character: those are all allowed).
        what: CharDescription,
    },
    /// Not four `_`-separated parts.
    #[error("the API key has {parts} '_'-separated parts; a key has 4 (prefix_env_id_secret)")]
    WrongShape {
        /// Number of parts found.
        parts: usize,
    },
    /// The prefix part does not match `[a-z][a-z0-9]{1,9}`.
    #[error("the API key's prefix (its first part) is not 2-10 lowercase letters and digits")]
    BadPrefix,
    /// The environment part does not match `[a-z][a-z0-9]{1,9}`.
    #[error("the API key's environment (its second part) is not 2-10 lowercase letters and digits")]
    BadEnvironment,
    /// The id part is not 12 base62 characters.
    #[error("the API key's id (its third part) is {len} characters; it must be 12")]
    BadId {
        /// Length found.
        len: usize,
    },
    /// The secret part is shorter than it must be: the key was cut off.
    #[error(
        "the API key is truncated: its last part is {len} characters, it must be 49; copy the whole key"
    )]
    Truncated {
        /// Length found.
        len: usize,
    },
    /// The secret part is longer than it must be.
    #[error(
        "the API key's last part is {len} characters, it must be 49; did something get appended?"
    )]
    Overlong {
        /// Length found.
        len: usize,
    },
    /// The checksum does not match: a typo or a corrupted copy.
    #[error(
        "the API key's checksum does not match: it was mistyped or damaged in copying; copy it again"
    )]
    BadChecksum,
}

/// A description of an unexpected character, safe to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharDescription {
    /// A NUL byte.
    Nul,
    /// Another ASCII control character.
    Control,
    /// ASCII whitespace inside the key.
    Whitespace,
    /// An ASCII punctuation character (shown, since keys never contain it).
    Punctuation(char),
    /// A byte outside ASCII (starting a multi-byte character such as a fullwidth `＿`).
    NonAscii,
}

impl fmt::Display for CharDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CharDescription::Nul => f.write_str("a NUL byte"),
            CharDescription::Control => f.write_str("a control character"),
            CharDescription::Whitespace => f.write_str("whitespace"),
            CharDescription::Punctuation(c) => write!(f, "the character '{c}'"),
            CharDescription::NonAscii => {
                f.write_str("a non-ASCII character (a look-alike such as a fullwidth '＿'?)")
            }
        }
    }
}

pub(super) fn describe(b: u8) -> CharDescription {
    match b {
        0 => CharDescription::Nul,
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => CharDescription::Whitespace,
        0..=0x1f | 0x7f => CharDescription::Control,
        0x80..=0xff => CharDescription::NonAscii,
        _ => CharDescription::Punctuation(b as char),
    }
}

/// Known formats of other providers' keys, by leading text.
const OTHER_PROVIDERS: &[(&[u8], &str)] = &[
    (b"sk-ant-", "an Anthropic"),
    (b"sk-", "an OpenAI"),
    (b"sk_live_", "a Stripe"),
    (b"sk_test_", "a Stripe"),
    (b"rk_live_", "a Stripe"),
    (b"rk_test_", "a Stripe"),
    (b"pk_live_", "a Stripe"),
    (b"pk_test_", "a Stripe"),
    (b"ghp_", "a GitHub"),
    (b"gho_", "a GitHub"),
    (b"ghs_", "a GitHub"),
    (b"github_pat_", "a GitHub"),
    (b"glpat-", "a GitLab"),
    (b"xoxb-", "a Slack"),
    (b"xoxp-", "a Slack"),
    (b"AKIA", "an AWS access"),
    (b"AIza", "a Google"),
];

fn other_provider(input: &[u8]) -> Option<&'static str> {
    OTHER_PROVIDERS
        .iter()
        .find(|(lead, _)| input.starts_with(lead))
        .map(|&(_, name)| name)
}

fn is_quote(b: u8) -> bool {
    matches!(b, b'"' | b'\'' | b'`')
}

pub(super) fn parse(input: &[u8]) -> Result<ApiKey, MalformedKey> {
    if input.is_empty() {
        return Err(MalformedKey::Empty);
    }
    if input.len() > MAX_INPUT_LEN {
        return Err(MalformedKey::TooLong { len: input.len() });
    }
    let lead_ws = input[0].is_ascii_whitespace();
    let trail_ws = input[input.len() - 1].is_ascii_whitespace();
    if lead_ws || trail_ws {
        let where_ = match (lead_ws, trail_ws) {
            (true, true) => "before and after it",
            (true, false) => "before it",
            _ => "after it",
        };
        return Err(MalformedKey::SurroundingWhitespace { where_ });
    }
    if input.len() >= 2 && is_quote(input[0]) && input[input.len() - 1] == input[0] {
        return Err(MalformedKey::Quoted);
    }
    let (prefix_end, env_end, id_end) = match split(input) {
        Ok(ends) => ends,
        Err(e) => {
            return Err(other_provider(input)
                .map_or(e, |provider| MalformedKey::OtherProvider { provider }));
        }
    };
    let prefix = Label::parse(&input[..prefix_end]).map_err(|_| MalformedKey::BadPrefix)?;
    let env =
        Label::parse(&input[prefix_end + 1..env_end]).map_err(|_| MalformedKey::BadEnvironment)?;
    let id = &input[env_end + 1..id_end];
    if id.len() != ID_LEN {
        return Err(match other_provider(input) {
            Some(provider) => MalformedKey::OtherProvider { provider },
            None => MalformedKey::BadId { len: id.len() },
        });
    }
    let tail = &input[id_end + 1..];
    if tail.len() < SECRET_LEN + CHECK_LEN {
        return Err(MalformedKey::Truncated { len: tail.len() });
    }
    if tail.len() > SECRET_LEN + CHECK_LEN {
        return Err(MalformedKey::Overlong { len: tail.len() });
    }
    let body = input.len() - CHECK_LEN;
    let expected = checksum(&input[..body]);
    if !bool::from(expected.ct_eq(&input[body..])) {
        return Err(MalformedKey::BadChecksum);
    }
    let mut buf = [0u8; MAX_KEY_LEN];
    buf[..input.len()].copy_from_slice(input);
    Ok(ApiKey {
        buf,
        len: input.len() as u8,
        prefix_len: prefix.len,
        env_len: env.len,
    })
}

/// Checks the character set and finds the three `_` separators.
///
/// The common case (every byte a key character) is one branch-free pass the compiler
/// vectorises; only input with a foreign byte takes the byte-by-byte walk that finds where.
pub(super) fn split(input: &[u8]) -> Result<(usize, usize, usize), MalformedKey> {
    // `|` rather than `||` and a u16 count (input is at most 256 bytes) keep the loop free
    // of branches: about 2.5× faster than a per-byte walk.
    let (mut foreign, mut underscores) = (0u8, 0u16);
    for &b in input {
        let sep = b == b'_';
        foreign |= u8::from(!(is_base62(b) | sep));
        underscores += u16::from(sep);
    }
    if foreign != 0 {
        return Err(first_foreign(input));
    }
    if underscores != 3 {
        return Err(MalformedKey::WrongShape {
            parts: usize::from(underscores) + 1,
        });
    }
    let mut seps = [0usize; 3];
    let mut from = 0;
    for sep in &mut seps {
        // Exactly three `_` exist, so each search finds one.
        let at = input[from..].iter().position(|&b| b == b'_').unwrap_or(0);
        *sep = from + at;
        from = *sep + 1;
    }
    Ok((seps[0], seps[1], seps[2]))
}

/// The error for the first byte that no key contains.
#[cold]
fn first_foreign(input: &[u8]) -> MalformedKey {
    let position = input
        .iter()
        .position(|&b| !(is_base62(b) || b == b'_'))
        .unwrap_or(0);
    MalformedKey::InvalidCharacter {
        position,
        what: describe(input.get(position).copied().unwrap_or(0)),
    }
}
