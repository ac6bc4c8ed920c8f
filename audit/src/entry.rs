//! The audit entry: what the broker records for every attestation, release, denial and admin
//! action, and its canonical bytes (RFC 8785 JCS), which are what the Merkle tree hashes.
//!
//! An entry never holds key material, wrapped or not, nor bearer tokens, session cookies,
//! attestation tokens or nonces: only identities, digests and decisions. The
//! `sample_entry_has_only_expected_keys` test pins the complete set of JSON member names, so a
//! field added here is a deliberate, reviewed change.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::jcs::{self, JcsError};

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the broker decided, RFC 3339 in UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The request id that also appears in the broker's logs.
    pub request_id: String,
    /// What happened.
    pub kind: EntryKind,
    /// Who asked.
    pub actor: Actor,
    /// The resource concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// The outcome.
    pub decision: Decision,
    /// Every reason behind the decision (appraisal mismatches, policy rules), possibly empty.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// SHA-256 of the evidence the VM presented, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
    /// The reference-value bundle used in the appraisal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    /// The release policy evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// The client's network address as the broker saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
}

/// What kind of event an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Evidence was appraised (success or failure).
    Attestation,
    /// A resource was released.
    Release,
    /// A resource request was refused.
    Denial,
    /// An admin API call.
    Admin,
}

/// The decision recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed / succeeded.
    Allow,
    /// Refused by verification, appraisal, policy or authorization.
    Deny,
    /// Failed for an internal reason (HSM, store); nothing was released.
    Error,
    /// (Admin entries) written before a change is attempted; a later entry with the same
    /// operation and target gives the outcome. An intent with none after it means the broker
    /// stopped in between: the change may have been made, and the store says whether.
    Intent,
}

/// Who made the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A confidential VM, identified by its verified claims.
    Vm(VmIdentity),
    /// An authenticated admin principal.
    Admin(AdminIdentity),
}

/// A VM's identity, named after the normalized claims (`verifier::claims`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VmIdentity {
    /// `snp`, `tdx` or `sample`.
    pub tee: String,
    /// True when the evidence was signed by the simulation PKI.
    pub simulated: bool,
    /// SEV-SNP CHIP_ID, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip_id: Option<String>,
    /// TDX FMSPC of the PCK certificate, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmspc: Option<String>,
    /// TDX PCK certificate identity (e.g. its serial number or subject key id), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pck_id: Option<String>,
    /// SEV-SNP launch MEASUREMENT, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// TDX MRTD, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_td: Option<String>,
}

/// An admin principal and the role it acted in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminIdentity {
    /// Principal name (never its token).
    pub principal: String,
    /// `admin`, `key-custodian`, `policy-author` or `auditor`.
    pub role: String,
}

/// A resource path and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    /// `<repo>/<type>/<tag>`.
    pub path: String,
    /// Key version, when one was selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A reference-value bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    /// Bundle name.
    pub name: String,
    /// Bundle version.
    pub version: u64,
    /// SHA-256 of the signed bundle, hex.
    pub digest: String,
}

/// A release policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// Policy version.
    pub version: u64,
    /// SHA-256 of the policy document, hex.
    pub digest: String,
}

impl AuditEntry {
    /// The canonical bytes (RFC 8785) that the log hashes as this entry's leaf.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, JcsError> {
        jcs::to_canonical_bytes(self)
    }

    /// A short actor description for tables: `snp:chip=ab12…`, `admin:alice(key-custodian)`.
    #[must_use]
    pub fn actor_summary(&self) -> String {
        match &self.actor {
            Actor::Admin(a) => format!("admin:{}({})", a.principal, a.role),
            Actor::Vm(vm) => {
                let sim = if vm.simulated { "sim-" } else { "" };
                let id = vm
                    .chip_id
                    .as_deref()
                    .map(|c| format!("chip={}", short(c)))
                    .or_else(|| vm.fmspc.as_deref().map(|f| format!("fmspc={f}")))
                    .unwrap_or_default();
                format!("{sim}{}:{id}", vm.tee)
            }
        }
    }
}

/// The first 16 characters of a hex identity, for display.
fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use time::macros::datetime;

    pub(crate) fn sample_vm_entry() -> AuditEntry {
        AuditEntry {
            time: datetime!(2025-03-01 12:00:00 UTC),
            request_id: "req-1".into(),
            kind: EntryKind::Release,
            actor: Actor::Vm(VmIdentity {
                tee: "snp".into(),
                simulated: true,
                chip_id: Some("ab".repeat(64)),
                fmspc: None,
                pck_id: None,
                measurement: Some("cd".repeat(48)),
                mr_td: None,
            }),
            resource: Some(ResourceRef { path: "default/disk/root".into(), version: Some(3) }),
            decision: Decision::Allow,
            reasons: vec!["rule 0 matched".into()],
            evidence_sha256: Some("ef".repeat(32)),
            bundle: Some(BundleRef {
                name: "prod-images".into(),
                version: 7,
                digest: "01".repeat(32),
            }),
            policy: Some(PolicyRef { version: 2, digest: "02".repeat(32) }),
            client_address: Some("192.0.2.7:50412".into()),
        }
    }

    fn collect_keys(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, child) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                collect_keys(child, &path, out);
                out.insert(path);
            }
        }
    }

    #[test]
    fn sample_entry_has_only_expected_keys() {
        let mut vm = sample_vm_entry();
        if let Actor::Vm(id) = &mut vm.actor {
            id.fmspc = Some("00906ed50000".into());
            id.pck_id = Some("11".repeat(20));
            id.mr_td = Some("22".repeat(48));
        }
        let mut keys = BTreeSet::new();
        collect_keys(&serde_json::to_value(&vm).unwrap(), "", &mut keys);
        let expected: BTreeSet<String> = [
            "time",
            "request_id",
            "kind",
            "actor",
            "actor.type",
            "actor.tee",
            "actor.simulated",
            "actor.chip_id",
            "actor.fmspc",
            "actor.pck_id",
            "actor.measurement",
            "actor.mr_td",
            "resource",
            "resource.path",
            "resource.version",
            "decision",
            "reasons",
            "evidence_sha256",
            "bundle",
            "bundle.name",
            "bundle.version",
            "bundle.digest",
            "policy",
            "policy.version",
            "policy.digest",
            "client_address",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(keys, expected);

        let admin = AuditEntry {
            actor: Actor::Admin(AdminIdentity {
                principal: "alice".into(),
                role: "key-custodian".into(),
            }),
            kind: EntryKind::Admin,
            ..sample_vm_entry()
        };
        let mut keys = BTreeSet::new();
        collect_keys(&serde_json::to_value(&admin).unwrap(), "", &mut keys);
        let actor_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with("actor.")).collect();
        assert_eq!(actor_keys, vec!["actor.principal", "actor.role", "actor.type"]);
    }

    #[test]
    fn canonical_bytes_are_sorted_compact_json() {
        let entry = AuditEntry {
            time: datetime!(2025-03-01 12:00:00 UTC),
            request_id: "r".into(),
            kind: EntryKind::Admin,
            actor: Actor::Admin(AdminIdentity { principal: "alice".into(), role: "admin".into() }),
            resource: None,
            decision: Decision::Deny,
            reasons: vec![],
            evidence_sha256: None,
            bundle: None,
            policy: None,
            client_address: None,
        };
        assert_eq!(
            String::from_utf8(entry.canonical_bytes().unwrap()).unwrap(),
            r#"{"actor":{"principal":"alice","role":"admin","type":"admin"},"decision":"deny","kind":"admin","reasons":[],"request_id":"r","time":"2025-03-01T12:00:00Z"}"#
        );
    }

    #[test]
    fn actor_summary_names_tee_and_chip() {
        assert_eq!(sample_vm_entry().actor_summary(), "sim-snp:chip=abababababababab");
    }
}
