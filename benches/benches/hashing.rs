//! What each secret-hashing choice costs: Argon2id through `keyward::Hasher` (hash and
//! verify) at several parameter sets, and fast digests of a 43-byte secret for comparison.
//!
//! The fast digests are what the verify cache uses (a keyed BLAKE3 digest) and what some key
//! systems store instead of a password hash (SHA-256): cheap to check, and equally cheap to
//! brute-force offline if the store leaks, which is why Keyward stores Argon2id.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode};
use keyward::{HashParams, Hasher};
use sha2::Digest as _;

/// A secret as Keyward generates them: 43 base62 characters.
const SECRET: &[u8; 43] = b"abcdefghijABCDEFGHIJ0123456789abcdefghijXYZ";

const SETS: &[(&str, HashParams)] = &[
    ("owasp_min_m19456_t2_p1", HashParams::OWASP_MINIMUM),
    (
        "owasp_m47104_t1_p1",
        HashParams {
            m_cost: 47_104,
            t_cost: 1,
            p_cost: 1,
        },
    ),
    (
        "m65536_t3_p4",
        HashParams {
            m_cost: 65_536,
            t_cost: 3,
            p_cost: 4,
        },
    ),
    (
        "insecure_test_only_m64_t1_p1",
        HashParams::INSECURE_TEST_ONLY,
    ),
];

fn argon2(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("argon2");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for &(label, params) in SETS {
        let hasher = Hasher::new(params).unwrap();
        let stored = rt.block_on(hasher.hash(SECRET)).unwrap();
        assert!(rt.block_on(hasher.verify(SECRET, &stored)).unwrap().matches);
        g.bench_with_input(BenchmarkId::new("hash", label), &hasher, |b, h| {
            b.to_async(rt).iter(|| h.hash(black_box(SECRET)))
        });
        g.bench_with_input(BenchmarkId::new("verify", label), &hasher, |b, h| {
            b.to_async(rt).iter(|| h.verify(black_box(SECRET), &stored))
        });
    }
    g.finish();
}

fn fast_digests(c: &mut Criterion) {
    let mut g = c.benchmark_group("fast_digest");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let key = [7u8; 32];
    g.bench_function("blake3_keyed_43B", |b| {
        b.iter(|| blake3::keyed_hash(black_box(&key), black_box(SECRET)))
    });
    g.bench_function("sha256_43B", |b| {
        b.iter(|| sha2::Sha256::digest(black_box(SECRET)))
    });
    g.finish();
}

fn main() {
    let mut c = keyward_benches::criterion().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    argon2(&mut c, &rt);
    fast_digests(&mut c);
    c.final_summary();
}
