//! Finding keys in text, for secret scanning (`keyward scan`, a pre-commit hook, a CI step).
//!
//! A candidate is any run of `[0-9A-Za-z_]` with the key's shape (`<prefix>_<env>_<id>_<secret
//! and check>`); it is reported only when its checksum holds ([`ApiKey::parse`]), so a random
//! look-alike is reported with a chance of about one in 62⁶ (5.7 × 10¹⁰). A key glued to other
//! word characters (`Bearerkw_…`, `kw_…_x`) is found too, which a `\b`-anchored regular
//! expression misses. The scanner streams: memory stays bounded whatever the input (a file
//! of one endless line included), and it never keeps more than one run of word characters.

use zeroize::Zeroize;

use super::{ApiKey, ID_LEN, LABEL_MAX};

/// The secret and the checksum together: the fourth part of a key.
const TAIL_LEN: usize = super::SECRET_LEN + super::CHECK_LEN;
/// A run of word characters longer than this is scanned and cut down to its last
/// [`RUN_KEEP`] bytes, so memory stays bounded.
const RUN_CAP: usize = 4096;
/// What is kept of a cut run: more than a key's length, so a key across the cut is whole in it.
const RUN_KEEP: usize = 2 * (LABEL_MAX + 1 + LABEL_MAX + 1 + ID_LEN + 1 + TAIL_LEN);

/// A key found in text: where it starts, and the key (print its
/// [`masked`](ApiKey::masked) form; its `Debug` never shows the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundKey {
    /// The line it is on, from 1.
    pub line: u64,
    /// The byte column it starts at, from 1.
    pub column: u64,
    /// The key.
    pub key: ApiKey,
}

/// Finds every key in `text` whose checksum holds, in order.
///
/// ```
/// use keyward::{ApiKey, find_keys};
/// let key = ApiKey::generate("av".parse()?, "prd".parse()?)?;
/// let text = format!("# config\nAPI_KEY=\"{}\"\n", key.expose_secret());
/// let found = find_keys(text.as_bytes());
/// assert_eq!(found.len(), 1);
/// assert_eq!((found[0].line, found[0].column), (2, 10));
/// assert_eq!(found[0].key, key);
///
/// // A look-alike whose checksum does not hold is not a key.
/// let mut forged = key.expose_secret().to_owned();
/// forged.replace_range(20..21, if &forged[20..21] == "A" { "B" } else { "A" });
/// assert!(find_keys(forged.as_bytes()).is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn find_keys(text: &[u8]) -> Vec<FoundKey> {
    let mut found = Vec::new();
    let mut scanner = KeyScanner::new();
    scanner.feed(text, &mut |k| found.push(k));
    scanner.finish(&mut |k| found.push(k));
    found
}

/// A streaming key finder: [`feed`](KeyScanner::feed) it chunks of any size, in order, then
/// [`finish`](KeyScanner::finish) it. A key split across chunks is found.
///
/// ```
/// use keyward::{ApiKey, KeyScanner};
/// let key = ApiKey::generate("kw".parse()?, "dev".parse()?)?;
/// let text = format!("token: {}\n", key.expose_secret());
/// let mut scanner = KeyScanner::new();
/// let mut found = Vec::new();
/// for chunk in text.as_bytes().chunks(7) {
///     scanner.feed(chunk, &mut |k| found.push(k));
/// }
/// scanner.finish(&mut |k| found.push(k));
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].column, 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct KeyScanner {
    /// The current run of word characters (it may hold a key: zeroized as it is dropped).
    run: zeroize::Zeroizing<Vec<u8>>,
    /// Where the run's first byte is.
    run_line: u64,
    run_column: u64,
    /// In the run: keys starting before this offset were reported already (after a cut).
    reported_to: usize,
    /// Where the next byte is.
    line: u64,
    column: u64,
    /// Scratch: the underscores' offsets in the run.
    underscores: Vec<usize>,
}

impl std::fmt::Debug for KeyScanner {
    /// Where the scanner is; never the run of text it holds, which may be part of a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyScanner")
            .field("line", &self.line)
            .field("column", &self.column)
            .field("held_bytes", &self.run.len())
            .finish_non_exhaustive()
    }
}

impl KeyScanner {
    /// A scanner at line 1, column 1.
    pub fn new() -> Self {
        Self {
            line: 1,
            column: 1,
            ..Self::default()
        }
    }

    /// Scans the next chunk of the input, calling `found` for each key completed in it.
    pub fn feed(&mut self, chunk: &[u8], found: &mut impl FnMut(FoundKey)) {
        for &b in chunk {
            if b.is_ascii_alphanumeric() || b == b'_' {
                if self.run.is_empty() {
                    self.run_line = self.line;
                    self.run_column = self.column;
                }
                self.run.push(b);
                if self.run.len() >= RUN_CAP {
                    self.cut_run(found);
                }
                self.column += 1;
            } else {
                self.end_run(found);
                if b == b'\n' {
                    self.line += 1;
                    self.column = 1;
                } else {
                    self.column += 1;
                }
            }
        }
    }

    /// Ends the input, calling `found` for a key at its very end.
    pub fn finish(mut self, found: &mut impl FnMut(FoundKey)) {
        self.end_run(found);
    }

    fn end_run(&mut self, found: &mut impl FnMut(FoundKey)) {
        if !self.run.is_empty() {
            self.scan_run(found);
            self.run.zeroize();
            self.reported_to = 0;
        }
    }

    /// Scans an overlong run and keeps its last [`RUN_KEEP`] bytes: a key that goes on past
    /// the cut starts inside them.
    fn cut_run(&mut self, found: &mut impl FnMut(FoundKey)) {
        self.scan_run(found);
        let drop = self.run.len() - RUN_KEEP;
        self.run.drain(..drop);
        self.run_column += drop as u64;
        self.reported_to = self.reported_to.saturating_sub(drop);
    }

    fn scan_run(&mut self, found: &mut impl FnMut(FoundKey)) {
        self.underscores.clear();
        self.underscores.extend(
            self.run
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'_')
                .map(|(i, _)| i),
        );
        let u = &self.underscores;
        // Four parts in a row, between underscores: prefix (or a word ending in it), env,
        // id, and a tail starting with the secret and check.
        for w in u.windows(3) {
            let (u1, u2, u3) = (w[0], w[1], w[2]);
            let env_len = u2 - u1 - 1;
            if !(2..=LABEL_MAX).contains(&env_len) || u3 - u2 - 1 != ID_LEN {
                continue;
            }
            let tail_end = u3 + 1 + TAIL_LEN;
            if tail_end > self.run.len() {
                continue;
            }
            let first_start = u.iter().rev().find(|&&p| p < u1).map_or(0, |p| p + 1);
            // The prefix is the last 2..=10 characters of the first part.
            let longest = (u1 - first_start).min(LABEL_MAX);
            for len in (2..=longest).rev() {
                let start = u1 - len;
                if start < self.reported_to {
                    continue;
                }
                if let Ok(key) = ApiKey::parse_bytes(&self.run[start..tail_end]) {
                    found(FoundKey {
                        line: self.run_line,
                        column: self.run_column + start as u64,
                        key,
                    });
                    self.reported_to = tail_end;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &str, env: &str) -> ApiKey {
        ApiKey::generate(prefix.parse().unwrap(), env.parse().unwrap()).unwrap()
    }

    #[test]
    fn finds_keys_glued_to_word_characters_on_either_side() {
        let k = key("av", "prd");
        for (text, column) in [
            (format!("Bearerxyz{}", k.expose_secret()), 10),
            (format!("{}_suffix", k.expose_secret()), 1),
            (format!("{}abc", k.expose_secret()), 1),
            (format!("x={}\n", k.expose_secret()), 3),
        ] {
            let found = find_keys(text.as_bytes());
            assert_eq!(found.len(), 1, "in {:?}", text.len());
            assert_eq!(found[0].key, k);
            assert_eq!(found[0].column, column);
        }
    }

    #[test]
    fn finds_adjacent_and_repeated_keys_each_once() {
        let a = key("kw", "dev");
        let b = key("tl", "stg");
        let text = format!(
            "{a}_{b}\n{a} {a}\n",
            a = a.expose_secret(),
            b = b.expose_secret()
        );
        let found = find_keys(text.as_bytes());
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.line, f.column, f.key.id()))
            .collect();
        let a_len = a.expose_secret().len() as u64;
        assert_eq!(
            got,
            vec![
                (1, 1, a.id()),
                (1, a_len + 2, b.id()),
                (2, 1, a.id()),
                (2, a_len + 2, a.id()),
            ]
        );
    }

    #[test]
    fn a_key_across_chunks_and_inside_an_endless_run_is_found_once() {
        let k = key("av", "dev");
        for pad in [
            0usize,
            1,
            RUN_CAP - 40,
            RUN_CAP - 1,
            RUN_CAP,
            3 * RUN_CAP + 17,
        ] {
            let text = format!(
                "{}-{}-{}",
                "x".repeat(pad),
                k.expose_secret(),
                "y".repeat(pad)
            );
            for chunk in [1usize, 5, 64, 4096, usize::MAX] {
                let mut s = KeyScanner::new();
                let mut found = Vec::new();
                for c in text.as_bytes().chunks(chunk.min(text.len())) {
                    s.feed(c, &mut |k| found.push(k));
                }
                s.finish(&mut |k| found.push(k));
                assert_eq!(found.len(), 1, "pad {pad} chunk {chunk}");
                assert_eq!(found[0].column, pad as u64 + 2);
            }
        }
        // Glued inside word characters, across the cut of an overlong run.
        for pad in [RUN_CAP - 80, RUN_CAP - 50, RUN_CAP - 10, 2 * RUN_CAP - 30] {
            let text = format!(
                "{}{}{}",
                "z".repeat(pad),
                k.expose_secret(),
                "z".repeat(pad)
            );
            let found = find_keys(text.as_bytes());
            assert_eq!(found.len(), 1, "glued, pad {pad}");
            assert_eq!(found[0].column, pad as u64 + 1);
        }
    }

    #[test]
    fn debug_of_a_scanner_holding_part_of_a_key_shows_none_of_it() {
        let k = key("av", "prd");
        let text = k.expose_secret();
        let mut scanner = KeyScanner::new();
        scanner.feed(&text.as_bytes()[..text.len() - 1], &mut |_| {});
        let shown = format!("{scanner:?}");
        assert!(shown.contains("held_bytes"), "{shown}");
        assert!(
            !shown.contains(&text[text.len() - 30..text.len() - 1]),
            "{shown}"
        );
        assert!(!shown.contains(&k.id().to_string()), "{shown}");
        // Nor as numbers, the way a derived `Debug` prints bytes.
        let as_numbers = format!("{:?}", &text.as_bytes()[..8]);
        assert!(
            !shown.contains(as_numbers.trim_matches(['[', ']'])),
            "{shown}"
        );
    }

    #[test]
    fn look_alikes_with_a_wrong_checksum_are_not_keys() {
        let k = key("av", "prd");
        let text = k.expose_secret();
        let mut reported = 0;
        for i in 0..text.len() {
            let mut bytes = text.as_bytes().to_vec();
            if bytes[i] == b'_' {
                continue;
            }
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            reported += find_keys(&bytes).len();
        }
        assert_eq!(reported, 0);
    }
}
