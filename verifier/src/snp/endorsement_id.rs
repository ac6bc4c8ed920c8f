//! Identities that tie a report to the certificate that must endorse it, for callers that find
//! or fetch that certificate (the broker's collateral module asks AMD's KDS or an offline
//! directory): [`VcekId::for_report`] says which VCEK a report needs (product, `hwID`,
//! REPORTED_TCB), and [`EndorsementId::of_certificate`] says what a VCEK or VLEK certificate was
//! issued for. Pure: no I/O. The verifier checks every one of these facts again on its own.

use crate::claims::{SnpProduct, SnpSigningKey, SnpTcb};
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::Certificate;

use super::amd_ext;
use super::report::AttestationReport;

/// The VCEK a report needs: AMD derives one per chip and TCB.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VcekId {
    pub product: SnpProduct,
    /// `CHIP_ID`, or its first 8 bytes on Turin (AMD's `hwID`).
    pub hw_id: Vec<u8>,
    /// REPORTED_TCB decoded in the product's layout (`fmc` on Turin only).
    pub tcb: SnpTcb,
}

impl VcekId {
    /// The VCEK `report` needs, read as `product` (a version 2 report does not name its
    /// product: the caller chooses). Fails when the report is VLEK-signed or its `CHIP_ID` is
    /// masked (no VCEK can be named), or REPORTED_TCB does not decode for `product`.
    pub fn for_report(
        report: &AttestationReport,
        product: SnpProduct,
    ) -> Result<Self, VerifyError> {
        if report.key_info.signing_key != SnpSigningKey::Vcek {
            return Err(VerifyError::new(
                Step::Chain,
                Reason::Missing { what: "VLEK certificate (a VLEK is never fetched from KDS)" },
            ));
        }
        if report.chip_id.iter().all(|b| *b == 0) {
            return Err(VerifyError::new(
                Step::ChipId,
                Reason::InvalidValue { what: "CHIP_ID", why: "masked: no VCEK can be named" },
            ));
        }
        let len = amd_ext::hw_id_len(product);
        let hw_id = report.chip_id.get(..len).unwrap_or_default().to_vec();
        let tcb = report.reported_tcb.decode("REPORTED_TCB", product).at(Step::Parse)?;
        Ok(Self { product, hw_id, tcb })
    }
}

/// What a VCEK or VLEK certificate was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndorsementId {
    /// From `productName`; `None` when the certificate does not say.
    pub product: Option<SnpProduct>,
    /// `Some` for a VCEK (its `hwID`), `None` for a VLEK.
    pub hw_id: Option<Vec<u8>>,
    /// The TCB SPL extensions (`fmc` when the certificate has `fmcSPL`, i.e. Turin).
    pub tcb: SnpTcb,
}

impl EndorsementId {
    /// Reads the AMD extensions of a VCEK or VLEK certificate (DER or PEM). Nothing is
    /// verified here: signatures and chains are the verifier's.
    pub fn of_certificate(cert: &[u8]) -> Result<Self, VerifyError> {
        let what = "VCEK or VLEK certificate";
        let cert = Certificate::from_pem_or_der(what, cert).at(Step::Chain)?;
        let product = amd_ext::product_name(&cert).at(Step::Chain)?;
        let has_fmc = cert.extension(&amd_ext::OID_FMC_SPL).is_some();
        let layout = match product {
            Some(p) => p,
            None if has_fmc => SnpProduct::Turin,
            None => SnpProduct::Milan,
        };
        let tcb = amd_ext::cert_tcb(&cert, layout).at(Step::Tcb)?;
        Ok(Self { product, hw_id: amd_ext::hw_id(&cert), tcb })
    }
}
