//! Usage limits through the manager: event quotas of projects and keys, credits spent per
//! verify, and usage reports. Every budget lives in the store's [`UsageStore`], so every
//! instance sharing the store shares one; units are taken through the meter (leased
//! allotments by default, docs/ARCHITECTURE.md, "Metering"); counters are named through
//! [`Counter`] only.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{AuthError, Error};
use crate::events::QuotaScope;
use crate::key::{Environment, KeyId};
use crate::meter::Taken;
use crate::metrics::QuotaKind;
use crate::name::Project;
use crate::quota::{Credits, Quota, QuotaUsage};
use crate::store::StoreError;
use crate::store::{Counter, KeyRecord, ListQuery, Setting, UsageBucket};
use crate::time::Timestamp;

use super::KeyManager;
use super::model::Identity;

/// How long a project's quota setting is cached: a changed limit takes effect within this
/// time in every instance (at once in the instance that changed it).
pub const QUOTA_SETTING_TTL: Duration = Duration::from_secs(10);

/// Project quotas read from the store, each kept for [`QUOTA_SETTING_TTL`]. A quick_cache map
/// with the fetch time in each entry, as the verify cache's entries carry their expiry.
pub(super) struct ProjectQuotas {
    map: quick_cache::sync::Cache<Project, (Option<Quota>, Instant)>,
}

impl ProjectQuotas {
    pub(super) fn new() -> Self {
        Self {
            map: quick_cache::sync::Cache::new(10_000),
        }
    }

    /// The cached setting (`Some(None)`: known to be unset), if fetched within the TTL.
    fn get(&self, project: &Project) -> Option<Option<Quota>> {
        let (quota, fetched) = self.map.get(project)?;
        (fetched.elapsed() < QUOTA_SETTING_TTL).then_some(quota)
    }

    fn insert(&self, project: &Project, quota: Option<Quota>) {
        self.map.insert(project.clone(), (quota, Instant::now()));
    }
}

/// The events a batch was counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventsAccepted {
    /// Events counted.
    pub accepted: u64,
    /// The project's quota after counting, if it has one.
    pub project: Option<QuotaUsage>,
    /// The key's own quota after counting, if it has one.
    pub key: Option<QuotaUsage>,
}

/// Usage of a project, or of one key, in the current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// The project.
    pub project: Project,
    /// The project's event quota, if set.
    pub project_quota: Option<QuotaUsage>,
    /// Per key: its own event quota and credits, where set.
    pub keys: Vec<KeyUsage>,
}

/// One page of [`KeyManager::key_usage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUsagePage {
    /// The keys of the page that have their own quota or credits.
    pub keys: Vec<KeyUsage>,
    /// Where the next page starts (`None`: this was the last).
    pub next: Option<(Timestamp, KeyId)>,
}

/// One key's usage in the current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    /// The key's id.
    pub id: KeyId,
    /// The key's own event quota.
    pub quota: Option<QuotaUsage>,
    /// The key's credits.
    pub credits: Option<QuotaUsage>,
}

/// A key's credit budget in the current period: its bucket, the limit, and when it refills.
struct CreditWindow {
    bucket: UsageBucket,
    limit: u64,
    resets_at: Option<Timestamp>,
}

impl KeyManager {
    /// Spends one of a proven key's credits in the store.
    ///
    /// # Errors
    /// [`AuthError::CreditsExhausted`]; [`Error::Store`] when the store fails.
    pub(super) async fn spend_credit(&self, who: &Identity, credits: Credits) -> Result<(), Error> {
        let window = self.credit_window(who.id, who.created_at, credits);
        let outcome = self.take(&window.bucket, 1, window.limit).await?;
        self.watch_credits(who, &window.bucket, window.limit, window.resets_at, outcome);
        match outcome {
            Taken::Granted { .. } => {
                self.inner.usage_metrics.credits_spent.increment(1);
                Ok(())
            }
            Taken::Refused { .. } => {
                self.inner.usage_metrics.refused(QuotaKind::Credits);
                Err(AuthError::CreditsExhausted {
                    id: who.id,
                    resets_at: window.resets_at,
                }
                .into())
            }
        }
    }

    /// The credit budget of a key created at `created_at`, now: without refill one bucket
    /// for the key's life; with a refill, one per period, the first of which (the one the
    /// key was created in) holds the initial amount.
    fn credit_window(&self, id: KeyId, created_at: Timestamp, credits: Credits) -> CreditWindow {
        let counter = Counter::KeyCredits(id);
        match credits.refill {
            None => CreditWindow {
                bucket: counter.bucket(Timestamp::from_unix_millis(0)),
                limit: credits.amount,
                resets_at: None,
            },
            Some(refill) => {
                let (start, end) = refill.period.window(self.now());
                CreditWindow {
                    bucket: counter.bucket(start),
                    limit: if created_at >= start {
                        credits.amount
                    } else {
                        refill.amount
                    },
                    resets_at: Some(end),
                }
            }
        }
    }

    /// Takes `amount` units of `bucket` within `limit` through the meter.
    async fn take(&self, bucket: &UsageBucket, amount: u64, limit: u64) -> Result<Taken, Error> {
        Ok(self
            .inner
            .meter
            .take(&self.inner.store, bucket, amount, limit)
            .await?)
    }

    /// A bucket's count as this instance sees it: what the store holds settled, plus what this
    /// instance granted and has not settled yet (other instances' unsettled grants arrive
    /// within their settle interval).
    async fn used(&self, bucket: &UsageBucket) -> Result<u64, Error> {
        Ok(self.inner.meter.used(&self.inner.store, bucket).await?)
    }

    /// The bucket of `counter` in the current period of `quota`, and when that period ends.
    fn event_bucket(&self, counter: Counter<'_>, quota: Quota) -> (UsageBucket, Timestamp) {
        let (start, end) = quota.period.window(self.now());
        (counter.bucket(start), end)
    }

    /// Counts `events` against the key's own quota and its project's quota, whose budgets
    /// live in the store and are shared by every instance (with [`Metering::Leased`], the
    /// default, from units this instance reserved beforehand: docs/ARCHITECTURE.md,
    /// "Metering"). A batch that would cross either limit is refused whole with
    /// [`AuthError::QuotaExceeded`] (HTTP 429), and nothing of it is counted.
    ///
    /// [`Metering::Leased`]: crate::Metering::Leased
    ///
    /// # Errors
    /// [`Error::Auth`] with `QuotaExceeded`; [`Error::Store`] when the store fails.
    pub async fn consume_events(
        &self,
        who: &Identity,
        events: u64,
    ) -> Result<EventsAccepted, Error> {
        let mut accepted = EventsAccepted {
            accepted: events,
            project: None,
            key: None,
        };
        if events == 0 {
            return Ok(accepted);
        }
        let mut key_bucket = None;
        if let Some(quota) = who.limits.quota {
            let (bucket, end) = self.event_bucket(Counter::KeyEvents(who.id), quota);
            let outcome = self.take(&bucket, events, quota.limit).await?;
            self.watch_quota(
                who,
                QuotaScope::Key,
                &bucket,
                quota.limit,
                end,
                Some(outcome),
            );
            match outcome {
                Taken::Granted { used, .. } => {
                    accepted.key = Some(QuotaUsage::new(
                        quota.limit,
                        used,
                        bucket.period_start,
                        Some(end),
                    ));
                    key_bucket = Some(bucket);
                }
                Taken::Refused { used } => {
                    self.inner.usage_metrics.refused(QuotaKind::KeyQuota);
                    return Err(AuthError::QuotaExceeded {
                        scope: "key",
                        limit: quota.limit,
                        used,
                        requested: events,
                        resets_at: end,
                    }
                    .into());
                }
            }
        }
        if let Some(quota) = self.project_quota(&who.project).await? {
            let (bucket, end) = self.event_bucket(Counter::ProjectEvents(&who.project), quota);
            let consumed = self.take(&bucket, events, quota.limit).await;
            let outcome = consumed.as_ref().ok().copied();
            self.watch_quota(who, QuotaScope::Project, &bucket, quota.limit, end, outcome);
            match consumed {
                Ok(Taken::Granted { used, .. }) => {
                    accepted.project = Some(QuotaUsage::new(
                        quota.limit,
                        used,
                        bucket.period_start,
                        Some(end),
                    ));
                }
                refused_or_failed => {
                    // Give the key's units back: the batch is refused whole.
                    if let Some(kb) = &key_bucket
                        && let Err(e) = self
                            .inner
                            .meter
                            .give_back(&self.inner.store, kb, events)
                            .await
                    {
                        tracing::warn!(key.id = %who.id, error = %e, "could not give back key quota units");
                    }
                    return match refused_or_failed? {
                        Taken::Refused { used } => {
                            self.inner.usage_metrics.refused(QuotaKind::ProjectQuota);
                            Err(AuthError::QuotaExceeded {
                                scope: "project",
                                limit: quota.limit,
                                used,
                                requested: events,
                                resets_at: end,
                            }
                            .into())
                        }
                        Taken::Granted { .. } => {
                            self.inner.usage_metrics.consumed_events.increment(events);
                            Ok(accepted)
                        }
                    };
                }
            }
        }
        self.inner.usage_metrics.consumed_events.increment(events);
        Ok(accepted)
    }

    /// Sets (or, with `None`, removes) a project's event quota, shared by all its keys, with
    /// a `quota_changed` audit entry (by this handle's actor, summary `{"quota": …}`) in the
    /// same store transaction.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn set_project_quota(
        &self,
        project: &Project,
        quota: Option<Quota>,
    ) -> Result<(), Error> {
        let value = quota
            .map(|q| serde_json::to_value(q).map_err(|e| StoreError::corrupt("settings", e)))
            .transpose()?;
        let entry = self.quota_entry(project, quota.as_ref());
        self.inner
            .store
            .put_setting(
                &Setting::ProjectQuota(project).name(),
                value.as_ref(),
                std::slice::from_ref(&entry),
            )
            .await?;
        self.inner.project_quotas.insert(project, quota);
        Ok(())
    }

    /// A project's event quota (cached for [`QUOTA_SETTING_TTL`]).
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails or the setting is unreadable.
    pub async fn project_quota(&self, project: &Project) -> Result<Option<Quota>, Error> {
        if let Some(q) = self.inner.project_quotas.get(project) {
            return Ok(q);
        }
        let quota = match self
            .inner
            .store
            .get_setting(&Setting::ProjectQuota(project).name())
            .await?
        {
            Some(v) => Some(
                serde_json::from_value::<Quota>(v)
                    .map_err(|e| StoreError::corrupt("settings", e))?,
            ),
            None => None,
        };
        self.inner.project_quotas.insert(project, quota);
        Ok(quota)
    }

    /// Usage in the current period of a project's quota and of its keys' quotas and credits.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn usage(&self, project: &Project) -> Result<UsageReport, Error> {
        self.usage_in(project, None).await
    }

    /// [`KeyManager::usage`] with the keys limited to one environment (`None`: all).
    pub(super) async fn usage_in(
        &self,
        project: &Project,
        environment: Option<Environment>,
    ) -> Result<UsageReport, Error> {
        let project_quota = self.project_usage(project).await?;
        let mut keys = Vec::new();
        let mut query = ListQuery {
            project: Some(project.clone()),
            environment,
            limit: 500,
            ..ListQuery::default()
        };
        loop {
            let page = self.key_usage(&query).await?;
            keys.extend(page.keys);
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        Ok(UsageReport {
            project: project.clone(),
            project_quota,
            keys,
        })
    }

    /// Where a project's event quota stands in the current period (`None`: no quota).
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn project_usage(&self, project: &Project) -> Result<Option<QuotaUsage>, Error> {
        let Some(q) = self.project_quota(project).await? else {
            return Ok(None);
        };
        let (bucket, end) = self.event_bucket(Counter::ProjectEvents(project), q);
        let used = self.used(&bucket).await?;
        Ok(Some(QuotaUsage::new(
            q.limit,
            used,
            bucket.period_start,
            Some(end),
        )))
    }

    /// The own quotas and credits of one page of keys: those of the keys `query` lists (at
    /// most `query.limit`) that have either. Memory and work stay at one page however many
    /// keys the project has; pass [`KeyUsagePage::next`] as `query.after` for the next page.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn key_usage(&self, query: &ListQuery) -> Result<KeyUsagePage, Error> {
        let page = self.inner.store.list(query).await?;
        let next = (page.len() >= query.limit as usize)
            .then(|| page.last().map(|r| (r.created_at, r.id)))
            .flatten();
        let mut keys = Vec::new();
        for r in &page {
            if r.limits.quota.is_some() || r.limits.credits.is_some() {
                keys.push(self.key_usage_of(r).await?);
            }
        }
        Ok(KeyUsagePage { keys, next })
    }

    /// The own quota and credits of one key (`None` for either it does not have).
    pub(super) async fn key_usage_of(&self, r: &KeyRecord) -> Result<KeyUsage, Error> {
        let quota = match r.limits.quota {
            Some(q) => {
                let (bucket, end) = self.event_bucket(Counter::KeyEvents(r.id), q);
                Some(QuotaUsage::new(
                    q.limit,
                    self.used(&bucket).await?,
                    bucket.period_start,
                    Some(end),
                ))
            }
            None => None,
        };
        let credits = match r.limits.credits {
            Some(c) => {
                let window = self.credit_window(r.id, r.created_at, c);
                Some(QuotaUsage::new(
                    window.limit,
                    self.used(&window.bucket).await?,
                    window.bucket.period_start,
                    window.resets_at,
                ))
            }
            None => None,
        };
        Ok(KeyUsage {
            id: r.id,
            quota,
            credits,
        })
    }
}
