//! Metered ingest through crashes and graceful stops (issue 17, item 4), with the real
//! `keyward-server` binary as child processes and clients POSTing one event per request to
//! `/api/v1/traces/batch` with a key whose project has a small quota:
//!
//! - **kill -9 never over-spends**: one instance is killed with SIGKILL under load and
//!   restarted; the clients go on until every instance refuses. The 2xx answers the clients
//!   saw never exceed the quota, and what the crash cost (the quota minus what was accepted,
//!   and the usage report minus what was accepted) is printed and stays within
//!   [`MAX_CRASH_LOSS`]. On SQLite one instance; on PostgreSQL two instances on one database.
//! - **a graceful stop loses nothing**: SIGTERM under load; after the exit, the usage report
//!   of a fresh manager equals the accepted requests exactly, and another instance accepts
//!   exactly the rest of the quota, then refuses.
//!
//! The PostgreSQL cases read `DATABASE_URL` (each in a schema of its own, dropped afterwards)
//! and print a skip line without it, unless `KEYWARD_REQUIRE_POSTGRES=1`, which makes them
//! fail instead. Hashing uses the insecure test parameters.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyward::{HashParams, IssueRequest, KeyId, KeyManager, Period, Project, Quota};
use keyward_cli::open_store;
use keyward_examples::server;
use reqwest::StatusCode;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The quota of the kill -9 cases: small, so that the run reaches it in seconds.
const CRASH_QUOTA: u64 = 3_000;
/// What a crash may cost of the budget, in events: the quota units never accepted. Leased
/// allotments strand at most the killed instance's unused chunk (at most a sixteenth of the
/// budget free at its lease: 187 here), plus the requests in flight whose answers the kill cut
/// off.
const MAX_CRASH_LOSS: u64 = CRASH_QUOTA / 10;
/// How much of the killed instance's traffic may be missing from the usage report: what it
/// granted since its last settle. It settles every 25 ms (`LeaseConfig::default`); a settle
/// on a busy disk takes a few ms more, so the bound is the traffic of 100 ms at the rate the
/// run had before the kill.
const REPORT_WINDOW: Duration = Duration::from_millis(100);
/// The quota of the graceful cases: never reached before the SIGTERM.
const GRACEFUL_QUOTA: u64 = 20_000;
/// Concurrent clients per server instance.
const CLIENTS_PER_SERVER: usize = 8;
/// The longest any phase may take before the test fails.
const PHASE_LIMIT: Duration = Duration::from_secs(120);
/// One event, as a client sends it.
const ONE_EVENT: &str = r#"{"events":[{"name":"crash-test"}]}"#;

// ---------------------------------------------------------------------------------------
// Stores

/// A database for one test: a SQLite file in a temporary directory, or a PostgreSQL schema
/// of its own (dropped with this value).
struct Db {
    /// The store URL the servers and the managers open.
    url: String,
    dir: tempfile::TempDir,
    /// PostgreSQL: the admin URL and the schema to drop.
    schema: Option<(String, String)>,
}

impl Db {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("keys.db").display());
        Self {
            url,
            dir,
            schema: None,
        }
    }

    /// A fresh schema on `DATABASE_URL`, or `None` after a skip line (a panic with
    /// `KEYWARD_REQUIRE_POSTGRES=1`).
    async fn postgres(test: &str) -> Option<Self> {
        let admin_url = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                assert!(
                    std::env::var("KEYWARD_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "KEYWARD_REQUIRE_POSTGRES=1 but DATABASE_URL is not set ({test})"
                );
                eprintln!("SKIPPED {test}: DATABASE_URL not set");
                return None;
            }
        };
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let rand = KeyId::generate().unwrap().to_string().to_ascii_lowercase();
        // The storage-postgres tests' naming: their next run drops schemas of killed runs.
        let name = format!("keyward_test_{secs}_{rand}");
        let mut conn = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-c%20search_path%3D{name}");
        Some(Self {
            url,
            dir: tempfile::tempdir().unwrap(),
            schema: Some((admin_url, name)),
        })
    }

    fn kind(&self) -> &'static str {
        if self.schema.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }

    /// A manager of its own on this store (as the admin CLI is).
    async fn manager(&self) -> KeyManager {
        KeyManager::builder_arc(open_store(&self.url).await.unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .build()
            .unwrap()
    }

    /// A project with a monthly quota of `quota` events and a key with scope `write` in it.
    async fn metered_key(&self, quota: u64) -> (Project, String) {
        let manager = self.manager().await;
        let project: Project = "metered".parse().unwrap();
        manager
            .set_project_quota(
                &project,
                Some(Quota {
                    limit: quota,
                    period: Period::Month,
                }),
            )
            .await
            .unwrap();
        let req = IssueRequest::new(project.clone(), "dev".parse().unwrap())
            .scopes(["write"])
            .unwrap();
        let key = manager
            .issue(req)
            .await
            .unwrap()
            .key
            .expose_secret()
            .to_owned();
        manager.shutdown().await.unwrap();
        (project, key)
    }

    /// The events used in the project's current period, as a fresh manager reports them.
    async fn usage(&self, project: &Project) -> u64 {
        let manager = self.manager().await;
        let used = manager.project_usage(project).await.unwrap().unwrap().used;
        manager.shutdown().await.unwrap();
        used
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some((url, name)) = self.schema.take() else {
            return;
        };
        // Drop may run inside a runtime: a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            });
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop a test schema");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Servers

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `keyward-server` child process, killed (and reaped) when dropped.
struct Server {
    child: Option<Child>,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts one on `db` at a free port, its log in `db`'s directory; returns once
    /// `/healthz` answers.
    async fn start(db: &Db, name: &str) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = db.dir.path().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_keyward-server"))
            .current_dir(db.dir.path())
            .args(["--db", &db.url, "--addr", &addr])
            .env("KEYWARD_INSECURE_FAST_HASH", "1")
            .env_remove("KEYWARD_DB")
            .env_remove("KEYWARD_PREFIX")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Self {
            child: Some(child),
            base: format!("http://{addr}"),
            log,
        };
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await
                && r.status() == StatusCode::OK
            {
                return server;
            }
            if let Some(status) = server.child().try_wait().unwrap() {
                panic!("{name} exited early ({status}): {}", server.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name}: no /healthz"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `-KILL`, `-TERM`) and waits for the exit.
    async fn stop(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child().id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no exit within 30 s of kill {signal}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and a successful exit.
    async fn stop_gracefully(&mut self) {
        let status = self.stop("-TERM").await;
        assert!(status.success(), "{status}: {}", self.log_text());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// What the clients saw, all together.
#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    refused: AtomicU64,
    /// No answer (connection refused or cut) or another status.
    failed: AtomicU64,
}

impl Tally {
    fn get(&self) -> (u64, u64, u64) {
        (
            self.accepted.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// POSTs `events` events with `key` to `base`: the status, or `None` without an answer.
async fn ingest(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    events: u64,
) -> Option<StatusCode> {
    let body = if events == 1 {
        ONE_EVENT.to_owned()
    } else {
        let events: Vec<_> = (0..events).map(|i| serde_json::json!({ "i": i })).collect();
        serde_json::json!({ "events": events }).to_string()
    };
    client
        .post(format!("{base}{}", server::TRACES_BATCH))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .ok()
        .map(|r| r.status())
}

/// Clients sending one event per request, [`CLIENTS_PER_SERVER`] per slot, each slot the
/// base URL of one instance (changed when the instance is restarted elsewhere).
struct Load {
    slots: Vec<Arc<RwLock<String>>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(servers: &[&Server], key: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let slots: Vec<_> = servers
            .iter()
            .map(|s| Arc::new(RwLock::new(s.base.clone())))
            .collect();
        let mut tasks = Vec::new();
        for slot in &slots {
            for _ in 0..CLIENTS_PER_SERVER {
                let (client, slot, key) = (client.clone(), slot.clone(), key.to_owned());
                let (tally, stop) = (tally.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let base = slot.read().unwrap().clone();
                        let counter = match ingest(&client, &base, &key, 1).await {
                            Some(s) if s.is_success() => &tally.accepted,
                            Some(StatusCode::TOO_MANY_REQUESTS) => &tally.refused,
                            other => {
                                if other.is_none() {
                                    // Down: do not spin on connection refusals.
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                                &tally.failed
                            }
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
        }
        Self {
            slots,
            tally,
            stop,
            tasks,
        }
    }

    /// Waits until `accepted` reaches `n`; fails after [`PHASE_LIMIT`].
    async fn until_accepted(&self, n: u64) {
        let start = Instant::now();
        while self.tally.get().0 < n {
            assert!(
                start.elapsed() < PHASE_LIMIT,
                "only {:?} (accepted, refused, failed) after {PHASE_LIMIT:?}",
                self.tally.get()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until nothing more is accepted for `quiet` while refusals keep coming.
    async fn until_all_refused(&self, quiet: Duration) {
        let start = Instant::now();
        let (mut accepted, mut refused, _) = self.tally.get();
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (a, r, _) = self.tally.get();
            if a != accepted || r == refused {
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
            (accepted, refused) = (a, r);
            assert!(
                start.elapsed() < PHASE_LIMIT,
                "still accepting after {PHASE_LIMIT:?}: {:?}",
                self.tally.get()
            );
        }
    }

    /// Stops the clients; (accepted, refused, failed).
    async fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.tally.get()
    }
}

// ---------------------------------------------------------------------------------------
// kill -9

/// Runs the kill -9 case on `db` with `instances` servers; returns (accepted, usage).
async fn kill_9_case(db: &Db, instances: usize) -> (u64, u64) {
    let (project, key) = db.metered_key(CRASH_QUOTA).await;
    let mut servers = Vec::new();
    for i in 0..instances {
        servers.push(Server::start(db, &format!("server-{i}")).await);
    }
    let started = Instant::now();
    let load = Load::start(&servers.iter().collect::<Vec<_>>(), &key);
    load.until_accepted(CRASH_QUOTA / 3).await;
    let status = servers[0].stop("-KILL").await;
    assert!(!status.success(), "SIGKILL: {status}");
    let (at_kill, _, _) = load.tally.get();
    let rate = at_kill as f64 / started.elapsed().as_secs_f64();
    let report_bound = (rate * REPORT_WINDOW.as_secs_f64()).ceil() as u64
        + (CLIENTS_PER_SERVER * instances) as u64;
    servers[0] = Server::start(db, "server-0-restarted").await;
    *load.slots[0].write().unwrap() = servers[0].base.clone();
    load.until_all_refused(Duration::from_secs(2)).await;
    let (mut accepted, refused, failed) = load.finish().await;
    // Everything is refused, by every instance.
    let client = reqwest::Client::new();
    for s in &servers {
        let status = ingest(&client, &s.base, &key, 1).await;
        if status.is_some_and(|s| s.is_success()) {
            accepted += 1;
        }
        assert_eq!(status, Some(StatusCode::TOO_MANY_REQUESTS), "{}", s.base);
    }
    // What the surviving instances hold goes back to the store before the report is read.
    for s in &mut servers {
        s.stop_gracefully().await;
    }
    let usage = db.usage(&project).await;
    println!(
        "kill -9 ({}, {instances} instance(s), quota {CRASH_QUOTA}, {} clients): killed at {at_kill} accepted; \
         accepted {accepted}, usage report {usage}; lost to the crash: {} (quota - accepted), \
         usage - accepted: {} (bound: {report_bound}, {rate:.0} accepted/s before the kill); \
         429: {refused}, failed or cut: {failed}",
        db.kind(),
        CLIENTS_PER_SERVER * instances,
        CRASH_QUOTA.saturating_sub(accepted),
        usage as i64 - accepted as i64,
    );
    assert!(
        accepted <= CRASH_QUOTA,
        "over-spent: {accepted} > {CRASH_QUOTA}"
    );
    assert!(usage <= CRASH_QUOTA, "usage report {usage} > {CRASH_QUOTA}");
    assert!(
        CRASH_QUOTA - accepted <= MAX_CRASH_LOSS,
        "the crash lost {} events (more than {MAX_CRASH_LOSS})",
        CRASH_QUOTA - accepted
    );
    // The report never counts more than was accepted (plus answers the kill cut off), and
    // misses at most the killed instance's unsettled grants.
    assert!(
        usage <= accepted + MAX_CRASH_LOSS,
        "the usage report ({usage}) exceeds the accepted requests ({accepted})"
    );
    assert!(
        accepted.saturating_sub(usage) <= report_bound,
        "the usage report ({usage}) misses more than {report_bound} of the accepted requests ({accepted})"
    );
    (accepted, usage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_metered_load_never_over_spends_on_sqlite() {
    kill_9_case(&Db::sqlite(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_of_two_instances_under_metered_load_never_over_spends_on_postgres() {
    let test = "kill_9_of_one_of_two_instances_under_metered_load_never_over_spends_on_postgres";
    let Some(db) = Db::postgres(test).await else {
        return;
    };
    kill_9_case(&db, 2).await;
}

// ---------------------------------------------------------------------------------------
// SIGTERM

/// Runs the graceful case on `db`.
async fn sigterm_case(db: &Db) {
    let (project, key) = db.metered_key(GRACEFUL_QUOTA).await;
    let mut first = Server::start(db, "server-0").await;
    let load = Load::start(&[&first], &key);
    load.until_accepted(1_000).await;
    first.stop_gracefully().await;
    let (accepted, refused, failed) = load.finish().await;
    assert_eq!(refused, 0, "nothing was refused below the quota");
    assert!(
        accepted < GRACEFUL_QUOTA,
        "{accepted}: the quota was reached"
    );
    let usage = db.usage(&project).await;
    println!(
        "SIGTERM ({}, quota {GRACEFUL_QUOTA}, {CLIENTS_PER_SERVER} clients): accepted {accepted}, \
         usage report {usage}; failed or cut after the stop: {failed}",
        db.kind()
    );
    assert_eq!(usage, accepted, "the usage report is what was accepted");

    // The rest of the quota is there for another instance, exactly.
    let mut second = Server::start(db, "server-1").await;
    let client = reqwest::Client::new();
    let mut left = GRACEFUL_QUOTA - accepted;
    while left > 0 {
        let n = left.min(server::MAX_BATCH_EVENTS as u64);
        let status = ingest(&client, &second.base, &key, n).await;
        assert_eq!(
            status,
            Some(StatusCode::OK),
            "{n} of the last {left} events"
        );
        left -= n;
    }
    let status = ingest(&client, &second.base, &key, 1).await;
    assert_eq!(
        status,
        Some(StatusCode::TOO_MANY_REQUESTS),
        "one over the quota"
    );
    second.stop_gracefully().await;
    assert_eq!(db.usage(&project).await, GRACEFUL_QUOTA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_metered_load_loses_nothing_on_sqlite() {
    sigterm_case(&Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_metered_load_loses_nothing_on_postgres() {
    let test = "sigterm_under_metered_load_loses_nothing_on_postgres";
    let Some(db) = Db::postgres(test).await else {
        return;
    };
    sigterm_case(&db).await;
}
