//! The broker's Prometheus metrics: what they are, the calls that move them, and the text
//! exposition `GET /metrics` serves ([`render`]). Every metric is named `keylatch_*`.
//!
//! The registry is process-global (a `LazyLock`), not a field of `AppState`. The events it
//! counts happen in places that have no state at hand and should not grow one: the decision
//! hook (`crate::decision::record_decision` takes only the record), the error constructors
//! (`crate::error::ApiError::unavailable`) and the collateral fetcher. This module is the
//! bottom layer: it takes label values, never the broker's types. Threading a handle
//! through each would change every signature for a counter. One process serves one broker, so
//! one registry is exact; the cost is that tests asserting values must each run in their own
//! process (nextest does; `cargo test` threads would share counts).
//!
//! Label values are bounded: TEE names and error types are mapped onto fixed sets (anything
//! else becomes `other`), routes are path templates, never raw paths, so a client cannot grow
//! the series count.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: &'static str,
    tee: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    action: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdminLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    component: &'static str,
    kind: &'static str,
}

struct Metrics {
    decisions: Family<DecisionLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    admin: Family<AdminLabels, Counter>,
    requests: Family<RequestLabels, Histogram>,
    backend_errors: Family<BackendLabels, Counter>,
    rate_limited: Counter,
    collateral_hits: Counter,
    collateral_fetch_errors: Counter,
    rotation_overdue: Gauge,
    rotation_due_soon: Gauge,
    rotation_scan_errors: Counter,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s: a cached release is milliseconds, an HSM or a cold collateral fetch seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The metrics and the registry that exposes them (the registry holds clones: each metric is
/// a shared handle).
static METRICS: LazyLock<(Metrics, Registry)> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("keylatch");
    let m = Metrics {
        decisions: Family::default(),
        denials: Family::default(),
        admin: Family::default(),
        requests: Family::new_with_constructor(latency_histogram),
        backend_errors: Family::default(),
        rate_limited: Counter::default(),
        collateral_hits: Counter::default(),
        collateral_fetch_errors: Counter::default(),
        rotation_overdue: Gauge::default(),
        rotation_due_soon: Gauge::default(),
        rotation_scan_errors: Counter::default(),
    };
    registry.register(
        "decisions",
        "Broker decisions (auth, attest, release) by TEE and outcome (allowed or denied)",
        m.decisions.clone(),
    );
    registry.register(
        "denials",
        "Denied decisions by action and error type (server/ERRORS.md)",
        m.denials.clone(),
    );
    registry.register("admin_actions", "Administrative actions by outcome", m.admin.clone());
    registry.register(
        "http_request_duration_seconds",
        "Request latency by route template, method and status",
        m.requests.clone(),
    );
    registry.register(
        "backend_errors",
        "Store, keystore and internal failures answered 503 (unavailable) or 500 (internal)",
        m.backend_errors.clone(),
    );
    registry.register(
        "rate_limited",
        "Protocol requests refused with 429 by the per-address rate limit",
        m.rate_limited.clone(),
    );
    registry.register(
        "collateral_cache_hits",
        "Collateral lookups answered from the cache",
        m.collateral_hits.clone(),
    );
    registry.register(
        "collateral_fetch_errors",
        "Collateral fetches that failed",
        m.collateral_fetch_errors.clone(),
    );
    registry.register(
        "resources_rotation_overdue",
        "Resources past their rotate-by date (at scrape time)",
        m.rotation_overdue.clone(),
    );
    registry.register(
        "resources_rotation_due_soon",
        "Resources whose rotate-by date is within [lifecycle] rotation_warning_days (at scrape time)",
        m.rotation_due_soon.clone(),
    );
    registry.register(
        "rotation_scan_errors",
        "Scrapes where the store could not be read for the rotation gauges (they keep their last value)",
        m.rotation_scan_errors.clone(),
    );
    (m, registry)
});

fn metrics() -> &'static Metrics {
    &METRICS.0
}

/// A TEE name as a bounded label value.
fn tee_label(tee: Option<&str>) -> &'static str {
    match tee {
        None => "none",
        Some("snp") => "snp",
        Some("tdx") => "tdx",
        Some("az-snp-vtpm") => "az-snp-vtpm",
        Some("az-tdx-vtpm") => "az-tdx-vtpm",
        Some("sample") => "sample",
        Some(_) => "other",
    }
}

/// Counts one VM decision (called by `crate::decision::record_decision` only): `action` is
/// `auth`, `attest` or `release`; `denied` is the refusal's error type, already one of the
/// stable type ids or `other` (so the label set stays bounded).
pub fn observe_decision(action: &'static str, tee: Option<&str>, denied: Option<&'static str>) {
    let outcome = if denied.is_none() { "allowed" } else { "denied" };
    let tee = tee_label(tee);
    metrics().decisions.get_or_create(&DecisionLabels { action, tee, outcome }).inc();
    if let Some(r#type) = denied {
        metrics().denials.get_or_create(&DenialLabels { action, r#type }).inc();
    }
}

/// Counts one administrative action (called by `crate::decision::record_admin` only).
pub fn observe_admin(allowed: bool) {
    let outcome = if allowed { "allowed" } else { "denied" };
    metrics().admin.get_or_create(&AdminLabels { outcome }).inc();
}

/// Records one answered request. `route` is the matched path template (or `unmatched`).
pub fn observe_request(route: &str, method: &str, status: u16, seconds: f64) {
    let labels = RequestLabels { route: route.to_owned(), method: method.to_owned(), status };
    metrics().requests.get_or_create(&labels).observe(seconds);
}

/// Counts a failure answered 503 (`kind = "unavailable"`) or 500 (`"internal"`).
pub fn backend_error(component: &'static str, kind: &'static str) {
    metrics().backend_errors.get_or_create(&BackendLabels { component, kind }).inc();
}

/// Counts one request refused by the rate limit.
pub fn rate_limited() {
    metrics().rate_limited.inc();
}

/// Counts a collateral lookup served from the cache.
pub fn collateral_hit() {
    metrics().collateral_hits.inc();
}

/// Counts a failed collateral fetch.
pub fn collateral_fetch_error() {
    metrics().collateral_fetch_errors.inc();
}

/// The text exposition. `rotation` is `(overdue, due_soon)` read from the store just now, or
/// `None` when the store could not be read (the gauges keep their last values and
/// `keylatch_rotation_scan_errors_total` grows).
#[must_use]
pub fn render(rotation: Option<(u64, u64)>) -> String {
    match rotation {
        Some((overdue, soon)) => {
            metrics().rotation_overdue.set(i64::try_from(overdue).unwrap_or(i64::MAX));
            metrics().rotation_due_soon.set(i64::try_from(soon).unwrap_or(i64::MAX));
        }
        None => {
            metrics().rotation_scan_errors.inc();
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail; an error here would be a bug in the encoder.
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.1).is_err() {
        tracing::error!("metrics encoding failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_unknown_tees_to_other() {
        assert_eq!(tee_label(Some("snp")), "snp");
        assert_eq!(tee_label(Some("az-snp-vtpm")), "az-snp-vtpm");
        assert_eq!(tee_label(Some("az-tdx-vtpm")), "az-tdx-vtpm");
        assert_eq!(tee_label(Some("sgx")), "other");
        assert_eq!(tee_label(None), "none");
    }
}
