//! How long a GitHub secret-scanning report of 1,000 tokens takes (GitHub waits 30 s for
//! partners that answer feedback), at the production hash cost (OWASP's Argon2id minimum) on
//! the default hasher (one worker per core), through `SecretScanning::handle` (signature check,
//! JSON, processing, the feedback array; the axum router adds only the body read).
//!
//! ```text
//! cargo bench -p keyward --features secret-scanning --bench secret_scanning
//! ```
//!
//! | report of 1,000 | what it costs per token |
//! |---|---|
//! | malformed tokens | a parse |
//! | well-formed tokens with unknown ids | a parse, one store read |
//! | look-alikes of real keys (real id, wrong secret) | a store read, one Argon2 |
//! | real keys, not cached (all revoked) | a store read, one Argon2, one revoke |
//! | 215 forgeries of 5 real ids (43 each) | [`MAX_SECRETS_PER_ID`] Argon2 per id, the rest a parse |
//!
//! The answer waits until the deadline (20 s by default); the checks not done by then go on in
//! the background, so each line gives both times. It also times cold verifications of another key made while a report of 1,000 real keys
//! is processed: they share the hasher, which the report never holds more than
//! `concurrency` (= workers) of. The memory store is used: a networked store adds its
//! round trip per token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use keyward::conformance::with_wrong_secret;
use keyward::secret_scanning::{
    MAX_SECRETS_PER_ID, PublicKeys, ScanAnswer, SecretScanning, SecretScanningConfig,
};
use keyward::{ApiKey, CacheConfig, HashParams, IssueRequest, KeyManager, KeyStore, Requirements};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::{Value, json};

const N: usize = 1000;

struct Bench {
    store: Arc<dyn KeyStore>,
    github: SigningKey,
    keys: PublicKeys,
    key_id: String,
}

impl Bench {
    fn manager(&self) -> KeyManager {
        // A fresh manager: its verify cache is empty (a cold start of the endpoint).
        KeyManager::builder_arc(self.store.clone())
            .serve("prd".parse().unwrap())
            .hash_params(HashParams::default())
            .cache(CacheConfig::default())
            .build()
            .unwrap()
    }

    fn body(tokens: &[String]) -> Vec<u8> {
        let matches: Vec<Value> = tokens
            .iter()
            .map(|t| {
                json!({
                    "token": t,
                    "type": "keyward_api_key",
                    "url": "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt",
                    "source": "content",
                })
            })
            .collect();
        serde_json::to_vec(&matches).unwrap()
    }

    async fn run(&self, manager: &KeyManager, label: &str, tokens: &[String]) -> ScanAnswer {
        let body = Self::body(tokens);
        let sig: DerSignature = self.github.sign(&body);
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.as_bytes());
        let scanning = SecretScanning::new(
            manager.clone(),
            SecretScanningConfig::new(self.keys.clone()),
        );
        let runs = manager.hasher().runs();
        let start = Instant::now();
        let answer = scanning
            .handle(Some(&self.key_id), Some(&sig), &body)
            .await
            .unwrap();
        let took = start.elapsed();
        // Checks past the deadline go on in the background: wait until the hasher has been
        // idle for a second (then they are done), and count the time until its last run.
        let mut finished = took;
        if answer.summary.pending > 0 {
            let mut last = (manager.hasher().runs(), Instant::now());
            while last.1.elapsed() < Duration::from_secs(1) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let now = manager.hasher().runs();
                if now != last.0 {
                    last = (now, Instant::now());
                }
            }
            finished = last.1 - start;
        }
        println!(
            "{label:<44} {:>5} tokens {:>4} KiB  answered {:>7.3} s ({:>4} decided, {:>4} true positives)  all checked {:>7.3} s  {:>5} Argon2",
            tokens.len(),
            body.len() / 1024,
            took.as_secs_f64(),
            answer.feedback.len(),
            answer.summary.true_positives,
            finished.as_secs_f64(),
            manager.hasher().runs() - runs,
        );
        answer
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let store: Arc<dyn KeyStore> = Arc::new(keyward_memory::MemoryStore::new());
    let github = SigningKey::generate();
    let mut keys = PublicKeys::new();
    let key_id = keys
        .add_pem(
            &github
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
    let b = Bench {
        store,
        github,
        keys,
        key_id,
    };
    let issuer = b.manager();
    println!(
        "hasher: {} workers, {:?}",
        issuer.hasher().workers(),
        issuer.hasher().params()
    );
    let start = Instant::now();
    let mut real = Vec::with_capacity(N);
    for _ in 0..N / 50 {
        // 50 at a time: within the hasher's queue (64 per worker).
        let issued = futures_util::future::join_all((0..50).map(|_| {
            let req = IssueRequest::new("web-app".parse().unwrap(), "prd".parse().unwrap());
            issuer.issue(req)
        }))
        .await;
        for i in issued {
            real.push(i.unwrap().key.expose_secret().to_owned());
        }
    }
    println!("issued {N} keys in {:.1} s", start.elapsed().as_secs_f64());
    let bystander = issuer
        .issue(IssueRequest::new(
            "other".parse().unwrap(),
            "prd".parse().unwrap(),
        ))
        .await
        .unwrap()
        .key
        .expose_secret()
        .to_owned();

    let malformed: Vec<String> = (0..N).map(|i| format!("not_a_key_{i:04}")).collect();
    let unknown: Vec<String> = (0..N)
        .map(|_| {
            ApiKey::generate(issuer.prefix(), "prd".parse().unwrap())
                .unwrap()
                .expose_secret()
                .to_owned()
        })
        .collect();
    let look_alikes: Vec<String> = real.iter().map(|t| with_wrong_secret(t, 11)).collect();
    let forgeries: Vec<String> = real[..5]
        .iter()
        .flat_map(|t| (0..43).map(move |at| with_wrong_secret(t, at)))
        .collect();

    b.run(&b.manager(), "malformed", &malformed).await;
    b.run(&b.manager(), "unknown ids", &unknown).await;
    b.run(
        &b.manager(),
        "look-alikes of real keys (wrong secret)",
        &look_alikes,
    )
    .await;
    b.run(
        &b.manager(),
        &format!("forgeries of 5 ids (max {MAX_SECRETS_PER_ID} hashed per id)"),
        &forgeries,
    )
    .await;

    // Real keys, while another client verifies a key cold (no cache: Argon2 each time).
    let manager = b.manager();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let m = KeyManager::builder_arc(b.store.clone())
            .serve("prd".parse().unwrap())
            .hash_params(HashParams::default())
            .without_cache()
            .build()
            .unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut waits = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                m.verify(&bystander, &Requirements::none()).await.unwrap();
                waits.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            waits
        })
    };
    b.run(&manager, "real keys, not cached (all revoked)", &real)
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut waits = probe.await.unwrap();
    waits.sort();
    let pct = |p: usize| waits[(waits.len() * p / 100).min(waits.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "meanwhile, {} cold verifications of another key: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        waits.len(),
        pct(50),
        pct(99),
        pct(100)
    );
    b.run(&manager, "the same again (already revoked)", &real)
        .await;
}
