//! Test doubles: one forwarding wrapper, [`Wrapped`], and the hooks that make it a counting,
//! guard-holding or failing store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditQuery};
use crate::key::KeyId;
use crate::store::StoreError;
use crate::store::{
    AuditStore, ChangeEvent, Changes, Consumption, KeyChange, KeyRecord, KeyStore, Lease,
    ListQuery, RateCells, RecordStore, RotateOutcome, UsageBucket, UsageStore,
};
use crate::time::Timestamp;

/// Something run before every call of a [`Wrapped`] store: it may count the call, or fail it.
pub trait StoreHook: Send + Sync + 'static {
    /// Called with the method's name before the call is forwarded; an `Err` is returned
    /// instead of calling the inner store.
    ///
    /// # Errors
    /// Whatever the hook decides.
    fn before(&self, method: &'static str) -> Result<(), StoreError>;

    /// How long a call waits before it is forwarded and after the inner store answered
    /// (default: not at all). Lets a test drop a caller while its write has not started, or
    /// after it was made.
    fn delay(&self, method: &'static str) -> Delay {
        let _ = method;
        Delay::default()
    }

    /// The push change feed to hand out from `subscribe` instead of the inner store's
    /// (`None`, the default: forward to the inner store). Lets a test drive the feed.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<ChangeEvent>> {
        None
    }
}

/// Waits a [`StoreHook`] puts around one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delay {
    /// Before the call is forwarded.
    pub before: Duration,
    /// After the inner store answered, before the answer is returned.
    pub after: Duration,
}

/// A store that forwards every method to an inner store after a [`StoreHook`]. The one
/// forwarding wrapper for tests: [`CountingStore`], [`WithGuard`] and [`FailingStore`] are
/// hooks on it, so a method added to [`KeyStore`] is forwarded in one place.
pub struct Wrapped<H> {
    inner: Arc<dyn KeyStore>,
    hook: H,
}

impl<H> std::fmt::Debug for Wrapped<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrapped")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<H> Wrapped<H> {
    /// Wraps `inner` with `hook`.
    pub fn with_hook(inner: Arc<dyn KeyStore>, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The hook.
    pub fn hook(&self) -> &H {
        &self.hook
    }
}

impl<H: StoreHook> Wrapped<H> {
    /// One forwarded call: the hook's check, its delays around the inner call.
    async fn call<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.hook.before(method)?;
        let delay = self.hook.delay(method);
        if !delay.before.is_zero() {
            tokio::time::sleep(delay.before).await;
        }
        let answer = call.await;
        if !delay.after.is_zero() {
            tokio::time::sleep(delay.after).await;
        }
        answer
    }
}

#[async_trait]
impl<H: StoreHook> RecordStore for Wrapped<H> {
    async fn insert(&self, record: &KeyRecord, audit: &[AuditEntry]) -> Result<(), StoreError> {
        self.call("insert", self.inner.insert(record, audit)).await
    }
    async fn insert_many(
        &self,
        records: &[KeyRecord],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.call("insert_many", self.inner.insert_many(records, audit))
            .await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.call("get", self.inner.get(id)).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        self.call("list", self.inner.list(query)).await
    }
    async fn update(
        &self,
        id: &KeyId,
        change: &KeyChange,
        audit: &[AuditEntry],
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.call("update", self.inner.update(id, change, audit))
            .await
    }
    async fn rotate(
        &self,
        old: &KeyId,
        successor: &KeyRecord,
        grace_end: Timestamp,
        now: Timestamp,
        force: bool,
        audit: &[AuditEntry],
    ) -> Result<RotateOutcome, StoreError> {
        self.call(
            "rotate",
            self.inner
                .rotate(old, successor, grace_end, now, force, audit),
        )
        .await
    }
    async fn record_usage(&self, used: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        self.call("record_usage", self.inner.record_usage(used))
            .await
    }
    async fn changes_since(&self, revision: u64) -> Result<Changes, StoreError> {
        self.call("changes_since", self.inner.changes_since(revision))
            .await
    }
    async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<ChangeEvent>>, StoreError> {
        self.hook.before("subscribe")?;
        match self.hook.subscribe() {
            Some(events) => Ok(Some(events)),
            None => self.inner.subscribe().await,
        }
    }
}

#[async_trait]
impl<H: StoreHook> UsageStore for Wrapped<H> {
    async fn consume(
        &self,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Consumption, StoreError> {
        self.call("consume", self.inner.consume(bucket, amount, limit))
            .await
    }
    async fn release(&self, bucket: &UsageBucket, amount: u64) -> Result<(), StoreError> {
        self.call("release", self.inner.release(bucket, amount))
            .await
    }
    async fn lease(
        &self,
        bucket: &UsageBucket,
        want: u64,
        min: u64,
        limit: u64,
    ) -> Result<Lease, StoreError> {
        self.call("lease", self.inner.lease(bucket, want, min, limit))
            .await
    }
    async fn settle(
        &self,
        bucket: &UsageBucket,
        spent: u64,
        returned: u64,
    ) -> Result<Lease, StoreError> {
        self.call("settle", self.inner.settle(bucket, spent, returned))
            .await
    }
    async fn take_cells(&self, cells: &RateCells, want: u64) -> Result<u64, StoreError> {
        self.call("take_cells", self.inner.take_cells(cells, want))
            .await
    }
    async fn return_cells(&self, cells: &RateCells, n: u64) -> Result<(), StoreError> {
        self.call("return_cells", self.inner.return_cells(cells, n))
            .await
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    async fn usage(&self, bucket: &UsageBucket) -> Result<u64, StoreError> {
        self.call("usage", self.inner.usage(bucket)).await
    }
    async fn get_setting(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.call("get_setting", self.inner.get_setting(name)).await
    }
    async fn put_setting(
        &self,
        name: &str,
        value: Option<&serde_json::Value>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.call("put_setting", self.inner.put_setting(name, value, audit))
            .await
    }
}

#[async_trait]
impl<H: StoreHook> AuditStore for Wrapped<H> {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        self.call("append_audit", self.inner.append_audit(entry))
            .await
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.call("audit", self.inner.audit(query)).await
    }
    async fn prune_audit(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.call("prune_audit", self.inner.prune_audit(before))
            .await
    }
}

/// Counts calls (all, and `get`s), to prove a path does not touch the store.
#[derive(Debug, Default)]
pub struct CallCounter {
    calls: AtomicUsize,
    gets: AtomicUsize,
}

impl StoreHook for CallCounter {
    fn before(&self, method: &'static str) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if method == "get" {
            self.gets.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A store wrapper that counts calls, to prove a path does not touch the store.
pub type CountingStore = Wrapped<CallCounter>;

impl CountingStore {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn KeyStore>) -> Self {
        Self::with_hook(inner, CallCounter::default())
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.hook.calls.load(Ordering::SeqCst)
    }

    /// `get` calls made so far (the verify path's lookups).
    pub fn gets(&self) -> usize {
        self.hook.gets.load(Ordering::SeqCst)
    }
}

/// Keeps a value alive as long as the store (see [`WithGuard`]).
#[derive(Debug)]
pub struct Guard<G>(G);

impl<G: Send + Sync + 'static> StoreHook for Guard<G> {
    fn before(&self, _: &'static str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store that keeps a guard alive as long as itself (a temporary directory, a test schema
/// that is dropped on `Drop`…). The inner store drops first, then the guard. Use it in a
/// conformance factory instead of writing a wrapper that could miss a method.
pub type WithGuard<G> = Wrapped<Guard<G>>;

impl<G> WithGuard<G> {
    /// Wraps `inner`, keeping `guard` until the wrapper drops.
    pub fn new(inner: Arc<dyn KeyStore>, guard: G) -> Self {
        Self::with_hook(inner, Guard(guard))
    }
}

/// Fails every call with a backend error while switched down, like a database that went
/// away; forwards otherwise.
#[derive(Debug)]
pub struct DownSwitch {
    store: &'static str,
    down: Arc<AtomicBool>,
}

impl StoreHook for DownSwitch {
    fn before(&self, _: &'static str) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::backend(
                self.store,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
            ))
        } else {
            Ok(())
        }
    }
}

/// A store that can be switched to failing (see [`DownSwitch`]).
pub type FailingStore = Wrapped<DownSwitch>;

impl FailingStore {
    /// Wraps `inner`; while `down` is set every call fails as the store named `store`.
    pub fn new(inner: Arc<dyn KeyStore>, store: &'static str, down: Arc<AtomicBool>) -> Self {
        Self::with_hook(inner, DownSwitch { store, down })
    }
}
