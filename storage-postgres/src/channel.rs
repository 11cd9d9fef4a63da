//! Names derived from the schema: the change feed's channel and the listener's application
//! name, both within PostgreSQL's identifier length.

/// PostgreSQL truncates identifiers (and refuses channel names) beyond this many bytes.
const MAX_IDENTIFIER_LEN: usize = 63;

/// The longest prefix of `s` of at most [`MAX_IDENTIFIER_LEN`] bytes, on a char boundary.
pub(crate) fn truncate(s: &str) -> &str {
    truncate_to(s, MAX_IDENTIFIER_LEN)
}

fn truncate_to(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The `LISTEN/NOTIFY` channel of a schema: at most [`MAX_IDENTIFIER_LEN`] bytes, distinct
/// per schema (a long name is cut and a hash of it appended).
pub(crate) fn channel_for(schema: &str) -> String {
    let full = format!("keyward_changes:{schema}");
    if full.len() <= MAX_IDENTIFIER_LEN {
        return full;
    }
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head = truncate_to(&full, MAX_IDENTIFIER_LEN - 17);
    format!("{head}~{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_in_an_identifier_and_stay_distinct() {
        assert_eq!(channel_for("public"), "keyward_changes:public");
        let a = channel_for(&"s".repeat(63));
        let b = channel_for(&format!("{}t", "s".repeat(62)));
        assert!(a.len() <= MAX_IDENTIFIER_LEN && b.len() <= MAX_IDENTIFIER_LEN);
        assert_ne!(a, b);
        let unicode = channel_for(&"é".repeat(31));
        assert!(unicode.len() <= MAX_IDENTIFIER_LEN);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let s = format!("{}é", "a".repeat(62));
        assert_eq!(truncate(&s), "a".repeat(62));
    }
}
