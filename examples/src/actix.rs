//! An actix-web middleware for Keyward, written only on the framework-agnostic
//! [`keyward::http`] API: what an adapter author writes for a framework that is not tower
//! (actix-web has header types of its own, so the adapter hands Keyward raw header bytes and
//! copies the [`Rejection`] back).
//!
//! ```no_run
//! use actix_web::{App, HttpServer, middleware::from_fn, web};
//! use keyward::{Identity, KeyManager, http::Guard};
//! use keyward_examples::actix::authenticate;
//!
//! async fn ingest(who: web::ReqData<Identity>) -> String {
//!     format!("stored under {}/{}", who.project, who.environment)
//! }
//!
//! async fn serve(keys: KeyManager) -> std::io::Result<()> {
//!     let write = Guard::new(keys).realm("ingest").require(["write"]);
//!     HttpServer::new(move || {
//!         let write = write.clone();
//!         App::new().service(
//!             web::resource("/ingest")
//!                 .wrap(from_fn(move |req, next| authenticate(write.clone(), req, next)))
//!                 .route(web::post().to(ingest)),
//!         )
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! }
//! ```

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpResponse};
use keyward::http::{Check, Guard, X_API_KEY};
use keyward::{Identity, Rejection};

/// The middleware body: decides the request with `guard` and either calls the route with
/// the verified [`Identity`] in the request's extensions (handlers take
/// `web::ReqData<Identity>`) or answers with Keyward's rejection (401, 403, 429, 400, 503).
/// Use it with `actix_web::middleware::from_fn`, as in the module example.
///
/// # Errors
/// Only the route's own errors.
pub async fn authenticate<B: MessageBody>(
    guard: Guard,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let query = Some(req.query_string()).filter(|q| !q.is_empty());
    let headers = req.headers();
    let values = |name: &str| headers.get_all(name).map(HeaderValue::as_bytes);
    let check = guard.check(
        query,
        values(AUTHORIZATION.as_str()),
        values(X_API_KEY.as_str()),
    );
    let outcome = match check {
        Check::Accepted(identity) => Ok(identity),
        Check::Refused(rejection) => Err(rejection),
        // Not cached yet (or credits to spend): the store decides.
        Check::NeedsStore(pending) => pending.verify().await,
    };
    match outcome {
        Ok(identity) => {
            req.extensions_mut().insert::<Identity>(identity);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(rejection) => Ok(req
            .into_response(response(&rejection))
            .map_into_right_body()),
    }
}

/// A [`Rejection`] as an actix-web response: status, headers and JSON body copied over.
pub fn response(rejection: &Rejection) -> HttpResponse {
    let status = StatusCode::from_u16(rejection.status.as_u16())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in rejection.header_pairs() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            response.append_header((name, value));
        }
    }
    response.body(rejection.body.clone())
}
