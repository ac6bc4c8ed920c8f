//! The TDX quote binary format (Intel TDX DCAP Quoting Library API, quote versions 4 and 5):
//! a strict parser into [`Quote`] and the byte layouts of the TD report and the SGX report of
//! the quoting enclave. Nothing here checks a signature; it only decides what the bytes say.

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
/// for; `signed_len` is the length of the prefix the attestation key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Quote version: 4 or 5.
    pub version: u16,
    /// The 48-byte header as it appears (version, key type, TEE type, reserved, QE vendor ID,
    /// user data).
    pub header: [u8; HEADER_LEN],
    /// QE vendor ID (header bytes 12..28).
    pub qe_vendor_id: [u8; 16],
    /// The TD report.
    pub report: TdReport,
    /// Length of the signed prefix: header, (v5) body type and size, and the body.
    pub signed_len: usize,
    /// ECDSA P-256 signature over the signed prefix, r||s big-endian.
    pub signature: [u8; 64],
    /// The attestation public key: x||y big-endian (SEC1 uncompressed without the 0x04).
    pub attestation_key: [u8; 64],
    /// The QE report (an SGX report body), raw as signed by the PCK key.
    pub qe_report_raw: [u8; QE_REPORT_LEN],
    /// The QE report, decoded.
    pub qe_report: QeReport,
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

/// The quoting enclave's SGX report body (384 bytes), the fields QE identity checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeReport {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub report_data: [u8; 64],
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
    let mut h = Reader::new("TDX quote header", &header);
    let version = h.u16_le()?;
    let key_type = h.u16_le()?;
    let tee_type = h.u32_le()?;
    // Bytes 8..12 are reserved for TDX (QE SVN and PCE SVN in SGX v3 quotes); they are signed
    // and carried, not interpreted.
    h.take(4)?;
    let qe_vendor_id: [u8; 16] = h.take_array()?;
    if version != 4 && version != 5 {
        return Err(Reason::UnsupportedVersion { what: "TDX quote", version: version.into() });
    }
    if key_type != ATT_KEY_TYPE_ECDSA_P256 {
        return Err(Reason::InvalidValue {
            what: "attestation key type",
            why: "only ECDSA-256-with-P-256 (2) is supported",
        });
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
    let signed_len = r.offset();

    let sig_len = r.u32_le()? as usize;
    let mut s = r.sub("quote signature data", sig_len)?;
    // Trailing bytes after the signature data: zero padding only (see the module docs).
    let padding_start = r.offset();
    if let Some(pos) = r.rest().iter().position(|b| *b != 0) {
        return Err(Reason::TrailingData {
            what: "quote signature data (non-zero bytes after it)",
            extra: bytes.len() - padding_start - pos,
        });
    }

    let signature = s.take_array()?;
    let attestation_key = s.take_array()?;
    let cert_type = s.u16_le()?;
    if cert_type != CERT_DATA_QE_REPORT {
        return Err(Reason::InvalidValue {
            what: "certification data type",
            why: "expected QE report certification data (6)",
        });
    }
    let cert_size = s.u32_le()? as usize;
    let mut c = s.sub("QE report certification data", cert_size)?;
    s.expect_end()?;

    let qe_report_raw: [u8; QE_REPORT_LEN] = c.take_array()?;
    let qe_report = parse_qe_report(&qe_report_raw)?;
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

    Ok(Quote {
        version,
        header,
        qe_vendor_id,
        report,
        signed_len,
        signature,
        attestation_key,
        qe_report_raw,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        pck_chain_pem,
    })
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
/// is signed by the PCK key and its meaning is judged against the QE identity.
pub(crate) fn parse_qe_report(raw: &[u8; QE_REPORT_LEN]) -> Result<QeReport, Reason> {
    let mut r = Reader::new("QE report", raw);
    let cpu_svn = r.take_array()?;
    let misc_select = r.u32_le()?;
    r.take(28)?;
    let attributes = r.take_array()?;
    let mr_enclave = r.take_array()?;
    r.take(32)?;
    let mr_signer = r.take_array()?;
    r.take(96)?;
    let isv_prod_id = r.u16_le()?;
    let isv_svn = r.u16_le()?;
    r.take(60)?;
    let report_data = r.take_array()?;
    r.expect_end()?;
    Ok(QeReport {
        cpu_svn,
        misc_select,
        attributes,
        mr_enclave,
        mr_signer,
        isv_prod_id,
        isv_svn,
        report_data,
    })
}

/// Encodes an SGX report body (the simulator's QE report); reserved fields are zero.
pub(crate) fn encode_qe_report(q: &QeReport) -> Vec<u8> {
    let mut out = Vec::with_capacity(QE_REPORT_LEN);
    out.extend_from_slice(&q.cpu_svn);
    out.extend_from_slice(&q.misc_select.to_le_bytes());
    out.extend_from_slice(&[0; 28]);
    out.extend_from_slice(&q.attributes);
    out.extend_from_slice(&q.mr_enclave);
    out.extend_from_slice(&[0; 32]);
    out.extend_from_slice(&q.mr_signer);
    out.extend_from_slice(&[0; 96]);
    out.extend_from_slice(&q.isv_prod_id.to_le_bytes());
    out.extend_from_slice(&q.isv_svn.to_le_bytes());
    out.extend_from_slice(&[0; 60]);
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
