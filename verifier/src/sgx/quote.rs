//! The SGX quote (version 3) binary format: a strict parser into [`SgxQuote`], built from the
//! pieces every DCAP quote shares ([`crate::tdx::quote`]). Nothing here checks a signature.

use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::reader::Reader;
use crate::tdx::quote::{
    parse_header, parse_qe_certification, parse_report_body, signature_data, Header,
    QeCertification, SgxReportBody, HEADER_LEN, QE_REPORT_LEN,
};

/// TEE type field of an SGX quote (reserved in version 3, 0 = SGX).
const TEE_TYPE_SGX: u32 = 0;

/// A parsed SGX quote (version 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxQuote {
    /// The 48-byte header as it appears.
    pub header: [u8; HEADER_LEN],
    /// QE vendor ID (header bytes 12..28).
    pub qe_vendor_id: [u8; 16],
    /// The attested enclave's report.
    pub report: SgxReportBody,
    /// Length of the signed prefix: header and report body.
    pub signed_len: usize,
    /// ECDSA P-256 signature over the signed prefix, r||s big-endian.
    pub signature: [u8; 64],
    /// The attestation public key: x||y big-endian.
    pub attestation_key: [u8; 64],
    /// The QE report, its signature, the QE auth data and the PCK chain.
    pub qe: QeCertification,
}

/// Parses an SGX quote (version 3, ECDSA P-256 attestation key, PEM PCK chain). Every failure
/// is [`Step::Parse`].
pub fn parse_sgx_quote(bytes: &[u8]) -> Result<SgxQuote, VerifyError> {
    parse(bytes).at(Step::Parse)
}

fn parse(bytes: &[u8]) -> Result<SgxQuote, Reason> {
    let mut r = Reader::new("SGX quote", bytes);
    let header: [u8; HEADER_LEN] = r.take_array()?;
    let Header { version, tee_type, qe_vendor_id } = parse_header(&header)?;
    if version != 3 {
        return Err(Reason::UnsupportedVersion { what: "SGX quote", version: version.into() });
    }
    if tee_type != TEE_TYPE_SGX {
        return Err(Reason::InvalidValue { what: "TEE type", why: "not SGX (0)" });
    }
    let raw: [u8; QE_REPORT_LEN] = r.take_array()?;
    let report = parse_report_body("SGX report body", &raw)?;
    let signed_len = r.offset();
    let mut s = signature_data(&mut r)?;
    let signature = s.take_array()?;
    let attestation_key = s.take_array()?;
    let qe = parse_qe_certification(&mut s)?;
    Ok(SgxQuote { header, qe_vendor_id, report, signed_len, signature, attestation_key, qe })
}
