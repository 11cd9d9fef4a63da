//! `--metered`: what a quota costs per ingest request. Two keys with scope `write` POST one
//! event each to `/api/v1/traces/batch` at the same time, each over `--connections`
//! connections: one in a project without a quota, one in a project with a monthly quota of
//! `--quota` events (10^9 by default: never reached, so every request is metered and
//! accepted). Reports requests per second of each, their ratio (metered / unmetered),
//! latency percentiles and the answers that were not 2xx.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use keyward::{IssueRequest, KeyManager, Period, Project, Quota};
use keyward_examples::server;
use zeroize::Zeroizing;

use crate::conn::{Conn, bearer_headers, cpu_time, host_header, loopback_target, median};
use crate::{Args, self_host};

/// One event, as a client of the example server sends it.
const ONE_EVENT: &str = r#"{"events":[{"name":"loadgen","duration_ms":1}]}"#;
/// Latencies kept per connection and round (120 s at 8,000 requests/s; at most 4 MB).
const MAX_SAMPLES: usize = 1_000_000;

/// What one key's connections saw in one round.
#[derive(Default)]
struct Side {
    ok: u64,
    too_many: u64,
    unavailable: u64,
    other: u64,
    secs: f64,
    /// Latencies of the 2xx answers, in microseconds.
    latencies: Vec<u32>,
}

impl Side {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }

    fn errors(&self) -> u64 {
        self.too_many + self.unavailable + self.other
    }

    fn add(&mut self, other: Self) {
        self.ok += other.ok;
        self.too_many += other.too_many;
        self.unavailable += other.unavailable;
        self.other += other.other;
        self.latencies.extend(other.latencies);
    }

    /// The `q` quantile of the latencies, in milliseconds (sorts them).
    fn quantile_ms(&mut self, q: f64) -> f64 {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        f64::from(self.latencies[i]) / 1e3
    }

    fn describe(&mut self) -> String {
        format!(
            "{:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} accepted; 429: {}, 503: {}, other/failed: {})",
            self.rps(),
            self.quantile_ms(0.50),
            self.quantile_ms(0.99),
            self.ok,
            self.too_many,
            self.unavailable,
            self.other
        )
    }
}

/// A key's connections and the headers its requests carry.
struct Client {
    conns: Vec<Conn>,
    headers: HeaderMap,
}

/// POSTs one event per request over every connection of `client` until `duration` passes
/// or `max` requests were sent; a connection that fails is reopened.
async fn drive(client: &mut Client, target: &(String, u16), duration: Duration, max: u64) -> Side {
    let start = Instant::now();
    let deadline = start + duration;
    let per_conn = max.div_ceil(client.conns.len().max(1) as u64);
    let mut tasks = Vec::with_capacity(client.conns.len());
    for mut conn in client.conns.drain(..) {
        let (headers, target) = (client.headers.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut side = Side::default();
            let body = Bytes::from_static(ONE_EVENT.as_bytes());
            let mut sent = 0;
            while sent < per_conn && Instant::now() < deadline {
                sent += 1;
                let t = Instant::now();
                match conn
                    .post(server::TRACES_BATCH, &headers, body.clone())
                    .await
                {
                    Ok(s) if s.is_success() => {
                        side.ok += 1;
                        if side.latencies.len() < MAX_SAMPLES {
                            let us = t.elapsed().as_micros();
                            side.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                        }
                    }
                    Ok(StatusCode::TOO_MANY_REQUESTS) => side.too_many += 1,
                    Ok(StatusCode::SERVICE_UNAVAILABLE) => side.unavailable += 1,
                    Ok(_) => side.other += 1,
                    Err(_) => {
                        side.other += 1;
                        match Conn::open(&target).await {
                            Ok(c) => conn = c,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }
            }
            (conn, side)
        }));
    }
    let mut side = Side::default();
    for t in tasks {
        if let Ok((conn, s)) = t.await {
            client.conns.push(conn);
            side.add(s);
        }
    }
    side.secs = start.elapsed().as_secs_f64();
    side
}

/// Both keys at once for `duration`: (unmetered, metered).
async fn both(
    clients: &mut [Client; 2],
    target: &(String, u16),
    duration: Duration,
    max: u64,
) -> (Side, Side) {
    let [free, metered] = clients;
    tokio::join!(
        drive(free, target, duration, max),
        drive(metered, target, duration, max)
    )
}

/// Two projects named for this run (so runs never share a counter), a quota of `quota`
/// events per month on the second, and a key with scope `write` in each: (projects, keys).
async fn setup(
    manager: &KeyManager,
    quota: u64,
) -> Result<([Project; 2], [Zeroizing<String>; 2]), String> {
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let project = |kind: &str| -> Result<Project, String> {
        format!("loadgen-{kind}-{run:x}-{}", std::process::id())
            .parse()
            .map_err(|e: keyward::InvalidValue| e.to_string())
    };
    let projects = [project("unmetered")?, project("metered")?];
    manager
        .set_project_quota(
            &projects[1],
            Some(Quota {
                limit: quota,
                period: Period::Month,
            }),
        )
        .await
        .map_err(|e| format!("cannot set the quota: {e}"))?;
    let env: keyward::Environment = "dev"
        .parse()
        .map_err(|e: keyward::InvalidValue| e.to_string())?;
    let mut keys = Vec::with_capacity(2);
    for p in &projects {
        let req = IssueRequest::new(p.clone(), env)
            .scopes(["write"])
            .map_err(|e| e.to_string())?
            .name("loadgen --metered");
        let issued = manager.issue(req).await.map_err(|e| e.to_string())?;
        keys.push(Zeroizing::new(issued.key.expose_secret().to_owned()));
    }
    let [a, b]: [Zeroizing<String>; 2] = keys
        .try_into()
        .map_err(|_| "two keys were not issued".to_owned())?;
    Ok((projects, [a, b]))
}

/// `--metered`: see the module docs.
pub(crate) async fn metered(args: &Args) -> Result<(), String> {
    let hosted;
    let (base, db) = match (&args.url, &args.db) {
        (Some(url), Some(db)) => (url.trim_end_matches('/').to_owned(), db.clone()),
        (Some(_), None) => {
            return Err(
                "--metered --url needs --db: the server's store, where loadgen issues its keys"
                    .to_owned(),
            );
        }
        (None, db) => {
            hosted = self_host(db.as_deref())?;
            (hosted.base.clone(), hosted.url.clone())
        }
    };
    let target = loopback_target(&base)?;
    let store = keyward_cli::open_store(&db)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let manager = KeyManager::builder_arc(store)
        .hash_params(keyward_cli::hash_params_from_env())
        .build()
        .map_err(|e| e.to_string())?;
    let (projects, keys) = setup(&manager, args.quota).await?;
    let host = host_header(&target)?;
    let mut clients = Vec::with_capacity(2);
    for key in &keys {
        let mut headers = bearer_headers(&host, key).ok_or("a key is not a valid header")?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut conns = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            conns.push(Conn::open(&target).await?);
        }
        // Each key must work before anything is measured (its first use runs Argon2).
        let body = Bytes::from_static(ONE_EVENT.as_bytes());
        let status = conns[0].post(server::TRACES_BATCH, &headers, body).await?;
        if !status.is_success() {
            return Err(format!(
                "POST {} answered {status}: does the server use the store of --db and serve the environment dev?",
                server::TRACES_BATCH
            ));
        }
        clients.push(Client { conns, headers });
    }
    let mut clients: [Client; 2] = clients
        .try_into()
        .map_err(|_| "two clients were not opened".to_owned())?;
    let max = args.max_requests;
    let (w0, w1) = both(&mut clients, &target, args.warmup, max).await;
    let mut metered_accepted = 1 + w1.ok;
    println!(
        "target {base}, store {}, {} connections per key, {} rounds of {:?} (warm-up: {} requests)",
        store_kind(&db),
        args.connections,
        args.rounds,
        args.duration,
        w0.ok + w1.ok
    );
    println!(
        "  unmetered: project {} (no quota); metered: project {} (quota {} per month)",
        projects[0], projects[1], args.quota
    );
    let cpu_before = args.server_pid.and_then(cpu_time);
    let (mut free, mut metered) = (Side::default(), Side::default());
    let mut ratios = Vec::new();
    for i in 0..args.rounds {
        let (mut a, mut b) = both(&mut clients, &target, args.duration, max).await;
        println!("  round {}: unmetered {}", i + 1, a.describe());
        println!("           metered   {}", b.describe());
        ratios.push(b.rps() / a.rps().max(1e-9));
        metered_accepted += b.ok;
        free.secs += a.secs;
        metered.secs += b.secs;
        free.add(a);
        metered.add(b);
    }
    let cpu = match (cpu_before, args.server_pid.and_then(cpu_time)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    println!("unmetered (no quota):     {}", free.describe());
    println!("metered (project quota):  {}", metered.describe());
    ratios.sort_by(f64::total_cmp);
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "metered / unmetered: {:.3} pooled; median of {} rounds {:.3} ({})",
        metered.rps() / free.rps().max(1e-9),
        ratios.len(),
        median(&ratios),
        shown.join(", ")
    );
    if let Some(c) = cpu {
        let requests = (free.ok + free.errors() + metered.ok + metered.errors()).max(1);
        println!(
            "server CPU per request (both keys): {:.1} µs",
            c.as_secs_f64() * 1e6 / requests as f64
        );
    }
    // Instances may settle what they granted a little later: wait a moment before asking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    match manager.project_usage(&projects[1]).await {
        Ok(Some(u)) => println!(
            "the store's usage report for the metered project: {} used, {} remaining; its key was answered 2xx {metered_accepted} times",
            u.used, u.remaining
        ),
        Ok(None) => println!("the metered project has no quota any more"),
        Err(e) => println!("cannot read the metered project's usage: {e}"),
    }
    manager.shutdown().await.map_err(|e| e.to_string())?;
    let errors = free.errors() + metered.errors();
    if errors > 0 {
        return Err(format!(
            "{errors} requests were not answered 2xx: the numbers above are not valid"
        ));
    }
    Ok(())
}

/// `sqlite` or `postgres`, from the store's URL (for the report).
fn store_kind(db: &str) -> &'static str {
    if db.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}
