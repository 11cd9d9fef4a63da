//! Compares the stores (memory, SQLite on a temporary file, PostgreSQL when `DATABASE_URL` is
//! set) on every path of issue, verify and revoke, each store holding `KEYWARD_BENCH_KEYS`
//! records (default 100,000) plus the few real keys verified.
//!
//! Before measuring, each path's claim is proven on a manager of the same configuration over
//! a [`CountingStore`]: how many store reads and Argon2 runs it makes. During measurement,
//! the benchmarked manager's [`keyward::Hasher::runs`] is checked against the iteration
//! count, and every outcome against the expected one.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use keyward::conformance::{CountingStore, with_wrong_secret};
use keyward::{
    ApiKey, AuthError, CacheConfig, Error, Identity, IssueRequest, KeyId, KeyManager,
    KeyManagerBuilder, KeyStore, MalformedKey, Requirements,
};
use keyward_benches::{BenchStore, StoreKind, is_bench_run, record_count};
use tokio::runtime::Runtime;

/// Verifies per throughput measurement, split evenly over the tasks.
const TASK_BATCH: u64 = 4096;
/// Real keys issued (and verified) per store; each concurrent task uses its own.
const REAL_KEYS: usize = 8;
/// Chunks inserted concurrently while populating (the pools have several connections).
const POPULATE_PARALLEL: usize = 4;

type Outcome = Result<Identity, Error>;

/// How a manager is configured.
#[derive(Debug, Clone, Copy)]
enum Config {
    /// The default: verify cache on, 10 failed cold attempts per id per minute.
    Cached,
    /// `.without_cache()`: every verify reads the store and runs Argon2.
    Uncached,
    /// The cache on, with no failed-attempt limit, so a wrong secret for an uncached id
    /// always costs a store read and an Argon2 run (the limiter is measured separately).
    NoFailureLimit,
    /// The cache with a zero TTL: every verify of a verified key finds its entry expired and
    /// revalidates it with one store read (no Argon2: the stored hash is unchanged).
    Expired,
    /// The default cache, with cluster-wide rate limits (`RateLimitMode::cluster()`).
    ClusterRateLimits,
}

fn manager(store: Arc<dyn KeyStore>, config: Config) -> KeyManager {
    let b: KeyManagerBuilder = KeyManager::builder_arc(store)
        .prefix("av".parse().unwrap())
        .serve("prd".parse().unwrap());
    match config {
        Config::Cached => b,
        Config::Uncached => b.without_cache(),
        Config::NoFailureLimit => b.cache(CacheConfig {
            max_failures: u32::MAX,
            ..CacheConfig::default()
        }),
        Config::Expired => b.cache(CacheConfig {
            ttl: Duration::ZERO,
            ..CacheConfig::default()
        }),
        Config::ClusterRateLimits => b.rate_limits(keyward::RateLimitMode::cluster()),
    }
    .build()
    .unwrap()
}

/// The key texts each path presents.
struct Texts {
    /// Real keys, issued through the manager (default OWASP hash parameters).
    keys: Arc<Vec<String>>,
    /// `keys[0]` with another secret and a valid checksum.
    wrong: String,
    /// `keys[0]` truncated by 5 characters.
    malformed: String,
    /// `keys[0]` with its last checksum character changed.
    bad_checksum: String,
    /// A well-formed key whose id is in no store.
    unknown: String,
    /// A real key never verified, with another secret: for the failed-attempt limiter.
    victim_wrong: String,
}

fn flip(b: &mut u8) {
    *b = if *b == b'A' { b'B' } else { b'A' };
}

fn bad_checksum(text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    let i = b.len() - 1;
    flip(&mut b[i]);
    String::from_utf8(b).unwrap()
}

fn is_ok(r: &Outcome) -> bool {
    r.is_ok()
}
fn is_invalid(r: &Outcome) -> bool {
    matches!(r, Err(Error::Auth(AuthError::Invalid)))
}
fn is_truncated(r: &Outcome) -> bool {
    matches!(
        r,
        Err(Error::Auth(AuthError::Malformed(
            MalformedKey::Truncated { .. }
        )))
    )
}
fn is_bad_checksum(r: &Outcome) -> bool {
    matches!(
        r,
        Err(Error::Auth(AuthError::Malformed(MalformedKey::BadChecksum)))
    )
}
fn is_rate_limited(r: &Outcome) -> bool {
    matches!(r, Err(Error::Auth(AuthError::RateLimited { .. })))
}

fn issue_request() -> IssueRequest {
    IssueRequest::new("bench".parse().unwrap(), "prd".parse().unwrap())
        .scopes(["read", "write"])
        .unwrap()
        .name("bench key")
}

fn requirements() -> Requirements {
    Requirements::scopes(["read"]).unwrap()
}

/// Store reads and Argon2 runs of `f`, on a counting store and the manager's hasher.
async fn cost<F: std::future::Future<Output = Outcome>>(
    counted: &CountingStore,
    m: &KeyManager,
    f: F,
) -> (Outcome, usize, usize) {
    let (gets, runs) = (counted.gets(), m.hasher().runs());
    let r = f.await;
    (r, counted.gets() - gets, m.hasher().runs() - runs)
}

/// Proves, on managers of the benchmarked configurations over a [`CountingStore`], what each
/// path costs in store reads and Argon2 runs.
async fn prove_paths(store: &Arc<dyn KeyStore>, t: &Texts) {
    let req = requirements();
    let counted = Arc::new(CountingStore::new(Arc::clone(store)));
    let as_store = || Arc::clone(&counted) as Arc<dyn KeyStore>;

    // Format rejections: no store call of any kind, no hash.
    let m = manager(as_store(), Config::Cached);
    for _ in 0..100 {
        assert!(is_truncated(&m.verify(&t.malformed, &req).await));
        assert!(is_bad_checksum(&m.verify(&t.bad_checksum, &req).await));
    }
    assert_eq!(counted.calls(), 0, "a format rejection called the store");
    assert_eq!(m.hasher().runs(), 0, "a format rejection ran Argon2");

    // The first verify of an id is cold: one store read, one Argon2.
    let key = &t.keys[0];
    let (r, gets, runs) = cost(&counted, &m, m.verify(key, &req)).await;
    assert!(is_ok(&r), "{r:?}");
    assert_eq!(
        (gets, runs),
        (1, 1),
        "first (cold) verify: store reads, Argon2 runs"
    );
    // Warm: no store read, no Argon2, for the right secret and for a wrong one.
    for _ in 0..100 {
        let (r, gets, runs) = cost(&counted, &m, m.verify(key, &req)).await;
        assert!(is_ok(&r), "{r:?}");
        assert_eq!(
            (gets, runs),
            (0, 0),
            "warm verify: store reads, Argon2 runs"
        );
        let (r, gets, runs) = cost(&counted, &m, m.verify(&t.wrong, &req)).await;
        assert!(is_invalid(&r), "{r:?}");
        assert_eq!((gets, runs), (0, 0), "wrong secret, cached id: reads, runs");
    }

    // An expired entry, presented with its secret: one store read, no Argon2.
    let expired = manager(as_store(), Config::Expired);
    let (r, gets, runs) = cost(&counted, &expired, expired.verify(key, &req)).await;
    assert!(is_ok(&r), "{r:?}");
    assert_eq!((gets, runs), (1, 1), "first verify, zero TTL: reads, runs");
    for _ in 0..3 {
        let (r, gets, runs) = cost(&counted, &expired, expired.verify(key, &req)).await;
        assert!(is_ok(&r), "{r:?}");
        assert_eq!(
            (gets, runs),
            (1, 0),
            "expired entry revalidated: reads, runs"
        );
    }

    // Without the cache, every verify is one store read and one Argon2.
    let cold = manager(as_store(), Config::Uncached);
    for _ in 0..3 {
        let (r, gets, runs) = cost(&counted, &cold, cold.verify(key, &req)).await;
        assert!(is_ok(&r), "{r:?}");
        assert_eq!(
            (gets, runs),
            (1, 1),
            "cold verify: store reads, Argon2 runs"
        );
    }

    // A wrong secret for an uncached id: one read, one Argon2. An unknown id: one read and
    // no Argon2, then (remembered as unknown) neither.
    let nolimit = manager(as_store(), Config::NoFailureLimit);
    let (r, gets, runs) = cost(&counted, &nolimit, nolimit.verify(&t.wrong, &req)).await;
    assert!(is_invalid(&r), "{r:?}");
    assert_eq!((gets, runs), (1, 1), "wrong secret: reads, runs");
    for expected in [(1, 0), (0, 0), (0, 0)] {
        let (r, gets, runs) = cost(&counted, &nolimit, nolimit.verify(&t.unknown, &req)).await;
        assert!(is_invalid(&r), "{r:?}");
        assert_eq!((gets, runs), expected, "unknown id: reads, runs");
    }
}

/// Benchmarks `m.verify(text)`, checking every outcome with `expect` and that the hasher ran
/// exactly `runs_per_iter` Argon2 computations per iteration.
#[allow(clippy::too_many_arguments)]
fn bench_verify(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    m: &KeyManager,
    text: &str,
    req: &Requirements,
    expect: fn(&Outcome) -> bool,
    runs_per_iter: usize,
) {
    let iters = Cell::new(0usize);
    let all_as_expected = Cell::new(true);
    let runs_before = m.hasher().runs();
    g.bench_function(name, |b| {
        let (iters, ok) = (&iters, &all_as_expected);
        b.to_async(rt).iter(move || {
            iters.set(iters.get() + 1);
            async move {
                let r = m.verify(text, req).await;
                ok.set(ok.get() && expect(&r));
                r
            }
        })
    });
    assert!(all_as_expected.get(), "{name}: an unexpected outcome");
    assert_eq!(
        m.hasher().runs() - runs_before,
        runs_per_iter * iters.get(),
        "{name}: Argon2 runs during measurement"
    );
}

/// `TASK_BATCH` warm verifies split over `k` tasks; returns the failures.
async fn batch(m: &KeyManager, keys: &Arc<Vec<String>>, req: &Arc<Requirements>, k: usize) -> u64 {
    let per = TASK_BATCH as usize / k;
    let tasks: Vec<_> = (0..k)
        .map(|t| {
            let (m, keys, req) = (m.clone(), Arc::clone(keys), Arc::clone(req));
            tokio::spawn(async move {
                let key = &keys[t % keys.len()];
                let mut failed = 0u64;
                for _ in 0..per {
                    if m.verify(key, &req).await.is_err() {
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    failed
}

fn fast(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(50)
        .sampling_mode(SamplingMode::Auto)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// Argon2 at the default (OWASP) parameters: ~30 ms an iteration.
fn slow(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
}

fn bench_store(c: &mut Criterion, rt: &Runtime, kind: StoreKind) {
    let name = kind.name();
    let Some(bs) = rt.block_on(BenchStore::open(kind)).unwrap() else {
        eprintln!("{name}: skipped (set DATABASE_URL to benchmark PostgreSQL)");
        return;
    };
    let count = record_count();
    let (ids, took) = rt.block_on(bs.populate(count, POPULATE_PARALLEL)).unwrap();
    eprintln!("{name}: populated {count} records with insert_many in {took:.2?}");
    let store = Arc::clone(&bs.store);

    let m = manager(Arc::clone(&store), Config::Cached);
    let cold = manager(Arc::clone(&store), Config::Uncached);
    let nolimit = manager(Arc::clone(&store), Config::NoFailureLimit);
    let req = requirements();

    let t = rt.block_on(async {
        let mut keys = Vec::new();
        for _ in 0..REAL_KEYS {
            let issued = m.issue(issue_request()).await.unwrap();
            keys.push(issued.key.expose_secret().to_owned());
        }
        let victim = m.issue(issue_request()).await.unwrap();
        let k0 = keys[0].clone();
        Texts {
            wrong: with_wrong_secret(&k0, 42),
            malformed: k0[..k0.len() - 5].to_owned(),
            bad_checksum: bad_checksum(&k0),
            unknown: ApiKey::generate("av".parse().unwrap(), "prd".parse().unwrap())
                .unwrap()
                .expose_secret()
                .to_owned(),
            victim_wrong: with_wrong_secret(victim.key.expose_secret(), 42),
            keys: Arc::new(keys),
        }
    });
    rt.block_on(prove_paths(&store, &t));

    // Warms every real key in the cached managers (re-run before each warm benchmark, in
    // case an entry expired meanwhile).
    let warm_up = |m: &KeyManager| {
        rt.block_on(async {
            for k in t.keys.iter() {
                m.verify(k, &req).await.unwrap();
            }
        })
    };

    let mut g = c.benchmark_group(name);
    fast(&mut g);
    warm_up(&m);
    let key = t.keys[0].as_str();
    bench_verify(&mut g, rt, "verify_warm", &m, key, &req, is_ok, 0);
    warm_up(&m);
    bench_verify(
        &mut g,
        rt,
        "wrong_secret_cached",
        &m,
        &t.wrong,
        &req,
        is_invalid,
        0,
    );
    bench_verify(
        &mut g,
        rt,
        "malformed",
        &m,
        &t.malformed,
        &req,
        is_truncated,
        0,
    );
    let bad = t.bad_checksum.as_str();
    bench_verify(
        &mut g,
        rt,
        "bad_checksum",
        &m,
        bad,
        &req,
        is_bad_checksum,
        0,
    );

    // The failed-attempt limiter: after 10 wrong secrets for an uncached id, no Argon2.
    rt.block_on(async { while !is_rate_limited(&m.verify(&t.victim_wrong, &req).await) {} });
    let victim = t.victim_wrong.as_str();
    bench_verify(
        &mut g,
        rt,
        "rate_limited",
        &m,
        victim,
        &req,
        is_rate_limited,
        0,
    );

    // A warm verify of a key with a per-key rate limit it never reaches: the limiter lookup
    // and GCRA check on top of a warm verify.
    let limited = rt.block_on(async {
        let req = issue_request().limits(keyward::KeyLimits {
            rate_limit: Some(keyward::RateLimit {
                requests: u32::MAX,
                per_seconds: 1,
            }),
            ..Default::default()
        });
        let text = m.issue(req).await.unwrap().key.expose_secret().to_owned();
        // Let the change feed report the insert (it drops the key's cache entry) before the
        // key is warmed, or the first measured verify would be cold.
        tokio::time::sleep(Duration::from_millis(800)).await;
        m.verify(&text, &requirements()).await.unwrap();
        text
    });
    bench_verify(
        &mut g,
        rt,
        "verify_warm_rate_limit",
        &m,
        &limited,
        &req,
        is_ok,
        0,
    );

    // The same key on a manager in cluster mode: the warm verify takes a cell from the key's
    // local allotment (one compare-and-swap); about once per 50 ms of demand it asks the
    // store for the next chunk. The unlimited warm verify again on that manager, right
    // before, as the reference.
    let cluster = manager(Arc::clone(&store), Config::ClusterRateLimits);
    rt.block_on(async {
        cluster.verify(key, &req).await.unwrap();
        cluster.verify(&limited, &req).await.unwrap();
    });
    bench_verify(
        &mut g,
        rt,
        "verify_warm_cluster_manager",
        &cluster,
        key,
        &req,
        is_ok,
        0,
    );
    bench_verify(
        &mut g,
        rt,
        "verify_warm_rate_limit_cluster",
        &cluster,
        &limited,
        &req,
        is_ok,
        0,
    );

    // An expired entry: revalidated with one store read (the first verify ran Argon2).
    let expired = manager(Arc::clone(&store), Config::Expired);
    rt.block_on(expired.verify(key, &req)).unwrap();
    bench_verify(&mut g, rt, "verify_expired", &expired, key, &req, is_ok, 0);

    // Revoke: a different filler record each iteration (cycling if there are too few).
    let next = Cell::new(0usize);
    g.bench_function("revoke", |b| {
        let (next, ids, m) = (&next, &ids, &m);
        b.to_async(rt).iter(move || {
            let id: KeyId = ids[next.get() % ids.len()];
            next.set(next.get() + 1);
            async move { m.revoke(&id).await.unwrap() }
        })
    });

    slow(&mut g);
    bench_verify(&mut g, rt, "verify_cold", &cold, key, &req, is_ok, 1);
    let wrong = t.wrong.as_str();
    bench_verify(
        &mut g,
        rt,
        "wrong_secret_uncached",
        &nolimit,
        wrong,
        &req,
        is_invalid,
        1,
    );
    let unknown = t.unknown.as_str();
    // Remembered as unknown after its first verify: no store read, no Argon2.
    rt.block_on(nolimit.verify(unknown, &req)).unwrap_err();
    bench_verify(
        &mut g,
        rt,
        "unknown_id",
        &nolimit,
        unknown,
        &req,
        is_invalid,
        0,
    );
    let iters = Cell::new(0usize);
    let runs_before = m.hasher().runs();
    g.bench_function("issue", |b| {
        let (iters, m) = (&iters, &m);
        b.to_async(rt).iter(move || {
            iters.set(iters.get() + 1);
            async move { m.issue(issue_request()).await.unwrap() }
        })
    });
    assert_eq!(
        m.hasher().runs() - runs_before,
        iters.get(),
        "issue: Argon2 runs"
    );
    g.finish();

    // Throughput of warm verifies over 1, 2 and 8 tasks on the multi-thread runtime.
    let mut g = c.benchmark_group(format!("{name}_tasks"));
    fast(&mut g);
    g.throughput(Throughput::Elements(TASK_BATCH));
    let (keys, shared_req) = (Arc::clone(&t.keys), Arc::new(req.clone()));
    for k in [1usize, 2, 8] {
        warm_up(&m);
        let failed = Cell::new(0u64);
        let runs_before = m.hasher().runs();
        g.bench_with_input(BenchmarkId::new("verify_warm", k), &k, |b, &k| {
            let (m, keys, req, failed) = (&m, &keys, &shared_req, &failed);
            b.to_async(rt).iter_custom(move |iters| async move {
                let start = Instant::now();
                for _ in 0..iters {
                    failed.set(failed.get() + batch(m, keys, req, k).await);
                }
                start.elapsed()
            })
        });
        assert_eq!(failed.get(), 0, "{k} tasks: failed warm verifies");
        assert_eq!(m.hasher().runs(), runs_before, "{k} tasks: Argon2 runs");
    }
    g.finish();

    // Stop the managers' background tasks before the store (and its schema) goes.
    drop((m, cold, nolimit));
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    drop(bs);
}

fn main() {
    let mut c = keyward_benches::criterion()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    if !is_bench_run() {
        eprintln!("test mode: stores hold {} records", record_count());
    }
    for kind in StoreKind::selected() {
        bench_store(&mut c, &rt, kind);
    }
    c.final_summary();
}
