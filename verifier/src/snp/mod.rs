//! AMD SEV-SNP: the attestation report (versions 2, 3 and 5; Milan, Genoa, Turin), its
//! verification against AMD's certificate chain (VCEK ← ASK ← ARK, VLEK ← ASVK ← ARK) with
//! pinned roots, and the guest-components evidence JSON that carries reports over the KBS
//! protocol.
//!
//! - [`report`]: the strict byte-level parser and encoder;
//! - [`anchors`]: per-product trust anchors, production (pinned) or simulated;
//! - [`verify`]: [`SnpVerifier`], the numbered verification steps and the warm-path cache;
//! - [`coco`]: guest-components' `{attestation_report, cert_chain}` form;
//! - [`endorsement_id`]: which VCEK a report needs, what a certificate was issued for;
//! - `amd_ext`: AMD's X.509 extensions (TCB SPLs, `hwID`, `productName`);
//! - [`normalize`]: report → [`SnpClaims`](crate::claims::SnpClaims);
//! - [`revocation`]: AMD's ARK-signed CRLs applied to a verified chain.

pub(crate) mod amd_ext;
pub mod anchors;
pub mod coco;
pub mod endorsement_id;
pub mod normalize;
pub mod report;
pub mod revocation;
pub mod verify;

pub use anchors::{SnpTrustAnchors, GENOA_ARK_SHA256, MILAN_ARK_SHA256, TURIN_ARK_SHA256};
pub use coco::{
    coco_evidence_json, report_from_coco_evidence, report_from_coco_value, CocoCert, CocoCertType,
    CocoSnpEvidence,
};
pub use endorsement_id::{EndorsementId, VcekId};
pub use report::{parse_report, AttestationReport, KeyInfo, RawTcb, REPORT_LEN, SIGNED_LEN};
pub use revocation::{check_crl, crl_name, SnpRevocation};
pub use verify::{SnpEndorsements, SnpVerifier};
