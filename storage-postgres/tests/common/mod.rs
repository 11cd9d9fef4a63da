//! Shared test helpers: a throw-away schema per test, on the database named by `DATABASE_URL`.
//!
//! - No `DATABASE_URL`: helpers print `SKIPPED ... DATABASE_URL not set` and return `None`,
//!   unless `KEYWARD_REQUIRE_POSTGRES=1`, when they panic (so CI fails instead of skipping).
//! - Each [`TestSchema`] is `keyward_test_<unix seconds>_<random>`; dropping it drops the
//!   schema (from its own thread and connection). Schemas left by killed runs are dropped by
//!   the next run once they are an hour old, so they never accumulate.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyward::conformance::WithGuard;
use keyward::{ChangeEvent, KeyId, KeyStore};
use keyward_postgres::PostgresStore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

/// Schemas of killed runs older than this are dropped at the next run.
const STALE_AFTER: Duration = Duration::from_secs(3600);
/// Connections per test pool: several, so concurrency cases really run concurrently.
pub const POOL_SIZE: u32 = 8;

/// `DATABASE_URL`, or `None` after printing a skip notice (panics instead when
/// `KEYWARD_REQUIRE_POSTGRES=1`).
pub fn database_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("KEYWARD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("KEYWARD_REQUIRE_POSTGRES=1 but DATABASE_URL is not set ({test})");
            }
            eprintln!("SKIPPED {test}: DATABASE_URL not set");
            None
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh schema, dropped with everything in it when this guard drops.
#[derive(Debug)]
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    /// Creates a schema (after dropping stale ones), or `None` without `DATABASE_URL`.
    pub async fn create(test: &str) -> Option<Self> {
        let url = database_url(test)?;
        let mut conn = PgConnection::connect(&url)
            .await
            .expect("connect to DATABASE_URL");
        drop_stale_schemas(&mut conn).await;
        let rand = KeyId::generate()
            .expect("rng")
            .to_string()
            .to_ascii_lowercase();
        let name = format!("keyward_test_{}_{rand}", now_secs());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create schema");
        conn.close().await.ok();
        Some(Self { url, name })
    }

    /// Connect options whose `search_path` is this schema.
    pub fn options(&self) -> PgConnectOptions {
        self.url
            .parse::<PgConnectOptions>()
            .expect("DATABASE_URL parses")
            .options([("search_path", self.name.as_str())])
    }

    /// A pool of `size` connections on this schema.
    pub async fn pool(&self, size: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.options())
            .await
            .expect("pool")
    }

    /// A store with its own pool of [`POOL_SIZE`] connections (another "instance").
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::from_pool(self.pool(POOL_SIZE).await)
            .await
            .expect("store")
    }

    /// A plain connection to the database (no search_path), for inspection.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("admin connection")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop may run inside a runtime: use a thread with a runtime of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                let r = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await;
                conn.close().await.ok();
                r.map(|_| ()).map_err(|e| e.to_string())
            })
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test schema {}: thread panicked", self.name),
        }
    }
}

async fn drop_stale_schemas(conn: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        r"SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'keyward\_test\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    let cutoff = now_secs().saturating_sub(STALE_AFTER.as_secs());
    for name in names {
        let created = name
            .strip_prefix("keyward_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|c| c < cutoff) {
            let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            if sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .is_ok()
            {
                eprintln!("dropped stale test schema {name}");
            }
        }
    }
}

/// The conformance factory: a fresh schema and a store with a pool of [`POOL_SIZE`]. The
/// store owns its schema (core's [`WithGuard`] drops the pool first, then the schema).
pub async fn make_store() -> Option<Arc<dyn KeyStore>> {
    let schema = TestSchema::create("conformance").await?;
    let store = schema.store().await;
    Some(Arc::new(WithGuard::new(Arc::new(store), schema)))
}

/// Waits for the next event, failing the test after `within`.
pub async fn next_event(
    feed: &mut tokio::sync::mpsc::Receiver<ChangeEvent>,
    within: Duration,
) -> ChangeEvent {
    tokio::time::timeout(within, feed.recv())
        .await
        .expect("a change event in time")
        .expect("the feed is open")
}

/// The pids of the backends named `app` (a store's listener: `listener_application_name`).
pub async fn listener_pids(admin: &mut sqlx::PgConnection, app: &str) -> Vec<i32> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
        .bind(app)
        .fetch_all(&mut *admin)
        .await
        .unwrap()
}

/// Verifies `text` on `manager` every `every` until it is refused as revoked; fails after
/// `within`. Returns how long that took.
pub async fn until_revoked(
    manager: &keyward::KeyManager,
    text: &str,
    within: Duration,
    every: Duration,
) -> Duration {
    let start = std::time::Instant::now();
    loop {
        match manager.verify(text, &keyward::Requirements::none()).await {
            Err(keyward::Error::Auth(keyward::AuthError::Revoked { .. })) => {
                return start.elapsed();
            }
            Ok(_) => assert!(
                start.elapsed() < within,
                "the revoked key was still accepted after {within:?}"
            ),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Terminates the one backend named `app` (a store's listener) with `pg_terminate_backend`;
/// returns its pid.
pub async fn kill_listener(admin: &mut PgConnection, app: &str) -> i32 {
    let pids = listener_pids(admin, app).await;
    assert_eq!(pids.len(), 1, "one listener backend named {app}");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pids[0])
        .fetch_one(&mut *admin)
        .await
        .unwrap();
    assert!(killed);
    pids[0]
}

/// A loopback TCP proxy to the test database that can be switched off, to make the database
/// unreachable for one client only.
pub struct Proxy {
    port: u16,
    enabled: Arc<AtomicBool>,
    pub refused: Arc<AtomicUsize>,
    kill: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `schema`'s database, which must be on loopback.
    pub async fn in_front_of(schema: &TestSchema) -> Self {
        let direct = schema.options();
        let host = direct.get_host().to_owned();
        assert!(
            host == "localhost" || host.starts_with("127."),
            "the proxy test only targets a loopback database, not {host}"
        );
        Self::start((host, direct.get_port())).await
    }

    /// Connect options for `schema` through this proxy.
    pub fn options(&self, schema: &TestSchema) -> PgConnectOptions {
        schema.options().host("127.0.0.1").port(self.port)
    }

    async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let enabled = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let (kill, _) = tokio::sync::watch::channel(0_u64);
        let task = tokio::spawn({
            let (enabled, refused, kill) = (enabled.clone(), refused.clone(), kill.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !enabled.load(Ordering::SeqCst) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        continue; // dropped: the client's handshake fails
                    }
                    let mut killed = kill.subscribe();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = killed.changed() => {}
                        }
                    });
                }
            }
        });
        Self {
            port,
            enabled,
            refused,
            kill,
            task,
        }
    }

    /// Off: cuts every open connection and drops new ones. On: forwards again.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
        if !on {
            self.kill.send_modify(|n| *n += 1);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.kill.send_modify(|n| *n += 1);
    }
}
