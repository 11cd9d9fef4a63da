//! Constant-time evidence for `KeyManager::verify`, dudect style (Reparaz, Balasch, Verbauwhede,
//! "Dude, is my code constant time?", DATE 2017).
//!
//! ```text
//! cargo bench -p keyward --bench timing            # full run, about two minutes
//! KEYWARD_TIMING_SCALE=0.1 cargo bench -p keyward --bench timing   # a quick look
//! ```
//!
//! Each comparison measures two classes of presented keys, in a random interleaved order (so
//! drift of the machine affects both alike), times each `verify` call with a monotonic clock,
//! and runs Welch's t-test on the raw samples and on the samples cropped at 100 percentiles
//! (dudect's cropping: `1 - 0.5^(10 (k+1) / 100)`, which removes the long tail of
//! interrupts and scheduling). The largest |t| is reported: below 4.5 there is no evidence
//! of a timing difference; above it the classes are told apart by time.
//!
//! Comparisons (all outcomes are `AuthError::Invalid`, checked on every call):
//!
//! | path | class A | class B | expected |
//! |---|---|---|---|
//! | warm (verify cache hit) | secret wrong in its first character | … in its last character | no leak |
//! | warm | known (cached) id, wrong secret | unknown id | **differ, by design**: a cached id's wrong secret is rejected by a keyed digest, an unknown id costs a store read; neither runs Argon2 (ids are public) |
//! | cold (`without_cache`) | known id, wrong secret | unknown id | **differ, by design**: an unknown id runs no Argon2 (ids are public) |
//! | cold | secret wrong in its first character | … in its last character | no leak |
//!
//! The cold path uses `HashParams::INSECURE_TEST_ONLY` (m = 64 KiB, t = 1) to make hundreds of
//! thousands of Argon2 runs affordable; Argon2's running time does not depend on the secret
//! at any cost setting, only the constant factor changes. This is a benchmark, not a test: it
//! takes minutes and its verdict depends on the machine's quietness, so it is not run in CI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use keyward::conformance::fix_checksum;
use keyward::{
    ApiKey, AuthError, CacheConfig, Error, HashParams, IssueRequest, KeyManager, Requirements,
};
use rand::RngExt as _;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PERCENTILES: usize = 100;
/// |t| above this is evidence of a timing difference (the usual TVLA/dudect threshold).
const T_THRESHOLD: f64 = 4.5;

/// Welford's online mean and variance for two classes.
#[derive(Default, Clone, Copy)]
struct Welch {
    n: [f64; 2],
    mean: [f64; 2],
    m2: [f64; 2],
}

impl Welch {
    fn push(&mut self, class: usize, x: f64) {
        self.n[class] += 1.0;
        let d = x - self.mean[class];
        self.mean[class] += d / self.n[class];
        self.m2[class] += d * (x - self.mean[class]);
    }

    fn t(&self) -> f64 {
        if self.n[0] < 2.0 || self.n[1] < 2.0 {
            return 0.0;
        }
        let v0 = self.m2[0] / (self.n[0] - 1.0);
        let v1 = self.m2[1] / (self.n[1] - 1.0);
        let se = (v0 / self.n[0] + v1 / self.n[1]).sqrt();
        if se == 0.0 {
            return 0.0;
        }
        (self.mean[0] - self.mean[1]) / se
    }

    fn min_n(&self) -> f64 {
        self.n[0].min(self.n[1])
    }
}

struct Report {
    max_t: f64,
    max_at: String,
    /// Difference of the class means (A - B) in the test with the largest |t|, in ns.
    max_delta: f64,
    raw_t: f64,
    median: [f64; 2],
    mean: [f64; 2],
    samples: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Welch's t on the raw samples and on each dudect crop; the largest |t| wins.
fn analyse(samples: &[(usize, f64)]) -> Report {
    let mut all: Vec<f64> = samples.iter().map(|s| s.1).collect();
    all.sort_by(f64::total_cmp);
    let thresholds: Vec<f64> = (0..PERCENTILES)
        .map(|k| {
            let p = 1.0 - 0.5f64.powf(10.0 * (k as f64 + 1.0) / PERCENTILES as f64);
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
        })
        .collect();
    let mut raw = Welch::default();
    let mut cropped = vec![Welch::default(); PERCENTILES];
    for &(class, x) in samples {
        raw.push(class, x);
        for (w, &limit) in cropped.iter_mut().zip(&thresholds) {
            if x < limit {
                w.push(class, x);
            }
        }
    }
    let mut max_t = raw.t();
    let mut max_at = "raw".to_owned();
    let mut max_delta = raw.mean[0] - raw.mean[1];
    for (k, w) in cropped.iter().enumerate() {
        // A crop that leaves too few samples says nothing.
        if w.min_n() >= 1000.0 && w.t().abs() > max_t.abs() {
            max_t = w.t();
            max_at = format!("crop p{k}");
            max_delta = w.mean[0] - w.mean[1];
        }
    }
    let by_class =
        |c: usize| -> Vec<f64> { samples.iter().filter(|s| s.0 == c).map(|s| s.1).collect() };
    Report {
        max_t,
        max_at,
        max_delta,
        raw_t: raw.t(),
        median: [median(by_class(0)), median(by_class(1))],
        mean: raw.mean,
        samples: samples.len(),
    }
}

/// What one sample times.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timed {
    /// `KeyManager::verify(&str)`: parsing included.
    Verify,
    /// `KeyManager::verify_key(&ApiKey)`: the key is parsed before the clock starts.
    VerifyParsed,
    /// `ApiKey::parse` alone.
    Parse,
    /// `RecordStore::get` of the key's id alone.
    StoreGet,
}

/// Measures `n` samples, each of a random class, with inputs drawn in turn from
/// `inputs[class]`.
async fn measure(
    manager: &KeyManager,
    inputs: [&[String]; 2],
    n: usize,
    timed: Timed,
) -> Vec<(usize, f64)> {
    let req = Requirements::none();
    let mut rng = rand::rng();
    let mut out = Vec::with_capacity(n);
    let mut counters = [0usize; 2];
    // Both classes are presented from this one buffer (and the one `key` slot below), so the
    // input's address (alignment, cache lines) cannot differ between the classes.
    let mut text = String::with_capacity(128);
    let parsed: [Vec<ApiKey>; 2] =
        inputs.map(|pool| pool.iter().map(|t| ApiKey::parse(t).unwrap()).collect());
    for _ in 0..n {
        let class = usize::from(rng.random::<bool>());
        let pool = inputs[class];
        text.clear();
        text.push_str(&pool[counters[class] % pool.len()]);
        counters[class] += 1;
        let elapsed = match timed {
            Timed::Verify => {
                let start = Instant::now();
                let result = manager.verify(&text, &req).await;
                let elapsed = start.elapsed();
                expect_invalid(class, result);
                elapsed
            }
            Timed::VerifyParsed => {
                // A copy of a key parsed before the loop: parsing here would leave
                // class-dependent state (branch history, caches) just before the clock starts.
                let key = parsed[class][(counters[class] - 1) % parsed[class].len()].clone();
                let start = Instant::now();
                let result = manager.verify_key(&key, &req).await;
                let elapsed = start.elapsed();
                expect_invalid(class, result);
                elapsed
            }
            Timed::Parse => {
                let start = Instant::now();
                let result = std::hint::black_box(ApiKey::parse(std::hint::black_box(&text)));
                let elapsed = start.elapsed();
                assert!(result.is_ok());
                elapsed
            }
            Timed::StoreGet => {
                let id = ApiKey::parse(&text).unwrap().id();
                let start = Instant::now();
                let result = manager.store().get(&id).await;
                let elapsed = start.elapsed();
                assert!(result.is_ok());
                elapsed
            }
        };
        out.push((class, elapsed.as_nanos() as f64));
    }
    out
}

fn expect_invalid<T: std::fmt::Debug>(class: usize, result: Result<T, Error>) {
    match result {
        Err(Error::Auth(AuthError::Invalid)) => {}
        other => panic!("class {class}: expected Invalid, got {other:?}"),
    }
}

fn scale() -> f64 {
    std::env::var("KEYWARD_TIMING_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn samples(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(4000)
}

fn other_char(c: u8, k: usize) -> u8 {
    let i = BASE62.iter().position(|&b| b == c).unwrap_or(0);
    BASE62[(i + 1 + k % 61) % 62]
}

/// `count` variants of `text` with the secret's character at `pos` (0..43) changed.
fn wrong_at(text: &str, pos: usize, count: usize) -> Vec<String> {
    let start = text.len() - 6 - 43;
    (0..count)
        .map(|k| {
            let mut b = text.as_bytes().to_vec();
            b[start + pos] = other_char(b[start + pos], k);
            fix_checksum(std::str::from_utf8(&b).unwrap())
        })
        .collect()
}

/// `count` well-formed keys of random (unknown) ids.
fn unknown_ids(count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            ApiKey::generate("kw".parse().unwrap(), "dev".parse().unwrap())
                .unwrap()
                .expose_secret()
                .to_owned()
        })
        .collect()
}

fn manager(cached: bool) -> KeyManager {
    let builder = KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .usage_flush_interval(Duration::from_secs(3600));
    let builder = if cached {
        builder.cache(CacheConfig {
            poll_interval: Duration::from_secs(3600),
            ..CacheConfig::default()
        })
    } else {
        builder.without_cache()
    };
    builder.build().unwrap()
}

async fn issue(m: &KeyManager) -> String {
    let issued = m
        .issue(IssueRequest::new(
            "bench".parse().unwrap(),
            "dev".parse().unwrap(),
        ))
        .await
        .unwrap();
    issued.key.expose_secret().to_owned()
}

/// Prints one comparison. `allowed` explains a difference that is acceptable; `None` means
/// the comparison must show no leak. Returns whether a required comparison leaked.
fn print(name: &str, labels: [&str; 2], allowed: Option<&str>, r: &Report) -> bool {
    let leak = r.max_t.abs() > T_THRESHOLD;
    let verdict = match (leak, allowed) {
        (false, None) => "no leak detected (required)".to_owned(),
        (true, None) => "LEAK: timing tells the classes apart".to_owned(),
        (true, Some(why)) => format!("differ: {why}"),
        (false, Some(_)) => "no difference detected".to_owned(),
    };
    println!("\n{name}");
    println!(
        "  A = {:<34} median {:>9.0} ns  mean {:>9.0} ns",
        labels[0], r.median[0], r.mean[0]
    );
    println!(
        "  B = {:<34} median {:>9.0} ns  mean {:>9.0} ns",
        labels[1], r.median[1], r.mean[1]
    );
    println!(
        "  samples {}  t(raw) = {:+.2}  max |t| = {:.2} ({}, mean A-B there {:+.2} ns)  =>  {verdict}",
        r.samples,
        r.raw_t,
        r.max_t.abs(),
        r.max_at,
        r.max_delta
    );
    leak && allowed.is_none()
}

/// Runs every comparison; returns how many required comparisons leaked.
async fn run() -> usize {
    let mut leaks = 0;
    println!(
        "dudect-style timing of KeyManager::verify (threshold |t| > {T_THRESHOLD}; scale {})",
        scale()
    );

    // Warm path: the key is verified once so its id is in the verify cache.
    let warm = manager(true);
    let key = issue(&warm).await;
    warm.verify(&key, &Requirements::none()).await.unwrap();
    let first = wrong_at(&key, 0, 61);
    let last = wrong_at(&key, 42, 61);
    let pair = [first.as_slice(), last.as_slice()];
    let labels = ["first character wrong", "last character wrong"];
    measure(&warm, pair, 20_000, Timed::VerifyParsed).await;
    let n = samples(1_000_000);
    let r = analyse(&measure(&warm, pair, n, Timed::VerifyParsed).await);
    leaks += usize::from(print(
        "warm path (cache hit), verify_key (parsed key): wrong secret, first vs last character",
        labels,
        None,
        &r,
    ));
    let r = analyse(&measure(&warm, [&first, &first], n, Timed::VerifyParsed).await);
    leaks += usize::from(print(
        "control (A/A): warm verify_key, both classes the same inputs (first character wrong)",
        ["first character wrong", "first character wrong (same)"],
        Some("the harness's own false-positive level at this sample size"),
        &r,
    ));
    let r = analyse(&measure(&warm, pair, n, Timed::Verify).await);
    leaks += usize::from(print(
        "warm path, verify(&str) (parse included): wrong secret, first vs last character",
        labels,
        Some(
            "by the parse of the presented text (see the parse control): no stored secret involved",
        ),
        &r,
    ));
    let r = analyse(&measure(&warm, pair, n, Timed::Parse).await);
    leaks += usize::from(print(
        "control: ApiKey::parse alone on the same two input sets (no stored secret involved)",
        labels,
        Some("parsing time depends on the presented text only, which the sender knows"),
        &r,
    ));

    let n = samples(100_000);
    let unknown = unknown_ids(n);
    let runs_before = warm.hasher().runs();
    let r = analyse(&measure(&warm, [&first, &unknown], n, Timed::Verify).await);
    assert_eq!(
        warm.hasher().runs(),
        runs_before,
        "unknown ids run no Argon2"
    );
    leaks += usize::from(print(
        "warm path: known (cached) id with a wrong secret vs unknown id",
        ["cached id, wrong secret", "unknown id (store read)"],
        Some(concat!(
            "by design: a cached id is refused without Argon2 ",
            "(docs/ARCHITECTURE.md, \"The verify cache\"); ids are public",
        )),
        &r,
    ));

    // Cold path: no cache, so every verify reads the store, and a known id runs Argon2.
    let cold = manager(false);
    let mut known = Vec::new();
    for _ in 0..8 {
        let k = issue(&cold).await;
        known.extend(wrong_at(&k, 21, 8));
    }
    let n = samples(200_000);
    let unknown = unknown_ids(n.min(50_000));
    let pair = [known.as_slice(), unknown.as_slice()];
    let labels = ["known id, wrong secret", "unknown id (no Argon2)"];
    measure(&cold, pair, 5_000, Timed::Verify).await;
    let r = analyse(&measure(&cold, pair, n, Timed::Verify).await);
    leaks += usize::from(print(
        "cold path (without_cache, INSECURE_TEST_ONLY Argon2): known id wrong secret vs unknown id",
        labels,
        Some(
            "by design: an unknown id runs no Argon2 (SECURITY.md, \"Threat model\"); ids are public",
        ),
        &r,
    ));
    let r = analyse(&measure(&cold, pair, samples(1_000_000), Timed::StoreGet).await);
    leaks += usize::from(print(
        "control: the store lookup alone (RecordStore::get), known vs unknown id",
        ["known id (record decoded)", "unknown id (None)"],
        Some("a hit decodes a record, a miss does not"),
        &r,
    ));

    let key = issue(&cold).await;
    let first = wrong_at(&key, 0, 61);
    let last = wrong_at(&key, 42, 61);
    let r = analyse(
        &measure(
            &cold,
            [&first, &last],
            samples(200_000),
            Timed::VerifyParsed,
        )
        .await,
    );
    leaks += usize::from(print(
        "cold path, verify_key (parsed key): wrong secret, first vs last character",
        ["first character wrong", "last character wrong"],
        None,
        &r,
    ));
    leaks
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: then do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("timing: run with `cargo bench -p keyward --bench timing`");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let leaks = rt.block_on(run());
    if leaks > 0 {
        println!("\n{leaks} required comparison(s) leaked");
        std::process::exit(1);
    }
    println!("\nevery required comparison: no leak detected");
}
