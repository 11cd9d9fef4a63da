//! Keyward benchmarks: the fixtures shared by the criterion benches in `benches/` (stores
//! opened, populated and torn down), and the `plot` binary that draws their results.
//!
//! See `README.md` beside this crate for how to run them.

#![forbid(unsafe_code)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::conformance::sample_record;
use keyward::{Environment, KeyId, KeyStore, Project, Timestamp};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The TrueType font the plots use (DejaVu Sans, Debian's `fonts-dejavu-core`).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the TTF at `path` as plotters' `sans-serif` font (plotters is built with
/// `ab_glyph`, which has no font of its own: criterion's HTML report plots need one too).
///
/// # Errors
/// A message saying what to install when the file is missing or not a font.
pub fn register_font(path: &std::path::Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the font {}: {e}. Install it (Debian: apt-get install fonts-dejavu-core) \
             or pass --font /path/to/a.ttf",
            path.display()
        )
    })?;
    // plotters keeps registered fonts for the whole process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
        .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
}

/// Criterion's settings for these benches: HTML report plots when [`DEFAULT_FONT`] can be
/// loaded, none otherwise (their text needs a font).
pub fn criterion() -> criterion::Criterion {
    let c = criterion::Criterion::default();
    match register_font(std::path::Path::new(DEFAULT_FONT)) {
        Ok(()) => c,
        Err(e) => {
            eprintln!("criterion report plots disabled: {e}");
            c.without_plots()
        }
    }
}

/// A boxed error for fixture failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Records in each store when benchmarking (`KEYWARD_BENCH_KEYS` overrides it).
pub const DEFAULT_RECORDS: usize = 100_000;

/// Records in each store when the benches run as tests (`cargo test --benches`), where each
/// benchmark runs once and populating 100,000 rows would only slow the test run down.
pub const TEST_MODE_RECORDS: usize = 1_000;

/// Records per [`RecordStore::insert_many`](keyward::RecordStore::insert_many) call while populating.
pub const CHUNK: usize = 5_000;

/// Whether this process is a real benchmark run (`cargo bench` passes `--bench`), rather
/// than criterion's test mode, where every benchmark runs once.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// How many records each store is populated with.
///
/// # Panics
/// When `KEYWARD_BENCH_KEYS` is set but is not a number.
pub fn record_count() -> usize {
    if !is_bench_run() {
        return TEST_MODE_RECORDS;
    }
    match std::env::var("KEYWARD_BENCH_KEYS") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("KEYWARD_BENCH_KEYS must be a number of keys, not {v:?}")),
        Err(_) => DEFAULT_RECORDS,
    }
}

/// A store backend under benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `keyward_memory::MemoryStore`.
    Memory,
    /// `keyward_sqlite::SqliteStore` on a temporary file.
    Sqlite,
    /// `keyward_postgres::PostgresStore` in a fresh schema of `DATABASE_URL`.
    Postgres,
}

impl StoreKind {
    /// Every backend, in benchmark order.
    pub const ALL: [StoreKind; 3] = [StoreKind::Memory, StoreKind::Sqlite, StoreKind::Postgres];

    /// The name used in benchmark ids and the plot.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }

    /// The backends selected by `KEYWARD_BENCH_STORES` (comma-separated names; all when unset).
    pub fn selected() -> Vec<StoreKind> {
        match std::env::var("KEYWARD_BENCH_STORES") {
            Ok(list) => Self::ALL
                .into_iter()
                .filter(|k| list.split(',').any(|s| s.trim() == k.name()))
                .collect(),
            Err(_) => Self::ALL.to_vec(),
        }
    }
}

/// A store opened for benchmarking, with whatever must be cleaned up after it.
#[derive(Debug)]
pub struct BenchStore {
    /// Which backend.
    pub kind: StoreKind,
    /// The store.
    pub store: Arc<dyn KeyStore>,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    None,
    /// The SQLite file's directory, removed on drop.
    TempDir(#[allow(dead_code)] tempfile::TempDir),
    /// The PostgreSQL schema, dropped on drop.
    Schema {
        options: Box<PgConnectOptions>,
        schema: String,
    },
}

impl BenchStore {
    /// Opens an empty store of `kind`; `Ok(None)` for PostgreSQL when `DATABASE_URL` is unset.
    ///
    /// # Errors
    /// When the backend cannot be opened.
    pub async fn open(kind: StoreKind) -> Result<Option<Self>, BoxError> {
        let (store, cleanup): (Arc<dyn KeyStore>, Cleanup) = match kind {
            StoreKind::Memory => (Arc::new(keyward_memory::MemoryStore::new()), Cleanup::None),
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir()?;
                let store = keyward_sqlite::SqliteStore::open(dir.path().join("keys.db")).await?;
                (Arc::new(store), Cleanup::TempDir(dir))
            }
            StoreKind::Postgres => {
                let Ok(url) = std::env::var("DATABASE_URL") else {
                    return Ok(None);
                };
                let options = PgConnectOptions::from_str(&url)?;
                let suffix = KeyId::generate()?.as_str().to_ascii_lowercase();
                let schema = format!("keyward_bench_{suffix}");
                let mut admin = PgConnection::connect_with(&options).await?;
                // The name is ours: `keyward_bench_` and lowercase alphanumerics.
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                let cleanup = Cleanup::Schema {
                    options: Box::new(options.clone()),
                    schema: schema.clone(),
                };
                let store = keyward_postgres::PostgresStore::connect_with(
                    options.options([("search_path", schema.as_str())]),
                )
                .await;
                // Built only now so that a failed connect still drops the schema.
                let store = match store {
                    Ok(s) => s,
                    Err(e) => {
                        drop(Self {
                            kind,
                            store: Arc::new(keyward_memory::MemoryStore::new()),
                            cleanup,
                        });
                        return Err(e.into());
                    }
                };
                (Arc::new(store), cleanup)
            }
        };
        Ok(Some(Self {
            kind,
            store,
            cleanup,
        }))
    }

    /// Inserts `count` records (fresh ids, one shared dummy PHC) with
    /// [`RecordStore::insert_many`](keyward::RecordStore::insert_many) in chunks of [`CHUNK`], `parallel` chunks at a time; returns
    /// the ids and how long it took.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn populate(
        &self,
        count: usize,
        parallel: usize,
    ) -> Result<(Vec<KeyId>, Duration), BoxError> {
        let project = Project::new("bench-filler")?;
        let env = Environment::new("prd")?;
        let now = Timestamp::from_unix_millis(
            i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(i64::MAX),
        );
        let mut ids = Vec::with_capacity(count);
        let started = Instant::now();
        let mut left = count;
        while left > 0 {
            let mut tasks = Vec::new();
            for _ in 0..parallel.max(1) {
                let n = left.min(CHUNK);
                if n == 0 {
                    break;
                }
                left -= n;
                let chunk: Vec<_> = (0..n).map(|_| sample_record(&project, env, now)).collect();
                ids.extend(chunk.iter().map(|r| r.id));
                let store = Arc::clone(&self.store);
                tasks.push(tokio::spawn(
                    async move { store.insert_many(&chunk, &[]).await },
                ));
            }
            for t in tasks {
                t.await??;
            }
        }
        Ok((ids, started.elapsed()))
    }
}

impl Drop for BenchStore {
    fn drop(&mut self) {
        if let Cleanup::Schema { options, schema } = &self.cleanup {
            // Drop runs outside any async context we could borrow: use a fresh connection on
            // a throwaway runtime in its own thread.
            let (options, name) = ((**options).clone(), schema.clone());
            let result = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let mut conn = PgConnection::connect_with(&options).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {name} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await?;
                    conn.close().await?;
                    Ok::<_, BoxError>(())
                })
            })
            .join();
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("could not drop the bench schema {schema}: {e}"),
                Err(_) => eprintln!("could not drop the bench schema {schema}: thread panicked"),
            }
        }
    }
}
