//! Shared pieces of the fuzz targets: structured inputs that reach the deep paths (well-formed
//! keys with a valid checksum, then damaged on purpose) and the leak oracle.
//!
//! The oracle (`keyward::conformance::shared_secret_window`): a key's id is public and 12
//! characters long, so no text Keyward shows (an error's `Display` or `Debug`, an HTTP answer,
//! a diagnosis) may hold a run of [`SECRET_WINDOW`] alphanumeric characters that also occurs
//! in the untrusted input: such a run could only have been copied from the input's secret part.

#![forbid(unsafe_code)]

use arbitrary::Arbitrary;

/// The leak oracle, shared with core's always-run smoke test (`core/tests/fuzz_smoke.rs`).
pub use keyward::conformance::{SECRET_WINDOW, assert_no_leak, shared_secret_window};

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
