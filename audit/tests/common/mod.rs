//! Entries the audit tests build their logs from.

use keylatch_audit::entry::{Actor, AuditEntry, Decision, EntryKind, ResourceRef};

/// An allowed release of `resource` to `actor` at `time`, with no reasons, evidence digest,
/// bundle, policy or client address recorded.
pub fn allowed_release(
    time: time::OffsetDateTime,
    request_id: String,
    actor: Actor,
    resource: ResourceRef,
) -> AuditEntry {
    AuditEntry {
        time,
        request_id,
        kind: EntryKind::Release,
        actor,
        resource: Some(resource),
        decision: Decision::Allow,
        reasons: vec![],
        evidence_sha256: None,
        bundle: None,
        policy: None,
        client_address: None,
    }
}
