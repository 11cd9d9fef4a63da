//! The [`Meter`], the pool of allotments: every bucket's [`Allotment`] in this instance, the
//! lease and edge paths, and settling (on a timer, on `flush_usage`, at shutdown).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

use crate::store::{Consumption, KeyStore, Lease, StoreError, UsageBucket, detached};
use crate::throttle::{Cause, LogThrottle};

use super::allotment::{Allotment, Ordinal};
use super::config::{LeaseConfig, Metering};

/// A unit taken or refused: `used` is the bucket's count with this grant (with leases, the
/// grant's place among the reserved units), `before` the count a threshold check compares
/// with (reached when `before < level ≤ used`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Granted.
    Granted {
        /// The count before, for threshold checks.
        before: u64,
        /// The count with this grant.
        used: u64,
    },
    /// Refused: nothing was counted; `used` is what the budget holds spent or reserved.
    Refused {
        /// Spent or reserved in the bucket.
        used: u64,
    },
}

/// One bucket's allotment and the lock that lets one task at a time lease for it.
#[derive(Debug)]
struct Slot {
    state: Mutex<Allotment>,
    refill: tokio::sync::Mutex<()>,
    /// Held while granted units are on their way to the store (taken out of `unsettled`,
    /// not yet in `used`), so that a report or a give-back never sees them in neither place.
    settling: tokio::sync::Mutex<()>,
}

/// Quota and credit units of this instance (docs/ARCHITECTURE.md, "Metering").
#[derive(Debug)]
pub(crate) struct Meter {
    config: Option<LeaseConfig>,
    slots: RwLock<HashMap<UsageBucket, Arc<Slot>>>,
    /// After shutdown: every take goes to the store directly.
    closed: AtomicBool,
    /// The settle timer, started by the first lease.
    ticker: Mutex<Option<tokio::task::AbortHandle>>,
    /// Settle failures are logged at most once per interval.
    log: LogThrottle,
}

type Store = Arc<dyn KeyStore>;

impl Meter {
    pub(crate) fn new(metering: Metering, log: LogThrottle) -> Self {
        Self {
            config: match metering {
                Metering::Leased(c) => Some(c),
                Metering::Direct => None,
            },
            slots: RwLock::new(HashMap::new()),
            closed: AtomicBool::new(false),
            ticker: Mutex::new(None),
            log,
        }
    }

    /// Takes `amount` units of `bucket` within `limit`: all or none.
    pub(crate) async fn take(
        self: &Arc<Self>,
        store: &Store,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
    ) -> Result<Taken, StoreError> {
        let Some(config) = self.config.filter(|_| !self.closed.load(Ordering::Acquire)) else {
            return direct(store, bucket, amount, limit).await;
        };
        let slot = self.slot(bucket, limit);
        {
            let mut a = lock(&slot.state);
            if let Some(ord) = a.grant(amount, limit, Instant::now()) {
                return Ok(granted(ord));
            }
            if let Some(free) = a.known_refusal(amount, limit, config.idle_return_after()) {
                return Ok(Taken::Refused {
                    used: limit.saturating_sub(free),
                });
            }
        }
        self.start_ticker(store, config);
        let refilling = slot.refill.lock().await;
        // Another task may have leased while this one waited.
        if let Some(ord) = lock(&slot.state).grant(amount, limit, Instant::now()) {
            return Ok(granted(ord));
        }
        let refilled = detached(refill(
            Arc::clone(&slot),
            Arc::clone(store),
            bucket.clone(),
            amount,
            limit,
            config,
        ))
        .await?;
        drop(refilling);
        let taken = match refilled {
            Some(ord) => Ok(granted(ord)),
            None => {
                self.at_the_edge(store, &slot, bucket, amount, limit, config)
                    .await
            }
        };
        self.settle_if_closed(store, &slot, bucket).await;
        taken
    }

    /// A take that leased while [`Meter::close`] ran (it passed the closed check before):
    /// nothing settles after close, so this take settles its allotment and gives back what it
    /// holds itself.
    async fn settle_if_closed(&self, store: &Store, slot: &Arc<Slot>, bucket: &UsageBucket) {
        if !self.closed.load(Ordering::Acquire) {
            return;
        }
        let settled = detached(settle_one(
            Arc::clone(slot),
            Arc::clone(store),
            bucket.clone(),
            Returning::All,
            std::time::Duration::ZERO,
        ))
        .await;
        if let Err(e) = settled
            && let Some(suppressed) = self.log.admit(Cause::Store)
        {
            tracing::warn!(error = %e, suppressed, "could not settle leased quota units after shutdown");
        }
    }

    /// A request the free budget cannot hold (this instance gave back what it held): leases
    /// exactly the request while other instances hold units (which they spend or give back
    /// within a settle interval), up to the edge wait; refuses after that.
    async fn at_the_edge(
        &self,
        store: &Store,
        slot: &Arc<Slot>,
        bucket: &UsageBucket,
        amount: u64,
        limit: u64,
        config: LeaseConfig,
    ) -> Result<Taken, StoreError> {
        let deadline = Instant::now() + config.edge_wait_time();
        let poll = std::time::Duration::from_millis(5);
        loop {
            let lease = match detached(lease_exactly(
                Arc::clone(slot),
                Arc::clone(store),
                bucket.clone(),
                amount,
                limit,
            ))
            .await?
            {
                Ok(ord) => return Ok(granted(ord)),
                Err(lease) => lease,
            };
            {
                let mut a = lock(&slot.state);
                // Units other instances hold (this one's granted, unsettled units are in
                // `leased` too, but never come back).
                let others = lease
                    .leased
                    .saturating_sub(a.unsettled.saturating_add(a.have));
                let stalled = a.stalled_at == Some(lease.leased);
                // Even if every unit held elsewhere came back, the request would not fit.
                let hopeless = amount
                    > limit
                        .saturating_sub(lease.reserved())
                        .saturating_add(others);
                if others == 0 || hopeless || stalled || Instant::now() >= deadline {
                    if others > 0 && !stalled {
                        a.stalled_at = Some(lease.leased);
                    }
                    if others == 0 {
                        a.known_free =
                            Some((limit.saturating_sub(lease.reserved()), Instant::now()));
                    }
                    return Ok(Taken::Refused {
                        used: lease.reserved(),
                    });
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Gives back `amount` units granted for a batch another limit then refused.
    pub(crate) async fn give_back(
        &self,
        store: &Store,
        bucket: &UsageBucket,
        amount: u64,
    ) -> Result<(), StoreError> {
        let Some(slot) = self.existing(bucket) else {
            return store.release(bucket, amount).await;
        };
        let (store, bucket) = (Arc::clone(store), bucket.clone());
        detached(async move {
            let _settling = slot.settling.lock().await;
            let rest = {
                let mut a = lock(&slot.state);
                let local = amount.min(a.unsettled);
                a.ungrant(local);
                amount - local
            };
            // Units already settled (or consumed directly) are in the store's count.
            if rest > 0 {
                store.release(&bucket, rest).await?;
            }
            Ok(())
        })
        .await
    }

    /// A bucket's count as this instance sees it: the store's settled count plus what this
    /// instance granted and has not settled (never a unit on its way counted twice or not at
    /// all).
    pub(crate) async fn used(
        &self,
        store: &Store,
        bucket: &UsageBucket,
    ) -> Result<u64, StoreError> {
        let Some(slot) = self.existing(bucket) else {
            return store.usage(bucket).await;
        };
        let _settling = slot.settling.lock().await;
        let settled = store.usage(bucket).await?;
        Ok(settled.saturating_add(lock(&slot.state).unsettled))
    }

    /// Settles every granted unit; with `give_back`, returns every held unit too (and with
    /// `idle_only`, only those of allotments idle for a settle interval). Drops empty,
    /// idle allotments. Answers the first error; units that failed to settle are kept.
    pub(crate) async fn settle(
        &self,
        store: &Store,
        give_back: Returning,
    ) -> Result<(), StoreError> {
        let slots: Vec<(UsageBucket, Arc<Slot>)> = match self.slots.read() {
            Ok(map) => map
                .iter()
                .map(|(b, s)| (b.clone(), Arc::clone(s)))
                .collect(),
            Err(_) => Vec::new(),
        };
        let idle_after = self
            .config
            .map(|c| c.idle_return_after())
            .unwrap_or_default();
        let mut first_error = None;
        for (bucket, slot) in slots {
            let settled = detached(settle_one(
                slot,
                Arc::clone(store),
                bucket,
                give_back,
                idle_after,
            ))
            .await;
            if let Err(e) = settled {
                first_error.get_or_insert(e);
            }
        }
        self.drop_idle(idle_after * 4);
        match first_error {
            None => Ok(()),
            Some(e) => {
                if let Some(suppressed) = self.log.admit(Cause::Store) {
                    tracing::warn!(error = %e, suppressed, "could not settle leased quota units; they are kept and settled at the next try");
                }
                Err(e)
            }
        }
    }

    /// Shutdown: no more leases; every granted unit settled and every held one given back.
    pub(crate) async fn close(&self, store: &Store) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut t) = self.ticker.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
        self.settle(store, Returning::All).await
    }

    fn slot(&self, bucket: &UsageBucket, limit: u64) -> Arc<Slot> {
        if let Some(slot) = self.existing(bucket) {
            return slot;
        }
        let mut map = match self.slots.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(map.entry(bucket.clone()).or_insert_with(|| {
            Arc::new(Slot {
                state: Mutex::new(Allotment::new(limit, Instant::now())),
                refill: tokio::sync::Mutex::new(()),
                settling: tokio::sync::Mutex::new(()),
            })
        }))
    }

    fn existing(&self, bucket: &UsageBucket) -> Option<Arc<Slot>> {
        self.slots.read().ok()?.get(bucket).cloned()
    }

    /// Forgets allotments with nothing held or owed, idle for `idle`, that no task holds.
    fn drop_idle(&self, idle: std::time::Duration) {
        let Ok(mut map) = self.slots.write() else {
            return;
        };
        map.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || {
                let a = lock(&slot.state);
                !(a.is_empty() && a.last_grant.elapsed() >= idle)
            }
        });
    }

    /// Starts the settle timer once (on the current Tokio runtime). It holds the meter
    /// weakly, so a dropped manager stops it.
    fn start_ticker(self: &Arc<Self>, store: &Store, config: LeaseConfig) {
        let Ok(mut ticker) = self.ticker.lock() else {
            return;
        };
        if ticker.is_some() || self.closed.load(Ordering::Acquire) {
            return;
        }
        let (meter, store) = (Arc::downgrade(self), Arc::clone(store));
        let task = tokio::spawn(settle_every(meter, store, config));
        *ticker = Some(task.abort_handle());
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Ok(mut t) = self.ticker.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
    }
}

/// What [`Meter::settle`] gives back of the units held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returning {
    /// Nothing: only granted units are settled.
    Nothing,
    /// The units of allotments idle for a settle interval.
    Idle,
    /// Every unit (shutdown).
    All,
}

async fn settle_every(meter: Weak<Meter>, store: Store, config: LeaseConfig) {
    let mut tick = tokio::time::interval(config.settle_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(meter) = meter.upgrade() else {
            return;
        };
        // Errors are logged per bucket and retried at the next tick.
        let _ = meter.settle(&store, Returning::Idle).await;
    }
}

/// Leases for `slot` (giving back first what was leased under another limit) and grants
/// `amount` from it. When even that is not free, gives back everything held and answers
/// `None`: the edge. Runs [`detached`]: units taken out of the allotment reach the store.
async fn refill(
    slot: Arc<Slot>,
    store: Store,
    bucket: UsageBucket,
    amount: u64,
    limit: u64,
    config: LeaseConfig,
) -> Result<Option<Ordinal>, StoreError> {
    let (want, min, give_back) = {
        let mut a = lock(&slot.state);
        // Units leased under another limit go back before leasing under this one.
        let give_back = if a.limit == limit {
            0
        } else {
            std::mem::take(&mut a.have)
        };
        let (want, min) = a.next_lease(
            amount,
            Instant::now(),
            config.horizon_length(),
            config.max_chunk_units(),
        );
        (want, min, give_back)
    };
    return_held(&slot, &store, &bucket, give_back).await?;
    let lease = store.lease(&bucket, want, min, limit).await?;
    let held = {
        let now = Instant::now();
        let mut a = lock(&slot.state);
        a.leased(&lease, limit, now);
        if let Some(ord) = a.grant(amount, limit, now) {
            return Ok(Some(ord));
        }
        // The free budget is smaller than the request: the edge.
        std::mem::take(&mut a.have)
    };
    return_held(&slot, &store, &bucket, held).await?;
    Ok(None)
}

/// Gives `held` units (taken out of the allotment) back to the store; on failure they are
/// held again.
async fn return_held(
    slot: &Slot,
    store: &Store,
    bucket: &UsageBucket,
    held: u64,
) -> Result<(), StoreError> {
    if held > 0
        && let Err(e) = store.settle(bucket, 0, held).await
    {
        lock(&slot.state).have += held;
        return Err(e);
    }
    Ok(())
}

/// At the edge: leases exactly `amount` and grants it, or answers the store's counts. Runs
/// [`detached`]: a lease granted is granted here.
async fn lease_exactly(
    slot: Arc<Slot>,
    store: Store,
    bucket: UsageBucket,
    amount: u64,
    limit: u64,
) -> Result<Result<Ordinal, Lease>, StoreError> {
    let lease = store.lease(&bucket, amount, amount, limit).await?;
    if lease.granted != amount {
        return Ok(Err(lease));
    }
    let mut a = lock(&slot.state);
    a.stalled_at = None;
    a.known_free = None;
    Ok(Ok(a.count(amount, Instant::now())))
}

/// Settles one allotment under its `settling` lock (see [`Meter::settle`]). Runs
/// [`detached`]: units taken out of the allotment reach the store, or are put back.
async fn settle_one(
    slot: Arc<Slot>,
    store: Store,
    bucket: UsageBucket,
    give_back: Returning,
    idle_after: std::time::Duration,
) -> Result<(), StoreError> {
    let _settling = slot.settling.lock().await;
    let (spent, returned) = {
        let mut a = lock(&slot.state);
        let returned = match give_back {
            Returning::All => std::mem::take(&mut a.have),
            Returning::Idle if a.last_grant.elapsed() >= idle_after => std::mem::take(&mut a.have),
            Returning::Idle | Returning::Nothing => 0,
        };
        (std::mem::take(&mut a.unsettled), returned)
    };
    if spent == 0 && returned == 0 {
        return Ok(());
    }
    if let Err(e) = store.settle(&bucket, spent, returned).await {
        let mut a = lock(&slot.state);
        a.unsettled += spent;
        a.have += returned;
        return Err(e);
    }
    Ok(())
}

async fn direct(
    store: &Store,
    bucket: &UsageBucket,
    amount: u64,
    limit: u64,
) -> Result<Taken, StoreError> {
    Ok(match store.consume(bucket, amount, limit).await? {
        Consumption::Granted { used } => Taken::Granted {
            before: used.saturating_sub(amount),
            used,
        },
        Consumption::Refused { used } => Taken::Refused { used },
    })
}

fn granted(ord: Ordinal) -> Taken {
    Taken::Granted {
        before: ord.before,
        used: ord.used,
    }
}

/// Locks an allotment; a poisoned lock still holds consistent counts (every update is a
/// few integer writes), so it is used as is.
fn lock(m: &Mutex<Allotment>) -> std::sync::MutexGuard<'_, Allotment> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
