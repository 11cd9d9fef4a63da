//! The [`KeyManager`]: issue, verify, revoke, rotate, list and expire keys over any
//! [`KeyStore`], one concern a file (docs/ARCHITECTURE.md, "The manager"):
//!
//! - `model`: the values it takes and gives;
//! - `builder`: its settings;
//! - `admin`: issuing and the admin operations (rotate, revoke, update, list);
//! - `verify`: the verify pipeline over the verify cache;
//! - `usage`: event quotas, credits and usage reports;
//! - `audit`: the actor of a handle, the audit entries of the admin operations, reading
//!   and pruning the trail;
//! - `tenant`: the admin operations of one project (and environment), for multi-tenant hosts;
//! - `leak`: leak reports (a key found in public, e.g. by GitHub's secret scanning);
//! - `failures`: logging infrastructure failures without flooding;
//! - `events`: the event subscription and the hooks that emit lifecycle and threshold
//!   events;
//! - `background`: the tasks it runs (cache coherence, last-used batches), started and
//!   stopped in one place.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::Actor;
use crate::cache::VerifyCache;
use crate::hash::Hasher;
use crate::key::{Environment, Prefix};
use crate::metrics::{UsageMetrics, VerifyMetrics};
use crate::ratelimit::RateLimits;
use crate::store::KeyStore;
use crate::time::{Clock, Timestamp};

mod admin;
mod audit;
mod background;
mod builder;
mod events;
mod failures;
mod leak;
mod model;
mod tenant;
mod usage;
mod verify;

pub use builder::KeyManagerBuilder;
pub use leak::{LeakAction, LeakReport};
pub use model::{
    Identity, IssueRequest, IssuedKey, KeyInfo, KeyStatus, Requirements, RotateOptions, RotatedKey,
};
pub use tenant::{Tenant, TenantKeys};
pub use usage::{EventsAccepted, KeyUsage, KeyUsagePage, QUOTA_SETTING_TTL, UsageReport};

use background::{Background, LastUsedBatch};
use usage::ProjectQuotas;

/// Issues, verifies, revokes, rotates and lists keys. Cheap to clone (an `Arc` inside).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::{HashParams, IssueRequest, KeyManager, Requirements, AuthError, Error};
///
/// let store = keyward_memory::MemoryStore::new(); // or keyward-sqlite, keyward-postgres
/// let manager = KeyManager::builder(store)
///     .prefix("av".parse()?)
///     .serve("dev".parse()?)
///     .hash_params(HashParams::INSECURE_TEST_ONLY) // tests only: the default is OWASP's
///     .build()?;
///
/// let issued = manager
///     .issue(IssueRequest::new("web-app".parse()?, "dev".parse()?).scopes(["write"])?)
///     .await?;
/// let text = issued.key.expose_secret(); // show once
///
/// let who = manager.verify(text, &Requirements::scopes(["write"])?).await?;
/// assert_eq!(who.project.as_str(), "web-app");
///
/// let err = manager.verify(text, &Requirements::scopes(["read"])?).await.unwrap_err();
/// assert!(matches!(err, Error::Auth(AuthError::InsufficientScope { .. })));
///
/// manager.revoke(&who.id).await?;
/// assert!(matches!(
///     manager.verify(text, &Requirements::none()).await,
///     Err(Error::Auth(AuthError::Revoked { .. }))
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct KeyManager {
    inner: Arc<Inner>,
    /// Who this handle's changes are attributed to (see [`KeyManager::acting_as`]).
    actor: Actor,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    prefix: Prefix,
    environments: Vec<Environment>,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    cache: Option<Arc<VerifyCache>>,
    last_used: Arc<LastUsedBatch>,
    usage_flush_interval: Duration,
    /// The background tasks; dropping the last manager clone stops them.
    background: Background,
    rate_limiters: RateLimits,
    /// Project quotas read from the store, kept for [`QUOTA_SETTING_TTL`].
    project_quotas: ProjectQuotas,
    /// Which infrastructure failures are logged (see [`KeyManager::log_failure`]).
    failure_log: crate::throttle::LogThrottle,
    /// How long audit entries are kept (`None`: forever).
    audit_retention: Option<Duration>,
    // Metrics (issue 16): handles resolved when the manager is built (`keyward::metrics`).
    verify_metrics: VerifyMetrics,
    usage_metrics: UsageMetrics,
    // events: lifecycle and threshold events (manager/events.rs).
    /// Event delivery, settings and once-only claims.
    events: crate::events::EventHub,
    // metering: leased allotments of quota and credit units (core/src/meter/).
    meter: Arc<crate::meter::Meter>,
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("store", &self.inner.store)
            .field("prefix", &self.inner.prefix)
            .field("environments", &self.inner.environments)
            .field("hasher", &self.inner.hasher)
            .field("actor", &self.actor)
            .finish()
    }
}

impl KeyManager {
    /// Starts building a manager over `store`.
    pub fn builder<S: KeyStore>(store: S) -> KeyManagerBuilder {
        Self::builder_arc(Arc::new(store))
    }

    /// Starts building a manager over a shared store.
    pub fn builder_arc(store: Arc<dyn KeyStore>) -> KeyManagerBuilder {
        KeyManagerBuilder::new(store)
    }

    /// The store, as the manager calls it: wrapped so that every call is timed in
    /// `keyward_store_seconds` (`keyward::metrics`).
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    /// The prefix this manager issues and accepts.
    pub fn prefix(&self) -> Prefix {
        self.inner.prefix
    }

    /// The environments this manager accepts at verify.
    pub fn environments(&self) -> &[Environment] {
        &self.inner.environments
    }

    /// The hasher (its [`Hasher::runs`] counts Argon2 computations).
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The current time on the manager's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Drops this manager's cache entry of `id` (after a change made through it).
    fn invalidate(&self, id: &crate::key::KeyId) {
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(id);
        }
    }
}
