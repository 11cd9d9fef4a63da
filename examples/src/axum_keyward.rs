//! An axum adapter for Keyward: a tower [`Layer`] that verifies the request's API key and an
//! extractor that hands the verified [`Identity`] to handlers.
//!
//! This module is self-contained (it depends on `keyward`, `axum`, `tower`, `http` and
//! `tracing` only), so it can be lifted into an adapter crate of its own.
//!
//! ```no_run
//! use axum::{Json, Router, routing::{get, post}};
//! use keyward::KeyManager;
//! use keyward_examples::axum_keyward::{KeywardLayer, VerifiedKey};
//!
//! async fn ping() -> &'static str { "ok" }
//! async fn ingest(VerifiedKey(who): VerifiedKey) -> String {
//!     format!("stored under {}/{}", who.project, who.environment)
//! }
//!
//! fn app(manager: KeyManager) -> Router {
//!     let auth = KeywardLayer::new(manager).realm("ingest");
//!     Router::new()
//!         .route("/ping", get(ping).route_layer(auth.clone().require(["read"])))
//!         .route("/ingest", post(ingest).route_layer(auth.require(["write"])))
//! }
//! ```
//!
//! What the layer does, per request:
//!
//! 1. refuses a key in the URL's query string, under any parameter name or none, percent-encoded
//!    or not (400 `invalid_request`, logged with the key's public id: URLs end up in logs);
//! 2. takes the one credential from `Authorization: Bearer <key>` (any case of `Bearer`),
//!    `X-API-Key: <key>` or `Authorization: Basic` with the key as user name; none is 401
//!    with a bare `WWW-Authenticate: Bearer realm="…"` challenge, two are 400 with an
//!    `error="invalid_request"` challenge;
//! 3. verifies it against the route's [`Requirements`]: first with
//!    [`KeyManager::verify_cached`], which decides a cached key on the spot, so the common
//!    request allocates nothing here and the route's own future is returned; only when the
//!    store is needed (a cold verify, credits) with [`KeyManager::verify_key`] in a boxed
//!    future;
//! 4. on success, puts the [`Identity`] into the request's extensions and calls the route;
//!    otherwise answers with [`keyward::http::rejection`]: 401 `invalid_token`, 403
//!    `insufficient_scope`, 429 with `Retry-After`, or 503 when the key store is down (also
//!    logged with `tracing::error!`, with the key's public id only).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode};
use keyward::Rejection;
use keyward::http::{auth_rejection, extract_key, reject_key_in_query, rejection};
use keyward::{Error, Identity, InvalidValue, KeyManager, Project, Requirements};
use tower::{Layer, Service};

/// The realm named in `WWW-Authenticate` challenges unless [`KeywardLayer::realm`] says
/// otherwise.
pub const DEFAULT_REALM: &str = "api";

/// A tower layer that verifies the request's API key with a [`KeyManager`] and puts the
/// verified [`Identity`] into the request's extensions.
///
/// Apply it with axum's `route_layer` (on a route or on a router of routes that share
/// requirements), so that unknown paths still answer 404 rather than 401. Cheap to clone.
#[derive(Clone)]
pub struct KeywardLayer {
    config: Arc<Config>,
}

struct Config {
    manager: KeyManager,
    requirements: Requirements,
    realm: String,
}

impl fmt::Debug for KeywardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywardLayer")
            .field("requirements", &self.config.requirements)
            .field("realm", &self.config.realm)
            .finish_non_exhaustive()
    }
}

impl KeywardLayer {
    /// A layer that accepts any valid key of the environments `manager` serves.
    pub fn new(manager: KeyManager) -> Self {
        Self {
            config: Arc::new(Config {
                manager,
                requirements: Requirements::none(),
                realm: DEFAULT_REALM.to_owned(),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let c = &self.config;
        let mut config = Config {
            manager: c.manager.clone(),
            requirements: c.requirements.clone(),
            realm: c.realm.clone(),
        };
        change(&mut config);
        Self {
            config: Arc::new(config),
        }
    }

    /// Requires these scopes (replacing any required before). Scope names are part of the
    /// program, so an invalid one is a bug: use [`KeywardLayer::try_require`] for names read
    /// from configuration.
    ///
    /// # Panics
    /// When a name is not a valid scope (`[a-z0-9][a-z0-9:._-]{0,63}`).
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

    /// What this layer requires of a key.
    pub fn requirements(&self) -> &Requirements {
        &self.config.requirements
    }
}

impl<S> Layer<S> for KeywardLayer {
    type Service = KeywardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeywardService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service made by [`KeywardLayer`].
#[derive(Clone)]
pub struct KeywardService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for KeywardService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywardService")
            .field("inner", &self.inner)
            .field("requirements", &self.config.requirements)
            .finish_non_exhaustive()
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
        match decide(&self.config, req.uri(), req.headers()) {
            // The common case, a cached key: no allocation, the route's future as it is.
            Decision::Accepted(identity) => KeywardFuture::new(State::Route {
                future: self.inner.call(accepted(req, identity)),
            }),
            Decision::Refused(response) => KeywardFuture::new(State::Refused {
                ready: std::future::ready(Ok(response)),
            }),
            Decision::NeedsStore(key) => {
                // The clone is not ready; the instance polled ready is the one to call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let config = Arc::clone(&self.config);
                KeywardFuture::new(State::Pending {
                    future: Box::pin(async move {
                        let outcome = config.manager.verify_key(&key, &config.requirements).await;
                        let identity = match outcome {
                            Ok(identity) => identity,
                            Err(e) => return Ok(refusal(&config, &key, &e)),
                        };
                        drop(key); // zeroized before the route runs
                        inner
                            .call(accepted(req, identity))
                            .await
                            .map(IntoResponse::into_response)
                    }),
                })
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`KeywardService`]: the route's own future when the key was decided
    /// from the verify cache (no allocation), a ready refusal, or, when the store is needed
    /// (a cold verify, credits), a boxed future that verifies and then calls the route.
    pub struct KeywardFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        // The key was accepted without waiting; the route runs.
        Route { #[pin] future: F },
        // The request was refused without waiting.
        Refused { #[pin] ready: std::future::Ready<Result<Response, E>> },
        // The key store is being asked; then the route runs.
        Pending { future: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>> },
    }
}

impl<F, E> KeywardFuture<F, E> {
    fn new(state: State<F, E>) -> Self {
        Self { state }
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
            StateProj::Route { future } => future.poll(cx).map_ok(IntoResponse::into_response),
            StateProj::Refused { ready } => ready.poll(cx),
            StateProj::Pending { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, E> fmt::Debug for KeywardFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Route { .. } => "KeywardFuture(route)",
            State::Refused { .. } => "KeywardFuture(refused)",
            State::Pending { .. } => "KeywardFuture(verifying)",
        })
    }
}

/// What steps 1 to 3 of the module docs decide before anything waits.
enum Decision {
    Accepted(Identity),
    Refused(Response),
    /// The verify cache cannot decide: the store must be asked.
    NeedsStore(keyward::ApiKey),
}

/// Steps 1 to 3 without waiting: the query string, the credential, and the verify cache.
/// The parsed key (and its secret) is dropped, and zeroized, before the route runs.
fn decide(config: &Config, uri: &http::Uri, headers: &http::HeaderMap) -> Decision {
    let manager = &config.manager;
    let refuse =
        |e: &keyward::AuthError| into_response(auth_rejection(e, &config.realm, manager.now()));
    if let Err(e) = reject_key_in_query(uri) {
        // Logged by `reject_key_in_query`, with the key's public id.
        return Decision::Refused(refuse(&e));
    }
    let key = match extract_key(headers) {
        Ok(key) => key,
        Err(e) => return Decision::Refused(refuse(&e)),
    };
    match manager.verify_cached(&key, &config.requirements) {
        Some(Ok(identity)) => Decision::Accepted(identity),
        Some(Err(e)) => Decision::Refused(refusal(config, &key, &e)),
        None => Decision::NeedsStore(key),
    }
}

/// The answer to a failed verification; a store failure is also logged (with the key's
/// public id only, at most once per interval per cause: [`KeyManager::log_failure`]).
fn refusal(config: &Config, key: &keyward::ApiKey, e: &Error) -> Response {
    config.manager.log_failure(
        e,
        Some(&key.id()),
        "could not verify an API key: the key service is unavailable",
    );
    into_response(rejection(e, &config.realm, config.manager.now()))
}

/// Step 4: the identity into the request's extensions, the credential headers marked
/// sensitive so that anything downstream that prints them shows `Sensitive`, not the key.
/// (An accepted request carries exactly one credential header.)
fn accepted<B>(mut req: Request<B>, identity: Identity) -> Request<B> {
    req.extensions_mut().insert(identity);
    for name in [http::header::AUTHORIZATION, keyward::http::X_API_KEY] {
        if let Some(value) = req.headers_mut().get_mut(&name) {
            value.set_sensitive(true);
        }
    }
    req
}

/// A [`Rejection`] as an axum response with a JSON body.
pub fn into_response(r: Rejection) -> Response {
    let mut response = (r.status, r.body).into_response();
    let headers = response.headers_mut();
    headers.extend(r.headers);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The verified identity of the request's API key, put there by [`KeywardLayer`].
///
/// As an extractor it answers 500, with a hint in the body and in the log, when the route
/// has no [`KeywardLayer`]: a configuration error, not the client's. `Option<VerifiedKey>`
/// yields `None` instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey(pub Identity);

impl std::ops::Deref for VerifiedKey {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.0
    }
}

/// [`VerifiedKey`] was extracted on a route without [`KeywardLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingKeywardLayer;

/// The hint given when [`VerifiedKey`] is used without [`KeywardLayer`].
const MISSING_LAYER_HINT: &str = "server misconfiguration: this route reads the verified API key, but no KeywardLayer \
     runs before it; add .route_layer(KeywardLayer::new(manager).require([...])) to the route \
     or its router";

impl fmt::Display for MissingKeywardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MISSING_LAYER_HINT)
    }
}

impl std::error::Error for MissingKeywardLayer {}

impl IntoResponse for MissingKeywardLayer {
    fn into_response(self) -> Response {
        tracing::error!("{MISSING_LAYER_HINT}");
        let body = serde_json::json!({ "error": "server_error", "message": MISSING_LAYER_HINT });
        let mut response = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedKey {
    type Rejection = MissingKeywardLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(VerifiedKey)
            .ok_or(MissingKeywardLayer)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedKey {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Identity>().cloned().map(VerifiedKey))
    }
}
