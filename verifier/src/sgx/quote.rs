//! The SGX quote (version 3) binary format: a strict parser into [`SgxQuote`], built from the
//! pieces every DCAP quote shares ([`crate::tdx::quote`]). Nothing here checks a signature.

use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::reader::Reader;
use crate::tdx::quote::{
    parse_header, parse_report_body, parse_signature, Header, QeCertificationAt, QuoteSignature,
    SgxReportBody, HEADER_LEN, QE_REPORT_LEN,
};

/// TEE type field of an SGX quote (reserved in version 3, 0 = SGX).
const TEE_TYPE_SGX: u32 = 0;

/// A parsed SGX quote (version 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxQuote {
    /// The 48-byte header as it appears.
    pub header: [u8; HEADER_LEN],
    /// The attested enclave's report.
    pub report: SgxReportBody,
    /// What the attestation key signed (header and report body), its signature and what
    /// vouches for the key.
    pub signing: QuoteSignature,
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
    let signing = parse_signature(&mut r, qe_vendor_id, QeCertificationAt::Direct)?;
    Ok(SgxQuote { header, report, signing })
}
