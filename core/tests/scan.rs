//! `find_keys` and `KeyScanner` as properties: a key anywhere in any text, fed in chunks of any
//! size, is found exactly once at its line and column; text without a key yields nothing.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward::{ApiKey, KeyScanner, find_keys};
use proptest::prelude::*;

fn scan_in_chunks(text: &[u8], chunk: usize) -> Vec<keyward::FoundKey> {
    let mut scanner = KeyScanner::new();
    let mut found = Vec::new();
    for c in text.chunks(chunk) {
        scanner.feed(c, &mut |k| found.push(k));
    }
    scanner.finish(&mut |k| found.push(k));
    found
}

/// Text around the key: separators, newlines, word characters, underscores and look-alike
/// fragments of keys.
fn filler() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        r"([ \n\t=:'\x22,;]|[a-z0-9_]{0,12}|kw_dev_[A-Za-z0-9]{12}_){0,40}",
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_key_in_any_text_is_found_once_at_its_place(
        before in filler(),
        after in filler(),
        chunk in 1usize..200,
    ) {
        let key = ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap()).unwrap();
        // A separator on each side, so the key is a word of its own.
        let text = format!("{before} {} {after}", key.expose_secret());
        let found = scan_in_chunks(text.as_bytes(), chunk);
        prop_assert_eq!(found.len(), 1);
        let line = 1 + before.matches('\n').count() as u64;
        let column = 1 + (before.len() - before.rfind('\n').map_or(0, |i| i + 1)) as u64 + 1;
        prop_assert_eq!((found[0].line, found[0].column), (line, column));
        prop_assert_eq!(&found[0].key, &key);
    }

    #[test]
    fn text_without_a_key_yields_nothing(text in filler(), bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        prop_assert!(find_keys(text.as_bytes()).is_empty());
        prop_assert!(find_keys(&bytes).is_empty());
    }
}
