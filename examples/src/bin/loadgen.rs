//! `loadgen`: measures what API-key authentication costs per HTTP request. It drives
//! `GET /api/v1/me/api-keys/ping/` (scope `read`: the whole Keyward layer runs) and
//! `GET /healthz` (no authentication) on the same server, over N keep-alive connections for a
//! fixed time, alternating rounds, and compares the requests per second.
//!
//! ```text
//! # against a running keyward-server (its key with scope read in $KEYWARD_KEY):
//! KEYWARD_KEY=… loadgen --url http://127.0.0.1:8080 [--server-pid PID]
//! # or self-hosted: starts a server on its own threads, with a temporary SQLite store
//! loadgen
//! ```
//!
//! Loopback only: any other target is refused. Bounded: at most `--max-requests` requests
//! per round and `--duration` (at most 120 s) per round.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use clap::Parser;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use keyward::{IssueRequest, KeyManager, parse_duration};
use keyward_examples::server;
use zeroize::Zeroizing;

const MAX_DURATION: Duration = Duration::from_secs(120);
const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "HTTP auth overhead: /ping (authenticated) vs /healthz"
)]
struct Args {
    /// The server's base URL, on loopback. Without it, a server is started in-process.
    #[arg(long)]
    url: Option<String>,
    /// Concurrent keep-alive connections.
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
}

fn main() -> ExitCode {
    keyward_cli::run_main(run(Args::parse()))
}

/// A server started in-process on its own runtime (own threads), with a temporary store.
struct SelfHosted {
    base: String,
    /// The store's URL (a SQLite file), for a second manager on the same keys.
    url: String,
    key: Zeroizing<String>,
    _dir: tempfile::TempDir,
    _thread: std::thread::JoinHandle<()>,
}

fn self_host() -> Result<SelfHosted, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let url = format!("sqlite:{}", dir.path().join("keys.db").display());
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

/// The target: `host:port` on this machine's loopback, or an error.
fn loopback_target(base: &str) -> Result<(String, u16), String> {
    let uri: http::Uri = base.parse().map_err(|e| format!("--url: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("--url: only http:// is supported".to_owned());
    }
    let host = uri.host().unwrap_or("").trim_matches(['[', ']']).to_owned();
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(
            "--url: loadgen only targets loopback (127.0.0.0/8, localhost, [::1])".to_owned(),
        );
    }
    Ok((host, uri.port_u16().unwrap_or(80)))
}

/// The server's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / clock_ticks()))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
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

/// One HTTP/1.1 keep-alive connection, driven by hyper's low-level client so that the
/// client's own cost per request stays small next to the server's.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Conn {
    async fn open(target: &(String, u16)) -> Result<Self, String> {
        let stream = tokio::net::TcpStream::connect((target.0.as_str(), target.1))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", target.0, target.1))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// GET `path`; the status, once the body is read.
    async fn get(&mut self, path: &str, headers: &HeaderMap) -> Result<StatusCode, String> {
        let mut req = Request::get(path)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        *req.headers_mut() = headers.clone();
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        res.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(status)
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

async fn run(args: Args) -> Result<(), String> {
    if args.no_network {
        return no_network(&args).await;
    }
    if args.flood {
        return flood(&args).await;
    }
    if args.duration > MAX_DURATION || args.duration.is_zero() {
        return Err("--duration must be between 1s and 120s".to_owned());
    }
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        return Err(format!(
            "--connections must be between 1 and {MAX_CONNECTIONS}"
        ));
    }
    let hosted;
    let (base, key) = match &args.url {
        Some(url) => {
            let key = std::env::var("KEYWARD_KEY")
                .map_err(|_| "set KEYWARD_KEY to a key with scope read".to_owned())?;
            (url.trim_end_matches('/').to_owned(), Zeroizing::new(key))
        }
        None => {
            hosted = self_host()?;
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

/// The median of sorted values (0 for none).
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `Host` header for `target`.
fn host_header(target: &(String, u16)) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&format!("{}:{}", target.0, target.1)).map_err(|e| e.to_string())
}

/// `Host` and `Authorization: Bearer <key>` (marked sensitive); `None` when the key is not a
/// valid header value.
fn bearer_headers(host: &HeaderValue, key: &str) -> Option<HeaderMap> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
    auth.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(HOST, host.clone());
    headers.insert(AUTHORIZATION, auth);
    Some(headers)
}

/// Counts the lines written through it (the server's log during `--flood`), printing none.
#[derive(Clone, Default)]
struct LineCounter(Arc<AtomicU64>);

impl std::io::Write for LineCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let lines = buf.iter().filter(|&&b| b == b'\n').count();
        self.0.fetch_add(lines as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Real keys used for the first time during `--flood` (one every 200 ms).
const FLOOD_PROBES: usize = 64;

/// `--flood`: see [`Args::flood`].
async fn flood(args: &Args) -> Result<(), String> {
    if args.duration > MAX_DURATION || args.duration.is_zero() {
        return Err("--duration must be between 1s and 120s".to_owned());
    }
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        return Err(format!(
            "--connections must be between 1 and {MAX_CONNECTIONS}"
        ));
    }
    let log_lines = LineCounter::default();
    let writer = log_lines.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || writer.clone())
        .try_init()
        .map_err(|e| format!("cannot count the server's log lines: {e}"))?;
    let hosted = self_host()?;
    let dev: keyward::Environment = "dev"
        .parse()
        .map_err(|e: keyward::InvalidValue| e.to_string())?;
    // Real keys the server has never verified: issued through a second manager on its store.
    let (issuer, _) = bench_key(&hosted.url).await?;
    let mut probes = Vec::with_capacity(FLOOD_PROBES);
    for _ in 0..FLOOD_PROBES {
        let req = IssueRequest::new(
            "bench"
                .parse()
                .map_err(|e: keyward::InvalidValue| e.to_string())?,
            "dev"
                .parse()
                .map_err(|e: keyward::InvalidValue| e.to_string())?,
        )
        .scopes(["read"])
        .map_err(|e| e.to_string())?;
        let issued = issuer.issue(req).await.map_err(|e| e.to_string())?;
        probes.push(Zeroizing::new(issued.key.expose_secret().to_owned()));
    }
    // Let the server's change feed report the inserts before the flood starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let target = loopback_target(&hosted.base)?;
    let host = host_header(&target)?;
    let lines_before = log_lines.0.load(Ordering::Relaxed);
    let deadline = Instant::now() + args.duration;
    // status class counts: 2xx, 401, 429, 503, other or failed
    let counts: Arc<[AtomicU64; 5]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (counts, target, host) = (Arc::clone(&counts), target.clone(), host.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            while Instant::now() < deadline {
                let Ok(key) = keyward::ApiKey::generate(keyward::Prefix::default(), dev) else {
                    break;
                };
                let Some(headers) = bearer_headers(&host, key.expose_secret()) else {
                    counts[4].fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if conn.is_none() {
                    conn = Conn::open(&target).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    counts[4].fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let class = match c.get(server::PING, &headers).await {
                    Ok(s) if s.is_success() => 0,
                    Ok(StatusCode::UNAUTHORIZED) => 1,
                    Ok(StatusCode::TOO_MANY_REQUESTS) => 2,
                    Ok(StatusCode::SERVICE_UNAVAILABLE) => 3,
                    Ok(_) => 4,
                    Err(_) => {
                        conn = None;
                        4
                    }
                };
                counts[class].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // The real keys' first uses, one every 200 ms, each on a fresh connection.
    let mut firsts: Vec<(bool, Duration)> = Vec::new();
    for key in &probes {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if Instant::now() >= deadline {
            break;
        }
        let headers = bearer_headers(&host, key).ok_or("a key is not a valid header value")?;
        let start = Instant::now();
        let ok = match Conn::open(&target).await {
            Ok(mut c) => c
                .get(server::PING, &headers)
                .await
                .is_ok_and(|s| s.is_success()),
            Err(_) => false,
        };
        firsts.push((ok, start.elapsed()));
    }
    for t in tasks {
        let _ = t.await;
    }
    let lines = log_lines.0.load(Ordering::Relaxed) - lines_before;
    let c: Vec<u64> = counts.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let total: u64 = c.iter().sum();
    let mut times: Vec<f64> = firsts.iter().map(|(_, d)| d.as_secs_f64() * 1e3).collect();
    times.sort_by(f64::total_cmp);
    let succeeded = firsts.iter().filter(|(ok, _)| *ok).count();
    println!(
        "flood: {} connections, {:?}: {total} forged-key requests ({:.0}/s): 401 {}, 429 {}, 503 {}, 2xx {}, other/failed {}",
        args.connections,
        args.duration,
        total as f64 / args.duration.as_secs_f64(),
        c[1],
        c[2],
        c[3],
        c[0],
        c[4]
    );
    println!(
        "real keys' first use: {succeeded} of {} succeeded; median {:.1} ms, max {:.1} ms",
        firsts.len(),
        median(&times),
        times.last().copied().unwrap_or(0.0)
    );
    println!(
        "server log lines during the flood: {lines} (during the setup, which issued {FLOOD_PROBES} keys: {lines_before})"
    );
    Ok(())
}
