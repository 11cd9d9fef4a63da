//! The leak detectors every secret-hygiene test uses, and a buffer to capture logs into.
//!
//! Two oracles, for two situations:
//! - the key is known (a test issued it): [`KeyForms`] lists the forms it could leak in, and
//!   [`assert_keys_hidden`] checks that none of them shows;
//! - the input is untrusted and its secret unknown (fuzzing): [`shared_secret_window`] finds
//!   a run of [`SECRET_WINDOW`] alphanumerics that the text shown shares with the input. A key
//!   id is public and 12 characters long, so such a run could only have been copied from the
//!   input's secret part.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;

use super::helpers::secret_of;
use crate::key::ApiKey;

/// Length of the alphanumeric runs [`shared_secret_window`] looks for: one more than a key id.
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

/// Asserts that `shown` (the text of `what`) repeats no part of `input`'s secret (see
/// [`shared_secret_window`]).
///
/// # Panics
/// When it does: a finding.
#[track_caller]
pub fn assert_no_leak(what: &str, shown: &str, input: &[u8]) {
    if let Some(w) = shared_secret_window(shown, input) {
        panic!("{what} repeats {w:?} from the input: {shown:?}");
    }
}

/// The forms in which a known key could leak: its full text, its secret part (whole, and its
/// first and last 16 characters), and the `Authorization` header values that carry it
/// (`Bearer`, and `Basic` with the key as the user name or as the whole credential).
pub struct KeyForms {
    id: String,
    forms: Vec<String>,
}

impl fmt::Debug for KeyForms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyForms")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KeyForms {
    /// The forms of the key text `text`.
    pub fn of(text: &str) -> Self {
        let secret = secret_of(text);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        Self {
            id: ApiKey::parse(text)
                .map(|k| k.id().to_string())
                .unwrap_or_default(),
            forms: vec![
                text.to_owned(),
                secret.to_owned(),
                secret[..16].to_owned(),
                secret[secret.len() - 16..].to_owned(),
                format!("Bearer {text}"),
                format!("bearer {text}"),
                b64(&format!("{text}:")),
                b64(text),
            ],
        }
    }

    /// Asserts that `shown` (the text of `what`) holds none of the forms.
    ///
    /// # Panics
    /// When it holds one; the message shows the text around it.
    #[track_caller]
    pub fn assert_hidden_in(&self, what: &str, shown: &str) {
        for f in &self.forms {
            if let Some(at) = shown.find(f.as_str()) {
                panic!(
                    "{what} shows {f:?} of key {}: {}",
                    self.id,
                    around(shown, at, f.len())
                );
            }
        }
    }
}

/// Asserts that `shown` (the text of `what`) holds none of the [`KeyForms`] of the key texts
/// `keys`.
///
/// # Panics
/// When it holds one.
#[track_caller]
pub fn assert_keys_hidden<K: AsRef<str>>(what: &str, shown: &str, keys: &[K]) {
    for k in keys {
        KeyForms::of(k.as_ref()).assert_hidden_in(what, shown);
    }
}

/// `shown` whole when short, else the part around `len` bytes at `at` (logs can be long).
fn around(shown: &str, at: usize, len: usize) -> &str {
    const CONTEXT: usize = 2000;
    let mut start = at.saturating_sub(CONTEXT);
    while !shown.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + len + CONTEXT).min(shown.len());
    while !shown.is_char_boundary(end) {
        end += 1;
    }
    &shown[start..end]
}

/// A log writer that appends to a shared buffer, for tests that read back what was logged:
/// `tracing_subscriber::fmt().with_writer(move || buffer.clone())`. Clones share the buffer.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("LogBuffer").field("len", &len).finish()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_oracle_catches_a_copied_secret_and_lets_ids_and_templates_pass() {
        let key = ApiKey::generate("av".parse().unwrap(), "prd".parse().unwrap()).unwrap();
        let text = key.expose_secret().as_bytes();
        assert!(shared_secret_window(&key.to_string(), text).is_none());
        let leaked = format!("oops: {}", &key.expose_secret()[20..35]);
        assert!(shared_secret_window(&leaked, text).is_some());
        assert!(shared_secret_window("send 'Authorization: Bearer'", b"Authorization").is_none());
    }

    #[test]
    fn the_window_oracle_finds_a_copied_secret_and_ignores_ids_and_templates() {
        let input = b"kw_dev_ABCDEFGHIJKL_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGxxxxxx";
        assert!(shared_secret_window("kw_dev_ABCDEFGHIJKL_…", input).is_none());
        assert!(shared_secret_window("oops: defghijklmnopq!", input).is_some());
        assert!(shared_secret_window("use Authorization", b"xAuthorizationx").is_none());
    }

    #[test]
    fn key_forms_catch_every_form_and_let_the_masked_key_pass() {
        let key = ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap()).unwrap();
        let text = key.expose_secret();
        let forms = KeyForms::of(text);
        forms.assert_hidden_in("the masked key", &format!("{key} {key:?} {}", key.id()));
        let secret = secret_of(text);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for leaked in [
            format!("x{text}x"),
            format!("secret={secret}"),
            format!("head {}…", &secret[..16]),
            format!("…{} tail", &secret[27..]),
            format!("authorization: Basic {}", b64(&format!("{text}:"))),
            format!("authorization: Basic {}", b64(text)),
        ] {
            let caught = std::panic::catch_unwind(|| forms.assert_hidden_in("a test", &leaked));
            assert!(caught.is_err(), "{leaked:?} passed");
        }
    }

    #[test]
    fn the_log_buffer_keeps_what_every_clone_writes() {
        let buffer = LogBuffer::new();
        let mut a = buffer.clone();
        let mut b = buffer.clone();
        a.write_all(b"one ").unwrap();
        b.write_all(b"two").unwrap();
        assert_eq!(buffer.text(), "one two");
    }
}
