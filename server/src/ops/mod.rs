//! The broker's operations surface: liveness (`GET /healthz`), readiness (`GET /readyz`: the
//! store and the keystore answer), Prometheus metrics (`GET /metrics`, see [`crate::metrics`]),
//! and the middleware every request passes: [`request`] (request id, span, access log,
//! latency) and [`rate_limit`] (protocol endpoints only). [`log`] installs the log subscriber.
//! These routes answer plain JSON or text, not KBS error bodies; they carry no secrets.

pub mod log;
pub mod rate_limit;
pub mod request;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub use request::RequestId;

use crate::state::AppState;
/// The content type of the Prometheus text exposition.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/healthz`, `/readyz` and (when enabled) `/metrics`.
pub fn routes(metrics: bool) -> Router<AppState> {
    let router = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz));
    if metrics {
        router.route("/metrics", get(metrics_text))
    } else {
        router
    }
}

/// The process runs and answers.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The store and the keystore answer: 200 with details, or 503 naming what failed.
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.health().await;
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: store unavailable");
    }
    let keystore = Arc::clone(&state.keystore);
    let keystore_ok = match tokio::task::spawn_blocking(move || keystore.health()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: keystore unavailable");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "readiness: keystore check panicked");
            false
        }
    };
    let info = state.keystore.describe();
    let mut warnings = Vec::new();
    if info.development_only {
        warnings.push(format!(
            "keystore backend {:?}: the KEK is in a local file, not an HSM (development only)",
            info.backend
        ));
    }
    let status = |ok: bool| if ok { "ok" } else { "unavailable" };
    let mut unavailable = Vec::new();
    if store.is_err() {
        unavailable.push("store");
    }
    if !keystore_ok {
        unavailable.push("keystore");
    }
    let body = json!({
        "status": if unavailable.is_empty() { "ready" } else { "unavailable" },
        "unavailable": unavailable,
        "store": {"status": status(store.is_ok())},
        "keystore": {"status": status(keystore_ok), "backend": info.backend},
        "warnings": warnings,
    });
    let code =
        if unavailable.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

/// The Prometheus text; the rotation gauges are read from the store now.
async fn metrics_text(State(state): State<AppState>) -> Response {
    let now = keylatch_broker::clock::now_s();
    let rotation = match keylatch_broker::custody::cryptoperiod_status(
        state.store.as_ref(),
        now,
        state.settings.rotation_warning_window_s,
    )
    .await
    {
        Ok(statuses) => Some(keylatch_broker::custody::cryptoperiod_counts(&statuses)),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read resource lifecycles");
            None
        }
    };
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], keylatch_broker::metrics::render(rotation))
        .into_response()
}
