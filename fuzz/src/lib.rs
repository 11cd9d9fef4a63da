//! Shared pieces of the fuzz targets: structured inputs that reach the deep paths (well-formed
//! keys with a valid checksum, then damaged on purpose) and the leak oracle.
//!
//! The oracle: a key's id is public and 12 characters long, so no text Keyward shows (an
//! error's `Display` or `Debug`, an HTTP answer, a diagnosis) may hold a run of
//! [`SECRET_WINDOW`] alphanumeric characters that also occurs in the untrusted input: such a
//! run could only have been copied from the input's secret part.

#![forbid(unsafe_code)]

use arbitrary::Arbitrary;

/// Length of the alphanumeric runs the leak oracle looks for: one more than a key id.
pub const SECRET_WINDOW: usize = 13;

/// Words of Keyward's own message templates that are [`SECRET_WINDOW`] alphanumerics or longer
/// (an input may contain them too; they are not copied from it).
const TEMPLATE_WORDS: &[&str] = &["Authorization"];

/// The first run of [`SECRET_WINDOW`] alphanumerics of `shown` that also occurs in `input`,
/// if any (runs inside Keyward's own template words excepted).
pub fn shared_secret_window(shown: &str, input: &[u8]) -> Option<String> {
    let bytes = shown.as_bytes();
    if input.len() < SECRET_WINDOW {
        return None;
    }
    let mut run_start = 0;
    for i in 0..=bytes.len() {
        let alnum = i < bytes.len() && bytes[i].is_ascii_alphanumeric();
        if alnum {
            if i + 1 - run_start >= SECRET_WINDOW {
                let window = &bytes[i + 1 - SECRET_WINDOW..=i];
                if TEMPLATE_WORDS
                    .iter()
                    .any(|w| w.as_bytes().windows(SECRET_WINDOW).any(|t| t == window))
                {
                    continue;
                }
                if input.windows(SECRET_WINDOW).any(|w| w == window) {
                    return Some(String::from_utf8_lossy(window).into_owned());
                }
            }
        } else {
            run_start = i + 1;
        }
    }
    None
}

/// Panics (a fuzz finding) if `shown` repeats part of `input`'s secret.
pub fn assert_no_leak(what: &str, shown: &str, input: &[u8]) {
    if let Some(w) = shared_secret_window(shown, input) {
        panic!("{what} repeats {w:?} from the input: {shown:?}");
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIXES: &[&str] = &["kw", "av", "tl", "k0abcdefgh"];
const ENVS: &[&str] = &["dev", "prd", "stg", "e1"];

/// The parts of a well-formed key, chosen by the fuzzer, and how to damage it.
#[derive(Debug, Clone, Arbitrary)]
pub struct KeyParts {
    prefix: u8,
    env: u8,
    id: [u8; 12],
    secret: [u8; 43],
    damage: Damage,
}

/// What is done to the well-formed key text.
#[derive(Debug, Clone, Arbitrary)]
pub enum Damage {
    /// Nothing: a valid key.
    None,
    /// One byte replaced (the checksum is recomputed when `fix` is set).
    Replace { at: u8, byte: u8, fix: bool },
    /// Cut to this many bytes.
    Truncate(u8),
    /// Bytes appended.
    Append(Vec<u8>),
    /// Bytes put before it.
    Prepend(Vec<u8>),
    /// Wrapped in a pair of quotes, or whitespace.
    Wrap(u8),
    /// Two keys joined.
    Twice,
}

impl KeyParts {
    /// The prefix label this key uses.
    pub fn prefix(&self) -> &'static str {
        PREFIXES[usize::from(self.prefix) % PREFIXES.len()]
    }

    /// The environment label this key uses.
    pub fn env(&self) -> &'static str {
        ENVS[usize::from(self.env) % ENVS.len()]
    }

    /// The well-formed key text, before damage.
    pub fn valid_text(&self) -> String {
        let b62 = |b: &u8| BASE62[usize::from(*b) % 62] as char;
        let id: String = self.id.iter().map(b62).collect();
        let secret: String = self.secret.iter().map(b62).collect();
        keyward::conformance::fix_checksum(&format!(
            "{}_{}_{id}_{secret}000000",
            self.prefix(),
            self.env()
        ))
    }

    /// The key text after damage (possibly not UTF-8).
    pub fn bytes(&self) -> Vec<u8> {
        let text = self.valid_text();
        let mut out = text.clone().into_bytes();
        match &self.damage {
            Damage::None => {}
            Damage::Replace { at, byte, fix } => {
                let i = usize::from(*at) % out.len();
                out[i] = *byte;
                if *fix && let Ok(s) = std::str::from_utf8(&out) {
                    out = keyward::conformance::fix_checksum(s).into_bytes();
                }
            }
            Damage::Truncate(n) => out.truncate(usize::from(*n)),
            Damage::Append(tail) => out.extend_from_slice(tail),
            Damage::Prepend(head) => {
                let mut v = head.clone();
                v.extend_from_slice(&out);
                out = v;
            }
            Damage::Wrap(w) => {
                let (l, r): (&[u8], &[u8]) = match w % 6 {
                    0 => (b"\"", b"\""),
                    1 => (b"'", b"'"),
                    2 => (b"`", b"`"),
                    3 => (b" ", b""),
                    4 => (b"", b"\n"),
                    _ => (b"\t", b"\r\n"),
                };
                let mut v = l.to_vec();
                v.extend_from_slice(&out);
                v.extend_from_slice(r);
                out = v;
            }
            Damage::Twice => out.extend_from_slice(text.as_bytes()),
        }
        out
    }
}

/// Either raw bytes or a (possibly damaged) well-formed key.
#[derive(Debug, Clone, Arbitrary)]
pub enum Candidate {
    /// Whatever the fuzzer made.
    Raw(Vec<u8>),
    /// A key built from parts.
    Key(KeyParts),
}

impl Candidate {
    /// The candidate's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Candidate::Raw(b) => b.clone(),
            Candidate::Key(k) => k.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_finds_a_copied_secret_and_ignores_ids_and_templates() {
        let input = b"kw_dev_ABCDEFGHIJKL_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGxxxxxx";
        assert!(shared_secret_window("kw_dev_ABCDEFGHIJKL_…", input).is_none());
        assert!(shared_secret_window("oops: defghijklmnopq!", input).is_some());
        assert!(shared_secret_window("use Authorization", b"xAuthorizationx").is_none());
    }
}
