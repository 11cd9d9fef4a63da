//! The expiring-key sweep: pages through every key in the store and emits `key.expiring`
//! once per key and expiry instant, claimed in the store, for live keys that expire within
//! [`EventConfig::expiring_within`](crate::EventConfig::expiring_within).

use std::sync::Arc;

use crate::store::{Counter, EventClaim, KeyRecord, KeyStore, ListQuery, StoreError, detached};
use crate::time::{Clock, Timestamp};

use super::event::KeyEvent;
use super::hub::Shared;

/// Keys read per store call.
const PAGE: u32 = 500;

/// Sweeps every `sweep_interval` (the first at once) while anyone listens.
pub(crate) async fn run_sweeps(
    shared: Arc<Shared>,
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
) {
    let mut tick = tokio::time::interval(shared.config.sweep_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !shared.bus.listening() {
            continue;
        }
        if let Err(e) = sweep(&shared, &store, clock.now()).await {
            tracing::warn!(error = %e, "could not look for expiring keys; will retry");
        }
    }
}

/// One sweep at `now`: emits the expiring keys not claimed yet; answers how many this
/// instance emitted. Each claim runs to its end on its own task ([`detached`]): a sweep
/// stopped at shutdown never leaves an event claimed in the store and not emitted.
pub(crate) async fn sweep(
    shared: &Arc<Shared>,
    store: &Arc<dyn KeyStore>,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let Some(within) = shared.config.expiring_window() else {
        return Ok(0);
    };
    let horizon = now.saturating_add(within);
    let mut query = ListQuery {
        limit: PAGE,
        ..ListQuery::default()
    };
    let mut emitted = 0;
    loop {
        let page = store.list(&query).await?;
        for r in &page {
            if let Some(expires_at) = expiring(r, now, horizon) {
                let bucket = Counter::EventClaim(EventClaim::KeyExpiring(r.id)).bucket(expires_at);
                let event = KeyEvent::Expiring {
                    key_id: r.id,
                    project: r.project.clone(),
                    environment: r.environment,
                    expires_at,
                };
                let (shared, store) = (Arc::clone(shared), Arc::clone(store));
                let claimed = detached(async move {
                    Ok(shared.claim_and_emit(store.as_ref(), bucket, event).await)
                })
                .await;
                if claimed.unwrap_or(false) {
                    emitted += 1;
                }
            }
        }
        match page.last() {
            Some(last) if page.len() >= PAGE as usize => {
                query.after = Some((last.created_at, last.id))
            }
            _ => return Ok(emitted),
        }
    }
}

/// The expiry of a live key that expires in `(now, horizon]`. Revoked keys and rotated keys
/// (whose successor exists; their expiry is the grace end) are not reported.
fn expiring(r: &KeyRecord, now: Timestamp, horizon: Timestamp) -> Option<Timestamp> {
    let at = r.expires_at?;
    (r.revoked_at.is_none() && r.rotated_to.is_none() && at > now && at <= horizon).then_some(at)
}
