//! The broker's HTTP surface: the router and what the three KBS handlers share (body reading
//! that answers JSON errors, the `kbs-session-id` cookie, bearer credentials). Handlers live in
//! [`auth`], [`attest`] and [`resource`]; each extracts, calls `keylatch_broker::protocol`
//! and maps. Every non-200 reply is a KBS error body, including unknown routes, wrong methods
//! and oversized bodies.

pub mod attest;
pub mod auth;
pub mod resource;

use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use crate::ops::rate_limit::RateLimiter;
use serde::de::DeserializeOwned;

use keylatch_broker::{ApiError, ErrorKind};

use crate::error::{respond, HttpError};
use crate::state::AppState;

/// The session cookie's name (what upstream clients send back).
pub const COOKIE_NAME: &str = "kbs-session-id";

/// The broker's routes: the three KBS endpoints (rate-limited per client address), the
/// operations routes ([`crate::ops`]), and around everything the request context (id, span,
/// access log, latency).
pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_body_bytes;
    let mut protocol = Router::new()
        .route("/kbs/v0/auth", post(auth::handle))
        .route("/kbs/v0/attest", post(attest::handle))
        .route("/kbs/v0/resource/{*path}", get(resource::handle));
    if let Some(limiter) = RateLimiter::new(state.settings.rate_limit) {
        let limiter = Arc::new(limiter);
        protocol = protocol.route_layer(axum::middleware::from_fn(move |req, next| {
            crate::ops::rate_limit::limit(Arc::clone(&limiter), req, next)
        }));
    }
    protocol
        .merge(crate::admin::router())
        .merge(crate::ops::routes(state.settings.metrics.enabled))
        .fallback(|| async { respond(ApiError::new(ErrorKind::NotFound, "no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            respond(ApiError::new(
                ErrorKind::MethodNotAllowed,
                "method not allowed on this endpoint",
            ))
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), buffer_body))
        .layer(axum::middleware::from_fn(crate::ops::request::context))
        .with_state(state)
}

/// Reads the whole request body before any handler runs, within `client_timeout_s` and
/// `max_body_bytes`: a client that trickles or stalls its body gets 408 `request-timeout`
/// instead of holding a connection and a task open for as long as it likes, and one that
/// sends too much gets 413 `too-large` as soon as the limit is crossed. Handlers then see a
/// complete body (their own extractors keep the same limit).
async fn buffer_body(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let settings = &state.settings;
    let too_large =
        || respond(ApiError::new(ErrorKind::TooLarge, "request body exceeds the size limit"));
    let (parts, body) = req.into_parts();
    // A declared length over the limit is refused before waiting for bytes that would be
    // refused anyway (hyper sets the size hint from content-length).
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    if usize::try_from(declared).map_or(true, |n| n > settings.max_body_bytes) {
        return too_large();
    }
    let limited = http_body_util::Limited::new(body, settings.max_body_bytes);
    let collected =
        tokio::time::timeout(settings.client_timeout, http_body_util::BodyExt::collect(limited))
            .await;
    let bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(_)) => {
            return respond(ApiError::new(ErrorKind::BadRequest, "request body could not be read"));
        }
        Err(_) => {
            let seconds = settings.client_timeout.as_secs();
            return respond(ApiError::new(
                ErrorKind::RequestTimeout,
                format!("request body did not arrive within {seconds} s"),
            ));
        }
    };
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// The body's bytes, or 413 for an oversized body and 400 for one that could not be read.
pub fn body_bytes(
    body: Result<axum::body::Bytes, BytesRejection>,
    what: &'static str,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorKind::TooLarge, format!("{what} body exceeds the size limit"))
        } else {
            ApiError::new(ErrorKind::BadRequest, format!("{what} body could not be read"))
        }
    })
}

/// Reads and parses a JSON body ([`body_bytes`], then `keylatch_broker::error::json_body`).
pub fn json_body<T: DeserializeOwned>(
    body: Result<axum::body::Bytes, BytesRejection>,
    what: &'static str,
) -> Result<T, HttpError> {
    Ok(keylatch_broker::error::json_body(&body_bytes(body, what)?, what)?)
}

/// The credentials of `Authorization: Bearer <token>` (the scheme matched case-insensitively,
/// RFC 9110 §11.1), trimmed; `None` without the header or with another scheme.
#[must_use]
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
}

/// The `kbs-session-id` cookie value, if any.
#[must_use]
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}
