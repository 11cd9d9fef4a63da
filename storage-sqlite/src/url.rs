//! Parsing `sqlite:` URLs.

use std::path::PathBuf;

use crate::error::SqliteError;

/// Where a `sqlite:` URL points.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A private in-memory database.
    Memory,
    /// A database file.
    File(PathBuf),
}

/// Parses `sqlite:path`, `sqlite://path`, `sqlite:///abs/path` and `sqlite::memory:` (also
/// `sqlite://:memory:`), the forms sqlx accepts. A `?mode=rwc` suffix is accepted (it is
/// what the store does anyway); other query parameters are refused.
pub(crate) fn parse(url: &str) -> Result<Target, SqliteError> {
    let Some(rest) = strip_prefix_ignore_case(url, "sqlite:") else {
        return Err(SqliteError::NotSqliteUrl {
            scheme: scheme_of(url),
        });
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = match rest.split_once('?') {
        Some((path, query)) => {
            if !query.split('&').all(|p| p.is_empty() || p == "mode=rwc") {
                return Err(SqliteError::UnsupportedUrlParameter);
            }
            path
        }
        None => rest,
    };
    match path {
        ":memory:" => Ok(Target::Memory),
        "" => Err(SqliteError::EmptyPath),
        p => Ok(Target::File(PathBuf::from(p))),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The scheme of a URL-looking string, only when it is a plain scheme name (so nothing
/// else of the URL, such as a password, can be echoed).
fn scheme_of(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let plain = !scheme.is_empty()
        && scheme.len() <= 32
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    plain.then(|| scheme.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn documented_forms_parse() {
        assert_eq!(parse("sqlite::memory:").unwrap(), Target::Memory);
        assert_eq!(parse("sqlite://:memory:").unwrap(), Target::Memory);
        assert_eq!(
            parse("sqlite:keyward.db").unwrap(),
            Target::File("keyward.db".into())
        );
        assert_eq!(
            parse("sqlite://path/x.db").unwrap(),
            Target::File("path/x.db".into())
        );
        assert_eq!(
            parse("sqlite:///abs/x.db").unwrap(),
            Target::File("/abs/x.db".into())
        );
        assert_eq!(
            parse("SQLite:x.db?mode=rwc").unwrap(),
            Target::File("x.db".into())
        );
    }

    #[test]
    fn other_urls_are_refused_without_echoing_them() {
        let e = parse("postgres://user:hunter2@db/keys").unwrap_err();
        assert!(matches!(&e, SqliteError::NotSqliteUrl { scheme: Some(s) } if s == "postgres"));
        assert!(!e.to_string().contains("hunter2"));
        assert!(matches!(
            parse("keyward.db").unwrap_err(),
            SqliteError::NotSqliteUrl { scheme: None }
        ));
        assert!(matches!(
            parse("sqlite:").unwrap_err(),
            SqliteError::EmptyPath
        ));
        assert!(matches!(
            parse("sqlite:x.db?cache=shared").unwrap_err(),
            SqliteError::UnsupportedUrlParameter
        ));
    }
}
