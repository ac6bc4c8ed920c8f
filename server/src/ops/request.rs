//! Per-request context: the request id ([`RequestId`]), the tracing span every log line of the
//! request runs in, the access log line, and the latency histogram. The id is the client's
//! `x-request-id` when that is a sane short token ([`is_sane_id`]), else a fresh random one; it
//! is stored as a request extension (handlers and the audit record read it with
//! `Extension<RequestId>`) and echoed in the response's `x-request-id`.
//!
//! Logged per request: id, method, route template, status, duration. Never the raw path or
//! query, headers, cookies, tokens or bodies.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use rand_core::{OsRng, RngCore as _};
use tracing::Instrument as _;

/// The header carrying the id, both ways.
pub const HEADER: &str = "x-request-id";
/// Longest client-supplied id honoured.
pub const MAX_ID_LEN: usize = 64;

/// This request's id, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9._:-]`: safe in a log line and a header.
#[must_use]
pub fn is_sane_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A fresh id: 16 random bytes, hex.
#[must_use]
pub fn generate_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The middleware (outermost layer of the router).
pub async fn context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_id(v))
        .map_or_else(generate_id, str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    keylatch_broker::metrics::observe_request(&route, &method, status, seconds);
    span.in_scope(|| {
        tracing::info!(status, duration_ms = seconds * 1e3, "request done");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_only_short_token_ids() {
        assert!(is_sane_id("abc-123_x.y:z"));
        assert!(is_sane_id(&"a".repeat(64)));
        assert!(!is_sane_id(&"a".repeat(65)));
        assert!(!is_sane_id(""));
        assert!(!is_sane_id("a b"));
        assert!(!is_sane_id("a\nb"));
        assert!(!is_sane_id("x\"}"));
        assert_eq!(generate_id().len(), 32);
        assert!(is_sane_id(&generate_id()));
    }
}
