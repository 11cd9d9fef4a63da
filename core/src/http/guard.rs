//! [`Guard`]: what an endpoint requires, and the whole per-request decision (docs/ARCHITECTURE.md,
//! "The verify pipeline", steps 1 to 6) for any HTTP framework, with the synchronous fast
//! path ([`Guard::check`]) kept apart from the store-bound one ([`Pending::verify`]).

use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::invalid::InvalidValue;
use crate::key::{ApiKey, KeyId};
use crate::manager::{Identity, KeyManager, Requirements};
use crate::name::Project;

use super::extract::extract_key_from;
use super::query::reject_key_in_query_str;
use super::rejection::{Rejection, rejection};

/// The realm named in `WWW-Authenticate` challenges unless [`Guard::realm`] says otherwise.
pub const DEFAULT_REALM: &str = "api";

/// What the failure log says when a key could not be verified for lack of the store.
const VERIFY_FAILED: &str = "could not verify an API key: the key service is unavailable";
/// What the failure log says for an error rendered by [`Guard::reject`].
const REQUEST_FAILED: &str = "a request failed: the key service is unavailable";

/// The authentication of one kind of endpoint, for any HTTP framework: a [`KeyManager`], the
/// [`Requirements`] a key must meet, and the realm named in challenges. Cheap to clone (one
/// `Arc`); the builder methods return a changed copy.
///
/// Per request, [`Guard::check`] runs everything that needs no waiting: the key-in-the-URL
/// check ([`reject_key_in_query_str`]), the extraction of the one credential
/// ([`extract_key_from`]) and [`KeyManager::verify_cached`]. It answers
/// [`Check::Accepted`] or [`Check::Refused`] at once for a cached key (no store access, no
/// hashing, no future), or [`Check::NeedsStore`] with a [`Pending`] whose [`Pending::verify`] asks
/// the store. [`Guard::authenticate`] does both in one call.
///
/// An adapter takes the raw header values and the raw query, so it needs none of the `http`
/// crate's types; this is the whole of an actix-web guard, for instance:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keyward::http::Guard;
/// use keyward::{HashParams, IssueRequest, KeyManager};
///
/// let manager = KeyManager::builder(keyward_memory::MemoryStore::new())
///     .serve("dev".parse()?)
///     .hash_params(HashParams::INSECURE_TEST_ONLY)
///     .build()?;
/// let guard = Guard::new(manager.clone()).realm("ingest").require(["write"]);
/// let issued = manager
///     .issue(IssueRequest::new("web-app".parse()?, "dev".parse()?).scopes(["write"])?)
///     .await?;
/// let header = format!("Bearer {}", issued.key.expose_secret());
///
/// // What a framework hands over: the query, and every Authorization and X-API-Key value.
/// let no_header: [&[u8]; 0] = [];
/// let who = guard
///     .authenticate(Some("page=2"), [header.as_bytes()], no_header)
///     .await
///     .map_err(|r| format!("{} {}", r.status, r.body))?;
/// assert_eq!(who.project.as_str(), "web-app");
///
/// // Refused: status, headers and body for the framework's own response type.
/// let refused = guard.authenticate(None, no_header, no_header).await.unwrap_err();
/// assert_eq!(refused.status.as_u16(), 401);
/// for (name, value) in refused.header_pairs() {
///     assert!(name == "www-authenticate" && value == b"Bearer realm=\"ingest\"" || name == "content-type");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    manager: KeyManager,
    requirements: Requirements,
    realm: String,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("requirements", &self.inner.requirements)
            .field("realm", &self.inner.realm)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard that accepts any valid key of the environments `manager` serves, in the realm
    /// [`DEFAULT_REALM`].
    pub fn new(manager: KeyManager) -> Self {
        Self {
            inner: Arc::new(Inner {
                manager,
                requirements: Requirements::none(),
                realm: DEFAULT_REALM.to_owned(),
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    /// Requires these scopes (replacing any required before). Scope names are part of the
    /// program, so an invalid one is a bug: use [`Guard::try_require`] for names read from
    /// configuration.
    ///
    /// ```should_panic
    /// # fn demo(manager: keyward::KeyManager) {
    /// keyward::http::Guard::new(manager).require(["Not A Scope"]); // panics
    /// # }
    /// # let m = keyward::KeyManager::builder(keyward_memory::MemoryStore::new()).build().unwrap();
    /// # demo(m);
    /// ```
    ///
    /// # Panics
    /// When a name is not a valid scope (`[a-z0-9][a-z0-9:._-]{0,63}`).
    pub fn require<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match self.try_require(scopes) {
            Ok(guard) => guard,
            Err(e) => panic!("Guard::require: {e}"),
        }
    }

    /// Requires these scopes (replacing any required before).
    ///
    /// # Errors
    /// [`InvalidValue`] when a name is not a valid scope.
    pub fn try_require<I, S>(self, scopes: I) -> Result<Self, InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let scopes = Requirements::scopes(scopes)?.scopes;
        Ok(self.with(|c| c.requirements.scopes = scopes))
    }

    /// Requires keys of this project (403 for a key of another project).
    pub fn project(self, project: Project) -> Self {
        self.with(|c| c.requirements.project = Some(project))
    }

    /// The realm named in `WWW-Authenticate` challenges (default [`DEFAULT_REALM`]).
    pub fn realm(self, realm: impl Into<String>) -> Self {
        let realm = realm.into();
        self.with(|c| c.realm = realm)
    }

    /// The manager that verifies keys.
    pub fn manager(&self) -> &KeyManager {
        &self.inner.manager
    }

    /// What this guard requires of a key.
    pub fn requirements(&self) -> &Requirements {
        &self.inner.requirements
    }

    /// The realm named in this guard's challenges.
    pub fn realm_name(&self) -> &str {
        &self.inner.realm
    }

    /// Decides a request without waiting, from its raw query string (`uri.query()`, still
    /// percent-encoded) and the raw values of its `Authorization` and `X-API-Key` headers:
    /// a key in the query is refused (400), then the one credential is extracted (401 or
    /// 400), then [`KeyManager::verify_cached`] decides a cached key (accepted, or refused
    /// with 401, 403 or 429). Anything else needs the store: [`Check::NeedsStore`].
    ///
    /// A cached key is decided without the store, without hashing and without a future of
    /// its own (an adapter can hand the route's own future on). Refusals are rendered with this guard's realm and the
    /// manager's clock; a refused query is logged with the key's public id only.
    pub fn check<'a>(
        &self,
        query: Option<&str>,
        authorization: impl IntoIterator<Item = &'a [u8]>,
        x_api_key: impl IntoIterator<Item = &'a [u8]>,
    ) -> Check {
        if let Err(e) = reject_key_in_query_str(query) {
            // Logged by the query check, with the key's public id.
            return Check::Refused(self.refuse_unverified(e.into()));
        }
        let key = match extract_key_from(authorization, x_api_key) {
            Ok(key) => key,
            Err(e) => return Check::Refused(self.refuse_unverified(e.into())),
        };
        let inner = &self.inner;
        match inner.manager.verify_cached(&key, &inner.requirements) {
            Some(Ok(identity)) => Check::Accepted(identity),
            Some(Err(e)) => Check::Refused(self.refuse(Some(&key.id()), &e)),
            None => Check::NeedsStore(Pending {
                guard: self.clone(),
                key,
            }),
        }
    }

    /// [`Guard::check`], then, when the store is needed, [`Pending::verify`]: the whole
    /// decision in one call, for adapters that do not keep the cached path apart.
    ///
    /// # Errors
    /// The [`Rejection`] to answer with.
    pub async fn authenticate<'a>(
        &self,
        query: Option<&str>,
        authorization: impl IntoIterator<Item = &'a [u8]>,
        x_api_key: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Identity, Rejection> {
        match self.check(query, authorization, x_api_key) {
            Check::Accepted(identity) => Ok(identity),
            Check::Refused(rejection) => Err(rejection),
            Check::NeedsStore(pending) => pending.verify().await,
        }
    }

    /// Renders any error as this guard's answer: its realm in the challenge, the manager's
    /// clock for `Retry-After` ([`rejection`] says which status each error gets). An
    /// infrastructure failure (the store, hashing) is logged through
    /// [`KeyManager::log_failure`] (at most one line per interval per cause; no secret), so
    /// a handler's error can be answered with this and nothing else.
    pub fn reject(&self, err: &Error) -> Rejection {
        self.answer(None, err, REQUEST_FAILED)
    }

    /// [`Guard::reject`] with the key's public id and the log line's text.
    pub(crate) fn answer(&self, key: Option<&KeyId>, err: &Error, what: &str) -> Rejection {
        self.inner.manager.log_failure(err, key, what);
        self.render(err)
    }

    /// The refusal of a key that could not be verified.
    fn refuse(&self, key: Option<&KeyId>, err: &Error) -> Rejection {
        self.answer(key, err, VERIFY_FAILED)
    }

    /// The answer to `err` in this guard's realm, at the manager's time; nothing logged.
    /// A request refused before the manager saw a key (no key, two keys, a key in the query
    /// string, a malformed one): counted here, since the manager does not see it.
    fn refuse_unverified(&self, err: Error) -> Rejection {
        self.inner.manager.count_refused(&err);
        self.render(&err)
    }

    fn render(&self, err: &Error) -> Rejection {
        rejection(err, &self.inner.realm, self.inner.manager.now())
    }
}

/// What [`Guard::check`] decides without waiting.
#[derive(Debug)]
#[must_use = "a check decides whether the request may proceed"]
pub enum Check {
    /// The key was accepted from the verify cache: the request may proceed as this identity.
    Accepted(Identity),
    /// The request is refused: answer with this.
    Refused(Rejection),
    /// The verify cache cannot decide (a key not cached yet, a key that spends credits):
    /// [`Pending::verify`] asks the store.
    NeedsStore(Pending),
}

/// A well-formed key that the store must verify: the rest of a [`Guard::check`]. It holds
/// the key, so drop it (the secret is zeroized) or verify it soon; its `Debug` shows the
/// public id only.
pub struct Pending {
    guard: Guard,
    key: ApiKey,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("key_id", &self.key.id())
            .field("guard", &self.guard)
            .finish()
    }
}

impl Pending {
    /// The public id of the key to verify.
    pub fn key_id(&self) -> KeyId {
        self.key.id()
    }

    /// The guard that made this check.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Verifies the key with [`KeyManager::verify_key`] (the store, Argon2 for a key not
    /// cached, credits). The key is dropped, and its secret zeroized, before this returns.
    ///
    /// # Errors
    /// The [`Rejection`] to answer with: 401, 403, 429, or 503 when the store is down or
    /// hashing is overloaded (logged through [`KeyManager::log_failure`], with the key's
    /// public id only).
    pub async fn verify(self) -> Result<Identity, Rejection> {
        let Self { guard, key } = self;
        let inner = &guard.inner;
        let outcome = inner.manager.verify_key(&key, &inner.requirements).await;
        let id = key.id();
        drop(key);
        outcome.map_err(|e| guard.refuse(Some(&id), &e))
    }
}
