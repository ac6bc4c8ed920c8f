//! The admin API under `/admin/v1`: resources, release policies, reference-value bundles and
//! admin tokens, JSON in and out, for authenticated [`auth::Principal`]s with separated roles
//! (documented in `kbs/ADMIN-API.md`). This module owns the routes and [`finish`], which records
//! every call, allowed or refused, through [`crate::decision::record_admin`] before answering.
//!
//! - [`auth`]: roles, principals, bearer tokens;
//! - [`resources`], [`policies`], [`refvals`], [`tokens`]: the handlers;
//! - [`registry`]: the reference-value trust sets and the cache of current bundles.

pub mod audit;
pub mod auth;
pub mod policies;
pub mod refvals;
pub mod registry;
pub mod resources;
pub mod tokens;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use crate::decision::{record_admin, AdminRecord};
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;
use auth::Principal;

/// The admin routes, to be merged into the broker's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/resources", get(resources::list))
        .route(
            "/admin/v1/resources/{*path}",
            get(resources::show)
                .put(resources::put)
                .patch(resources::patch)
                .delete(resources::delete),
        )
        .route("/admin/v1/policies", get(policies::list))
        .route("/admin/v1/policies/{*path}", get(policies::get).put(policies::set))
        .route("/admin/v1/reference-values", get(refvals::list))
        .route("/admin/v1/reference-values/{name}", get(refvals::show).put(refvals::publish))
        .route("/admin/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/admin/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/admin/v1/keystore/import-key", get(resources::import_key))
        .route("/admin/v1/audit", get(audit::summary))
        .route("/admin/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/admin/v1/audit/entries", get(audit::entries))
        .route("/admin/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/admin/v1/audit/proof/consistency", get(audit::consistency))
        .route("/admin/v1/audit/query", get(audit::search))
}

/// The authenticated caller and where the call came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub client: Option<String>,
    /// Where the call is recorded.
    pub audit: crate::audit::AuditLog,
}

impl Caller {
    /// Records that this caller is about to change `target` by `operation`
    /// ([`crate::decision::record_intent`]); call it right before the store write.
    pub async fn intent(&self, operation: &str, target: Option<&str>) -> Result<(), ApiError> {
        let record = AdminRecord {
            principal: &self.principal.name,
            role: self.principal.role.as_str(),
            operation,
            target,
            client: self.client.as_deref(),
            ..AdminRecord::default()
        };
        crate::decision::record_intent(&self.audit, &record).await
    }

    /// Checks the role and the path scope of a path-addressed call; returns the validated path.
    pub fn authorize_path(&self, roles: &[auth::Role], path: &str) -> Result<String, ApiError> {
        self.principal.require(roles)?;
        let path = crate::protocol::resource::parse_path(path)?;
        self.principal.require_path(&path)?;
        Ok(path)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        Ok(Self { principal, client: auth::client_addr(parts), audit: state.audit.clone() })
    }
}

/// A successful admin call's answer and what the record says about it.
#[derive(Debug)]
pub struct Done {
    pub status: StatusCode,
    pub body: Value,
    pub version: Option<u64>,
    /// What changed, for the record; never secret bytes.
    pub detail: String,
}

impl Done {
    #[must_use]
    pub fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, body, version: None, detail: String::new() }
    }
}

/// Records the call (allowed or refused) and answers it. If the record cannot be made, the
/// caller gets that error instead of the result.
pub async fn finish(
    caller: &Caller,
    operation: &str,
    target: Option<&str>,
    result: Result<Done, ApiError>,
) -> Response {
    let p = &caller.principal;
    let (allowed, outcome, detail, version) = match &result {
        Ok(done) => (true, "ok", done.detail.as_str(), done.version),
        Err(e) => (false, e.kind.type_id(), e.detail.as_str(), None),
    };
    let recorded = record_admin(
        &caller.audit,
        &AdminRecord {
            principal: &p.name,
            role: p.role.as_str(),
            operation,
            target,
            version,
            allowed,
            outcome,
            detail,
            client: caller.client.as_deref(),
        },
    )
    .await;
    match (recorded, result) {
        (Err(e), _) | (Ok(()), Err(e)) => e.into_response(),
        (Ok(()), Ok(done)) => (done.status, Json(done.body)).into_response(),
    }
}

/// `?version=N`.
#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    pub version: Option<u64>,
}

/// Reads `?version=N`, answering 400 in the broker's error format.
pub fn version_query(
    q: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Option<u64>, ApiError> {
    q.map(|Query(v)| v.version)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("query: {e}")))
}

/// Unix seconds as RFC 3339 (for humans reading the JSON).
#[must_use]
pub fn rfc3339(t: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}
