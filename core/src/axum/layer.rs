//! [`KeywardLayer`], its service and its future: a [`Guard`] as tower middleware, deciding a
//! cached key inside `Service::call` and returning the route's own future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{Check, Guard, X_API_KEY};
use crate::invalid::InvalidValue;
use crate::key::KeyId;
use crate::manager::{Identity, KeyManager, Requirements};
use crate::name::Project;

use super::response::answer_in_realm;

/// A tower layer that verifies the request's API key with a [`KeyManager`] and puts the
/// verified [`Identity`] into the request's extensions, where
/// [`VerifiedKey`](super::VerifiedKey) reads it. A thin wrapper of [`Guard`], which holds
/// the requirements and the realm.
///
/// Apply it with axum's `route_layer` (on a route, or on a router of routes that share
/// requirements), so that unknown paths still answer 404 rather than 401. Cheap to clone.
///
/// ```
/// use axum::{Router, routing::get};
/// use keyward::axum::KeywardLayer;
/// # fn demo(manager: keyward::KeyManager) -> Result<(), keyward::InvalidValue> {
/// let auth = KeywardLayer::new(manager).realm("ingest");
/// let scopes_from_config = ["reports:read"];
/// let app: Router = Router::new()
///     .route("/ping", get(|| async { "ok" }).route_layer(auth.clone().require(["read"])))
///     .route("/reports", get(|| async { "…" }).route_layer(auth.try_require(scopes_from_config)?));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KeywardLayer {
    guard: Guard,
}

impl KeywardLayer {
    /// A layer that accepts any valid key of the environments `manager` serves, in the realm
    /// [`DEFAULT_REALM`](super::DEFAULT_REALM).
    pub fn new(manager: KeyManager) -> Self {
        Self {
            guard: Guard::new(manager),
        }
    }

    /// Requires these scopes (replacing any required before), as [`Guard::require`].
    ///
    /// # Panics
    /// When a name is not a valid scope (`[a-z0-9][a-z0-9:._-]{0,63}`): scope names are part
    /// of the program; use [`KeywardLayer::try_require`] for names read from configuration.
    pub fn require<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match self.try_require(scopes) {
            Ok(layer) => layer,
            Err(e) => panic!("KeywardLayer::require: {e}"),
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
        Ok(self.guard.try_require(scopes)?.into())
    }

    /// Requires keys of this project (403 for a key of another project).
    pub fn project(self, project: Project) -> Self {
        self.guard.project(project).into()
    }

    /// The realm named in `WWW-Authenticate` challenges (default
    /// [`DEFAULT_REALM`](super::DEFAULT_REALM)), including those of errors the routes
    /// behind the layer return.
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.guard.realm(realm).into()
    }

    /// The guard that decides each request.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// What this layer requires of a key.
    pub fn requirements(&self) -> &Requirements {
        self.guard.requirements()
    }
}

impl From<Guard> for KeywardLayer {
    fn from(guard: Guard) -> Self {
        Self { guard }
    }
}

impl<S> Layer<S> for KeywardLayer {
    type Service = KeywardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeywardService {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service made by [`KeywardLayer`]: for each request, [`Guard::check`]; a cached key
/// calls the route at once, a refusal answers at once, and only a key that needs the store
/// goes through a boxed future ([`KeywardFuture`]).
#[derive(Clone)]
pub struct KeywardService<S> {
    inner: S,
    guard: Guard,
}

impl<S: fmt::Debug> fmt::Debug for KeywardService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywardService")
            .field("inner", &self.inner)
            .field("guard", &self.guard)
            .finish()
    }
}

impl<S, B> Service<Request<B>> for KeywardService<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = KeywardFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let headers = req.headers();
        let check = self.guard.check(
            req.uri().query(),
            headers
                .get_all(AUTHORIZATION)
                .iter()
                .map(HeaderValue::as_bytes),
            headers.get_all(X_API_KEY).iter().map(HeaderValue::as_bytes),
        );
        let state = match check {
            // The common case, a cached key: no boxed future, the route's future as it is.
            Check::Accepted(identity) => State::Route {
                id: identity.id,
                guard: self.guard.clone(),
                future: self.inner.call(accepted(req, identity)),
            },
            Check::Refused(rejection) => State::Refused {
                ready: std::future::ready(Ok(rejection.into_response())),
            },
            Check::NeedsStore(pending) => {
                // The clone is not ready; the instance polled ready is the one to call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let guard = self.guard.clone();
                State::Verifying {
                    future: Box::pin(async move {
                        // The key is dropped, and zeroized, before the route runs.
                        let identity = match pending.verify().await {
                            Ok(identity) => identity,
                            Err(rejection) => return Ok(rejection.into_response()),
                        };
                        let id = identity.id;
                        let response = inner.call(accepted(req, identity)).await?;
                        Ok(answer_in_realm(&guard, &id, response.into_response()))
                    }),
                }
            }
        };
        KeywardFuture { state }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`KeywardService`]: the route's own future when the key was decided
    /// from the verify cache (no future of its own to allocate), a ready refusal, or, when the store is needed
    /// (a cold verify, credits), a boxed future that verifies and then calls the route. Its
    /// `Debug` says which: `KeywardFuture(route)`, `KeywardFuture(refused)` or
    /// `KeywardFuture(verifying)`.
    ///
    /// A route's response that carries a Keyward error (a handler returned
    /// `Err(keyward::Error)`) is answered in the layer's realm, at the manager's time; see
    /// [`keyward::axum`](super).
    pub struct KeywardFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

type Boxed<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        // The key was accepted without waiting; the route runs.
        Route { #[pin] future: F, guard: Guard, id: KeyId },
        // The request was refused without waiting.
        Refused { #[pin] ready: std::future::Ready<Result<Response, E>> },
        // The key store is being asked; then the route runs.
        Verifying { future: Boxed<E> },
    }
}

impl<F, R, E> Future for KeywardFuture<F, E>
where
    F: Future<Output = Result<R, E>>,
    R: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Route { future, guard, id } => future
                .poll(cx)
                .map_ok(|r| answer_in_realm(guard, id, r.into_response())),
            StateProj::Refused { ready } => ready.poll(cx),
            StateProj::Verifying { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, E> fmt::Debug for KeywardFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Route { .. } => "KeywardFuture(route)",
            State::Refused { .. } => "KeywardFuture(refused)",
            State::Verifying { .. } => "KeywardFuture(verifying)",
        })
    }
}

/// The identity into the request's extensions, the credential headers marked sensitive so
/// that anything downstream that prints them shows `Sensitive`, not the key. (An accepted
/// request carries exactly one credential header.)
fn accepted<B>(mut req: Request<B>, identity: Identity) -> Request<B> {
    req.extensions_mut().insert(identity);
    for name in [AUTHORIZATION, X_API_KEY] {
        if let Some(value) = req.headers_mut().get_mut(&name) {
            value.set_sensitive(true);
        }
    }
    req
}
