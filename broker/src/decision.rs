//! The one place every broker decision passes through: [`record_decision`] for VMs and
//! [`record_admin`] for administrative actions. Each writes a structured log line and appends
//! an entry to the tamper-evident audit log ([`crate::audit::AuditLog`]), awaiting durability.
//!
//! The rule: an **allowed** decision whose entry cannot be made durable returns an error
//! (503 `unavailable`), and the caller must not let it take effect — the resource handler sends
//! no JWE, the attest handler no token, an admin call reports failure. A **refusal** stays the
//! refusal it was: the failed append is logged and `Ok` returned.
pub use crate::audit::record::{Action, AdminRecord, Appraised, DecisionRecord, INTENT};

use crate::audit::record::{admin_entry, decision_entry};
use crate::audit::AuditLog;
use crate::error::{ApiError, ErrorKind};

fn audit_failed(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "audit log could not be written");
    ApiError::new(
        ErrorKind::Unavailable,
        "the audit log could not be written; nothing was released or changed; retry later",
    )
}

/// An error type id as a bounded metrics label value: a stable type, or `other`.
fn error_label(outcome: &str) -> &'static str {
    ErrorKind::ALL.iter().map(|k| k.type_id()).find(|t| *t == outcome).unwrap_or("other")
}

/// Records `record` in the log and the audit log. Returns an error when an allowed decision
/// could not be made durable; callers must not release a resource (or issue a token) then.
pub async fn record_decision(
    audit: &AuditLog,
    record: &DecisionRecord<'_>,
) -> Result<(), ApiError> {
    let denied = (!record.allowed).then(|| error_label(record.outcome));
    crate::metrics::observe_decision(record.action.as_str(), record.tee, denied);
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
        crate::metrics::observe_admin(record.allowed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_unknown_error_types_to_other() {
        assert_eq!(error_label("policy-denied"), "policy-denied");
        assert_eq!(error_label("rule-7"), "other");
    }
}
