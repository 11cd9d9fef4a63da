#![doc = include_str!("../README.md")]
//!
//! This library holds the code the binaries share: opening a store from a URL
//! ([`open_store`]), choosing the hash parameters ([`hash_params_from_env`]), fetching and
//! rendering key lists ([`for_each_page`], [`list_all`], [`Table`]), setting up logging ([`init_logging`])
//! and running a binary's async `main` ([`run_main`]), and the example ingestion server
//! ([`server`]), protected by `keyward::axum`.
#![forbid(unsafe_code)]

pub mod actix;
pub mod server;

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Arc;

use keyward::{Error, HashParams, KeyInfo, KeyManager, KeyStore, ListQuery, StoreError, Timestamp};
use tracing_subscriber::EnvFilter;

/// Runs `work` on a multi-thread Tokio runtime and turns its outcome into the process's exit
/// status: success, or the error printed as `error: …` on stderr and a failure status.
///
/// ```
/// let code = keyward_examples::run_main(async { Ok(()) });
/// assert_eq!(code, std::process::ExitCode::SUCCESS);
/// ```
pub fn run_main(
    work: impl std::future::Future<Output = Result<(), String>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Installs the global `tracing` subscriber of a binary: logs go to stderr (with colours when
/// stderr is a terminal), filtered by `RUST_LOG`, or by `default_filter` (e.g. `"warn"`) when
/// `RUST_LOG` is unset or invalid.
///
/// Call it once, at the start of `main`: a second call panics, since the global subscriber can
/// be set only once.
pub fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The store the CLI uses when neither `--db` nor `KEYWARD_DB` is given: a SQLite file
/// `keyward.db` in the current directory.
pub const DEFAULT_DB_URL: &str = "sqlite:keyward.db";

/// The environment variable that switches hashing to [`HashParams::INSECURE_TEST_ONLY`] when
/// set to `1`. **For tests only**: keys hashed this way can be brute-forced offline.
pub const INSECURE_FAST_HASH_VAR: &str = "KEYWARD_INSECURE_FAST_HASH";

/// Opening a store failed.
///
/// Messages never repeat the URL: a database URL may carry a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// The URL is empty.
    #[error("the store URL is empty: pass --db sqlite:keyward.db or set KEYWARD_DB")]
    Empty,
    /// A URL scheme no store answers to.
    #[error(
        "unknown store URL scheme '{scheme}': use sqlite:PATH, sqlite://PATH, sqlite::memory:, a file path or postgres://…"
    )]
    UnknownScheme {
        /// The URL scheme.
        scheme: String,
    },
    /// The store itself failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the store named by `url`:
///
/// | URL | store |
/// |---|---|
/// | `sqlite:keyward.db`, `sqlite://path/to/file.db`, `sqlite::memory:` | [`keyward_sqlite::SqliteStore`] |
/// | a plain file path (`./keys.db`) | a SQLite file at that path |
/// | `postgres://…`, `postgresql://…` | [`keyward_postgres::PostgresStore`] (migrated on connect) |
///
/// This is the one place that maps URLs to stores: add a backend here.
///
/// # Errors
/// [`OpenStoreError`] for an empty URL or an unknown scheme, or when the store fails to
/// open.
pub async fn open_store(url: &str) -> Result<Arc<dyn KeyStore>, OpenStoreError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(OpenStoreError::Empty);
    }
    match scheme_of(url) {
        Some("sqlite") => Ok(Arc::new(keyward_sqlite::SqliteStore::open_url(url).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(
            keyward_postgres::PostgresStore::connect(url).await?,
        )),
        Some(scheme) => Err(OpenStoreError::UnknownScheme {
            scheme: scheme.to_owned(),
        }),
        None => Ok(Arc::new(keyward_sqlite::SqliteStore::open(url).await?)),
    }
}

/// The URL scheme (lowercased by the caller's convention: schemes are matched exactly), or
/// `None` for a plain path. A scheme is at least two characters of `[a-z0-9+.-]` starting
/// with a letter, so a Windows drive letter (`C:\keys.db`) counts as a path.
fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_lowercase()
        && scheme.len() >= 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    valid.then_some(scheme)
}

/// Hands every key that `query`'s filters select to `each`, one page of `query.limit` keys at
/// a time (each page starting after the last key of the one before), from `query.after` on. A
/// page shorter than the limit is the last one. Memory stays at one page, however many keys
/// there are.
///
/// # Errors
/// The first error [`KeyManager::list`] or `each` returns.
pub async fn for_each_page<E: From<Error>>(
    manager: &KeyManager,
    mut query: ListQuery,
    mut each: impl FnMut(Vec<KeyInfo>) -> Result<(), E>,
) -> Result<(), E> {
    loop {
        let page = manager.list(&query).await?;
        let full = page.len() >= query.limit as usize;
        query.after = page.last().map(|k| (k.created_at, k.id));
        let last = !full || query.after.is_none();
        each(page)?;
        if last {
            return Ok(());
        }
    }
}

/// Every key that `query`'s filters select, fetched with [`for_each_page`]. For small sets
/// only: the whole list is held in memory.
///
/// # Errors
/// The first error [`KeyManager::list`] returns (the keys already fetched are dropped).
pub async fn list_all(manager: &KeyManager, query: ListQuery) -> Result<Vec<KeyInfo>, Error> {
    let mut keys: Vec<KeyInfo> = Vec::new();
    for_each_page(manager, query, |page| {
        keys.extend(page);
        Ok::<(), Error>(())
    })
    .await?;
    Ok(keys)
}

/// The hash parameters to issue keys with: [`HashParams::default`] (OWASP's minimum), or
/// [`HashParams::INSECURE_TEST_ONLY`] when the variable [`INSECURE_FAST_HASH_VAR`] is `1`,
/// with a warning on stderr. Test suites set it so that each CLI call hashes in microseconds.
pub fn hash_params_from_env() -> HashParams {
    match std::env::var(INSECURE_FAST_HASH_VAR).as_deref() {
        Ok("1") => {
            eprintln!(
                "warning: {INSECURE_FAST_HASH_VAR}=1: hashing with deliberately weak parameters, \
                 for tests only; keys issued now can be brute-forced if the store leaks"
            );
            HashParams::INSECURE_TEST_ONLY
        }
        Ok("" | "0") | Err(std::env::VarError::NotPresent) => HashParams::default(),
        Ok(_) | Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!(
                "warning: {INSECURE_FAST_HASH_VAR} is ignored unless it is exactly 1; \
                 using the default (OWASP) hash parameters"
            );
            HashParams::default()
        }
    }
}

/// A timestamp to the second, RFC 3339: `2026-11-23T10:00:00Z`.
pub fn format_time(t: Timestamp) -> String {
    let t = t.to_offset_date_time();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

const COLUMNS: [&str; 9] = [
    "ID",
    "KEY",
    "PROJECT",
    "ENV",
    "SCOPES",
    "STATUS",
    "CREATED",
    "EXPIRES",
    "LAST USED",
];

/// Keys as an aligned text table (id, masked key, project, environment, scopes, status,
/// created, expires, last used), holding no secret ([`KeyInfo`] has none). Written a page at
/// a time, for listings too long to hold in memory: column
/// widths are those of the header and of the rows seen so far, so they only grow (a later,
/// wider row shifts the columns after it).
///
/// ```
/// let mut table = keyward_examples::Table::default();
/// let text = table.header() + &table.rows(&[]);
/// assert_eq!(text.lines().count(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Table {
    widths: [usize; 9],
}

impl Default for Table {
    fn default() -> Self {
        Self {
            widths: COLUMNS.map(|c| c.chars().count()),
        }
    }
}

impl Table {
    /// The header line.
    pub fn header(&mut self) -> String {
        self.lines(&[COLUMNS.map(str::to_owned)])
    }

    /// One line per key.
    pub fn rows(&mut self, keys: &[KeyInfo]) -> String {
        let opt_time = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), format_time);
        let rows: Vec<[String; 9]> = keys
            .iter()
            .map(|k| {
                [
                    k.id.to_string(),
                    k.masked.clone(),
                    k.project.to_string(),
                    k.environment.to_string(),
                    if k.scopes.is_empty() {
                        "-".to_owned()
                    } else {
                        k.scopes.to_string()
                    },
                    k.status.to_string(),
                    format_time(k.created_at),
                    opt_time(k.expires_at),
                    opt_time(k.last_used_at),
                ]
            })
            .collect();
        for row in &rows {
            for (w, cell) in self.widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        self.lines(&rows)
    }

    fn lines(&self, rows: &[[String; 9]]) -> String {
        let mut out = String::new();
        for row in rows {
            let mut text = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = self.widths[i].saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
            let _ = writeln!(out, "{}", text.trim_end());
        }
        out
    }
}

/// Turns core dumps off for this process (both limits of `RLIMIT_CORE` set to 0), so a crash
/// cannot write what the process holds in memory to disk: keys in HTTP buffers, verify-cache
/// digests. Call it first in `main`; it cannot be raised again by this process. What can still
/// remain in memory is described in SECURITY.md ("Memory").
///
/// # Errors
/// The operating system's error when the limit cannot be set.
///
/// ```
/// keyward_examples::disable_core_dumps()?;
/// # #[cfg(target_os = "linux")]
/// assert!(std::fs::read_to_string("/proc/self/limits")?
///     .lines()
///     .any(|l| l.starts_with("Max core file size") && l.split_whitespace().nth(4) == Some("0")));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn disable_core_dumps() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        rlimit::setrlimit(rlimit::Resource::CORE, 0, 0)
    }
    #[cfg(not(unix))]
    {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use keyward::IssueRequest;

    use super::*;

    #[test]
    fn scheme_of_tells_urls_from_paths() {
        assert_eq!(scheme_of("sqlite:keyward.db"), Some("sqlite"));
        assert_eq!(scheme_of("sqlite::memory:"), Some("sqlite"));
        assert_eq!(scheme_of("postgres://u:p@h/db"), Some("postgres"));
        assert_eq!(scheme_of("./keys.db"), None);
        assert_eq!(scheme_of("keys.db"), None);
        assert_eq!(scheme_of("C:\\keys.db"), None);
    }

    #[tokio::test]
    async fn an_unreachable_postgres_url_fails_without_echoing_the_password() {
        // Port 1 on loopback: nothing listens there.
        let err = open_store("postgres://admin:hunter2@127.0.0.1:1/keys")
            .await
            .err()
            .map(|e| format!("{e} {e:?}"))
            .unwrap_or_default();
        assert!(!err.is_empty(), "connecting to a closed port must fail");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn list_all_fetches_every_page_including_after_an_exactly_full_one() {
        let store = open_store("sqlite::memory:").await.unwrap();
        let manager = KeyManager::builder_arc(store)
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .build()
            .unwrap();
        for env in ["dev", "dev", "dev", "dev", "prd"] {
            let req = IssueRequest::new("web-app".parse().unwrap(), env.parse().unwrap())
                .scopes(["read"])
                .unwrap();
            manager.issue(req).await.unwrap();
        }
        let dev = Some("dev".parse().unwrap());
        for limit in [1, 2, 3, 4, 100] {
            let query = ListQuery {
                environment: dev,
                limit,
                ..ListQuery::default()
            };
            let keys = list_all(&manager, query).await.unwrap();
            let order: Vec<_> = keys.iter().map(|k| (k.created_at, k.id)).collect();
            let mut sorted = order.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(order, sorted, "limit {limit}: in order, no repeats");
            assert_eq!(keys.len(), 4, "limit {limit}");
        }
    }

    #[test]
    fn format_time_drops_milliseconds() {
        assert_eq!(
            format_time(Timestamp::from_unix_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20Z"
        );
    }
}
