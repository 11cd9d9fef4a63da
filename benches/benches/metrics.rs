//! The cost of metrics on the warm verify (issue 16: at most +30 ns with a recorder
//! installed). The same warm verify on two managers over one memory store: one built with no
//! recorder (every handle a no-op), one built with metrics-exporter-prometheus's recorder
//! current (`metrics::with_local_recorder`, so its handles record there; the process has no
//! global recorder). A warm verify increments two counters: `keyward_verify_total{outcome="ok"}`
//! and `keyward_cache_total{result="hit"}`.
//!
//! `counter_increment` shows why the manager holds resolved handles: incrementing a handle
//! against looking the counter up by name and labels on every call (`metrics::counter!`).

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use keyward::{IssueRequest, KeyManager, KeyManagerBuilder, KeyStore, Requirements};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Verifies per block of the paired measurement.
const BLOCK: u64 = 64;

/// Prints the medians of the paired samples: without, with, and the per-sample difference.
fn report_paired(samples: &[(f64, f64)]) {
    if samples.is_empty() {
        return;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let without = median(samples.iter().map(|s| s.0).collect());
    let with = median(samples.iter().map(|s| s.1).collect());
    let diff = median(samples.iter().map(|s| s.1 - s.0).collect());
    eprintln!(
        "paired warm verify over {} samples (medians): no recorder {without:.1} ns, \
         prometheus {with:.1} ns, per-sample difference {diff:+.1} ns",
        samples.len()
    );
}

fn builder(store: std::sync::Arc<dyn KeyStore>) -> KeyManagerBuilder {
    KeyManager::builder_arc(store)
        .prefix("av".parse().unwrap())
        .serve("prd".parse().unwrap())
}

fn main() {
    let mut c = keyward_benches::criterion()
        .sample_size(100)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let store: std::sync::Arc<dyn KeyStore> =
        std::sync::Arc::new(keyward_memory::MemoryStore::new());
    let plain = builder(store.clone()).build().unwrap();
    let prometheus = PrometheusBuilder::new().build_recorder();
    let handle = prometheus.handle();
    let recorded =
        metrics::with_local_recorder(&prometheus, || builder(store.clone()).build().unwrap());
    let req = Requirements::scopes(["read"]).unwrap();
    let text = rt.block_on(async {
        let issued = plain
            .issue(
                IssueRequest::new("bench".parse().unwrap(), "prd".parse().unwrap())
                    .scopes(["read", "write"])
                    .unwrap(),
            )
            .await
            .unwrap();
        // Let both managers' change feeds report the insert (polled every 250 ms) before
        // warming the key, or the report would drop the entry cached just before it.
        plain
            .verify(issued.key.expose_secret(), &req)
            .await
            .unwrap();
        recorded
            .verify(issued.key.expose_secret(), &req)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let text = issued.key.expose_secret().to_owned();
        plain.verify(&text, &req).await.unwrap();
        recorded.verify(&text, &req).await.unwrap();
        text
    });
    let runs = (plain.hasher().runs(), recorded.hasher().runs());

    let mut g = c.benchmark_group("metrics_overhead");
    g.bench_function("verify_warm/no_recorder", |b| {
        b.to_async(&rt)
            .iter(|| plain.verify(black_box(&text), &req))
    });
    g.bench_function("verify_warm/prometheus", |b| {
        b.to_async(&rt)
            .iter(|| recorded.verify(black_box(&text), &req))
    });
    // Again, in the other order: a drift of the machine over the run shows as a difference
    // between the two measurements of one configuration.
    g.bench_function("verify_warm/no_recorder_again", |b| {
        b.to_async(&rt)
            .iter(|| plain.verify(black_box(&text), &req))
    });
    let counter = metrics::with_local_recorder(
        &prometheus,
        || metrics::counter!(keyward::metrics::VERIFY_TOTAL, "outcome" => "ok"),
    );
    g.bench_function("counter_increment/resolved_handle", |b| {
        b.iter(|| black_box(&counter).increment(1))
    });
    g.bench_function("counter_increment/lookup_per_call", |b| {
        metrics::with_local_recorder(&prometheus, || {
            b.iter(|| {
                metrics::counter!(keyward::metrics::VERIFY_TOTAL, "outcome" => black_box("ok"))
                    .increment(1)
            })
        })
    });
    g.finish();

    // Paired: the two managers interleaved in blocks of BLOCK verifies (the order alternating),
    // so both see the same machine from one block to the next; criterion reports the time of
    // the recorded manager's verifies, and each sample's difference from the plain manager's
    // verifies in the same sample is collected. On a shared machine this is the estimate to
    // trust: drift between two separate measurements is larger than the effect.
    let diffs = std::cell::RefCell::new(Vec::new());
    let mut g = c.benchmark_group("metrics_paired");
    g.bench_function("verify_warm/prometheus_minus_no_recorder", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (plain, recorded, text, req, diffs) = (&plain, &recorded, &text, &req, &diffs);
            async move {
                let (mut without, mut with) = (Duration::ZERO, Duration::ZERO);
                let blocks = iters.div_ceil(BLOCK);
                for i in 0..blocks {
                    for first in [i % 2 == 0, i % 2 != 0] {
                        let m = if first { plain } else { recorded };
                        let started = Instant::now();
                        for _ in 0..BLOCK {
                            black_box(m.verify(black_box(text), req).await.unwrap());
                        }
                        if first {
                            without += started.elapsed();
                        } else {
                            with += started.elapsed();
                        }
                    }
                }
                let n = (blocks * BLOCK) as f64;
                diffs.borrow_mut().push((
                    without.as_secs_f64() * 1e9 / n,
                    with.as_secs_f64() * 1e9 / n,
                ));
                with.mul_f64(iters as f64 / n)
            }
        })
    });
    g.finish();
    report_paired(&diffs.into_inner());

    assert_eq!(
        (plain.hasher().runs(), recorded.hasher().runs()),
        runs,
        "every measured verify was warm"
    );
    let text = handle.render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("keyward_cache_total{result=\"hit\"}")),
        "the recorder counted the verifies"
    );
    c.final_summary();
}
