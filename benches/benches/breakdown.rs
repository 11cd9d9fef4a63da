//! Where a warm verify's time goes: each step of the warm path (docs/ARCHITECTURE.md, "The
//! verify pipeline") measured on its own with the same building blocks (parse, keyed BLAKE3
//! digest, quick_cache lookup, constant-time compare, clock, the identity returned), next to
//! the whole call.
//!
//! The steps are re-enacted with public APIs and the same crates, so their sum is an
//! estimate: the manager's own glue (async state machine, `Arc` and `Result` moves, the
//! last-used bookkeeping) is the difference between the sum and `verify`.
//!
//! `warm_scaling` splits one batch over 1 and 2 tasks for three jobs: work with no shared
//! state (the machine's own scaling at that moment), lookups in one shared quick_cache map, and
//! whole warm verifies; it tells a busy machine apart from contention in the cache.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Throughput};
use keyward::{ApiKey, Clock, IssueRequest, KeyId, KeyManager, Requirements, SystemClock};
use subtle::ConstantTimeEq;

/// Elements per scaling measurement.
const BATCH: usize = 4096;

#[derive(Debug, Clone, Copy)]
enum Job {
    PureCpu,
    CacheGet,
    Verify,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::PureCpu => "parse_and_digest_no_shared_state",
            Job::CacheGet => "cache_get_shared_map",
            Job::Verify => "verify_warm",
        }
    }

    async fn run(
        self,
        n: usize,
        m: &KeyManager,
        text: &str,
        id: KeyId,
        req: &Requirements,
        cache: &quick_cache::sync::Cache<KeyId, Arc<u64>>,
    ) {
        let digest_key = [9u8; 32];
        for _ in 0..n {
            match self {
                Job::PureCpu => {
                    let key = ApiKey::parse(black_box(text)).unwrap();
                    let secret = &key.expose_secret().as_bytes()[text.len() - 49..text.len() - 6];
                    black_box(blake3::keyed_hash(&digest_key, secret));
                }
                Job::CacheGet => {
                    black_box(cache.get(&id).unwrap());
                }
                Job::Verify => {
                    black_box(m.verify(text, req).await.unwrap());
                }
            }
        }
    }
}

fn main() {
    let mut c = keyward_benches::criterion()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = KeyManager::builder(keyward_memory::MemoryStore::new())
        .prefix("av".parse().unwrap())
        .serve("prd".parse().unwrap())
        .build()
        .unwrap();
    let req = Requirements::scopes(["read"]).unwrap();
    let text = rt.block_on(async {
        let issued = m
            .issue(
                IssueRequest::new("bench".parse().unwrap(), "prd".parse().unwrap())
                    .scopes(["read", "write"])
                    .unwrap()
                    .name("bench key"),
            )
            .await
            .unwrap();
        let text = issued.key.expose_secret().to_owned();
        m.verify(&text, &req).await.unwrap();
        text
    });
    let key = ApiKey::parse(&text).unwrap();
    let identity = rt.block_on(m.verify(&text, &req)).unwrap();
    // Moving a future copies it: large async state machines cost memmoves on every call.
    eprintln!(
        "size of the futures: verify {} B, verify_key {} B, ApiKey {} B, Identity {} B",
        std::mem::size_of_val(&m.verify(&text, &req)),
        std::mem::size_of_val(&m.verify_key(&key, &req)),
        std::mem::size_of::<ApiKey>(),
        std::mem::size_of::<keyward::Identity>(),
    );

    let mut g = c.benchmark_group("warm_breakdown");
    g.bench_function("verify", |b| {
        b.to_async(&rt).iter(|| m.verify(black_box(&text), &req))
    });
    g.bench_function("verify_key_preparsed", |b| {
        b.to_async(&rt).iter(|| m.verify_key(black_box(&key), &req))
    });
    g.bench_function("parse", |b| b.iter(|| ApiKey::parse(black_box(&text))));
    let malformed = &text[..text.len() - 5];
    g.bench_function("parse_malformed", |b| {
        b.iter(|| ApiKey::parse(black_box(malformed)))
    });
    let mut bad = text.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    g.bench_function("parse_bad_checksum", |b| {
        b.iter(|| ApiKey::parse(black_box(&bad)))
    });
    g.bench_function("verify_malformed", |b| {
        b.to_async(&rt)
            .iter(|| m.verify(black_box(malformed), &req))
    });
    g.bench_function("check_format", |b| {
        b.iter(|| m.check_format(black_box(&key)))
    });
    let secret = &text.as_bytes()[text.len() - 49..text.len() - 6];
    let digest_key = [9u8; 32];
    g.bench_function("blake3_keyed_digest_43B", |b| {
        b.iter(|| blake3::keyed_hash(black_box(&digest_key), black_box(secret)))
    });
    let (d1, d2) = ([1u8; 32], [1u8; 32]);
    g.bench_function("ct_eq_32B", |b| {
        b.iter(|| bool::from(black_box(&d1).ct_eq(black_box(&d2))))
    });
    // The verify cache's map: quick_cache, as core builds it for CacheConfig::default
    // (capacity 100,000; core checks the TTL against an instant stored in the entry),
    // holding 100,000 keys.
    let cache: quick_cache::sync::Cache<KeyId, Arc<u64>> = quick_cache::sync::Cache::new(100_000);
    let n = if keyward_benches::is_bench_run() {
        99_990
    } else {
        1_000
    };
    let mut filler_ids = Vec::new();
    for i in 0..n {
        let id = KeyId::generate().unwrap();
        cache.insert(id, Arc::new(i));
        if filler_ids.len() < 2 {
            filler_ids.push(id);
        }
    }
    cache.insert(key.id(), Arc::new(0));
    g.bench_function("cache_get", |b| b.iter(|| cache.get(black_box(&key.id()))));
    g.bench_function("clock_now", |b| b.iter(|| SystemClock.now()));
    g.bench_function("identity_clone_drop", |b| {
        b.iter(|| black_box(&identity).clone())
    });
    g.finish();

    // Does the warm path scale over cores? The same batch split over 1 and 2 tasks, for a
    // job with no shared state (parse + keyed digest: the machine's own scaling), a lookup
    // in one shared quick_cache map, and the whole warm verify (each task with its own key).
    let cache = Arc::new(cache);
    let ids = filler_ids;
    let mut keys = vec![text.clone()];
    rt.block_on(async {
        for _ in 1..2 {
            let issued = m
                .issue(
                    IssueRequest::new("bench".parse().unwrap(), "prd".parse().unwrap())
                        .scopes(["read", "write"])
                        .unwrap(),
                )
                .await
                .unwrap();
            // The store logs the insert, and the change feed (polled every 250 ms here)
            // reports it and drops the key's cache entry: let it arrive before warming the
            // key, or the first measured verify would be cold.
            tokio::time::sleep(Duration::from_millis(800)).await;
            let t = issued.key.expose_secret().to_owned();
            m.verify(&t, &req).await.unwrap();
            keys.push(t);
        }
    });
    let runs = m.hasher().runs();
    let (keys, ids, req) = (Arc::new(keys), Arc::new(ids), Arc::new(req));
    let mut g = c.benchmark_group("warm_scaling");
    g.throughput(Throughput::Elements(BATCH as u64));
    for job in [Job::PureCpu, Job::CacheGet, Job::Verify] {
        for k in [1usize, 2] {
            let id = BenchmarkId::new(job.name(), k);
            g.bench_with_input(id, &k, |b, &k| {
                b.to_async(&rt).iter(|| {
                    let tasks: Vec<_> = (0..k)
                        .map(|t| {
                            let (m, keys, ids, req, cache) = (
                                m.clone(),
                                Arc::clone(&keys),
                                Arc::clone(&ids),
                                Arc::clone(&req),
                                Arc::clone(&cache),
                            );
                            tokio::spawn(async move {
                                job.run(BATCH / k, &m, &keys[t], ids[t], &req, &cache).await
                            })
                        })
                        .collect();
                    async move {
                        for t in tasks {
                            t.await.unwrap();
                        }
                    }
                })
            });
        }
    }
    g.finish();
    assert_eq!(m.hasher().runs(), runs, "the warm path ran Argon2");
    c.final_summary();
}
