//! Decision and admin records turned into audit entries. Only identities, digests and
//! decisions cross over: records carry no key material, tokens, cookies or nonces, and the
//! session id and token `jti` stay in the broker's logs (they would let a reader correlate with
//! secrets-bearing stores, and identify nothing an auditor needs). The record types
//! ([`DecisionRecord`], [`AdminRecord`]) are defined here; `crate::decision` is the hook that
//! fills them in, logs, counts and appends.
// reason: serde's derive hands `session_digest` a `&Option<&str>` (code we cannot change).
#![allow(clippy::ref_option_ref)]

use keylatch_audit::entry::{
    Actor, AdminIdentity, BundleRef, Decision, EntryKind, PolicyRef, ResourceRef, VmIdentity,
};
use keylatch_audit::AuditEntry;
use rand_core::{OsRng, RngCore as _};
use serde_json::Value;

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

impl Action {
    /// The stable name (as serialized).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Attest => "attest",
            Self::Release => "release",
            Self::Admin => "admin",
        }
    }
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

impl<'a> DecisionRecord<'a> {
    /// A record of `action` with its outcome and nothing else known yet: the caller sets the
    /// fields it knows (`DecisionRecord { tee, ..DecisionRecord::new(..) }`).
    #[must_use]
    pub fn new(action: Action, allowed: bool, outcome: &'a str, detail: &'a str) -> Self {
        Self {
            action,
            allowed,
            request_id: None,
            client: None,
            tee: None,
            simulated: None,
            vm: None,
            session: None,
            token_jti: None,
            evidence_sha256: None,
            resource: None,
            resource_version: None,
            policy_version: None,
            policy_digest: None,
            bundles: Vec::new(),
            outcome,
            detail,
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

/// The outcome of an intent entry (`crate::decision::record_intent`).
pub const INTENT: &str = "intent";

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
        (true, INTENT) => Decision::Intent,
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

#[cfg(test)]
mod tests {
    use sha2::Digest as _;

    use super::*;

    #[test]
    fn session_ids_are_logged_only_as_a_digest() {
        let record = DecisionRecord {
            session: Some("3f1c2a9e-session-cookie"),
            ..DecisionRecord::new(Action::Attest, true, "token-issued", "")
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("3f1c2a9e-session-cookie"), "{json}");
        let digest = hex::encode(sha2::Sha256::digest(b"3f1c2a9e-session-cookie"));
        assert!(json.contains(&format!("\"session\":\"sha256:{}\"", &digest[..16])), "{json}");
    }
}
