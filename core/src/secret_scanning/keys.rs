//! GitHub's signing keys, as the host configures them (PEM, no network fetch), and the
//! signature check of a report: ECDSA NIST P-256 with SHA-256 over the raw body, the
//! signature base64 DER in `Github-Public-Key-Signature`, the key named by
//! `Github-Public-Key-Identifier`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};

use super::error::ScanError;

/// The longest key identifier or signature header value looked at, in bytes (a P-256 DER
/// signature is at most 72 bytes, 96 in base64; GitHub's identifiers are 64 hex digits).
const MAX_HEADER_LEN: usize = 256;

/// GitHub's public keys that may sign a report, by key identifier (GitHub publishes several
/// at once, current and past, at `https://api.github.com/meta/public_keys/secret_scanning`;
/// the host copies them into its configuration: nothing is fetched at run time).
///
/// GitHub's identifier of a key is the SHA-256 of its PEM text, in hex
/// ([`key_identifier`]); [`PublicKeys::add_pem`] uses that, [`PublicKeys::add_pem_with_id`]
/// takes the identifier as given.
///
/// ```
/// use keyward::secret_scanning::PublicKeys;
/// // GitHub's documented test key.
/// let pem = "-----BEGIN PUBLIC KEY-----
/// MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsz9ugWDj5jK5ELBK42ynytbo38gP
/// HzZFI03Exwz8Lh/tCfL3YxwMdLjB+bMznsanlhK0RwcGP3IDb34kQDIo3Q==
/// -----END PUBLIC KEY-----
/// ";
/// let mut keys = PublicKeys::new();
/// let id = keys.add_pem(pem)?;
/// assert_eq!(id, "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d");
/// let body = br#"[{"token":"some_token","type":"some_type","url":"some_url","source":"some_source"}]"#;
/// let signature = "MEUCIFLZzeK++IhS+y276SRk2Pe5LfDrfvTXu6iwKKcFGCrvAiEAhHN2kDOhy2I6eGkOFmxNkOJ+L2y8oQ9A2T9GGJo6WJY=";
/// keys.verify(Some(&id), Some(signature), body)?;
/// assert!(keys.verify(Some(&id), Some(signature), b"[]").is_err());
/// # Ok::<(), keyward::secret_scanning::ScanError>(())
/// ```
#[derive(Clone, Default)]
pub struct PublicKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

/// GitHub's identifier of a public key: the SHA-256 of its PEM text (the file's bytes), in
/// lowercase hex.
///
/// ```
/// let id = keyward::secret_scanning::key_identifier(b"-----BEGIN PUBLIC KEY-----\n");
/// assert_eq!(id.len(), 64);
/// ```
pub fn key_identifier(pem: &[u8]) -> String {
    sha256_hex(pem)
}

/// The SHA-256 of `bytes` in lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl PublicKeys {
    /// No keys: every report is refused until one is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a P-256 public key in PEM (SubjectPublicKeyInfo, `BEGIN PUBLIC KEY`) under its
    /// identifier, the SHA-256 of `pem` ([`key_identifier`]); returns the identifier.
    ///
    /// # Errors
    /// [`ScanError::Config`] when `pem` is not a P-256 public key in PEM.
    pub fn add_pem(&mut self, pem: &str) -> Result<String, ScanError> {
        let id = key_identifier(pem.as_bytes());
        self.add_pem_with_id(id.clone(), pem)?;
        Ok(id)
    }

    /// Adds a P-256 public key in PEM under the identifier `id` (as GitHub's key list gives
    /// it). A key already under `id` is replaced.
    ///
    /// # Errors
    /// [`ScanError::Config`] when `id` is empty, too long or not printable ASCII, or `pem`
    /// is not a P-256 public key in PEM.
    pub fn add_pem_with_id(&mut self, id: impl Into<String>, pem: &str) -> Result<(), ScanError> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_HEADER_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ScanError::Config(
                "a key identifier is 1 to 256 printable ASCII characters".into(),
            ));
        }
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
            ScanError::Config(format!(
                "not a P-256 public key in PEM (BEGIN PUBLIC KEY): {e}"
            ))
        })?;
        self.keys.insert(id, key);
        Ok(())
    }

    /// The configured key identifiers.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks the signature of a report: `key_id` and `signature` are the raw values of
    /// `Github-Public-Key-Identifier` and `Github-Public-Key-Signature`, `body` the raw
    /// request body (never re-serialized).
    ///
    /// # Errors
    /// [`ScanError::MissingSignature`] when a header is absent or empty;
    /// [`ScanError::UnknownKey`] when no key is configured under `key_id`;
    /// [`ScanError::BadSignature`] when the signature is not base64 DER or does not verify.
    pub fn verify(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), ScanError> {
        let (Some(key_id), Some(signature)) = (
            key_id.map(str::trim).filter(|s| !s.is_empty()),
            signature.map(str::trim).filter(|s| !s.is_empty()),
        ) else {
            return Err(ScanError::MissingSignature);
        };
        if key_id.len() > MAX_HEADER_LEN || signature.len() > MAX_HEADER_LEN {
            return Err(ScanError::BadSignature);
        }
        let key = self.keys.get(key_id).ok_or(ScanError::UnknownKey)?;
        let der = STANDARD
            .decode(signature)
            .map_err(|_| ScanError::BadSignature)?;
        let signature =
            DerSignature::try_from(der.as_slice()).map_err(|_| ScanError::BadSignature)?;
        key.verify(body, &signature)
            .map_err(|_| ScanError::BadSignature)
    }
}
