//! Store writes that run to their end once started. A caller may be dropped at any await: a
//! client hangs up, a timer is stopped at shutdown. A write whose units were already taken
//! out of memory (a settle, a give-back, a lease about to be held) must then neither be cut
//! off half way nor lose what it carries, so it runs as its own task and the caller only waits
//! for it (docs/ARCHITECTURE.md, "Metering").

use std::future::Future;

use super::StoreError;

/// Runs `write` on its own Tokio task and waits for it: dropping the returned future does not
/// stop `write`. Without a Tokio runtime it runs in place.
pub(crate) async fn detached<T, F>(write: F) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
    T: Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return write.await;
    };
    match runtime.spawn(write).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::backend(
            "keyward",
            if e.is_panic() {
                "a store write panicked"
            } else {
                "a store write was cancelled: the runtime is shutting down"
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_dropped_caller_does_not_stop_the_write() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let caller = tokio::spawn(detached(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::Release);
            Ok::<_, StoreError>(())
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        caller.abort();
        assert!(caller.await.is_err_and(|e| e.is_cancelled()));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(done.load(Ordering::Acquire), "the write ran to its end");
    }

    #[tokio::test]
    async fn a_panicking_write_is_a_store_error() {
        let answer: Result<(), StoreError> = detached(async { panic!("boom") }).await;
        let message = answer.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("panicked"), "{message}");
    }
}
