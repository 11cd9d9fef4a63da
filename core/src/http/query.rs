//! The key-in-the-URL check: a query string holding a key-shaped token, or a credential
//! parameter, is refused (docs/ARCHITECTURE.md, "The verify pipeline", step 1).

use http::Uri;

use crate::error::AuthError;
use crate::key::{CHECK_LEN, ID_LEN, KeyId, SECRET_LEN};

/// Query parameters that would carry a key in the URL; a request using one is refused.
const QUERY_KEY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "access_token",
    "token",
    "x-api-key",
];

/// Refuses a request whose query string carries a key: URLs end up in access logs, proxies
/// and browser history, so a key seen there must be treated as leaked.
///
/// The query is percent-decoded (`%5F` is `_`, `+` is a space) in one pass, without
/// allocating, and refused when:
///
/// - it holds a **key-shaped token** anywhere, under any parameter name or none, in any
///   position, alone or inside a longer value (`?KEY`, `?KEY=1`, `?a=x&KEY`,
///   `?q=Bearer+KEY`, `kw%5Fdev%5F…`, `?next=/x?k=KEY`). Key-shaped means the key grammar
///   of [`SCANNER_REGEX`](crate::SCANNER_REGEX) (`<prefix>_<env>_<12-char id>_<49 base62
///   characters>`), of any prefix and environment, **whatever its checksum**: a checksum that
///   does not match may be a real key with one mangled character, and the exposure is what
///   matters. The match is stricter than the regex's word boundaries: a key glued to other
///   letters, digits or `_` counts too. A false alarm needs a token of that very shape
///   (lowercase labels, then exactly 12 characters between two `_`, then 49 or more), which
///   ordinary parameters (ids, words, `snake_case`) do not have. The key's public id is
///   logged (`tracing::warn!`, field `key.id`), never the rest;
/// - or it uses a parameter name that would carry a credential (`api_key`, `apikey`,
///   `api-key`, `key`, `access_token`, `token`, `x-api-key`, any case, percent-decoded),
///   whatever its value.
///
/// The work is linear in the query's length with a constant-size state: a huge query costs
/// one pass.
///
/// ```
/// use keyward::http::reject_key_in_query;
/// assert!(reject_key_in_query(&"/ping?page=2&q=hello+world".parse()?).is_ok());
/// assert!(reject_key_in_query(&"/ping?access_token=abc".parse()?).is_err());
/// # Ok::<(), http::uri::InvalidUri>(())
/// ```
///
/// # Errors
/// [`AuthError::KeyInQueryString`].
pub fn reject_key_in_query(uri: &Uri) -> Result<(), AuthError> {
    reject_key_in_query_str(uri.query())
}

/// [`reject_key_in_query`] for any HTTP library: takes the request's raw query string, the
/// part of the URL after `?` and before any `#`, still percent-encoded (`None` or `Some("")`
/// when there is none), so an adapter for a framework with its own URI type passes
/// `uri.query()` as it is.
///
/// ```
/// use keyward::http::reject_key_in_query_str;
/// assert!(reject_key_in_query_str(None).is_ok());
/// assert!(reject_key_in_query_str(Some("page=2&q=hello+world")).is_ok());
/// assert!(reject_key_in_query_str(Some("API%5FKEY=abc")).is_err());
/// ```
///
/// # Errors
/// [`AuthError::KeyInQueryString`].
pub fn reject_key_in_query_str(query: Option<&str>) -> Result<(), AuthError> {
    let Some(query) = query else {
        return Ok(());
    };
    let mut scanner = KeyShapeScanner::default();
    if let Some(id) = percent_decoded(query.as_bytes()).find_map(|b| scanner.push(b)) {
        match std::str::from_utf8(&id).ok().map(KeyId::new) {
            Some(Ok(id)) => tracing::warn!(
                key.id = %id,
                "refused a request with an API key in its URL query string; the key may be in \
                 access logs: revoke it if it is real"
            ),
            _ => tracing::warn!("refused a request with an API key in its URL query string"),
        }
        return Err(AuthError::KeyInQueryString);
    }
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let param = QUERY_KEY_PARAMS.iter().find(|p| {
            percent_decoded(name.as_bytes())
                .map(|b| b.to_ascii_lowercase())
                .eq(p.bytes())
        });
        if let Some(param) = param {
            tracing::warn!(
                parameter = param,
                "refused a request with a credential parameter in its URL query string"
            );
            return Err(AuthError::KeyInQueryString);
        }
    }
    Ok(())
}

/// The bytes of a URL query as decoded: `%XX` is the byte `XX` (a `%` not followed by two
/// hex digits stays as it is), `+` is a space.
fn percent_decoded(raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *raw.get(i)?;
        i += 1;
        Some(match b {
            b'+' => b' ',
            b'%' => match (raw.get(i).and_then(hex), raw.get(i + 1).and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    i += 2;
                    hi << 4 | lo
                }
                _ => b'%',
            },
            b => b,
        })
    })
}

fn hex(b: &u8) -> Option<u8> {
    char::from(*b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Finds the key grammar in a stream of bytes with constant state: runs of `[0-9A-Za-z_]` are
/// split at `_` into segments; a key is four consecutive segments — one ending in a label
/// (`[a-z][a-z0-9]{1,9}`, the prefix, possibly glued to what precedes it), a label (the
/// environment), 12 characters (the id), and 49 or more characters (the secret and checksum,
/// possibly followed by more).
#[derive(Default)]
struct KeyShapeScanner {
    /// The last three completed segments of the current run, oldest first.
    done: [Segment; 3],
    /// How many segments of the current run are complete (at most 3 are kept).
    complete: usize,
    current: Segment,
}

/// What the scanner keeps of one segment: its length, its last [`LABEL_MAX`] bytes and its
/// first [`ID_LEN`] bytes (the id, when the segment is one).
#[derive(Clone, Copy, Default)]
struct Segment {
    len: usize,
    head: [u8; ID_LEN],
    tail: [u8; LABEL_MAX],
}

/// The longest prefix or environment label.
const LABEL_MAX: usize = 10;

impl Segment {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.head.get_mut(self.len) {
            *slot = b;
        }
        self.tail.rotate_left(1);
        self.tail[LABEL_MAX - 1] = b;
        self.len += 1;
    }

    /// The length of the longest label (`[a-z][a-z0-9]{1,9}`) this segment ends with.
    fn label_suffix(&self) -> usize {
        let kept = self.len.min(LABEL_MAX);
        let tail = &self.tail[LABEL_MAX - kept..];
        let lower_alnum = tail
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .count();
        let run = &tail[kept - lower_alnum..];
        // The longest such suffix starts at the run's first letter, if two bytes or more remain.
        match run.iter().position(u8::is_ascii_lowercase) {
            Some(first) if run.len() - first >= 2 => run.len() - first,
            _ => 0,
        }
    }

    fn is_label(&self) -> bool {
        self.len <= LABEL_MAX && self.label_suffix() == self.len
    }
}

impl KeyShapeScanner {
    /// Takes the next decoded byte; returns the id of a key-shaped token when this byte
    /// completes one.
    fn push(&mut self, b: u8) -> Option<[u8; ID_LEN]> {
        if b == b'_' {
            if self.complete == 3 {
                self.done.rotate_left(1);
                self.done[2] = self.current;
            } else {
                self.done[self.complete] = self.current;
                self.complete += 1;
            }
            self.current = Segment::default();
            return None;
        }
        if !b.is_ascii_alphanumeric() {
            self.complete = 0;
            self.current = Segment::default();
            return None;
        }
        self.current.push(b);
        let [prefix, env, id] = &self.done;
        (self.complete == 3
            && self.current.len == SECRET_LEN + CHECK_LEN
            && id.len == ID_LEN
            && env.is_label()
            && prefix.label_suffix() >= 2)
            .then_some(id.head)
    }
}
