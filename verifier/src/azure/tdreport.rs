//! The TDX TDREPORT inside an Azure TDX HCL report (Intel TDX Module ABI, TDREPORT_STRUCT,
//! 1024 bytes): this module owns reading the fields a TD quote also carries and checking that
//! the verified TD quote was made from this very report ([`Step::HclReport`]).
//!
//! Layout: REPORTMACSTRUCT (256: REPORTTYPE 4 (type 0x81 = TDX), reserved 12, CPUSVN 16,
//! TEE_TCB_INFO_HASH 48, TEE_INFO_HASH 48, REPORTDATA 64, reserved 32, MAC 32), TEE_TCB_INFO
//! (239: VALID 8, TEE_TCB_SVN 16, MRSEAM 48, MRSIGNERSEAM 48, ATTRIBUTES 8, ...), reserved 17,
//! TDINFO (512: ATTRIBUTES 8, XFAM 8, MRTD 48, MRCONFIGID 48, MROWNER 48, MROWNERCONFIG 48,
//! RTMR 4 x 48, ...). The MAC is only checkable by the CPU; the binding comes from the quote.

use crate::claims::TdxBody;
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::reader::Reader;
use crate::tdx::TdReport;

/// TDREPORT type byte for TDX.
const REPORT_TYPE_TDX: u8 = 0x81;

/// Reads a 1024-byte TDREPORT ([`Step::HclReport`]) into the quote's own [`TdReport`] type
/// (a TDX 1.0 body: the TDREPORT does not carry the TDX 1.5 fields).
pub fn parse_td_report(bytes: &[u8]) -> Result<TdReport, VerifyError> {
    parse(bytes).at(Step::HclReport)
}

fn parse(bytes: &[u8]) -> Result<TdReport, Reason> {
    let mut r = Reader::new("TDREPORT", bytes);
    if r.u8()? != REPORT_TYPE_TDX {
        return Err(Reason::InvalidValue { what: "TDREPORT type", why: "not TDX (0x81)" });
    }
    r.take(3 + 12 + 16 + 48 + 48)?;
    let report_data = r.take_array()?;
    r.take(32 + 32 + 8)?;
    let tee_tcb_svn = r.take_array()?;
    let mr_seam = r.take_array()?;
    let mr_signer_seam = r.take_array()?;
    let seam_attributes = r.take_array()?;
    r.take(239 - 128 + 17)?;
    let td_attributes = r.take_array()?;
    let xfam = r.take_array()?;
    let mr_td = r.take_array()?;
    let mr_config_id = r.take_array()?;
    let mr_owner = r.take_array()?;
    let mr_owner_config = r.take_array()?;
    let rtmr = [r.take_array()?, r.take_array()?, r.take_array()?, r.take_array()?];
    r.rest();
    if bytes.len() != super::hcl::TD_REPORT_LEN {
        return Err(Reason::InvalidValue { what: "TDREPORT", why: "not 1024 bytes" });
    }
    Ok(TdReport {
        body: TdxBody::Tdx10,
        report_data,
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
        tee_tcb_svn2: None,
        mr_service_td: None,
    })
}

/// Checks that the TD quote's TD report is exactly this TD report (every field the quote
/// repeats).
pub fn check_matches_quote(td: &TdReport, quote: &TdReport) -> Result<(), VerifyError> {
    let pairs: [(&'static str, &[u8], &[u8]); 11] = [
        ("REPORTDATA", &td.report_data, &quote.report_data),
        ("TEE_TCB_SVN", &td.tee_tcb_svn, &quote.tee_tcb_svn),
        ("MRSEAM", &td.mr_seam, &quote.mr_seam),
        ("MRSIGNERSEAM", &td.mr_signer_seam, &quote.mr_signer_seam),
        ("SEAMATTRIBUTES", &td.seam_attributes, &quote.seam_attributes),
        ("TDATTRIBUTES", &td.td_attributes, &quote.td_attributes),
        ("XFAM", &td.xfam, &quote.xfam),
        ("MRTD", &td.mr_td, &quote.mr_td),
        ("MRCONFIGID", &td.mr_config_id, &quote.mr_config_id),
        ("MROWNER", &td.mr_owner, &quote.mr_owner),
        ("MROWNERCONFIG", &td.mr_owner_config, &quote.mr_owner_config),
    ];
    for (what, hcl, quote) in pairs {
        if hcl != quote {
            return Err(mismatch(what, hcl, quote));
        }
    }
    for (hcl, quote) in td.rtmr.iter().zip(&quote.rtmr) {
        if hcl != quote {
            return Err(mismatch("RTMR", hcl, quote));
        }
    }
    Ok(())
}

fn mismatch(field: &'static str, hcl: &[u8], quote: &[u8]) -> VerifyError {
    VerifyError::new(
        Step::HclReport,
        Reason::Mismatch {
            what: match field {
                "REPORTDATA" => "TD quote vs HCL TD report REPORTDATA",
                "RTMR" => "TD quote vs HCL TD report RTMR",
                _ => "TD quote vs HCL TD report field",
            },
            expected: format!("{field} {}", hex::encode(hcl)),
            actual: hex::encode(quote),
        },
    )
}
