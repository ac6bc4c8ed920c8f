//! The SGX verifier: the numbered steps from quote bytes to [`SgxClaims`]. Steps 2 to 7 are
//! the ones TDX quotes go through (`tdx::dcap`), with the same caches.

use sha2::{Digest, Sha256};

use super::quote::{parse_sgx_quote, SgxQuote};
use crate::claims::{SgxClaims, SgxReportClaims, SgxTee};
use crate::error::{AtStep, Step, VerifyError};
use crate::tdx::dcap::{check_report_data, DcapCore};
use crate::tdx::tcb::{self, IntelTee, TcbVerdict};
use crate::tdx::{SgxExtensions, TdxCollateral, TdxTrustAnchors};
use crate::{HexBytes, Now};

/// ATTRIBUTES.DEBUG: bit 1 of the flags (the first 8 bytes, little-endian), so of byte 0.
const ATTRIBUTE_DEBUG: u8 = 1 << 1;

/// Verifies SGX quotes against one set of trust anchors (Intel's SGX root CA, as for TDX).
#[derive(Debug)]
pub struct SgxVerifier {
    core: DcapCore,
}

impl SgxVerifier {
    #[must_use]
    pub fn new(anchors: TdxTrustAnchors) -> Self {
        Self { core: DcapCore::new(anchors) }
    }

    /// Verifies `quote` with `collateral` (TCB info id "SGX", QE identity id "QE") at `now`;
    /// when `expected_report_data` is given, the enclave's `REPORT_DATA` must equal it. Steps,
    /// in order, each failure naming its step:
    ///
    /// 1. parse ([`Step::Parse`]);
    /// 2. collateral ([`Step::Collateral`]), whose TCB info and QE identity must be SGX's;
    /// 3. PCK chain ([`Step::Chain`]);
    /// 4. QE report signature by the PCK key ([`Step::Signature`]);
    /// 5. QE report binds the attestation key ([`Step::QeIdentity`]);
    /// 6. QE report against the QE identity ([`Step::QeIdentity`]);
    /// 7. quote signature by the attestation key ([`Step::Signature`]);
    /// 8. TCB: FMSPC, PCE-ID, the first level the PCK certificate's SGX components and PCESVN
    ///    meet, converged with the QE level ([`Step::Tcb`]);
    /// 9. `REPORT_DATA` ([`Step::ReportData`]).
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &TdxCollateral,
        expected_report_data: Option<&[u8; 64]>,
        now: Now,
    ) -> Result<SgxClaims, VerifyError> {
        let parsed = parse_sgx_quote(quote)?;
        let e = self.core.endorse(
            IntelTee::Sgx,
            quote,
            &parsed.signing,
            collateral,
            now.unix_timestamp(),
        )?;
        let verdict =
            tcb::evaluate_sgx(&e.collateral.tcb_info, &e.pck.ext, &e.qe_level).at(Step::Tcb)?;
        check_report_data(&parsed.report.report_data, expected_report_data)?;
        Ok(claims(quote, parsed, &e.pck.ext, verdict, self.core.anchors().is_simulated()))
    }
}

fn claims(
    bytes: &[u8],
    q: SgxQuote,
    ext: &SgxExtensions,
    verdict: TcbVerdict,
    simulated: bool,
) -> SgxClaims {
    let r = q.report;
    SgxClaims {
        tee: SgxTee::Sgx,
        simulated,
        report_data: HexBytes(r.report_data),
        evidence_sha256: HexBytes(Sha256::digest(bytes).into()),
        sgx: SgxReportClaims {
            quote_version: 3,
            cpu_svn: HexBytes(r.cpu_svn),
            misc_select: r.misc_select,
            isv_ext_prod_id: HexBytes(r.isv_ext_prod_id),
            attributes: HexBytes(r.attributes),
            debug: r.attributes.first().is_some_and(|f| f & ATTRIBUTE_DEBUG != 0),
            mr_enclave: HexBytes(r.mr_enclave),
            mr_signer: HexBytes(r.mr_signer),
            config_id: HexBytes(r.config_id),
            isv_prod_id: r.isv_prod_id,
            isv_svn: r.isv_svn,
            config_svn: r.config_svn,
            isv_family_id: HexBytes(r.isv_family_id),
            tcb_status: verdict.status,
            advisory_ids: verdict.advisory_ids,
            tcb_date: verdict.tcb_date,
            tcb_evaluation_data_number: verdict.tcb_evaluation_data_number,
            fmspc: HexBytes(ext.fmspc),
            pce_svn: ext.pce_svn,
        },
    }
}
