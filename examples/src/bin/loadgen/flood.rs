//! `--flood`: forged keys by the thousand while real keys are used for the first time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use keyward::IssueRequest;
use keyward_examples::server;
use zeroize::Zeroizing;

use crate::conn::{Conn, bearer_headers, host_header, loopback_target, median};
use crate::{Args, bench_key, check_bounds, self_host};

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
pub(crate) async fn flood(args: &Args) -> Result<(), String> {
    check_bounds(args)?;
    let log_lines = LineCounter::default();
    let writer = log_lines.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || writer.clone())
        .try_init()
        .map_err(|e| format!("cannot count the server's log lines: {e}"))?;
    let hosted = self_host(None)?;
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
