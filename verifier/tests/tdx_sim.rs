//! Quotes minted by the TDX simulator verify through the real code under the sim anchors only,
//! with exact claims, and every TCB outcome the sim collateral offers.

// reason: test code; a panic here is a test failure with its location.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use rand_core::OsRng;
use time::macros::datetime;
use time::OffsetDateTime;
use verifier::claims::{TcbStatus, TdxBody};
use verifier::sim::tdx::{
    SimCollateralSpec, SimIntelPki, SimTdxQuote, SIM_ADVISORY_MODULE, SIM_ADVISORY_OUT_OF_DATE,
    SIM_ADVISORY_QE,
};
use verifier::tdx::{TdxCollateral, TdxTrustAnchors, TdxVerifier};
use verifier::{Reason, Step, VerifyError};

const NOW: OffsetDateTime = datetime!(2026-01-15 12:00:00 UTC);

struct Sim {
    pki: SimIntelPki,
    collateral: TdxCollateral,
    verifier: TdxVerifier,
}

fn sim() -> Sim {
    let pki = SimIntelPki::generate(&mut OsRng).unwrap();
    let collateral = pki
        .collateral(datetime!(2026-01-01 00:00:00 UTC), datetime!(2026-01-31 00:00:00 UTC))
        .unwrap();
    let verifier = TdxVerifier::new(pki.anchors());
    Sim { pki, collateral, verifier }
}

impl Sim {
    fn verify(&self, spec: &SimTdxQuote) -> Result<verifier::Claims, VerifyError> {
        let quote = self.pki.mint(spec, &mut OsRng).unwrap();
        self.verifier.verify(&quote, &self.collateral, Some(&spec.report_data), NOW)
    }
}

fn svn(module_isvsvn: u8, component2: u8) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[0] = module_isvsvn;
    s[1] = 1;
    s[2] = component2;
    s
}

fn spec(version: u16, body: TdxBody) -> SimTdxQuote {
    SimTdxQuote {
        version,
        body,
        report_data: [0xab; 64],
        mr_td: [0x42; 48],
        mr_service_td: [0x0c; 48],
        ..SimTdxQuote::default()
    }
}

#[test]
fn sim_quotes_of_every_layout_verify_with_exact_claims() {
    let s = sim();
    for (version, body) in [(4, TdxBody::Tdx10), (5, TdxBody::Tdx10), (5, TdxBody::Tdx15)] {
        let sp = spec(version, body);
        let quote = s.pki.mint(&sp, &mut OsRng).unwrap();
        let claims = s.verifier.verify(&quote, &s.collateral, Some(&sp.report_data), NOW).unwrap();
        assert!(claims.simulated);
        assert_eq!(claims.report_data.0, [0xab; 64]);
        let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&quote).into();
        assert_eq!(claims.evidence_sha256.0, sha);
        let t = claims.tdx.unwrap();
        assert_eq!((t.quote_version, t.body), (version, body));
        assert_eq!(t.tee_tcb_svn.0, sp.tee_tcb_svn);
        assert_eq!(t.mr_seam.0, sp.mr_seam);
        assert_eq!(t.mr_signer_seam.0, [0; 48]);
        assert_eq!(t.seam_attributes.0, [0; 8]);
        assert_eq!(t.td_attributes.raw.0, [0, 0, 0, 0x10, 0, 0, 0, 0]);
        assert!(t.td_attributes.sept_ve_disable && !t.td_attributes.debug);
        assert_eq!(t.xfam.0, sp.xfam);
        assert_eq!(t.mr_td.0, [0x42; 48]);
        assert_eq!(t.mr_config_id.0, [0; 48]);
        assert_eq!(t.mr_owner.0, [0; 48]);
        assert_eq!(t.mr_owner_config.0, [0; 48]);
        assert_eq!(t.rtmr.map(|r| r.0), sp.rtmr);
        if body == TdxBody::Tdx15 {
            assert_eq!(t.tee_tcb_svn2.map(|x| x.0), Some(sp.tee_tcb_svn2));
            assert_eq!(t.mr_service_td.map(|x| x.0), Some([0x0c; 48]));
        } else {
            assert_eq!((t.tee_tcb_svn2, t.mr_service_td), (None, None));
        }
        assert_eq!(t.tcb_status, TcbStatus::UpToDate);
        assert!(t.advisory_ids.is_empty());
        assert_eq!(t.fmspc.to_hex(), "50806f000000");
        assert_eq!(t.pce_svn, 11);
    }
}

#[test]
fn debug_td_attribute_is_decoded() {
    let s = sim();
    let claims = s.verify(&SimTdxQuote { debug: true, ..SimTdxQuote::default() }).unwrap();
    let a = claims.tdx.unwrap().td_attributes;
    assert!(a.debug);
    assert_eq!(a.raw.0, [1, 0, 0, 0x10, 0, 0, 0, 0]);
}

fn status(claims: &verifier::Claims) -> (TcbStatus, Vec<String>) {
    let t = claims.tdx.as_ref().unwrap();
    (t.tcb_status, t.advisory_ids.clone())
}

#[test]
fn out_of_date_platform_level_reports_its_advisory() {
    let s = sim();
    let c = s.verify(&SimTdxQuote { tee_tcb_svn: svn(6, 2), ..SimTdxQuote::default() }).unwrap();
    assert_eq!(status(&c), (TcbStatus::OutOfDate, vec![SIM_ADVISORY_OUT_OF_DATE.to_owned()]));
}

#[test]
fn out_of_date_tdx_module_converges_into_platform_status() {
    let s = sim();
    let c = s.verify(&SimTdxQuote { tee_tcb_svn: svn(4, 3), ..SimTdxQuote::default() }).unwrap();
    assert_eq!(status(&c), (TcbStatus::OutOfDate, vec![SIM_ADVISORY_MODULE.to_owned()]));
}

#[test]
fn out_of_date_quoting_enclave_converges_into_platform_status() {
    let s = sim();
    let c = s.verify(&SimTdxQuote { qe_isv_svn: 3, ..SimTdxQuote::default() }).unwrap();
    assert_eq!(status(&c), (TcbStatus::OutOfDate, vec![SIM_ADVISORY_QE.to_owned()]));
}

#[test]
fn platform_module_and_qe_advisories_merge_sorted_with_level_date_and_evaluation_number() {
    let s = sim();
    let spec = SimTdxQuote { tee_tcb_svn: svn(4, 2), qe_isv_svn: 3, ..SimTdxQuote::default() };
    let c = s.verify(&spec).unwrap();
    assert_eq!(
        status(&c),
        (
            TcbStatus::OutOfDate,
            vec![
                SIM_ADVISORY_OUT_OF_DATE.to_owned(),
                SIM_ADVISORY_MODULE.to_owned(),
                SIM_ADVISORY_QE.to_owned()
            ]
        )
    );
    let t = c.tdx.unwrap();
    assert_eq!(t.tcb_date, "2024-03-13T00:00:00Z");
    assert_eq!(t.tcb_evaluation_data_number, 1);
}

#[test]
fn quoting_enclave_below_every_level_fails_qe_identity() {
    let s = sim();
    let e = s.verify(&SimTdxQuote { qe_isv_svn: 1, ..SimTdxQuote::default() }).unwrap_err();
    assert_eq!(e.step, Step::QeIdentity);
}

#[test]
fn tdx15_out_of_date_launch_with_current_up_to_date_advises_relaunch() {
    let s = sim();
    let sp =
        SimTdxQuote { tee_tcb_svn: svn(6, 2), tee_tcb_svn2: svn(6, 3), ..spec(5, TdxBody::Tdx15) };
    let c = s.verify(&sp).unwrap();
    assert_eq!(
        status(&c),
        (TcbStatus::TDRelaunchAdvised, vec![SIM_ADVISORY_OUT_OF_DATE.to_owned()])
    );
}

#[test]
fn revoked_tcb_level_fails_at_tcb() {
    let s = sim();
    let e =
        s.verify(&SimTdxQuote { tee_tcb_svn: svn(6, 1), ..SimTdxQuote::default() }).unwrap_err();
    assert_eq!(e, VerifyError::new(Step::Tcb, Reason::Revoked { what: "platform TCB" }));
}

#[test]
fn tcb_below_every_level_fails_at_tcb() {
    let s = sim();
    let e =
        s.verify(&SimTdxQuote { tee_tcb_svn: svn(6, 0), ..SimTdxQuote::default() }).unwrap_err();
    assert_eq!(e, VerifyError::new(Step::Tcb, Reason::NoMatch { what: "TCB level" }));
}

#[test]
fn unknown_tdx_module_version_fails_at_tcb() {
    let s = sim();
    let mut tee_tcb_svn = svn(6, 3);
    tee_tcb_svn[1] = 2;
    let e = s.verify(&SimTdxQuote { tee_tcb_svn, ..SimTdxQuote::default() }).unwrap_err();
    assert_eq!(e.step, Step::Tcb);
}

#[test]
fn wrong_mrsignerseam_fails_at_tcb() {
    let s = sim();
    let e =
        s.verify(&SimTdxQuote { mr_signer_seam: [1; 48], ..SimTdxQuote::default() }).unwrap_err();
    assert_eq!(e.step, Step::Tcb);
}

#[test]
fn sim_quote_fails_under_production_anchors() {
    let s = sim();
    let quote = s.pki.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
    let e = TdxVerifier::new(TdxTrustAnchors::production())
        .verify(&quote, &s.collateral, None, NOW)
        .unwrap_err();
    assert_eq!(e.step, Step::Collateral);
    assert!(matches!(e.reason, Reason::UntrustedRoot { .. }), "{e}");
}

#[test]
fn quote_from_another_sim_pki_fails_at_chain() {
    let s = sim();
    let other = SimIntelPki::generate(&mut OsRng).unwrap();
    let quote = other.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
    let e = s.verifier.verify(&quote, &s.collateral, None, NOW).unwrap_err();
    assert_eq!(e.step, Step::Chain);
    assert!(matches!(e.reason, Reason::UntrustedRoot { .. }), "{e}");
}

#[test]
fn revoked_pck_certificate_fails_at_chain() {
    let s = sim();
    let collateral = s
        .pki
        .collateral_with(&SimCollateralSpec {
            issue_date: datetime!(2026-01-01 00:00:00 UTC),
            next_update: datetime!(2026-01-31 00:00:00 UTC),
            revoked_pck_serials: vec![vec![0x01, 0x02], s.pki.pck_serial()],
        })
        .unwrap();
    let quote = s.pki.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
    // Warm the chain cache with the unrevoking collateral first: revocation is per collateral.
    s.verifier.verify(&quote, &s.collateral, None, NOW).unwrap();
    let e = s.verifier.verify(&quote, &collateral, None, NOW).unwrap_err();
    assert_eq!(e, VerifyError::new(Step::Chain, Reason::Revoked { what: "PCK certificate" }));
}

#[test]
fn qe_report_not_binding_the_attestation_key_fails_qe_identity() {
    let s = sim();
    let e = s
        .verify(&SimTdxQuote { qe_report_data: Some([7; 64]), ..SimTdxQuote::default() })
        .unwrap_err();
    assert_eq!(e.step, Step::QeIdentity);
    assert!(matches!(
        e.reason,
        Reason::Mismatch { what: "QE REPORT_DATA (attestation key binding)", .. }
    ));
}

#[test]
fn report_data_mismatch_fails_at_report_data() {
    let s = sim();
    let quote = s.pki.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
    let e = s.verifier.verify(&quote, &s.collateral, Some(&[1; 64]), NOW).unwrap_err();
    assert_eq!(e.step, Step::ReportData);
}

#[test]
fn collateral_validity_is_rechecked_on_the_warm_path() {
    let s = sim();
    let quote = s.pki.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
    s.verifier.verify(&quote, &s.collateral, None, NOW).unwrap();
    let late = datetime!(2026-02-01 00:00:00 UTC);
    let e = s.verifier.verify(&quote, &s.collateral, None, late).unwrap_err();
    assert_eq!(e.step, Step::Collateral);
    assert!(matches!(e.reason, Reason::Expired { .. }), "{e}");
    let early = datetime!(2025-12-31 00:00:00 UTC);
    let e = s.verifier.verify(&quote, &s.collateral, None, early).unwrap_err();
    assert_eq!(e.step, Step::Collateral);
    assert!(matches!(e.reason, Reason::NotYetValid { .. }), "{e}");
    s.verifier.verify(&quote, &s.collateral, None, NOW).unwrap();
}

#[test]
fn failed_collateral_is_not_cached_as_success() {
    let s = sim();
    let quote = s.pki.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&s.collateral.to_json()).unwrap();
    let text = json["qe_identity"].as_str().unwrap().replace("\"isvprodid\":2", "\"isvprodid\":3");
    json["qe_identity"] = text.into();
    let tampered = TdxCollateral::from_json(json.to_string().as_bytes()).unwrap();
    for _ in 0..2 {
        let e = s.verifier.verify(&quote, &tampered, None, NOW).unwrap_err();
        assert_eq!(
            e,
            VerifyError::new(Step::Collateral, Reason::BadSignature { what: "QE identity" })
        );
    }
}

#[test]
fn sim_pki_round_trips_through_files() {
    let s = sim();
    let files = s.pki.to_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "intel-root-ca.pem",
            "intel-root-ca.key.pem",
            "intel-pck-ca.pem",
            "intel-pck-ca.key.pem",
            "intel-pck.pem",
            "intel-pck.key.pem",
            "intel-tcb-signing.pem",
            "intel-tcb-signing.key.pem"
        ]
    );
    let get = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone());
    let loaded = SimIntelPki::from_files(get).unwrap();
    assert_eq!(loaded.anchors(), s.pki.anchors());
    assert_eq!(loaded.pck_serial(), s.pki.pck_serial());
    assert_eq!(loaded.platform(), s.pki.platform());
    // A quote and collateral from the loaded PKI verify under the original's anchors.
    let collateral = loaded
        .collateral(datetime!(2026-01-01 00:00:00 UTC), datetime!(2026-01-31 00:00:00 UTC))
        .unwrap();
    let quote = loaded.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
    s.verifier.verify(&quote, &collateral, None, NOW).unwrap();
    // A missing file is an error, not a panic.
    let missing = SimIntelPki::from_files(|n| if n == "intel-pck.key.pem" { None } else { get(n) });
    assert!(missing.is_err());
}

#[test]
fn v4_spec_with_tdx15_body_is_refused() {
    let s = sim();
    assert!(s.pki.mint(&spec(4, TdxBody::Tdx15), &mut OsRng).is_err());
}
