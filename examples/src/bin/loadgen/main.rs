//! `loadgen`: measures what API-key authentication costs per HTTP request. It drives
//! `GET /api/v1/me/api-keys/ping/` (scope `read`: the whole Keyward layer runs) and
//! `GET /healthz` (no authentication) on the same server, over N keep-alive connections for a
//! fixed time, alternating rounds, and compares the requests per second. With `--metered`
//! it measures what a quota costs per ingest request instead (the `metered` module).
//!
//! ```text
//! # against a running keyward-server (its key with scope read in $KEYWARD_KEY):
//! KEYWARD_KEY=… loadgen --url http://127.0.0.1:8080 [--server-pid PID]
//! # or self-hosted: starts a server on its own threads, with a temporary SQLite store
//! loadgen
//! # metered ingest: a key without a quota and a key with one, at once (see `metered`)
//! loadgen --metered --url http://127.0.0.1:8080 --db sqlite:keys.db
//! ```
//!
//! Loopback only: any other target is refused. Bounded: at most `--max-requests` requests
//! per round and `--duration` (at most 120 s) per round.

#![forbid(unsafe_code)]

mod conn;
mod flood;
mod metered;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt as _;
use keyward::{IssueRequest, KeyManager, parse_duration};
use keyward_examples::server;
use zeroize::Zeroizing;

use crate::conn::{Conn, bearer_headers, cpu_time, host_header, loopback_target, median};

const MAX_DURATION: Duration = Duration::from_secs(120);
const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "HTTP auth overhead: /ping (authenticated) vs /healthz; with --metered, ingest with and without a quota"
)]
struct Args {
    /// The server's base URL, on loopback. Without it, a server is started in-process.
    #[arg(long)]
    url: Option<String>,
    /// Concurrent keep-alive connections (per key with `--metered`).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// How long each round runs (at most 120s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before the rounds.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Rounds per endpoint, alternated (healthz, ping, healthz, ping…).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// At most this many requests per round.
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// The server's process id: also report its CPU time per request (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// No network: time the key check and the app's router in-process, one request at a
    /// time, to see where the time goes.
    #[arg(long, conflicts_with_all = ["url", "server_pid"])]
    no_network: bool,
    /// Drive only this endpoint (to profile the server on one of them).
    #[arg(long, value_parser = ["healthz", "ping"])]
    only: Option<String>,
    /// A flood of well-formed keys with random ids (anyone can forge the public CRC32) over
    /// `--connections` connections for `--duration`, against an in-process server with the
    /// default (OWASP) hashing, while a real key that server has never verified is used for
    /// the first time every 200 ms: reports whether and how fast those first uses succeed,
    /// and how many log lines the server wrote meanwhile.
    #[arg(long, conflicts_with_all = ["url", "server_pid", "no_network", "only"])]
    flood: bool,
    /// Metered ingest: two keys with scope write POST one event per request to
    /// /api/v1/traces/batch at once, `--connections` connections each, one in a project
    /// without a quota and one in a project with a monthly quota of `--quota`; reports each
    /// one's req/s, latencies and errors, and their ratio.
    #[arg(long, conflicts_with_all = ["no_network", "flood", "only"])]
    metered: bool,
    /// With `--metered`: the server's store, where loadgen sets the quota and issues its two
    /// keys (environment dev). Needed with `--url`; without it, the in-process server runs on
    /// this store (default: a temporary SQLite file).
    #[arg(long, value_name = "URL", requires = "metered")]
    db: Option<String>,
    /// With `--metered`: the metered project's monthly event quota.
    #[arg(long, default_value_t = 1_000_000_000)]
    quota: u64,
}

fn main() -> ExitCode {
    keyward_cli::run_main(run(Args::parse()))
}

/// A server started in-process on its own runtime (own threads).
struct SelfHosted {
    base: String,
    /// The store's URL, for a second manager on the same keys.
    url: String,
    key: Zeroizing<String>,
    _dir: Option<tempfile::TempDir>,
    _thread: std::thread::JoinHandle<()>,
}

/// Starts a server in-process on the store at `db`, or on a temporary SQLite file.
fn self_host(db: Option<&str>) -> Result<SelfHosted, String> {
    let (dir, url) = match db {
        Some(db) => (None, db.to_owned()),
        None => {
            let dir = tempfile::tempdir()
                .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
            let url = format!("sqlite:{}", dir.path().join("keys.db").display());
            (Some(dir), url)
        }
    };
    let store_url = url.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        runtime.block_on(async move {
            let started = async {
                let (manager, issued) = bench_key(&url).await?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| e.to_string())?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                Ok::<_, String>((
                    listener,
                    manager,
                    addr,
                    Zeroizing::new(issued.key.expose_secret().to_owned()),
                ))
            };
            match started.await {
                Ok((listener, manager, addr, key)) => {
                    let _ = tx.send(Ok((format!("http://{addr}"), key)));
                    let _ = server::serve(listener, manager, std::future::pending()).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    });
    let (base, key) = rx
        .recv()
        .map_err(|_| "the in-process server did not start".to_owned())??;
    Ok(SelfHosted {
        base,
        url: store_url,
        key,
        _dir: dir,
        _thread: thread,
    })
}

/// One round's result.
struct Round {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    server_cpu: Option<Duration>,
}

impl Round {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends GET `path` with `headers` over every connection until `duration` passes or `max`
/// requests were sent.
async fn round(
    conns: &mut Vec<Conn>,
    path: &str,
    headers: &HeaderMap,
    duration: Duration,
    max: u64,
    server_pid: Option<u32>,
) -> Round {
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu_before = server_pid.and_then(cpu_time);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns.drain(..) {
        let (path, headers) = (path.to_owned(), headers.clone());
        let (sent, errors) = (Arc::clone(&sent), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < max {
                match conn.get(&path, &headers).await {
                    Ok(status) if status.is_success() => {}
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            conn
        }));
    }
    for t in tasks {
        if let Ok(conn) = t.await {
            conns.push(conn);
        }
    }
    let elapsed = start.elapsed();
    let server_cpu = match (cpu_before, server_pid.and_then(cpu_time)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    // A task that stops on `max` has counted one request it did not send.
    let requests = sent.load(Ordering::Relaxed).min(max);
    Round {
        requests,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        server_cpu,
    }
}

/// Times `f` sequentially for `duration` (at most `max` calls); nanoseconds per call.
async fn time_per_call<F, Fut>(duration: Duration, max: u64, mut f: F) -> Result<f64, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let mut n = 0u64;
    while n < max && start.elapsed() < duration {
        for _ in 0..64 {
            f().await?;
        }
        n += 64;
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

/// A manager serving `dev` on the store at `url`, and a key of project `bench` with scope
/// `read` issued through it. Default (OWASP) hash parameters, as in production: the first
/// verify runs Argon2 once, later ones hit the verify cache.
async fn bench_key(url: &str) -> Result<(KeyManager, keyward::IssuedKey), String> {
    let store = keyward_cli::open_store(url)
        .await
        .map_err(|e| e.to_string())?;
    let env: keyward::Environment = "dev"
        .parse()
        .map_err(|e: keyward::InvalidValue| e.to_string())?;
    let manager = KeyManager::builder_arc(store)
        .serve(env)
        .build()
        .map_err(|e| e.to_string())?;
    let project = "bench"
        .parse()
        .map_err(|e: keyward::InvalidValue| e.to_string())?;
    let req = IssueRequest::new(project, env)
        .scopes(["read"])
        .map_err(|e| e.to_string())?
        .name("loadgen");
    let issued = manager.issue(req).await.map_err(|e| e.to_string())?;
    Ok((manager, issued))
}

/// `--no-network`: the same comparison without sockets, one request at a time.
async fn no_network(args: &Args) -> Result<(), String> {
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let url = format!("sqlite:{}", dir.path().join("keys.db").display());
    let (manager, issued) = bench_key(&url).await?;
    let key = issued.key;
    let read = keyward::Requirements::scopes(["read"]).map_err(|e| e.to_string())?;
    manager
        .verify_key(&key, &read)
        .await
        .map_err(|e| e.to_string())?;
    let app = server::router(manager.clone());
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
        .map_err(|e| e.to_string())?;
    auth.set_sensitive(true);
    let request = |path: &'static str| {
        let mut r = Request::get(path).body(axum::body::Body::empty())?;
        r.headers_mut()
            .insert(HOST, HeaderValue::from_static("localhost"));
        r.headers_mut().insert(AUTHORIZATION, auth.clone());
        Ok::<_, http::Error>(r)
    };
    let (d, max) = (args.duration, args.max_requests);
    println!("no network, one request at a time, {d:?} per measurement:");
    for _ in 0..args.rounds.max(1) {
        let headers = request(server::PING)
            .map_err(|e| e.to_string())?
            .into_parts()
            .0
            .headers;
        let parse = time_per_call(d, max, || async {
            keyward::http::extract_key(&headers)
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await?;
        let verify = time_per_call(d, max, || async {
            manager
                .verify_key(&key, &read)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await?;
        let mut routed = [0.0; 2];
        for (i, path) in [server::HEALTHZ, server::PING].into_iter().enumerate() {
            routed[i] = time_per_call(d, max, || async {
                let r = request(path).map_err(|e| e.to_string())?;
                let res = app.clone().oneshot(r).await.map_err(|e| e.to_string())?;
                if !res.status().is_success() {
                    return Err(format!("GET {path}: {}", res.status()));
                }
                res.into_body()
                    .collect()
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .await?;
        }
        println!(
            "  extract_key {:>6.0} ns | verify_key (warm) {:>6.0} ns | router /healthz {:>6.0} ns | router /ping {:>6.0} ns (+{:.0} ns)",
            parse,
            verify,
            routed[0],
            routed[1],
            routed[1] - routed[0]
        );
    }
    Ok(())
}

/// `--duration` and `--connections` within their bounds.
fn check_bounds(args: &Args) -> Result<(), String> {
    if args.duration > MAX_DURATION || args.duration.is_zero() {
        return Err("--duration must be between 1s and 120s".to_owned());
    }
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        return Err(format!(
            "--connections must be between 1 and {MAX_CONNECTIONS}"
        ));
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    if args.no_network {
        return no_network(&args).await;
    }
    if args.flood {
        return flood::flood(&args).await;
    }
    check_bounds(&args)?;
    if args.metered {
        return metered::metered(&args).await;
    }
    let hosted;
    let (base, key) = match &args.url {
        Some(url) => {
            let key = std::env::var("KEYWARD_KEY")
                .map_err(|_| "set KEYWARD_KEY to a key with scope read".to_owned())?;
            (url.trim_end_matches('/').to_owned(), Zeroizing::new(key))
        }
        None => {
            hosted = self_host(None)?;
            (hosted.base.clone(), hosted.key.clone())
        }
    };
    let target = loopback_target(&base)?;
    // Both endpoints get the same request bytes: the only difference is the layer's work.
    let headers = bearer_headers(&host_header(&target)?, key.as_str())
        .ok_or("KEYWARD_KEY is not a valid header value")?;
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        conns.push(Conn::open(&target).await?);
    }
    let (ping, health) = (server::PING, server::HEALTHZ);

    // The key must work before anything is measured (and its first verify runs Argon2).
    let status = conns[0].get(ping, &headers).await?;
    if !status.is_success() {
        return Err(format!(
            "GET {ping} answered {status}: is KEYWARD_KEY a key with scope read for this server?"
        ));
    }
    let max = args.max_requests;
    let warm = round(&mut conns, ping, &headers, args.warmup, max, None).await;
    let warm = round(&mut conns, health, &headers, args.warmup, max, None)
        .await
        .requests
        + warm.requests;
    println!(
        "target {base}, {} connections, {} rounds of {:?} per endpoint (warm-up: {warm} requests)",
        args.connections, args.rounds, args.duration
    );

    let mut results: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..args.rounds {
        for (i, path) in [health, ping].into_iter().enumerate() {
            if args.only.as_deref().is_some_and(|o| !path.contains(o)) {
                continue;
            }
            let r = round(
                &mut conns,
                path,
                &headers,
                args.duration,
                max,
                args.server_pid,
            )
            .await;
            let cpu = r.server_cpu.map_or_else(String::new, |c| {
                format!(
                    ", server CPU {:.1} µs/request",
                    c.as_secs_f64() * 1e6 / r.requests.max(1) as f64
                )
            });
            println!(
                "  {:<32} {:>9.0} req/s  ({} requests, {} errors{cpu})",
                path,
                r.rps(),
                r.requests,
                r.errors
            );
            results[i].push(r);
        }
    }
    let total = |rounds: &[Round]| -> (f64, u64, Option<f64>) {
        let requests: u64 = rounds.iter().map(|r| r.requests).sum();
        let secs: f64 = rounds.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let errors = rounds.iter().map(|r| r.errors).sum();
        let cpu: Option<f64> = rounds
            .iter()
            .map(|r| r.server_cpu.map(|c| c.as_secs_f64()))
            .sum::<Option<f64>>()
            .map(|c| c * 1e6 / requests.max(1) as f64);
        (requests as f64 / secs, errors, cpu)
    };
    if results.iter().any(Vec::is_empty) {
        return Ok(());
    }
    let (health_rps, health_err, health_cpu) = total(&results[0]);
    let (ping_rps, ping_err, ping_cpu) = total(&results[1]);
    println!("healthz (no auth):      {health_rps:>9.0} req/s");
    println!("ping (key, scope read): {ping_rps:>9.0} req/s");
    println!(
        "authenticated / unauthenticated: {:.1}% (all rounds pooled)",
        100.0 * ping_rps / health_rps
    );
    // Each ping round follows a healthz round: the pair saw the same machine, so the median
    // of the pairs' ratios is robust to a round disturbed by something else on the machine.
    let mut pairs: Vec<f64> = results[0]
        .iter()
        .zip(&results[1])
        .map(|(h, p)| 100.0 * p.rps() / h.rps())
        .collect();
    pairs.sort_by(f64::total_cmp);
    let shown: Vec<String> = pairs.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        "median of {} paired rounds: {:.1}% ({} %)",
        pairs.len(),
        median(&pairs),
        shown.join(", ")
    );
    if let (Some(h), Some(p)) = (health_cpu, ping_cpu) {
        println!(
            "server CPU per request: healthz {h:.1} µs, ping {p:.1} µs (auth: +{:.1} µs)",
            p - h
        );
    }
    if health_err + ping_err > 0 {
        return Err(format!(
            "{} requests failed: the numbers above are not valid",
            health_err + ping_err
        ));
    }
    Ok(())
}
