//! The one place every broker decision passes through: [`record_decision`] for VMs and
//! [`record_admin`] for administrative actions. Each writes a structured log line and appends
//! an entry to the tamper-evident audit log ([`crate::audit::AuditLog`]), awaiting durability.
//!
//! The rule: an **allowed** decision whose entry cannot be made durable returns an error
//! (503 `unavailable`), and the caller must not let it take effect — the resource handler sends
//! no JWE, the attest handler no token, an admin call reports failure. A **refusal** stays the
//! refusal it was: the failed append is logged and `Ok` returned.
// reason: serde's derive hands `session_digest` a `&Option<&str>` (code we cannot change).
#![allow(clippy::ref_option_ref)]

use keylatch_audit::entry::{BundleRef, VmIdentity};
use serde::Serialize;

use crate::audit::record::{admin_entry, decision_entry};
use crate::audit::AuditLog;
use crate::error::{ApiError, ErrorKind};

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

/// A reference-value bundle appraised, and whether it accepted the claims.
#[derive(Debug, Clone, Serialize)]
pub struct Appraised {
    pub bundle: BundleRef,
    pub accepted: bool,
}

/// One decision, as the audit entry will hold it. Never contains secret bytes.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord<'a> {
    pub action: Action,
    pub allowed: bool,
    /// The request id of the broker's logs (`None`: one is generated).
    pub request_id: Option<&'a str>,
    /// The client's address as the server saw it.
    pub client: Option<&'a str>,
    /// `snp`, `tdx`, `sample`.
    pub tee: Option<&'a str>,
    pub simulated: Option<bool>,
    /// The VM's verified identity (chip id / FMSPC, measurement / MRTD), when known.
    pub vm: Option<VmIdentity>,
    /// The challenge session. Its id is the `kbs-session-id` cookie, which authorizes resource
    /// requests after attestation: it is written only as a digest (see [`session_digest`]).
    #[serde(serialize_with = "session_digest")]
    pub session: Option<&'a str>,
    /// The token's `jti`.
    pub token_jti: Option<&'a str>,
    /// Hex SHA-256 of the evidence.
    pub evidence_sha256: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub resource_version: Option<u64>,
    pub policy_version: Option<u64>,
    pub policy_digest: Option<&'a str>,
    /// Bundles appraised.
    pub bundles: Vec<Appraised>,
    /// The error type, or the allowing rule.
    pub outcome: &'a str,
    /// Why (denial reasons, failed step).
    pub detail: &'a str,
}

fn audit_failed(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "audit log could not be written");
    ApiError::new(
        ErrorKind::Unavailable,
        "the audit log could not be written; nothing was released or changed; retry later",
    )
}

/// Records `record` in the log and the audit log. Returns an error when an allowed decision
/// could not be made durable; callers must not release a resource (or issue a token) then.
pub async fn record_decision(
    audit: &AuditLog,
    record: &DecisionRecord<'_>,
) -> Result<(), ApiError> {
    crate::metrics::observe_decision(record);
    let json = serde_json::to_string(record).unwrap_or_default();
    if record.allowed {
        tracing::info!(target: "keylatch::decision", decision = %json, "decision");
    } else {
        tracing::warn!(target: "keylatch::decision", decision = %json, "decision");
    }
    let Some(entry) = decision_entry(record) else { return Ok(()) };
    match audit.append(entry).await {
        Ok(_) => Ok(()),
        Err(e) if record.allowed => Err(audit_failed(&e)),
        Err(e) => {
            tracing::error!(error = %e, "audit log could not record a refusal");
            Ok(())
        }
    }
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

/// The outcome of an intent entry ([`record_intent`]).
pub const INTENT: &str = "intent";

/// Records, BEFORE a change reaches the store, that `record`'s principal is about to make it
/// (outcome [`INTENT`], no version, no detail). With the entry written after the change this
/// brackets it: a process killed between the store commit and the outcome entry still leaves
/// the change on the record. An intent with no later entry for the same operation and target
/// means the broker stopped in between; the store says whether the change was made. An error
/// means the change must not be attempted.
pub async fn record_intent(audit: &AuditLog, record: &AdminRecord<'_>) -> Result<(), ApiError> {
    let intent =
        AdminRecord { allowed: true, outcome: INTENT, version: None, detail: "", ..*record };
    record_admin(audit, &intent).await
}

/// Closes an intent the CLI recorded when the change then failed: the outcome entry
/// (`unavailable`, with the cause) so the intent does not read as a broker stopped mid-change.
/// Returns `error` to report. (A refused entry that cannot be written is logged by
/// [`record_admin`], never an error.)
pub async fn record_cli_failure(
    audit: &AuditLog,
    intent: &AdminRecord<'_>,
    error: anyhow::Error,
) -> anyhow::Error {
    let detail = format!("{error:#}");
    let failed = AdminRecord { allowed: false, outcome: "unavailable", detail: &detail, ..*intent };
    let _ = record_admin(audit, &failed).await;
    error
}

/// Records an administrative action, like [`record_decision`]: an error means an allowed
/// action's record is not durable and the action must not be reported as done.
pub async fn record_admin(audit: &AuditLog, record: &AdminRecord<'_>) -> Result<(), ApiError> {
    // An action is counted once, by its outcome entry.
    if record.outcome != INTENT {
        crate::metrics::observe_admin(record);
    }
    let json = serde_json::to_string(record).unwrap_or_default();
    tracing::info!(target: "keylatch::admin", action = %json, "admin action");
    match audit.append(admin_entry(record)).await {
        Ok(_) => Ok(()),
        Err(e) if record.allowed => Err(audit_failed(&e)),
        Err(e) => {
            tracing::error!(error = %e, "audit log could not record a refused admin action");
            Ok(())
        }
    }
}

/// Serializes a session id as `sha256:` and the first 16 hex digits of its SHA-256: enough to
/// correlate log lines of one handshake, useless as a cookie.
#[allow(clippy::ref_option, clippy::ref_option_ref)] // reason: serde's `serialize_with` passes `&Option<T>`
fn session_digest<S: serde::Serializer>(id: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    use sha2::Digest as _;
    match id {
        Some(id) => {
            let digest = hex::encode(sha2::Sha256::digest(id.as_bytes()));
            s.serialize_str(&format!("sha256:{}", digest.get(..16).unwrap_or_default()))
        }
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;

    use super::*;

    #[test]
    fn session_ids_are_logged_only_as_a_digest() {
        let record = DecisionRecord {
            action: Action::Attest,
            allowed: true,
            request_id: None,
            client: None,
            tee: None,
            simulated: None,
            vm: None,
            session: Some("3f1c2a9e-session-cookie"),
            token_jti: None,
            evidence_sha256: None,
            resource: None,
            resource_version: None,
            policy_version: None,
            policy_digest: None,
            bundles: Vec::new(),
            outcome: "token-issued",
            detail: "",
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("3f1c2a9e-session-cookie"), "{json}");
        let digest = hex::encode(sha2::Sha256::digest(b"3f1c2a9e-session-cookie"));
        assert!(json.contains(&format!("\"session\":\"sha256:{}\"", &digest[..16])), "{json}");
    }
}
