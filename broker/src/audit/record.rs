//! Decision and admin records turned into audit entries. Only identities, digests and
//! decisions cross over: records carry no key material, tokens, cookies or nonces, and the
//! session id and token `jti` stay in the broker's logs (they would let a reader correlate with
//! secrets-bearing stores, and identify nothing an auditor needs).

use keylatch_audit::entry::{
    Actor, AdminIdentity, BundleRef, Decision, EntryKind, PolicyRef, ResourceRef, VmIdentity,
};
use keylatch_audit::AuditEntry;
use rand_core::{OsRng, RngCore as _};
use serde_json::Value;

use crate::decision::{Action, AdminRecord, DecisionRecord};

/// A fresh request id (until every request carries one from the server's middleware).
#[must_use]
pub fn new_request_id() -> String {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    hex::encode(id)
}

/// A VM's identity from its normalized claims as JSON (`verifier::Claims`, or a token's
/// `evidence` claim): TEE, simulated flag, SNP chip id and measurement, TDX FMSPC and MRTD.
#[must_use]
pub fn vm_identity(evidence: &Value) -> VmIdentity {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let snp = evidence.get("snp");
    let tdx = evidence.get("tdx");
    VmIdentity {
        tee: text(evidence.get("tee")).unwrap_or_default(),
        simulated: evidence.get("simulated").and_then(Value::as_bool).unwrap_or(false),
        chip_id: text(snp.and_then(|s| s.get("chip_id"))),
        fmspc: text(tdx.and_then(|t| t.get("fmspc"))),
        pck_id: text(tdx.and_then(|t| t.get("pck_id"))),
        measurement: text(snp.and_then(|s| s.get("measurement"))),
        mr_td: text(tdx.and_then(|t| t.get("mr_td"))),
    }
}

/// The bundles of a token's `appraisals` claim (`[{bundle, version, digest, ...}]`).
#[must_use]
pub fn bundles_of(appraisals: &Value) -> Vec<BundleRef> {
    appraisals
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| BundleRef {
                    name: a.get("bundle").and_then(Value::as_str).unwrap_or("?").to_owned(),
                    version: a.get("version").and_then(Value::as_u64).unwrap_or(0),
                    digest: a.get("digest").and_then(Value::as_str).unwrap_or("").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn reasons(outcome: &str, detail: &str) -> Vec<String> {
    [outcome, detail].into_iter().filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn decision(allowed: bool, outcome: &str) -> Decision {
    match (allowed, outcome) {
        (true, crate::decision::INTENT) => Decision::Intent,
        (true, _) => Decision::Allow,
        (false, "unavailable" | "internal") => Decision::Error,
        (false, _) => Decision::Deny,
    }
}

/// The entry for a VM decision; `None` for challenges (`auth`), which decide nothing about a VM
/// and stay in the broker's log only.
#[must_use]
pub fn decision_entry(r: &DecisionRecord<'_>) -> Option<AuditEntry> {
    let kind = match (r.action, r.allowed) {
        (Action::Auth, _) => return None,
        (Action::Attest, _) => EntryKind::Attestation,
        (Action::Release, true) => EntryKind::Release,
        (Action::Release, false) => EntryKind::Denial,
        (Action::Admin, _) => EntryKind::Admin,
    };
    let vm = r.vm.clone().unwrap_or_else(|| VmIdentity {
        tee: r.tee.unwrap_or_default().to_owned(),
        simulated: r.simulated.unwrap_or(false),
        ..VmIdentity::default()
    });
    let policy = match (r.policy_version, r.policy_digest) {
        (Some(version), Some(digest)) => Some(PolicyRef { version, digest: digest.to_owned() }),
        _ => None,
    };
    Some(AuditEntry {
        time: time::OffsetDateTime::now_utc(),
        request_id: r.request_id.map_or_else(new_request_id, str::to_owned),
        kind,
        actor: Actor::Vm(vm),
        resource: r
            .resource
            .map(|p| ResourceRef { path: p.to_owned(), version: r.resource_version }),
        decision: decision(r.allowed, r.outcome),
        reasons: reasons(r.outcome, r.detail),
        evidence_sha256: r.evidence_sha256.map(str::to_owned),
        // The first bundle that accepted the claims, else the first appraised.
        bundle: r
            .bundles
            .iter()
            .find(|b| b.accepted)
            .or(r.bundles.first())
            .map(|b| b.bundle.clone()),
        policy,
        client_address: r.client.map(str::to_owned),
    })
}

/// The entry for an administrative action.
#[must_use]
pub fn admin_entry(r: &AdminRecord<'_>) -> AuditEntry {
    let mut reasons = vec![r.operation.to_owned()];
    reasons.extend(self::reasons(r.outcome, r.detail));
    AuditEntry {
        time: time::OffsetDateTime::now_utc(),
        request_id: new_request_id(),
        kind: EntryKind::Admin,
        actor: Actor::Admin(AdminIdentity {
            principal: r.principal.to_owned(),
            role: r.role.to_owned(),
        }),
        resource: r.target.map(|t| ResourceRef { path: t.to_owned(), version: r.version }),
        decision: decision(r.allowed, r.outcome),
        reasons,
        evidence_sha256: None,
        bundle: None,
        policy: None,
        client_address: r.client.map(str::to_owned),
    }
}
