//! The one place every broker decision passes through: [`record_decision`]. Today it writes a
//! structured log line; the audit issue turns it into a durable, write-ahead audit entry (the
//! release path already awaits it before sending the resource, so a failure can stop the
//! release once it returns an error).

use serde::Serialize;

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A challenge was issued.
    Auth,
    /// Evidence was appraised and a token issued (or refused).
    Attest,
    /// A resource was released (or refused).
    Release,
    /// An operator, custodian, policy author or auditor acted (or was refused).
    Admin,
}

/// One decision, as the audit entry will hold it. Never contains secret bytes.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord<'a> {
    pub action: Action,
    pub allowed: bool,
    /// `snp`, `tdx`, `sample`.
    pub tee: Option<&'a str>,
    pub simulated: Option<bool>,
    pub session: Option<&'a str>,
    /// The token's `jti`.
    pub token_jti: Option<&'a str>,
    /// Hex SHA-256 of the evidence.
    pub evidence_sha256: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub resource_version: Option<u64>,
    pub policy_version: Option<u64>,
    pub policy_digest: Option<&'a str>,
    /// Bundles appraised: `name@version`.
    pub bundles: Vec<String>,
    /// The error type, or the allowing rule.
    pub outcome: &'a str,
    /// Why (denial reasons, failed step).
    pub detail: &'a str,
}

/// Records `record`. Returns an error when the record could not be made durable; callers
/// must not release a resource then. (Infallible until the audit log is wired.)
#[allow(clippy::unnecessary_wraps, clippy::unused_async)] // reason: the audit log will fail and await here
pub async fn record_decision(record: &DecisionRecord<'_>) -> Result<(), crate::error::ApiError> {
    crate::metrics::observe_decision(record);
    let json = serde_json::to_string(record).unwrap_or_default();
    if record.allowed {
        tracing::info!(target: "keylatch::decision", decision = %json, "decision");
    } else {
        tracing::warn!(target: "keylatch::decision", decision = %json, "decision");
    }
    Ok(())
}

/// One administrative action (allowed or refused), as the audit entry will hold it. Never
/// contains key material, tokens or token hashes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdminRecord<'a> {
    /// The principal's name (`cli` for commands that work on the store directly).
    pub principal: &'a str,
    /// `admin`, `key-custodian`, `policy-author`, `auditor` (or `local` for the CLI).
    pub role: &'a str,
    /// What was attempted, `<object>.<verb>`: `resource.put`, `resource.destroy`,
    /// `policy.set`, `reference-values.publish`, `token.create`, `audit.read`, ...
    pub operation: &'a str,
    /// The object acted on: a resource path, a bundle name, a token id.
    pub target: Option<&'a str>,
    /// The version created or acted on, when there is one.
    pub version: Option<u64>,
    pub allowed: bool,
    /// The error type when refused, else `ok`.
    pub outcome: &'a str,
    /// Why (refusal reason) or what changed; never secret bytes.
    pub detail: &'a str,
    /// The client's address (`None` for the CLI).
    pub client: Option<&'a str>,
}

/// Records an administrative action, like [`record_decision`]: an error means the record is not
/// durable and the action must not be reported as done.
#[allow(clippy::unnecessary_wraps, clippy::unused_async)] // reason: the audit log will fail and await here
pub async fn record_admin(record: &AdminRecord<'_>) -> Result<(), crate::error::ApiError> {
    crate::metrics::observe_admin(record);
    let json = serde_json::to_string(record).unwrap_or_default();
    tracing::info!(target: "keylatch::admin", action = %json, "admin action");
    Ok(())
}
