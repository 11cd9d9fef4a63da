//! Tenant-scoped admin operations: a [`TenantKeys`] handle bound to one project, and
//! optionally one environment of it, sees and changes only the keys inside that binding.
//! A key outside it is [`Error::NotFound`], the same error, byte for byte, as an id that does
//! not exist, so a caller cannot learn which ids exist elsewhere (docs/ARCHITECTURE.md, "The
//! manager").

use std::time::Duration;

use crate::audit::{Actor, AuditEntry, AuditQuery};
use crate::error::Error;
use crate::invalid::{InvalidValue, ValueKind};
use crate::key::{Environment, KeyId};
use crate::name::Project;
use crate::store::{KeyChange, KeyRecord, ListQuery};
use crate::time::Timestamp;

use super::KeyManager;
use super::model::{IssueRequest, IssuedKey, KeyInfo, RotateOptions, RotatedKey};
use super::usage::{KeyUsage, UsageReport};

/// What an admin may manage: one project, and optionally one environment of it.
///
/// ```
/// use keyward::Tenant;
/// let t = Tenant::new("web-app".parse()?).with_environment("prd".parse()?);
/// assert_eq!(t.to_string(), "project 'web-app', environment 'prd'");
/// # Ok::<(), keyward::InvalidValue>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant {
    /// The project.
    pub project: Project,
    /// The one environment, or `None` for every environment of the project.
    pub environment: Option<Environment>,
}

impl Tenant {
    /// Every environment of `project`.
    pub fn new(project: Project) -> Self {
        Self {
            project,
            environment: None,
        }
    }

    /// Only `environment` of the project.
    pub fn with_environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Whether a key of `project` and `environment` is inside this tenant.
    pub fn contains(&self, project: &Project, environment: Environment) -> bool {
        self.project == *project && self.environment.is_none_or(|e| e == environment)
    }

    fn holds(&self, record: &KeyRecord) -> bool {
        self.contains(&record.project, record.environment)
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "project '{}'", self.project)?;
        if let Some(e) = self.environment {
            write!(f, ", environment '{e}'")?;
        }
        Ok(())
    }
}

/// A [`KeyManager`] seen through a [`Tenant`]: every admin operation a service offers its
/// customers, limited to the keys inside the tenant. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keyward::{Error, HashParams, IssueRequest, KeyManager, Tenant};
/// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
///     .serve("dev".parse()?)
///     .hash_params(HashParams::INSECURE_TEST_ONLY)
///     .build()?;
/// let ours = manager.tenant(Tenant::new("web-app".parse()?));
/// let theirs = manager.tenant(Tenant::new("other-app".parse()?));
/// let issued = ours.issue(IssueRequest::new("web-app".parse()?, "dev".parse()?)).await?;
/// let id = issued.record.id;
/// assert!(ours.get(&id).await?.is_some());
/// assert!(theirs.get(&id).await?.is_none());                 // invisible elsewhere
/// assert!(matches!(theirs.revoke(&id).await, Err(Error::NotFound(_)))); // and untouchable
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantKeys {
    manager: KeyManager,
    tenant: Tenant,
}

impl KeyManager {
    /// The admin operations of one tenant (see [`TenantKeys`]).
    pub fn tenant(&self, tenant: Tenant) -> TenantKeys {
        TenantKeys {
            manager: self.clone(),
            tenant,
        }
    }
}

impl TenantKeys {
    /// The tenant this handle is bound to.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The same tenant, its changes attributed to `actor` (see [`KeyManager::acting_as`]).
    pub fn acting_as(&self, actor: Actor) -> TenantKeys {
        TenantKeys {
            manager: self.manager.acting_as(actor),
            tenant: self.tenant.clone(),
        }
    }

    /// A page of the tenant's audit trail, newest first: its project's entries (only its
    /// environment's, for a tenant of one environment), of one key when `key_id` is given,
    /// older than `before` (a `seq`), at most `limit` (capped at
    /// [`MAX_AUDIT_PAGE`](crate::MAX_AUDIT_PAGE)). A key outside the tenant has no entries
    /// here, exactly as an unknown id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use keyward::{HashParams, IssueRequest, KeyManager, Tenant};
    /// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
    ///     .hash_params(HashParams::INSECURE_TEST_ONLY)
    ///     .build()?;
    /// let ours = manager.tenant(Tenant::new("web-app".parse()?));
    /// let issued = ours.issue(IssueRequest::new("web-app".parse()?, "dev".parse()?)).await?;
    /// ours.revoke(&issued.record.id).await?;
    /// let trail = ours.audit(Some(issued.record.id), None, 10).await?;
    /// let actions: Vec<_> = trail.iter().map(|e| e.action.as_str()).collect();
    /// assert_eq!(actions, ["revoked", "issued"]);
    /// let theirs = manager.tenant(Tenant::new("other-app".parse()?));
    /// assert!(theirs.audit(Some(issued.record.id), None, 10).await?.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn audit(
        &self,
        key_id: Option<KeyId>,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, Error> {
        let query = AuditQuery {
            project: self.tenant.project.clone(),
            environment: self.tenant.environment,
            key_id,
            before,
            limit,
        };
        self.manager.audit(&query).await
    }

    /// The manager underneath (unscoped: for operations the host itself performs).
    pub fn manager(&self) -> &KeyManager {
        &self.manager
    }

    /// Issues a key inside the tenant.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the request names another project or environment; otherwise
    /// as [`KeyManager::issue`].
    pub async fn issue(&self, req: IssueRequest) -> Result<IssuedKey, Error> {
        if req.project != self.tenant.project {
            return Err(outside(ValueKind::Project, &self.tenant).into());
        }
        if !self.tenant.contains(&req.project, req.environment) {
            return Err(outside(ValueKind::Environment, &self.tenant).into());
        }
        self.manager.issue(req).await
    }

    /// One key's public view; `None` for an unknown id and for a key outside the tenant alike.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn get(&self, id: &KeyId) -> Result<Option<KeyInfo>, Error> {
        Ok(self
            .manager
            .get(id)
            .await?
            .filter(|k| self.tenant.contains(&k.project, k.environment)))
    }

    /// A page of the tenant's keys, in `(created_at, id)` order. The query's project and
    /// environment narrow the tenant further; naming another project (or, for a tenant of
    /// one environment, another environment) gives an empty page.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<KeyInfo>, Error> {
        let outside_project = query
            .project
            .as_ref()
            .is_some_and(|p| *p != self.tenant.project);
        let environment = match (self.tenant.environment, query.environment) {
            (Some(ours), Some(asked)) if ours != asked => return Ok(Vec::new()),
            (ours, asked) => ours.or(asked),
        };
        if outside_project {
            return Ok(Vec::new());
        }
        let scoped = ListQuery {
            project: Some(self.tenant.project.clone()),
            environment,
            ..query.clone()
        };
        self.manager.list(&scoped).await
    }

    /// Applies a change to a key of the tenant.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id and for a key outside the tenant alike; otherwise
    /// as [`KeyManager::update`].
    pub async fn update(&self, id: &KeyId, change: &KeyChange) -> Result<KeyRecord, Error> {
        self.own(id).await?;
        self.manager.update(id, change).await
    }

    /// Revokes a key of the tenant.
    ///
    /// # Errors
    /// As [`TenantKeys::update`].
    pub async fn revoke(&self, id: &KeyId) -> Result<KeyInfo, Error> {
        self.own(id).await?;
        self.manager.revoke(id).await
    }

    /// Sets or clears the expiry of a key of the tenant.
    ///
    /// # Errors
    /// As [`TenantKeys::update`].
    pub async fn set_expiry(&self, id: &KeyId, at: Option<Timestamp>) -> Result<KeyInfo, Error> {
        self.own(id).await?;
        self.manager.set_expiry(id, at).await
    }

    /// Rotates a key of the tenant (see [`KeyManager::rotate`]).
    ///
    /// # Errors
    /// As [`TenantKeys::update`], and as [`KeyManager::rotate`].
    pub async fn rotate(&self, id: &KeyId, grace: Duration) -> Result<RotatedKey, Error> {
        self.rotate_with(id, RotateOptions::grace(grace)).await
    }

    /// Rotates a key of the tenant with options (see [`KeyManager::rotate_with`]).
    ///
    /// # Errors
    /// As [`TenantKeys::update`], and as [`KeyManager::rotate_with`].
    pub async fn rotate_with(
        &self,
        id: &KeyId,
        options: RotateOptions,
    ) -> Result<RotatedKey, Error> {
        self.own(id).await?;
        self.manager.rotate_with(id, options).await
    }

    /// Usage of the tenant's project quota, and of its keys' own quotas and credits (only
    /// the keys inside the tenant).
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn usage(&self) -> Result<UsageReport, Error> {
        self.manager
            .usage_in(&self.tenant.project, self.tenant.environment)
            .await
    }

    /// One key's own event quota and credits in the current period (each `None` when the
    /// key has none).
    ///
    /// # Errors
    /// As [`TenantKeys::update`].
    pub async fn key_usage(&self, id: &KeyId) -> Result<KeyUsage, Error> {
        let record = self.own(id).await?;
        self.manager.key_usage_of(&record).await
    }

    /// The record of `id` when it names a key inside the tenant. A key's project and
    /// environment never change, so the check cannot be outdated by the operation that
    /// follows it.
    async fn own(&self, id: &KeyId) -> Result<KeyRecord, Error> {
        match self.manager.store().get(id).await? {
            Some(record) if self.tenant.holds(&record) => Ok(record),
            _ => Err(Error::NotFound(*id)),
        }
    }
}

fn outside(kind: ValueKind, tenant: &Tenant) -> InvalidValue {
    InvalidValue {
        kind,
        reason: format!("is outside this tenant ({tenant})"),
    }
}
