//! The broker's HTTP surface as one router: the three KBS endpoints (rate-limited per client
//! address), the admin API, the operations routes, and around everything the request context
//! (id, span, access log, latency) and [`buffer_body`]. Every non-200 reply is a KBS error body,
//! including unknown routes, wrong methods and oversized bodies.

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use crate::ops::rate_limit::RateLimiter;

use keylatch_broker::{ApiError, ErrorKind};

use crate::error::respond;
use crate::state::AppState;

/// The broker's routes: the three KBS endpoints (rate-limited per client address), the
/// operations routes ([`crate::ops`]), and around everything the request context (id, span,
/// access log, latency).
pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_body_bytes;
    let mut protocol = Router::new()
        .route("/kbs/v0/auth", post(crate::protocol::auth::handle))
        .route("/kbs/v0/attest", post(crate::protocol::attest::handle))
        .route("/kbs/v0/resource/{*path}", get(crate::protocol::resource::handle));
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
