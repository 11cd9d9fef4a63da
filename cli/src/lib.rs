//! What the `keyward` admin CLI shares with the other binaries built on Keyward (the example
//! server and loadgen in `keyward-examples`): opening a store from a URL ([`open_store`], with
//! the accepted forms in [`STORE_URLS`]), choosing the hash parameters
//! ([`hash_params_from_env`]), setting up logging ([`init_logging`]), turning core dumps off
//! ([`disable_core_dumps`]), running an async `main` ([`run_main`]) and naming who makes a
//! change in the audit trail ([`cli_actor`]).
//!
//! The CLI itself is the `keyward` binary of this package; its commands are described in the
//! [README](https://github.com/keyward-rs/keyward/blob/main/cli/README.md).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = keyward_cli::open_store(keyward_cli::DEFAULT_DB_URL).await?;
//! let manager = keyward::KeyManager::builder_arc(store)
//!     .hash_params(keyward_cli::hash_params_from_env())
//!     .build()?;
//! # let _ = manager;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::IsTerminal as _;
use std::sync::Arc;

use keyward::{Actor, HashParams, KeyStore, StoreError};
use tracing_subscriber::EnvFilter;

/// Runs `work` on a multi-thread Tokio runtime and turns its outcome into the process's exit
/// status: success, or the error printed as `error: …` on stderr and a failure status.
///
/// ```
/// let code = keyward_cli::run_main(async { Ok(()) });
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
///
/// ```
/// keyward_cli::init_logging("warn");
/// tracing::warn!("this goes to stderr");
/// ```
pub fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The store the binaries use when neither `--db` nor `KEYWARD_DB` is given: a SQLite file
/// `keyward.db` in the current directory.
///
/// ```
/// assert_eq!(keyward_cli::DEFAULT_DB_URL, "sqlite:keyward.db");
/// ```
pub const DEFAULT_DB_URL: &str = "sqlite:keyward.db";

/// Every form of store URL [`open_store`] accepts, as the `--db` help and
/// [`OpenStoreError::UnknownScheme`] list them (one constant, so they cannot drift apart).
///
/// ```
/// assert!(keyward_cli::STORE_URLS.contains("postgresql://"));
/// ```
pub const STORE_URLS: &str = "sqlite:PATH, sqlite://PATH (relative; sqlite:///PATH absolute), \
     sqlite::memory:, a plain file path (SQLite), postgres://… or postgresql://… (PostgreSQL)";

/// The environment variable that switches hashing to [`HashParams::INSECURE_TEST_ONLY`] when
/// set to `1`. **For tests only**: keys hashed this way can be brute-forced offline.
///
/// ```
/// assert_eq!(keyward_cli::INSECURE_FAST_HASH_VAR, "KEYWARD_INSECURE_FAST_HASH");
/// ```
pub const INSECURE_FAST_HASH_VAR: &str = "KEYWARD_INSECURE_FAST_HASH";

/// Opening a store failed.
///
/// Messages never repeat the URL: a database URL may carry a password.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let err = keyward_cli::open_store("mysql://root:hunter2@db/keys").await.err();
/// let message = err.map(|e| e.to_string()).unwrap_or_default();
/// assert!(message.starts_with("unknown store URL scheme 'mysql'"), "{message}");
/// assert!(message.contains(keyward_cli::STORE_URLS));
/// assert!(!message.contains("hunter2"));
/// # });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// The URL is empty.
    #[error("the store URL is empty: pass --db sqlite:keyward.db or set KEYWARD_DB")]
    Empty,
    /// A URL scheme no store answers to.
    #[error("unknown store URL scheme '{scheme}': use {STORE_URLS}")]
    UnknownScheme {
        /// The URL scheme.
        scheme: String,
    },
    /// The store itself failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The backends [`open_store`] can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The backend of a URL scheme, or `None` for a scheme no store answers to. Every scheme named
/// in [`STORE_URLS`] is mapped here (a test checks it).
fn backend_of(scheme: &str) -> Option<Backend> {
    match scheme {
        "sqlite" => Some(Backend::Sqlite),
        "postgres" | "postgresql" => Some(Backend::Postgres),
        _ => None,
    }
}

/// Opens the store named by `url`:
///
/// | URL | store |
/// |---|---|
/// | `sqlite:keyward.db`, `sqlite://path/to/file.db`, `sqlite::memory:` | [`keyward_sqlite::SqliteStore`] |
/// | a plain file path (`./keys.db`) | a SQLite file at that path |
/// | `postgres://…`, `postgresql://…` | [`keyward_postgres::PostgresStore`] (migrated on connect) |
///
/// This is the one place that maps URLs to stores: add a backend here, and to [`STORE_URLS`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let store = keyward_cli::open_store("sqlite::memory:").await?;
/// # let _ = store;
/// # Ok::<(), keyward_cli::OpenStoreError>(())
/// # }).map_err(std::io::Error::other)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// [`OpenStoreError`] for an empty URL or an unknown scheme, or when the store fails to
/// open.
pub async fn open_store(url: &str) -> Result<Arc<dyn KeyStore>, OpenStoreError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(OpenStoreError::Empty);
    }
    let Some(scheme) = scheme_of(url) else {
        return Ok(Arc::new(keyward_sqlite::SqliteStore::open(url).await?));
    };
    match backend_of(scheme) {
        Some(Backend::Sqlite) => Ok(Arc::new(keyward_sqlite::SqliteStore::open_url(url).await?)),
        Some(Backend::Postgres) => Ok(Arc::new(
            keyward_postgres::PostgresStore::connect(url).await?,
        )),
        None => Err(OpenStoreError::UnknownScheme {
            scheme: scheme.to_owned(),
        }),
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

/// The hash parameters to issue keys with: [`HashParams::default`] (OWASP's minimum), or
/// [`HashParams::INSECURE_TEST_ONLY`] when the variable [`INSECURE_FAST_HASH_VAR`] is `1`,
/// with a warning on stderr. Test suites set it so that each CLI call hashes in microseconds.
///
/// ```
/// // Unless KEYWARD_INSECURE_FAST_HASH=1, the default (OWASP) parameters.
/// # if std::env::var_os(keyward_cli::INSECURE_FAST_HASH_VAR).is_none() {
/// assert_eq!(keyward_cli::hash_params_from_env(), keyward::HashParams::default());
/// # }
/// ```
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

/// Turns core dumps off for this process (both limits of `RLIMIT_CORE` set to 0), so a crash
/// cannot write what the process holds in memory to disk: keys in HTTP buffers, verify-cache
/// digests. Call it first in `main`; it cannot be raised again by this process. What can still
/// remain in memory is described in SECURITY.md ("Memory").
///
/// # Errors
/// The operating system's error when the limit cannot be set.
///
/// ```
/// keyward_cli::disable_core_dumps()?;
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

    #[test]
    fn every_scheme_the_help_names_opens_a_store_and_every_store_scheme_is_named() {
        let named: Vec<&str> = STORE_URLS
            .split([',', ' '])
            .filter_map(|form| form.split_once(':').map(|(scheme, _)| scheme))
            .filter(|s| !s.is_empty())
            .collect();
        for scheme in ["sqlite", "postgres", "postgresql"] {
            assert!(
                named.contains(&scheme),
                "{scheme} missing from {STORE_URLS}"
            );
        }
        for scheme in &named {
            assert!(
                backend_of(scheme).is_some(),
                "{scheme} is named but not opened"
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_naming_every_accepted_form() {
        let err = open_store("mysql://root:hunter2@db/keys")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(STORE_URLS), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
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
}

/// Who a change made by this process is attributed to in the audit trail:
/// `cli:<user>@<host>`. The user is `$USER` (or `$LOGNAME`), else the account the process runs
/// as; the host is the machine's host name. Either falls back to `unknown` when it cannot be
/// found, and the whole is cut to the actor's limit ([`keyward::MAX_ACTOR_LEN`]).
///
/// ```
/// let actor = keyward_cli::cli_actor();
/// assert!(actor.as_str().starts_with("cli:"));
/// assert!(actor.as_str().contains('@'));
/// ```
pub fn cli_actor() -> Actor {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let user = from_env("USER")
        .or_else(|| from_env("LOGNAME"))
        .or_else(|| whoami::username().ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let host = whoami::hostname().unwrap_or_else(|_| "unknown".to_owned());
    actor_from(&user, &host)
}

/// `cli:<user>@<host>`, control characters dropped and cut to the actor's limit.
fn actor_from(user: &str, host: &str) -> Actor {
    let text: String = format!("cli:{user}@{host}")
        .chars()
        .filter(|c| !c.is_control())
        .take(keyward::MAX_ACTOR_LEN)
        .collect();
    Actor::new(text).unwrap_or_else(|_| Actor::system())
}

#[cfg(test)]
mod actor_tests {
    use super::*;

    #[test]
    fn the_cli_actor_is_user_at_host_and_always_valid() {
        assert_eq!(actor_from("alice", "build-1").as_str(), "cli:alice@build-1");
        assert_eq!(actor_from("a\nb", "h").as_str(), "cli:ab@h");
        let long = actor_from(&"u".repeat(300), "h");
        assert_eq!(long.as_str().chars().count(), keyward::MAX_ACTOR_LEN);
    }
}
