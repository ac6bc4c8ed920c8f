//! The TDX verifier: the numbered steps from quote bytes to [`Claims`]. The steps TDX shares
//! with SGX quotes, and the caches that make the warm path cheap, are `dcap`'s.

use sha2::{Digest, Sha256};

use super::anchors::TdxTrustAnchors;
use super::collateral::TdxCollateral;
use super::dcap::{check_report_data, DcapCore};
use super::eventlog;
use super::pck::VerifiedPck;
use super::quote::{parse_quote, Quote};
use super::tcb::{self, IntelTee};
use crate::claims::{Claims, TdAttributes, TdxClaims, Tee};
use crate::error::{AtStep, Step, VerifyError};
use crate::{HexBytes, Now};

/// Verifies TDX quotes against one set of trust anchors. `verify` takes `&self` and may be
/// called from many threads; the caches are behind locks held only for lookups and inserts.
#[derive(Debug)]
pub struct TdxVerifier {
    core: DcapCore,
}

impl TdxVerifier {
    #[must_use]
    pub fn new(anchors: TdxTrustAnchors) -> Self {
        Self { core: DcapCore::new(anchors) }
    }

    #[must_use]
    pub fn anchors(&self) -> &TdxTrustAnchors {
        self.core.anchors()
    }

    /// Verifies `quote` with `collateral` at `now`; when `expected_report_data` is given, the
    /// TD report's `REPORT_DATA` must equal it. Steps, in order, each failure naming its step:
    ///
    /// 1. parse ([`Step::Parse`]);
    /// 2. collateral ([`Step::Collateral`]), whose TCB info and QE identity must be TDX's;
    /// 3. PCK chain ([`Step::Chain`]);
    /// 4. QE report signature by the PCK key ([`Step::Signature`]);
    /// 5. QE report binds the attestation key ([`Step::QeIdentity`]);
    /// 6. QE report against the QE identity ([`Step::QeIdentity`]);
    /// 7. quote signature by the attestation key ([`Step::Signature`]);
    /// 8. TCB ([`Step::Tcb`]);
    /// 9. `REPORT_DATA` ([`Step::ReportData`]).
    ///
    /// RTMRs stay opaque values; [`TdxVerifier::verify_with_event_log`] also replays a log.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &TdxCollateral,
        expected_report_data: Option<&[u8; 64]>,
        now: Now,
    ) -> Result<Claims, VerifyError> {
        self.verify_with_event_log(quote, None, collateral, expected_report_data, now)
    }

    /// [`TdxVerifier::verify`], then, when `event_log` (the CCEL bytes) is given, step 10:
    /// parse the log, replay it into RTMR0-3 and require exactly the quote's RTMRs
    /// ([`Step::EventLog`], naming the RTMR); the claims then carry `tdx.event_log`.
    pub fn verify_with_event_log(
        &self,
        quote: &[u8],
        event_log: Option<&[u8]>,
        collateral: &TdxCollateral,
        expected_report_data: Option<&[u8; 64]>,
        now: Now,
    ) -> Result<Claims, VerifyError> {
        let parsed = parse_quote(quote)?;
        let e = self.core.endorse(
            IntelTee::Tdx,
            quote,
            &parsed.signing,
            collateral,
            now.unix_timestamp(),
        )?;
        let verdict =
            tcb::evaluate(&e.collateral.tcb_info, &e.pck.ext, &parsed.report, &e.qe_level)
                .at(Step::Tcb)?;
        check_report_data(&parsed.report.report_data, expected_report_data)?;
        let event_log =
            event_log.map(|log| eventlog::check_event_log(log, &parsed.report.rtmr)).transpose()?;
        let mut claims = claims(quote, parsed, &e.pck, verdict, self.anchors().is_simulated());
        if let Some(tdx) = claims.tdx.as_mut() {
            tdx.event_log = event_log;
        }
        Ok(claims)
    }
}

fn claims(
    bytes: &[u8],
    q: Quote,
    pck: &VerifiedPck,
    verdict: tcb::TcbVerdict,
    simulated: bool,
) -> Claims {
    let r = q.report;
    let attrs = u64::from_le_bytes(r.td_attributes);
    let bit = |n: u32| attrs & (1u64 << n) != 0;
    Claims {
        tee: Tee::Tdx,
        simulated,
        report_data: HexBytes(r.report_data),
        evidence_sha256: HexBytes(Sha256::digest(bytes).into()),
        snp: None,
        tdx: Some(TdxClaims {
            quote_version: q.version,
            body: r.body,
            tee_tcb_svn: HexBytes(r.tee_tcb_svn),
            mr_seam: HexBytes(r.mr_seam),
            mr_signer_seam: HexBytes(r.mr_signer_seam),
            seam_attributes: HexBytes(r.seam_attributes),
            td_attributes: TdAttributes {
                raw: HexBytes(r.td_attributes),
                debug: bit(0),
                sept_ve_disable: bit(28),
                pks: bit(30),
                kl: bit(31),
                perfmon: bit(63),
            },
            xfam: HexBytes(r.xfam),
            mr_td: HexBytes(r.mr_td),
            mr_config_id: HexBytes(r.mr_config_id),
            mr_owner: HexBytes(r.mr_owner),
            mr_owner_config: HexBytes(r.mr_owner_config),
            rtmr: r.rtmr.map(HexBytes),
            tee_tcb_svn2: r.tee_tcb_svn2.map(HexBytes),
            mr_service_td: r.mr_service_td.map(HexBytes),
            tcb_status: verdict.status,
            advisory_ids: verdict.advisory_ids,
            tcb_date: verdict.tcb_date,
            tcb_evaluation_data_number: verdict.tcb_evaluation_data_number,
            fmspc: HexBytes(pck.ext.fmspc),
            pce_svn: pck.ext.pce_svn,
            event_log: None,
        }),
        azure: None,
    }
}
