//! Infrastructure failures are logged at most once per interval per cause, with the count of
//! the suppressed ones; credential outcomes are never logged at ERROR.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use keyward::conformance::LogBuffer;
use keyward::{AuthError, Error, HashParams, KeyManager, ManualClock, StoreError, Timestamp};

fn manager(clock: &ManualClock) -> KeyManager {
    KeyManager::builder(keyward_memory::MemoryStore::new())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(Arc::new(clock.clone()))
        .failure_log_interval(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn store_down() -> Error {
    Error::Store(StoreError::backend("flaky", "connection refused"))
}

fn errors(logs: &LogBuffer) -> Vec<String> {
    logs.text()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_thousand_store_failures_are_one_line_then_one_line_with_the_count() {
    let logs = LogBuffer::new();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .finish();
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_000_000));
    let m = manager(&clock);
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..1000 {
            m.log_failure(&store_down(), None, "a key operation failed");
        }
        m.log_failure(&Error::Overloaded, None, "a key operation failed");
        for _ in 0..50 {
            m.log_failure(&Error::Auth(AuthError::Invalid), None, "rejected API key");
        }
        let lines = errors(&logs);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("cause=store") && lines[0].contains("suppressed=0"));
        assert!(lines[1].contains("cause=overloaded"), "{lines:#?}");

        clock.advance(Duration::from_secs(10));
        m.log_failure(&store_down(), None, "a key operation failed");
        let lines = errors(&logs);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[2].contains("suppressed=999"), "{lines:#?}");
    });
    // Credential outcomes went to DEBUG.
    assert_eq!(
        logs.text()
            .lines()
            .filter(|l| l.contains("DEBUG") && l.contains("rejected API key"))
            .count(),
        50
    );
}
