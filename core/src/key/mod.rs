//! The API key format: generation, strict parsing and masked display.
//!
//! ```text
//! <prefix>_<env>_<id>_<secret><check>
//! prefix  [a-z][a-z0-9]{1,9}        the deployment's product tag (`av`, `tl`; default `kw`)
//! env     [a-z][a-z0-9]{1,9}        `dev`, `stg`, `prd` or the deployment's own
//! id      [0-9A-Za-z]{12}           public key id: store lookup key, shown in dashboards
//! secret  [0-9A-Za-z]{43}           ≈256 bits from the OS CSPRNG, shown once
//! check   [0-9A-Za-z]{6}            CRC32 (IEEE) of everything before it, base62, most
//!                                   significant digit first, left-padded with `0`
//! ```
//!
//! Parsing is strict, total and allocation-free: any input yields an [`ApiKey`] or a
//! [`MalformedKey`] that says what is wrong without repeating the input.

use std::fmt;
use std::str::FromStr;

use rand::TryRng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::invalid::{InvalidValue, ValueKind};

mod parse;
mod scan;

use parse::parse;
pub use parse::{CharDescription, MalformedKey};
#[cfg(test)]
use parse::{describe, split};
pub use scan::{FoundKey, KeyScanner, find_keys};

/// Length of the public key id.
pub const ID_LEN: usize = 12;
/// Length of the secret part.
pub const SECRET_LEN: usize = 43;
/// Length of the checksum.
pub const CHECK_LEN: usize = 6;
/// Longest input the parser looks at; anything longer is rejected before other work.
pub const MAX_INPUT_LEN: usize = 256;
const LABEL_MAX: usize = 10;
const MAX_KEY_LEN: usize = LABEL_MAX + 1 + LABEL_MAX + 1 + ID_LEN + 1 + SECRET_LEN + CHECK_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The regular expression that finds a key of any prefix (for secret scanners).
pub const SCANNER_REGEX: &str =
    r"\b[a-z][a-z0-9]{1,9}_[a-z][a-z0-9]{1,9}_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}\b";

/// `[0-9A-Za-z]` by arithmetic rather than `is_ascii_alphanumeric`'s match, so that the
/// scan over a whole key in `split` compiles to vector code without branches.
#[inline]
fn is_base62(b: u8) -> bool {
    b.wrapping_sub(b'0') < 10 || (b | 0x20).wrapping_sub(b'a') < 26
}

/// A short lowercase label (`[a-z][a-z0-9]{1,9}`), stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Label {
    buf: [u8; LABEL_MAX],
    len: u8,
}

impl Label {
    /// Validates without allocating; `Err` carries the offending byte position.
    fn parse(s: &[u8]) -> Result<Self, LabelError> {
        if s.len() < 2 {
            return Err(LabelError::TooShort);
        }
        if s.len() > LABEL_MAX {
            return Err(LabelError::TooLong);
        }
        for (i, &b) in s.iter().enumerate() {
            let ok = b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit());
            if !ok {
                return Err(LabelError::BadChar(i));
            }
        }
        let mut buf = [0u8; LABEL_MAX];
        buf[..s.len()].copy_from_slice(s);
        Ok(Self {
            buf,
            len: s.len() as u8,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelError {
    TooShort,
    TooLong,
    BadChar(usize),
}

impl LabelError {
    fn into_invalid(self, kind: ValueKind, s: &[u8]) -> InvalidValue {
        match self {
            LabelError::TooShort => InvalidValue::new(kind, "is shorter than 2 characters"),
            LabelError::TooLong => InvalidValue::new(kind, "is longer than 10 characters"),
            LabelError::BadChar(i) => InvalidValue::bad_char(kind, s, i),
        }
    }
}

macro_rules! label_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Label);

        impl $name {
            /// Validates `s` against `[a-z][a-z0-9]{1,9}`.
            ///
            /// # Errors
            /// [`InvalidValue`] naming the rule that `s` breaks.
            pub fn new(s: &str) -> Result<Self, InvalidValue> {
                Label::parse(s.as_bytes())
                    .map(Self)
                    .map_err(|e| e.into_invalid($kind, s.as_bytes()))
            }

            /// The label as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

label_type!(
    /// The deployment's key prefix (`av`, `tl`, default `kw`): tells people and secret
    /// scanners whose key this is.
    ///
    /// ```
    /// let p: keyward::Prefix = "av".parse()?;
    /// assert_eq!(p.to_string(), "av");
    /// assert!("AV".parse::<keyward::Prefix>().is_err());
    /// # Ok::<(), keyward::InvalidValue>(())
    /// ```
    Prefix,
    ValueKind::Prefix
);

label_type!(
    /// The environment a key belongs to (`dev`, `stg`, `prd`, or the deployment's own).
    ///
    /// ```
    /// let env: keyward::Environment = "prd".parse()?;
    /// assert_eq!(env.as_str(), "prd");
    /// # Ok::<(), keyward::InvalidValue>(())
    /// ```
    Environment,
    ValueKind::Environment
);

impl Default for Prefix {
    /// The default prefix, `kw`.
    fn default() -> Self {
        Self(Label {
            buf: *b"kw\0\0\0\0\0\0\0\0",
            len: 2,
        })
    }
}

/// The public id of a key: 12 base62 characters, unique in the store.
///
/// It is safe to show in dashboards, lists and logs.
///
/// ```
/// let id: keyward::KeyId = "7Kq2mZ9xA1bC".parse()?;
/// assert_eq!(id.to_string(), "7Kq2mZ9xA1bC");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; ID_LEN]);

impl KeyId {
    /// Validates a key id.
    ///
    /// # Errors
    /// [`InvalidValue`] when `s` is not 12 characters of `[0-9A-Za-z]`.
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        Self::from_bytes(s.as_bytes())
    }

    fn from_bytes(b: &[u8]) -> Result<Self, InvalidValue> {
        if b.len() != ID_LEN {
            return Err(InvalidValue::new(
                ValueKind::KeyId,
                "must be exactly 12 characters of 0-9, A-Z, a-z",
            ));
        }
        if let Some(i) = b.iter().position(|&c| !is_base62(c)) {
            return Err(InvalidValue::bad_char(ValueKind::KeyId, b, i));
        }
        let mut out = [0u8; ID_LEN];
        out.copy_from_slice(b);
        Ok(Self(out))
    }

    /// Generates a random id from the OS CSPRNG.
    ///
    /// # Errors
    /// [`RandomError`] when the operating system's generator fails.
    pub fn generate() -> Result<Self, RandomError> {
        let mut out = [0u8; ID_LEN];
        fill_base62(&mut out)?;
        Ok(Self(out))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl FromStr for KeyId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", self.as_str())
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The operating system's random generator failed; no key was made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(#[source] rand::rngs::SysError);

impl RandomError {
    pub(crate) fn from_sys(e: rand::rngs::SysError) -> Self {
        Self(e)
    }
}

/// Fills `out` with uniformly random base62 characters from the OS CSPRNG
/// (rejection sampling: bytes ≥ 248 are discarded so every character is equally likely).
fn fill_base62(out: &mut [u8]) -> Result<(), RandomError> {
    let mut rng = rand::rngs::SysRng;
    let mut pool = [0u8; 64];
    let mut filled = 0;
    while filled < out.len() {
        rng.try_fill_bytes(&mut pool).map_err(RandomError)?;
        for &b in &pool {
            if filled == out.len() {
                break;
            }
            if b < 248 {
                out[filled] = BASE62[(b % 62) as usize];
                filled += 1;
            }
        }
    }
    pool.zeroize();
    Ok(())
}

/// CRC32 (IEEE) of `data` as 6 base62 digits, most significant first.
pub(crate) fn checksum(data: &[u8]) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(data);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A complete API key, secret included.
///
/// The only way to read the secret is the explicit [`ApiKey::expose_secret`]. `Display` prints the
/// masked form (`av_prd_7Kq2mZ9xA1bC_…`), `Debug` prints `[REDACTED]` for the secret, and the
/// bytes are zeroized on drop. Equality is constant-time.
///
/// ```
/// use keyward::{ApiKey, Environment, Prefix};
///
/// let key = ApiKey::generate("av".parse()?, "prd".parse()?)?;
/// let text = key.expose_secret().to_owned(); // shown to the user once
/// let parsed: ApiKey = text.parse()?;
/// assert_eq!(parsed, key);
/// assert_eq!(key.to_string(), format!("av_prd_{}_…", key.id()));
/// assert!(!format!("{key:?}").contains(&text));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ApiKey {
    buf: [u8; MAX_KEY_LEN],
    len: u8,
    prefix_len: u8,
    env_len: u8,
}

impl ApiKey {
    /// Generates a new key with a random id and secret from the OS CSPRNG.
    ///
    /// # Errors
    /// [`RandomError`] when the operating system's generator fails.
    pub fn generate(prefix: Prefix, environment: Environment) -> Result<Self, RandomError> {
        Self::generate_with_id(prefix, environment, KeyId::generate()?)
    }

    pub(crate) fn generate_with_id(
        prefix: Prefix,
        environment: Environment,
        id: KeyId,
    ) -> Result<Self, RandomError> {
        let mut buf = [0u8; MAX_KEY_LEN];
        let mut at = 0;
        for part in [
            prefix.as_str().as_bytes(),
            environment.as_str().as_bytes(),
            &id.0,
        ] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
            buf[at] = b'_';
            at += 1;
        }
        fill_base62(&mut buf[at..at + SECRET_LEN])?;
        at += SECRET_LEN;
        let check = checksum(&buf[..at]);
        buf[at..at + CHECK_LEN].copy_from_slice(&check);
        at += CHECK_LEN;
        Ok(Self {
            buf,
            len: at as u8,
            prefix_len: prefix.as_str().len() as u8,
            env_len: environment.as_str().len() as u8,
        })
    }

    /// Parses a presented key. Strict, total and allocation-free.
    ///
    /// # Errors
    /// [`MalformedKey`] saying what is wrong (empty, too long, whitespace or quotes around
    /// it, a character that cannot occur, another provider's format, wrong shape, truncated,
    /// bad checksum). The error never contains the input.
    pub fn parse(input: &str) -> Result<Self, MalformedKey> {
        parse(input.as_bytes())
    }

    /// Parses raw bytes (e.g. an HTTP header value, which need not be UTF-8).
    ///
    /// # Errors
    /// As [`ApiKey::parse`].
    pub fn parse_bytes(input: &[u8]) -> Result<Self, MalformedKey> {
        parse(input)
    }

    /// The full key text. This is the only accessor of the secret; show it once, then drop it.
    pub fn expose_secret(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// The secret part (43 ASCII bytes) that is hashed for storage.
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        let start = self.prefix_len as usize + 1 + self.env_len as usize + 1 + ID_LEN + 1;
        &self.buf[start..start + SECRET_LEN]
    }

    /// The key's prefix.
    pub fn prefix(&self) -> Prefix {
        let p = self.prefix_len as usize;
        Prefix(label_unchecked(&self.buf[..p]))
    }

    /// The key's environment.
    pub fn environment(&self) -> Environment {
        let start = self.prefix_len as usize + 1;
        Environment(label_unchecked(
            &self.buf[start..start + self.env_len as usize],
        ))
    }

    /// Whether the key carries this prefix (compares bytes, builds nothing: hot path).
    pub(crate) fn has_prefix(&self, prefix: &Prefix) -> bool {
        self.buf[..self.prefix_len as usize] == *prefix.0.as_bytes()
    }

    /// Whether the key carries this environment (compares bytes, builds nothing: hot path).
    pub(crate) fn has_environment(&self, environment: &Environment) -> bool {
        let start = self.prefix_len as usize + 1;
        self.buf[start..start + self.env_len as usize] == *environment.0.as_bytes()
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        let start = self.prefix_len as usize + 1 + self.env_len as usize + 1;
        let mut out = [0u8; ID_LEN];
        out.copy_from_slice(&self.buf[start..start + ID_LEN]);
        KeyId(out)
    }

    /// The masked form, safe to show and log: `av_prd_7Kq2mZ9xA1bC_…`.
    pub fn masked(&self) -> MaskedKey {
        MaskedKey {
            prefix: self.prefix(),
            environment: self.environment(),
            id: self.id(),
        }
    }
}

fn label_unchecked(b: &[u8]) -> Label {
    let mut buf = [0u8; LABEL_MAX];
    buf[..b.len()].copy_from_slice(b);
    Label {
        buf,
        len: b.len() as u8,
    }
}

impl Zeroize for ApiKey {
    /// Overwrites the whole key with zeros; the key is empty afterwards.
    fn zeroize(&mut self) {
        self.buf.zeroize();
        self.len = 0;
        self.prefix_len = 0;
        self.env_len = 0;
    }
}

impl Drop for ApiKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for ApiKey {}

impl Clone for ApiKey {
    fn clone(&self) -> Self {
        Self {
            buf: self.buf,
            len: self.len,
            prefix_len: self.prefix_len,
            env_len: self.env_len,
        }
    }
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && bool::from(self.buf.ct_eq(&other.buf))
    }
}
impl Eq for ApiKey {}

impl FromStr for ApiKey {
    type Err = MalformedKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ApiKey {
    /// Masked on purpose: use [`ApiKey::expose_secret`] for the full text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.masked(), f)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("prefix", &self.prefix().as_str())
            .field("environment", &self.environment().as_str())
            .field("id", &self.id().as_str())
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// The public part of a key, printed as `av_prd_7Kq2mZ9xA1bC_…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaskedKey {
    /// The key's prefix.
    pub prefix: Prefix,
    /// The key's environment.
    pub environment: Environment,
    /// The key's public id.
    pub id: KeyId,
}

impl fmt::Display for MaskedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}_{}_…", self.prefix, self.environment, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey::generate("av".parse().unwrap(), "prd".parse().unwrap()).unwrap()
    }

    #[test]
    fn generated_key_matches_documented_layout() {
        let k = key();
        let s = k.expose_secret();
        assert_eq!(s.len(), 2 + 1 + 3 + 1 + 12 + 1 + 43 + 6);
        assert!(s.starts_with("av_prd_"));
        assert_eq!(ApiKey::parse(s).unwrap(), k);
    }

    #[test]
    fn checksum_is_crc32_in_base62_padded() {
        // crc32("") == 0 → all zeros; crc32("a") = 0xE8B7BE43 = 3904355907
        assert_eq!(&checksum(b""), b"000000");
        let mut n: u64 = 3_904_355_907;
        let mut digits = Vec::new();
        while n > 0 {
            digits.push(BASE62[(n % 62) as usize]);
            n /= 62;
        }
        while digits.len() < 6 {
            digits.push(b'0');
        }
        digits.reverse();
        assert_eq!(&checksum(b"a")[..], &digits[..]);
    }

    #[test]
    fn zeroize_wipes_every_byte_of_the_key() {
        let mut k = key();
        assert!(k.buf.iter().any(|&b| b != 0));
        k.zeroize();
        assert!(k.buf.iter().all(|&b| b == 0));
        assert_eq!(k.expose_secret(), "");
    }

    #[test]
    fn secret_bytes_are_the_43_chars_before_the_check() {
        let k = key();
        let s = k.expose_secret();
        assert_eq!(k.secret_bytes(), &s.as_bytes()[s.len() - 49..s.len() - 6]);
    }

    /// The byte-by-byte walk `split` replaced: the first foreign byte wins, otherwise the
    /// number of `_` decides.
    fn reference_split(input: &[u8]) -> Result<(usize, usize, usize), MalformedKey> {
        let mut seps = Vec::new();
        for (i, &b) in input.iter().enumerate() {
            if b == b'_' {
                seps.push(i);
            } else if !b.is_ascii_alphanumeric() {
                return Err(MalformedKey::InvalidCharacter {
                    position: i,
                    what: describe(b),
                });
            }
        }
        match seps[..] {
            [a, b, c] => Ok((a, b, c)),
            _ => Err(MalformedKey::WrongShape {
                parts: seps.len() + 1,
            }),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn split_agrees_with_the_byte_by_byte_walk(
            input in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => proptest::sample::select(b"aZ9_".to_vec()),
                    1 => proptest::prelude::any::<u8>(),
                ],
                0..=MAX_INPUT_LEN,
            )
        ) {
            proptest::prop_assert_eq!(split(&input), reference_split(&input));
        }
    }

    #[test]
    fn split_counts_every_underscore_of_the_longest_input() {
        // 256 underscores: a u8 counter would wrap to 0.
        let input = [b'_'; MAX_INPUT_LEN];
        assert_eq!(
            split(&input),
            Err(MalformedKey::WrongShape {
                parts: MAX_INPUT_LEN + 1
            })
        );
    }

    #[test]
    fn ids_and_secrets_differ_between_keys() {
        let a = key();
        let b = key();
        assert_ne!(a.id(), b.id());
        assert_ne!(a.secret_bytes(), b.secret_bytes());
    }
}
