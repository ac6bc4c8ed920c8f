//! The evidence form confidential-containers guest-components' SNP attester sends:
//! `{"attestation_report": <the sev crate's serde form>, "cert_chain": [{cert_type, data}] | null}`.
//!
//! The report travels field by field, not as bytes, so the 1184-byte layout is rebuilt here
//! (reserved bytes zero) and then parsed strictly like any report; the signature is checked
//! over the rebuilt bytes. The serde mirror is ours rather than the `sev` crate's type: its
//! policy conversion forces bit 17 on, and its encoder guesses the product of a version 2
//! report from `CHIP_ID`; here every byte is explicit. TCB layouts follow the serde form's own
//! rule: `fmc` is non-null exactly on Turin.

use serde::{Deserialize, Serialize};

use crate::claims::{SnpCpuid, SnpFirmwareVersion, SnpProduct, SnpSigningKey, SnpTcb};
use crate::error::{AtStep, Reason, Step, VerifyError};

use super::amd_ext;
use super::report::{parse_report, product_from_cpuid, AttestationReport, KeyInfo, RawTcb};
use super::SnpEndorsements;

const WHAT: &str = "guest-components SNP evidence JSON";

/// A certificate type in the `cert_chain` (the `sev` crate's `CertType` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CocoCertType {
    Ark,
    Ask,
    Vcek,
    Vlek,
}

impl CocoCertType {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ARK" => Self::Ark,
            "ASK" => Self::Ask,
            "VCEK" => Self::Vcek,
            "VLEK" => Self::Vlek,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ark => "ARK",
            Self::Ask => "ASK",
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
        }
    }
}

/// One certificate from `cert_chain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoCert {
    pub cert_type: CocoCertType,
    pub der: Vec<u8>,
}

/// Evidence taken apart: the rebuilt report and the certificates of known types in
/// `cert_chain` order (CRLs, empty and vendor-specific entries are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoSnpEvidence {
    /// The 1184-byte report, already parsed once successfully.
    pub report: Vec<u8>,
    pub certs: Vec<CocoCert>,
}

impl CocoSnpEvidence {
    /// The certificate that should have signed the report (VCEK or VLEK, as the report's
    /// `SIGNING_KEY` says), if the evidence carries it.
    #[must_use]
    pub fn signer(&self) -> Option<&[u8]> {
        let wanted = match parse_report(&self.report).ok()?.key_info.signing_key {
            SnpSigningKey::Vcek => CocoCertType::Vcek,
            SnpSigningKey::Vlek => CocoCertType::Vlek,
        };
        self.certs.iter().find(|c| c.cert_type == wanted).map(|c| c.der.as_slice())
    }

    /// Endorsements from the evidence alone: the signer and any ASKs (the ARK is pinned in
    /// the anchors, so it is not passed). `None` without a signer certificate.
    #[must_use]
    pub fn endorsements(&self) -> Option<SnpEndorsements> {
        let mut e = SnpEndorsements::new(self.signer()?.to_vec());
        for c in self.certs.iter().filter(|c| c.cert_type == CocoCertType::Ask) {
            e.intermediates.push(c.der.clone());
        }
        Some(e)
    }
}

#[derive(Serialize, Deserialize)]
struct Evidence {
    attestation_report: SevReport,
    cert_chain: Option<Vec<CertEntry>>,
}

#[derive(Serialize, Deserialize)]
struct CertEntry {
    /// A string for the named types; `{"OTHER": "<uuid>"}` for vendor types.
    cert_type: serde_json::Value,
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SevTcb {
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

#[derive(Serialize, Deserialize)]
struct SevVersion {
    major: u8,
    minor: u8,
    build: u8,
}

#[derive(Serialize, Deserialize)]
struct SevSignature {
    r: Vec<u8>,
    s: Vec<u8>,
}

/// The `sev` crate's serde form of `AttestationReport` (field names and shapes as it writes them).
#[derive(Serialize, Deserialize)]
struct SevReport {
    version: u32,
    guest_svn: u32,
    policy: u64,
    family_id: Vec<u8>,
    image_id: Vec<u8>,
    vmpl: u32,
    sig_algo: u32,
    current_tcb: SevTcb,
    plat_info: u64,
    key_info: u32,
    report_data: Vec<u8>,
    measurement: Vec<u8>,
    host_data: Vec<u8>,
    id_key_digest: Vec<u8>,
    author_key_digest: Vec<u8>,
    report_id: Vec<u8>,
    report_id_ma: Vec<u8>,
    reported_tcb: SevTcb,
    cpuid_fam_id: Option<u8>,
    cpuid_mod_id: Option<u8>,
    cpuid_step: Option<u8>,
    chip_id: Vec<u8>,
    committed_tcb: SevTcb,
    current: SevVersion,
    committed: SevVersion,
    launch_tcb: SevTcb,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    launch_mit_vector: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current_mit_vector: Option<u64>,
    signature: SevSignature,
}

/// Parses guest-components SNP evidence JSON into the 1184-byte report and its certificates.
pub fn report_from_coco_evidence(json: &[u8]) -> Result<CocoSnpEvidence, VerifyError> {
    from_evidence(serde_json::from_slice(json))
}

/// [`report_from_coco_evidence`] for evidence that is already a JSON value (the broker gets
/// it inside the KBS `Attestation` body): no second text round trip.
pub fn report_from_coco_value(value: &serde_json::Value) -> Result<CocoSnpEvidence, VerifyError> {
    from_evidence(Evidence::deserialize(value))
}

fn from_evidence(
    evidence: Result<Evidence, serde_json::Error>,
) -> Result<CocoSnpEvidence, VerifyError> {
    let evidence = evidence.map_err(|_| Reason::Malformed { what: WHAT }).at(Step::Parse)?;
    let report = rebuild(&evidence.attestation_report).at(Step::Parse)?.to_bytes();
    parse_report(&report)?;
    let certs = evidence
        .cert_chain
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let t = CocoCertType::from_name(e.cert_type.as_str()?)?;
            Some(CocoCert { cert_type: t, der: e.data })
        })
        .collect();
    Ok(CocoSnpEvidence { report, certs })
}

/// Writes `report` (and optionally its signer certificate) as guest-components SNP evidence
/// JSON. A version 2 report does not say its product; the signer's `productName` does, and
/// without a signer the Milan/Genoa TCB layout is written.
pub fn coco_evidence_json(
    report: &[u8],
    signer: Option<(SnpSigningKey, &[u8])>,
) -> Result<Vec<u8>, VerifyError> {
    let parsed = parse_report(report)?;
    let product = match (parsed.product(), signer) {
        (Some(p), _) => p,
        (None, Some((_, der))) => {
            let cert = crate::x509::Certificate::from_pem_or_der("signer certificate", der)
                .at(Step::Chain)?;
            amd_ext::product_name(&cert).at(Step::Chain)?.unwrap_or(SnpProduct::Milan)
        }
        (None, None) => SnpProduct::Milan,
    };
    let tcbs = parsed.tcbs(product).at(Step::Parse)?;
    let cert_chain = signer.map(|(kind, der)| {
        let t = match kind {
            SnpSigningKey::Vcek => CocoCertType::Vcek,
            SnpSigningKey::Vlek => CocoCertType::Vlek,
        };
        vec![CertEntry { cert_type: serde_json::Value::from(t.name()), data: der.to_vec() }]
    });
    let evidence = Evidence { attestation_report: to_sev(&parsed, &tcbs), cert_chain };
    serde_json::to_vec(&evidence).map_err(|_| Reason::Malformed { what: WHAT }).at(Step::Parse)
}

fn sev_tcb(t: SnpTcb) -> SevTcb {
    SevTcb { fmc: t.fmc, bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode }
}

fn sev_version(v: SnpFirmwareVersion) -> SevVersion {
    SevVersion { major: v.major, minor: v.minor, build: v.build }
}

fn to_sev(r: &AttestationReport, tcbs: &super::report::DecodedTcbs) -> SevReport {
    SevReport {
        version: r.version,
        guest_svn: r.guest_svn,
        policy: r.policy,
        family_id: r.family_id.to_vec(),
        image_id: r.image_id.to_vec(),
        vmpl: r.vmpl,
        sig_algo: r.signature_algo,
        current_tcb: sev_tcb(tcbs.current),
        plat_info: r.platform_info,
        key_info: r.key_info.to_u32(),
        report_data: r.report_data.to_vec(),
        measurement: r.measurement.to_vec(),
        host_data: r.host_data.to_vec(),
        id_key_digest: r.id_key_digest.to_vec(),
        author_key_digest: r.author_key_digest.to_vec(),
        report_id: r.report_id.to_vec(),
        report_id_ma: r.report_id_ma.to_vec(),
        reported_tcb: sev_tcb(tcbs.reported),
        cpuid_fam_id: r.cpuid.map(|c| c.family),
        cpuid_mod_id: r.cpuid.map(|c| c.model),
        cpuid_step: r.cpuid.map(|c| c.stepping),
        chip_id: r.chip_id.to_vec(),
        committed_tcb: sev_tcb(tcbs.committed),
        current: sev_version(r.current_version),
        committed: sev_version(r.committed_version),
        launch_tcb: sev_tcb(tcbs.launch),
        launch_mit_vector: r.launch_mit_vector,
        current_mit_vector: r.current_mit_vector,
        signature: SevSignature { r: r.signature_r.to_vec(), s: r.signature_s.to_vec() },
    }
}

fn array<const N: usize>(what: &'static str, v: &[u8]) -> Result<[u8; N], Reason> {
    v.try_into().map_err(|_| Reason::InvalidValue { what, why: "wrong length" })
}

/// The TCB layout of the serialized report: from CPUID on v3+, from `fmc` presence on v2.
fn layout_product(s: &SevReport) -> Result<SnpProduct, Reason> {
    if let (Some(family), Some(model)) = (s.cpuid_fam_id, s.cpuid_mod_id) {
        return product_from_cpuid(family, model).ok_or(Reason::InvalidValue {
            what: "CPUID family/model",
            why: "not a known SEV-SNP product (Milan, Genoa, Turin)",
        });
    }
    // Milan stands for "the Milan/Genoa layout" here; the verifier decides the product.
    Ok(if s.reported_tcb.fmc.is_some() { SnpProduct::Turin } else { SnpProduct::Milan })
}

fn raw_tcb(t: &SevTcb, product: SnpProduct) -> Result<RawTcb, Reason> {
    let tcb = SnpTcb {
        fmc: t.fmc,
        bootloader: t.bootloader,
        tee: t.tee,
        snp: t.snp,
        microcode: t.microcode,
    };
    RawTcb::encode(&tcb, product)
}

fn rebuild(s: &SevReport) -> Result<AttestationReport, Reason> {
    let product = layout_product(s)?;
    let cpuid = match (s.version, s.cpuid_fam_id, s.cpuid_mod_id, s.cpuid_step) {
        (2, None, None, None) => None,
        (v, Some(family), Some(model), Some(stepping)) if v >= 3 => {
            Some(SnpCpuid { family, model, stepping })
        }
        _ => {
            return Err(Reason::InvalidValue {
                what: "CPUID fields",
                why: "present exactly on version 3 and later",
            })
        }
    };
    let mit_ok = if s.version >= 5 {
        s.launch_mit_vector.is_some() && s.current_mit_vector.is_some()
    } else {
        s.launch_mit_vector.is_none() && s.current_mit_vector.is_none()
    };
    if !mit_ok {
        return Err(Reason::InvalidValue {
            what: "mitigation vectors",
            why: "present exactly on version 5 and later",
        });
    }
    let key_info = KeyInfo::from_u32(s.key_info)?;
    Ok(AttestationReport {
        version: s.version,
        guest_svn: s.guest_svn,
        policy: s.policy,
        family_id: array("family_id", &s.family_id)?,
        image_id: array("image_id", &s.image_id)?,
        vmpl: s.vmpl,
        signature_algo: s.sig_algo,
        current_tcb: raw_tcb(&s.current_tcb, product)?,
        platform_info: s.plat_info,
        key_info,
        report_data: array("report_data", &s.report_data)?,
        measurement: array("measurement", &s.measurement)?,
        host_data: array("host_data", &s.host_data)?,
        id_key_digest: array("id_key_digest", &s.id_key_digest)?,
        author_key_digest: array("author_key_digest", &s.author_key_digest)?,
        report_id: array("report_id", &s.report_id)?,
        report_id_ma: array("report_id_ma", &s.report_id_ma)?,
        reported_tcb: raw_tcb(&s.reported_tcb, product)?,
        cpuid,
        chip_id: array("chip_id", &s.chip_id)?,
        committed_tcb: raw_tcb(&s.committed_tcb, product)?,
        current_version: SnpFirmwareVersion {
            major: s.current.major,
            minor: s.current.minor,
            build: s.current.build,
        },
        committed_version: SnpFirmwareVersion {
            major: s.committed.major,
            minor: s.committed.minor,
            build: s.committed.build,
        },
        launch_tcb: raw_tcb(&s.launch_tcb, product)?,
        launch_mit_vector: s.launch_mit_vector,
        current_mit_vector: s.current_mit_vector,
        signature_r: array("signature.r", &s.signature.r)?,
        signature_s: array("signature.s", &s.signature.s)?,
    })
}
