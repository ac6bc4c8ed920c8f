//! Administration: the operations behind each admin API route (resources, release policies,
//! reference-value bundles, admin tokens, the audit log), for authenticated [`auth::Principal`]s
//! with separated roles (documented in `server/ADMIN-API.md`). Each operation takes its typed
//! inputs and returns a [`Done`] or the rule that refused it, and records the call, allowed or
//! refused, through [`conclude`] before it returns. The HTTP edge only extracts and maps.
//!
//! - [`auth`]: roles, principals, bearer tokens, authentication;
//! - [`resources`], [`policies`], [`refvals`], [`tokens`], [`audit`]: the operations;
//! - [`registry`]: the reference-value trust sets and the cache of current bundles.

pub mod audit;
pub mod auth;
pub mod policies;
pub mod refvals;
pub mod registry;
pub mod resources;
pub mod tokens;

use serde::Deserialize;
use serde_json::Value;

use crate::decision::{record_admin, AdminRecord};
use crate::error::ApiError;
use auth::Principal;

/// The authenticated caller, when and where the call came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub client: Option<String>,
    /// When the call was made, read once by the edge: the caller was authenticated at this
    /// instant and the operation uses it for every time it stores or checks.
    pub now: time::OffsetDateTime,
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
        let path = crate::path::parse_path(path)?;
        self.principal.require_path(&path)?;
        Ok(path)
    }
}

/// A successful admin operation's answer and what the record says about it.
#[derive(Debug)]
pub struct Done {
    /// Something new was made (HTTP 201), else 200.
    pub created: bool,
    pub body: Value,
    pub version: Option<u64>,
    /// What changed, for the record; never secret bytes.
    pub detail: String,
}

impl Done {
    #[must_use]
    pub fn ok(body: Value) -> Self {
        Self { created: false, body, version: None, detail: String::new() }
    }
}

/// Records the call (allowed or refused) and returns its result. If the record cannot be made,
/// the caller gets that error instead of the result.
pub async fn conclude(
    caller: &Caller,
    operation: &str,
    target: Option<&str>,
    result: Result<Done, ApiError>,
) -> Result<Done, ApiError> {
    let p = &caller.principal;
    let (allowed, outcome, detail, version) = match &result {
        Ok(done) => (true, "ok", done.detail.as_str(), done.version),
        Err(e) => (false, e.kind.type_id(), e.detail.as_str(), None),
    };
    record_admin(
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
    .await?;
    result
}

/// `?version=N`.
#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    pub version: Option<u64>,
}

/// Unix seconds as RFC 3339 (for humans reading the JSON).
#[must_use]
pub fn rfc3339(t: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}
