//! The TDX quote binary format (Intel TDX DCAP Quoting Library API, quote versions 4 and 5):
//! a strict parser into [`Quote`], the byte layouts of the TD report and of the SGX report body
//! (the quoting enclave's, and the enclave's in an SGX quote), and the pieces every Intel DCAP
//! ECDSA quote shares ([`crate::sgx`] parses version 3 with them): the header fields, the
//! signature data with its zero-padding rule, and the QE report certification data. Nothing here
//! checks a signature; it only decides what the bytes say.

use crate::claims::TdxBody;
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::reader::Reader;

/// Quote header length (both versions).
pub(crate) const HEADER_LEN: usize = 48;
/// TDX 1.0 TD report body length.
pub(crate) const TD10_LEN: usize = 584;
/// TDX 1.5 TD report body length.
pub(crate) const TD15_LEN: usize = 648;
/// SGX report body (the QE report) length.
pub(crate) const QE_REPORT_LEN: usize = 384;

/// Attestation key type 2: ECDSA-256-with-P-256 curve.
pub(crate) const ATT_KEY_TYPE_ECDSA_P256: u16 = 0x0002;
/// TEE type of a TDX quote.
pub(crate) const TEE_TYPE_TDX: u32 = 0x0000_0081;
/// v5 body type: TDX 1.0 TD report.
pub(crate) const BODY_TYPE_TD10: u16 = 0x0002;
/// v5 body type: TDX 1.5 TD report.
pub(crate) const BODY_TYPE_TD15: u16 = 0x0003;
/// Certification data type 5: PCK certificate chain (PEM: leaf, intermediate CA, root).
pub(crate) const CERT_DATA_PCK_CHAIN: u16 = 0x0005;
/// Certification data type 6: QE report certification data.
pub(crate) const CERT_DATA_QE_REPORT: u16 = 0x0006;

/// A parsed TDX quote. Every byte of the signed region and of the signature data is accounted
/// for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Quote version: 4 or 5.
    pub version: u16,
    /// The 48-byte header as it appears (version, key type, TEE type, reserved, QE vendor ID,
    /// user data).
    pub header: [u8; HEADER_LEN],
    /// The TD report.
    pub report: TdReport,
    /// What the attestation key signed (header, (v5) body type and size, and the body), its
    /// signature and what vouches for the key.
    pub signing: QuoteSignature,
}

/// How a DCAP quote (any version) proves itself: the attestation key's signature over the
/// quote's prefix, and the QE certification data vouching for that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteSignature {
    /// QE vendor ID (header bytes 12..28).
    pub qe_vendor_id: [u8; 16],
    /// Length of the signed prefix.
    pub signed_len: usize,
    /// ECDSA P-256 signature over the signed prefix, r||s big-endian.
    pub signature: [u8; 64],
    /// The attestation public key: x||y big-endian (SEC1 uncompressed without the 0x04).
    pub attestation_key: [u8; 64],
    /// The QE report, its signature, the QE auth data and the PCK chain.
    pub qe: QeCertification,
}

/// The QE report certification data: what vouches for the attestation key. In quote versions 4
/// and 5 it is certification data type 6; in version 3 (SGX) it follows the attestation key
/// directly. Laid out as: QE report (384 bytes), its signature (64), QE auth data (u16 size and
/// bytes), then certification data type 5 (u16 type, u32 size, the PEM PCK chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeCertification {
    /// The QE report (an SGX report body), raw as signed by the PCK key.
    pub qe_report_raw: [u8; QE_REPORT_LEN],
    /// The QE report, decoded.
    pub qe_report: SgxReportBody,
    /// ECDSA P-256 signature of the PCK key over the QE report, r||s big-endian.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data, hashed into the QE report's `REPORT_DATA`.
    pub qe_auth_data: Vec<u8>,
    /// The PCK certificate chain as carried (PEM text, possibly NUL-terminated).
    pub pck_chain_pem: Vec<u8>,
}

/// A TD report body (TDX 1.0 or 1.5), named after the TDX module ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub body: TdxBody,
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TDX 1.5 only.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5 only.
    pub mr_service_td: Option<[u8; 48]>,
}

/// An SGX report body (384 bytes, Intel SGX `sgx_report_body_t`): the quoting enclave's report
/// in every quote, and the attested enclave's in an SGX (version 3) quote. Reserved fields are
/// not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxReportBody {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub isv_ext_prod_id: [u8; 16],
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub config_id: [u8; 64],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub isv_family_id: [u8; 16],
    pub report_data: [u8; 64],
}

/// The header fields every DCAP ECDSA quote (versions 3 to 5) shares, decoded from its first
/// 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) version: u16,
    pub(crate) tee_type: u32,
    pub(crate) qe_vendor_id: [u8; 16],
}

/// Decodes the 48-byte header and requires an ECDSA-256-with-P-256 attestation key. Bytes
/// 8..12 (reserved for TDX; QE SVN and PCE SVN in SGX v3 quotes) are signed and carried, not
/// interpreted: the PCK certificate and the QE report are where those SVNs are trusted from.
pub(crate) fn parse_header(header: &[u8; HEADER_LEN]) -> Result<Header, Reason> {
    let mut h = Reader::new("quote header", header);
    let version = h.u16_le()?;
    let key_type = h.u16_le()?;
    let tee_type = h.u32_le()?;
    h.take(4)?;
    let qe_vendor_id: [u8; 16] = h.take_array()?;
    if key_type != ATT_KEY_TYPE_ECDSA_P256 {
        return Err(Reason::InvalidValue {
            what: "attestation key type",
            why: "only ECDSA-256-with-P-256 (2) is supported",
        });
    }
    Ok(Header { version, tee_type, qe_vendor_id })
}

/// Where the QE report certification data sits in the signature data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QeCertificationAt {
    /// Quote versions 4 and 5: inside certification data type 6 (u16 type, u32 size).
    CertificationData,
    /// Quote version 3: directly after the attestation key.
    Direct,
}

/// Reads the signature data that follows the signed prefix (everything `r` has read so far):
/// its length (u32), then exactly that many bytes of signature, attestation key and QE
/// certification data. After it only zero bytes may follow (see the [module
/// documentation](super)).
pub(crate) fn parse_signature(
    r: &mut Reader<'_>,
    qe_vendor_id: [u8; 16],
    at: QeCertificationAt,
) -> Result<QuoteSignature, Reason> {
    let signed_len = r.offset();
    let sig_len = r.u32_le()? as usize;
    let mut s = r.sub("quote signature data", sig_len)?;
    let rest = r.rest();
    if let Some(pos) = rest.iter().position(|b| *b != 0) {
        return Err(Reason::TrailingData {
            what: "quote signature data (non-zero bytes after it)",
            extra: rest.len() - pos,
        });
    }
    let signature = s.take_array()?;
    let attestation_key = s.take_array()?;
    let qe = match at {
        QeCertificationAt::Direct => parse_qe_certification(&mut s)?,
        QeCertificationAt::CertificationData => {
            let cert_type = s.u16_le()?;
            if cert_type != CERT_DATA_QE_REPORT {
                return Err(Reason::InvalidValue {
                    what: "certification data type",
                    why: "expected QE report certification data (6)",
                });
            }
            let cert_size = s.u32_le()? as usize;
            parse_qe_certification(&mut s.sub("QE report certification data", cert_size)?)?
        }
    };
    s.expect_end()?;
    Ok(QuoteSignature { qe_vendor_id, signed_len, signature, attestation_key, qe })
}

/// Parses the QE report certification data (see [`QeCertification`]); `c` must hold exactly it.
fn parse_qe_certification(c: &mut Reader<'_>) -> Result<QeCertification, Reason> {
    let qe_report_raw: [u8; QE_REPORT_LEN] = c.take_array()?;
    let qe_report = parse_report_body("QE report", &qe_report_raw)?;
    let qe_report_signature = c.take_array()?;
    let auth_len = c.u16_le()? as usize;
    let qe_auth_data = c.take(auth_len)?.to_vec();
    let inner_type = c.u16_le()?;
    if inner_type != CERT_DATA_PCK_CHAIN {
        return Err(Reason::InvalidValue {
            what: "QE certification data type",
            why: "expected a PCK certificate chain (5)",
        });
    }
    let chain_len = c.u32_le()? as usize;
    let pck_chain_pem = c.take(chain_len)?.to_vec();
    c.expect_end()?;
    check_pem_shape(&pck_chain_pem)?;
    Ok(QeCertification {
        qe_report_raw,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        pck_chain_pem,
    })
}

/// Parses a TDX quote (version 4 or 5, ECDSA P-256 attestation key, QE report certification
/// data carrying a PEM PCK chain). See the [module documentation](super) for the trailing-bytes
/// rule. Every failure is [`Step::Parse`].
pub fn parse_quote(bytes: &[u8]) -> Result<Quote, VerifyError> {
    parse(bytes).at(Step::Parse)
}

fn parse(bytes: &[u8]) -> Result<Quote, Reason> {
    let mut r = Reader::new("TDX quote", bytes);
    let header: [u8; HEADER_LEN] = r.take_array()?;
    let Header { version, tee_type, qe_vendor_id } = parse_header(&header)?;
    if version != 4 && version != 5 {
        return Err(Reason::UnsupportedVersion { what: "TDX quote", version: version.into() });
    }
    if tee_type != TEE_TYPE_TDX {
        return Err(Reason::InvalidValue { what: "TEE type", why: "not TDX (0x81)" });
    }

    let report = if version == 4 {
        parse_td_report(&mut r.sub("TD report", TD10_LEN)?, TdxBody::Tdx10)?
    } else {
        let body_type = r.u16_le()?;
        let body_size = r.u32_le()? as usize;
        let (body, len) = match body_type {
            BODY_TYPE_TD10 => (TdxBody::Tdx10, TD10_LEN),
            BODY_TYPE_TD15 => (TdxBody::Tdx15, TD15_LEN),
            _ => {
                return Err(Reason::UnsupportedVersion {
                    what: "quote body type",
                    version: body_type.into(),
                })
            }
        };
        if body_size != len {
            return Err(Reason::Mismatch {
                what: "quote body size",
                expected: len.to_string(),
                actual: body_size.to_string(),
            });
        }
        parse_td_report(&mut r.sub("TD report", len)?, body)?
    };
    let signing = parse_signature(&mut r, qe_vendor_id, QeCertificationAt::CertificationData)?;
    Ok(Quote { version, header, report, signing })
}

/// The chain must be PEM certificate blocks and nothing else but whitespace and a terminating
/// NUL (the real quotes end it with one). Decoding the blocks is the chain step's job.
fn check_pem_shape(pem: &[u8]) -> Result<(), Reason> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let what = "PCK certificate chain";
    let trimmed = pem.strip_suffix(&[0]).unwrap_or(pem).trim_ascii();
    if !trimmed.starts_with(BEGIN) || !trimmed.ends_with(END) {
        return Err(Reason::Malformed { what });
    }
    if trimmed.contains(&0) {
        return Err(Reason::Malformed { what });
    }
    Ok(())
}

fn parse_td_report(r: &mut Reader<'_>, body: TdxBody) -> Result<TdReport, Reason> {
    let tee_tcb_svn = r.take_array()?;
    let mr_seam = r.take_array()?;
    let mr_signer_seam = r.take_array()?;
    let seam_attributes = r.take_array()?;
    let td_attributes = r.take_array()?;
    let xfam = r.take_array()?;
    let mr_td = r.take_array()?;
    let mr_config_id = r.take_array()?;
    let mr_owner = r.take_array()?;
    let mr_owner_config = r.take_array()?;
    let rtmr = [r.take_array()?, r.take_array()?, r.take_array()?, r.take_array()?];
    let report_data = r.take_array()?;
    let (tee_tcb_svn2, mr_service_td) = match body {
        TdxBody::Tdx10 => (None, None),
        TdxBody::Tdx15 => (Some(r.take_array()?), Some(r.take_array()?)),
    };
    r.expect_end()?;
    Ok(TdReport {
        body,
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        tee_tcb_svn2,
        mr_service_td,
    })
}

/// Decodes an SGX report body. Reserved fields are not required to be zero here: the report
/// is signed (by the PCK key, or by the attestation key as an SGX quote's body) and its meaning
/// is judged against the QE identity or by the caller.
pub(crate) fn parse_report_body(
    what: &'static str,
    raw: &[u8; QE_REPORT_LEN],
) -> Result<SgxReportBody, Reason> {
    let mut r = Reader::new(what, raw);
    let cpu_svn = r.take_array()?;
    let misc_select = r.u32_le()?;
    r.take(12)?;
    let isv_ext_prod_id = r.take_array()?;
    let attributes = r.take_array()?;
    let mr_enclave = r.take_array()?;
    r.take(32)?;
    let mr_signer = r.take_array()?;
    r.take(32)?;
    let config_id = r.take_array()?;
    let isv_prod_id = r.u16_le()?;
    let isv_svn = r.u16_le()?;
    let config_svn = r.u16_le()?;
    r.take(42)?;
    let isv_family_id = r.take_array()?;
    let report_data = r.take_array()?;
    r.expect_end()?;
    Ok(SgxReportBody {
        cpu_svn,
        misc_select,
        isv_ext_prod_id,
        attributes,
        mr_enclave,
        mr_signer,
        config_id,
        isv_prod_id,
        isv_svn,
        config_svn,
        isv_family_id,
        report_data,
    })
}

/// Encodes an SGX report body (the simulator's QE report); reserved fields are zero.
pub(crate) fn encode_report_body(q: &SgxReportBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(QE_REPORT_LEN);
    out.extend_from_slice(&q.cpu_svn);
    out.extend_from_slice(&q.misc_select.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&q.isv_ext_prod_id);
    out.extend_from_slice(&q.attributes);
    out.extend_from_slice(&q.mr_enclave);
    out.extend_from_slice(&[0; 32]);
    out.extend_from_slice(&q.mr_signer);
    out.extend_from_slice(&[0; 32]);
    out.extend_from_slice(&q.config_id);
    out.extend_from_slice(&q.isv_prod_id.to_le_bytes());
    out.extend_from_slice(&q.isv_svn.to_le_bytes());
    out.extend_from_slice(&q.config_svn.to_le_bytes());
    out.extend_from_slice(&[0; 42]);
    out.extend_from_slice(&q.isv_family_id);
    out.extend_from_slice(&q.report_data);
    out
}

/// Encodes a TD report body in the layout of its `body` version (the simulator's).
pub(crate) fn encode_td_report(t: &TdReport) -> Vec<u8> {
    let mut out = Vec::with_capacity(TD15_LEN);
    out.extend_from_slice(&t.tee_tcb_svn);
    out.extend_from_slice(&t.mr_seam);
    out.extend_from_slice(&t.mr_signer_seam);
    out.extend_from_slice(&t.seam_attributes);
    out.extend_from_slice(&t.td_attributes);
    out.extend_from_slice(&t.xfam);
    out.extend_from_slice(&t.mr_td);
    out.extend_from_slice(&t.mr_config_id);
    out.extend_from_slice(&t.mr_owner);
    out.extend_from_slice(&t.mr_owner_config);
    for m in &t.rtmr {
        out.extend_from_slice(m);
    }
    out.extend_from_slice(&t.report_data);
    if t.body == TdxBody::Tdx15 {
        out.extend_from_slice(&t.tee_tcb_svn2.unwrap_or_default());
        out.extend_from_slice(&t.mr_service_td.unwrap_or([0; 48]));
    }
    out
}
