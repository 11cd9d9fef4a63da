//! The manager's side of events ([`crate::events`]): the subscription, the lifecycle hooks
//! `admin.rs` calls, and the threshold checks `usage.rs` calls after each consume — integer
//! comparisons, and a spawned claim only when a threshold is reached.

use tokio::sync::broadcast;

use crate::error::Error;
use crate::events::{KeyEvent, QuotaScope, crossed, quota_level, sweep};
use crate::key::KeyId;
use crate::meter::Taken;
use crate::store::{Counter, EventClaim, KeyChange, KeyRecord, UsageBucket};
use crate::time::Timestamp;

use super::KeyManager;
use super::model::Identity;

impl KeyManager {
    /// Subscribes to this manager's [`KeyEvent`]s: every event emitted from now on.
    ///
    /// The receiver is a Tokio broadcast receiver holding up to
    /// [`EventConfig::capacity`](crate::EventConfig::capacity) events: a subscriber that falls
    /// further behind loses the oldest, and its next `recv` answers
    /// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) with how many (then goes
    /// on). Subscribing also starts the expiring-key sweep on the current runtime.
    ///
    /// Lifecycle events (`key.issued`, `key.revoked`, `key.rotated`) come from changes made
    /// through this manager only; thresholds and expiring keys are cluster-wide, each
    /// delivered by exactly one of the instances sharing the store (see [`crate::events`]).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use keyward::{HashParams, IssueRequest, KeyEvent, KeyManager};
    /// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
    ///     .hash_params(HashParams::INSECURE_TEST_ONLY)
    ///     .build()?;
    /// let mut events = manager.subscribe_events();
    /// let issued = manager.issue(IssueRequest::new("web-app".parse()?, "dev".parse()?)).await?;
    /// let event = events.recv().await?;
    /// assert!(matches!(event, KeyEvent::Issued { key_id, .. } if key_id == issued.record.id));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn subscribe_events(&self) -> broadcast::Receiver<KeyEvent> {
        let rx = self.inner.events.shared().bus.subscribe();
        self.start_event_sweep();
        rx
    }

    /// Looks for expiring keys now (the background sweep does every
    /// [`EventConfig::sweep_interval`](crate::EventConfig::sweep_interval)) and emits
    /// `key.expiring` for those not claimed yet by any instance; answers how many this call
    /// emitted. Nothing is claimed while nobody listens.
    ///
    /// # Errors
    /// [`Error::Store`] when listing the keys fails.
    pub async fn check_expiring(&self) -> Result<usize, Error> {
        if !self.inner.events.listening() {
            return Ok(0);
        }
        let shared = self.inner.events.shared();
        Ok(sweep(shared, &self.inner.store, self.now()).await?)
    }

    /// Starts the expiring-key sweep if it is not running (on the current Tokio runtime).
    pub(super) fn start_event_sweep(&self) {
        self.inner
            .events
            .start_sweep(&self.inner.store, &self.inner.clock);
    }

    /// Hook: a key was issued through this manager.
    pub(super) fn emit_issued(&self, r: &KeyRecord) {
        self.inner.events.emit(KeyEvent::Issued {
            key_id: r.id,
            project: r.project.clone(),
            environment: r.environment,
            name: r.name.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
        });
    }

    /// Hook: `change` was applied to `r` through this manager; emits `key.revoked` if this
    /// change is what revoked it (not for a key revoked before).
    pub(super) fn emit_updated(&self, change: &KeyChange, r: &KeyRecord) {
        if let (Some(at), Some(revoked_at)) = (change.revoke_at, r.revoked_at)
            && at == revoked_at
        {
            self.inner.events.emit(KeyEvent::Revoked {
                key_id: r.id,
                project: r.project.clone(),
                environment: r.environment,
                revoked_at,
            });
        }
    }

    /// Hook: `old` was rotated to `new` through this manager at `now`.
    pub(super) fn emit_rotated(
        &self,
        old: KeyId,
        new: &KeyRecord,
        now: Timestamp,
        grace_end: Timestamp,
    ) {
        self.inner.events.emit(KeyEvent::Rotated {
            key_id: old,
            new_key_id: new.id,
            project: new.project.clone(),
            environment: new.environment,
            rotated_at: now,
            grace_end,
            new_expires_at: new.expires_at,
        });
    }

    /// Hook after taking events from a quota of `limit` in `bucket`: claims and emits each
    /// threshold the count reached (`before < level ≤ used`), and 100 % on a refusal.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn watch_quota(
        &self,
        who: &Identity,
        scope: QuotaScope,
        bucket: &UsageBucket,
        limit: u64,
        resets_at: Timestamp,
        outcome: Option<Taken>,
    ) {
        let thresholds = self.inner.events.shared().config.thresholds();
        let reached = |percent: u8| match outcome {
            Some(Taken::Granted { before, used }) => {
                crossed(before, used, quota_level(limit, percent))
            }
            Some(Taken::Refused { .. }) => percent == 100,
            None => false,
        };
        let used = match outcome {
            Some(Taken::Granted { used, .. } | Taken::Refused { used }) => used.min(limit),
            None => return,
        };
        for &percent in thresholds {
            if !reached(percent) {
                continue;
            }
            let claim = match scope {
                QuotaScope::Key => EventClaim::KeyQuota {
                    id: who.id,
                    percent,
                },
                QuotaScope::Project => EventClaim::ProjectQuota {
                    project: &who.project,
                    percent,
                },
            };
            let event = KeyEvent::QuotaThreshold {
                scope,
                project: who.project.clone(),
                environment: who.environment,
                key_id: who.id,
                percent,
                used,
                limit,
                period_start: bucket.period_start,
                resets_at,
            };
            let claim = Counter::EventClaim(claim).bucket(bucket.period_start);
            self.inner
                .events
                .claim_later(&self.inner.store, claim, event);
        }
    }

    /// Hook after spending (or being refused) one credit of `limit` in `bucket`: claims and emits `credits.low`
    /// when the spend reached the configured level, or was refused.
    pub(super) fn watch_credits(
        &self,
        who: &Identity,
        bucket: &UsageBucket,
        limit: u64,
        resets_at: Option<Timestamp>,
        outcome: Taken,
    ) {
        let Some(level) = self.inner.events.shared().config.credits_level() else {
            return;
        };
        let used = match outcome {
            Taken::Granted { before, used } if crossed(before, used, level.used_level(limit)) => {
                used
            }
            Taken::Refused { used } => used,
            Taken::Granted { .. } => return,
        }
        .min(limit);
        let event = KeyEvent::CreditsLow {
            key_id: who.id,
            project: who.project.clone(),
            environment: who.environment,
            remaining: limit.saturating_sub(used),
            used,
            limit,
            period_start: bucket.period_start,
            resets_at,
        };
        let claim =
            Counter::EventClaim(EventClaim::KeyCreditsLow(who.id)).bucket(bucket.period_start);
        self.inner
            .events
            .claim_later(&self.inner.store, claim, event);
    }
}
