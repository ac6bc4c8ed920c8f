//! What a caller needs to find or fetch TDX collateral, kept pure (the broker's collateral
//! module does the HTTP): [`CollateralNeed::for_quote`] reads the FMSPC and the issuing PCK CA
//! (platform or processor) from the quote's PCK certificate; [`TdxCollateralParts`] assembles
//! the items as Intel PCS / a PCCS serve them into a [`TdxCollateral`]; and
//! [`TdxCollateral::next_update`] says until when the collateral may be used.

use super::collateral::TdxCollateral;
use super::fields::parse_date;
use super::pck::{SgxExtensions, SGX_EXTENSION};
use super::quote::parse_quote;
use super::tcb::TcbInfo;
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::{self, Certificate, Crl};

/// The CA that issued a PCK certificate; Intel keeps one PCK CRL per CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PckCa {
    Platform,
    Processor,
}

impl PckCa {
    /// The PCS `ca` query value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Processor => "processor",
        }
    }
}

/// The collateral a quote needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollateralNeed {
    pub fmspc: [u8; 6],
    pub ca: PckCa,
    /// SHA-256 of the root certificate the quote's PCK chain ends in (not verified here): lets
    /// the caller skip fetching for quotes that do not even claim a trusted root.
    pub chain_root_sha256: [u8; 32],
}

impl CollateralNeed {
    /// Reads the quote's PCK chain (certification data type 5). Failures are
    /// [`Step::Parse`] (the quote) or [`Step::Chain`] (the certificates).
    pub fn for_quote(quote: &[u8]) -> Result<Self, VerifyError> {
        let q = parse_quote(quote)?;
        need(&q.signing.qe.pck_chain_pem).at(Step::Chain)
    }
}

fn need(pem: &[u8]) -> Result<CollateralNeed, Reason> {
    let what = "PCK certificate chain";
    let ders = x509::pem_certificates(what, pem)?;
    let [leaf, _ca, root] = ders.as_slice() else {
        return Err(Reason::InvalidValue { what, why: "expected exactly three certificates" });
    };
    let leaf = Certificate::from_der("PCK certificate", leaf)?;
    let root = Certificate::from_der("Intel SGX root CA certificate", root)?;
    let ext = leaf
        .extension(&SGX_EXTENSION)
        .ok_or(Reason::Missing { what: "PCK SGX extension" })
        .and_then(SgxExtensions::from_der)?;
    let issuer = leaf.issuer_der();
    let has = |needle: &[u8]| issuer.windows(needle.len()).any(|w| w == needle);
    let ca = if has(b"PCK Platform CA") {
        PckCa::Platform
    } else if has(b"PCK Processor CA") {
        PckCa::Processor
    } else {
        return Err(Reason::InvalidValue {
            what: "PCK certificate issuer",
            why: "names neither the PCK Platform CA nor the PCK Processor CA",
        });
    };
    Ok(CollateralNeed { fmspc: ext.fmspc, ca, chain_root_sha256: *root.sha256() })
}

/// Collateral items as Intel PCS / a PCCS serve them: issuer chains as PEM (URL-decoded from
/// the response headers), CRLs as DER, and the signed JSON objects as the exact text of the
/// `tcbInfo` / `enclaveIdentity` member with their raw `r || s` signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxCollateralParts {
    pub pck_crl_issuer_chain: String,
    pub root_ca_crl: Vec<u8>,
    pub pck_crl: Vec<u8>,
    pub tcb_info_issuer_chain: String,
    pub tcb_info: String,
    pub tcb_info_signature: Vec<u8>,
    pub qe_identity_issuer_chain: String,
    pub qe_identity: String,
    pub qe_identity_signature: Vec<u8>,
}

impl TdxCollateral {
    /// Assembles collateral from its parts. Nothing is verified here (the verifier's
    /// collateral step does it); [`TdxCollateral::next_update`] checks the parts decode.
    #[must_use]
    pub fn from_parts(p: TdxCollateralParts) -> Self {
        Self::new(
            p.pck_crl_issuer_chain,
            p.root_ca_crl,
            p.pck_crl,
            p.tcb_info_issuer_chain,
            p.tcb_info,
            p.tcb_info_signature,
            p.qe_identity_issuer_chain,
            p.qe_identity,
            p.qe_identity_signature,
            None,
        )
    }

    /// The earliest `nextUpdate` among the TCB info, the QE identity and both CRLs (Unix
    /// seconds): past it, this collateral must be replaced. Fails at [`Step::Collateral`] when
    /// an item does not decode.
    pub fn next_update(&self) -> Result<i64, VerifyError> {
        next_update(self).at(Step::Collateral)
    }

    /// The FMSPC the TCB info is for (an offline directory is indexed by it).
    pub fn fmspc(&self) -> Result<[u8; 6], VerifyError> {
        TcbInfo::from_json(&self.tcb_info).map(|t| t.fmspc).at(Step::Collateral)
    }
}

fn next_update(c: &TdxCollateral) -> Result<i64, Reason> {
    #[derive(serde::Deserialize)]
    struct Dates {
        #[serde(rename = "nextUpdate")]
        next_update: String,
    }
    let tcb = TcbInfo::from_json(&c.tcb_info)?.next_update;
    let qe: Dates = serde_json::from_str(&c.qe_identity)
        .map_err(|_| Reason::Malformed { what: "QE identity" })?;
    let qe = parse_date("QE identity nextUpdate", &qe.next_update)?;
    let root = Crl::from_der("root CA CRL", &c.root_ca_crl)?.next_update();
    let pck = Crl::from_der("PCK CRL", &c.pck_crl)?.next_update();
    Ok(tcb.min(qe).min(root).min(pck))
}
