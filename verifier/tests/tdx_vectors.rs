//! Real TDX quotes (dcap-qvl's samples, captured on hardware) with Intel PCS collateral, verified
//! at the instant their expected.json names, under the production Intel root.

// reason: test code; a panic here is a test failure with its location.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use verifier::claims::{TcbStatus, TdxBody};
use verifier::tdx::{parse_quote, TdxCollateral, TdxTrustAnchors, TdxVerifier};
use verifier::{Reason, Step, Tee};

struct Case {
    quote: Vec<u8>,
    collateral: TdxCollateral,
    collateral_json: Vec<u8>,
    expected: serde_json::Value,
    at: time::OffsetDateTime,
}

fn case(name: &str) -> Option<Case> {
    let dir = keylatch_test_vectors::dir()?.join("tdx").join(name);
    let quote = std::fs::read(dir.join("quote.bin")).unwrap();
    let collateral_json = std::fs::read(dir.join("collateral.json")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let at = time::OffsetDateTime::parse(
        expected["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    Some(Case {
        collateral: TdxCollateral::from_json(&collateral_json).unwrap(),
        quote,
        collateral_json,
        expected,
        at,
    })
}

fn production() -> TdxVerifier {
    TdxVerifier::new(TdxTrustAnchors::production())
}

fn hex_of(v: &serde_json::Value) -> String {
    v.as_str().unwrap().to_owned()
}

#[test]
fn v4_quote_verifies_up_to_date_with_exact_claims() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let claims = production().verify(&c.quote, &c.collateral, None, c.at).unwrap();
    let e = &c.expected["claims"];
    assert_eq!(claims.tee, Tee::Tdx);
    assert!(!claims.simulated);
    assert_eq!(claims.report_data.to_hex(), hex_of(&e["report_data"]));
    assert_eq!(
        claims.evidence_sha256.0,
        <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&c.quote))
    );
    let t = claims.tdx.unwrap();
    assert_eq!(t.quote_version, 4);
    assert_eq!(t.body, TdxBody::Tdx10);
    assert_eq!(t.tee_tcb_svn.to_hex(), hex_of(&e["tee_tcb_svn"]));
    assert_eq!(t.mr_seam.to_hex(), hex_of(&e["mr_seam"]));
    assert_eq!(t.td_attributes.raw.to_hex(), hex_of(&e["td_attributes"]));
    assert_eq!(t.xfam.to_hex(), hex_of(&e["xfam"]));
    assert_eq!(t.mr_td.to_hex(), hex_of(&e["mr_td"]));
    assert_eq!(t.mr_config_id.to_hex(), hex_of(&e["mr_config_id"]));
    assert_eq!(t.mr_owner.to_hex(), hex_of(&e["mr_owner"]));
    assert_eq!(t.mr_owner_config.to_hex(), hex_of(&e["mr_owner_config"]));
    for i in 0..4 {
        assert_eq!(t.rtmr[i].to_hex(), hex_of(&e["rtmr"][i]));
    }
    assert_eq!(t.tee_tcb_svn2, None);
    assert_eq!(t.mr_service_td, None);
    // TD_ATTRIBUTES 0000001000000000: bit 28 (SEPT_VE_DISABLE) only.
    assert!(!t.td_attributes.debug);
    assert!(t.td_attributes.sept_ve_disable);
    assert!(!t.td_attributes.pks && !t.td_attributes.kl && !t.td_attributes.perfmon);
    assert_eq!(t.tcb_status, TcbStatus::UpToDate);
    assert!(t.advisory_ids.is_empty());
    // The matched level and evaluation number, as this collateral's TCB info says them: its
    // `tcbEvaluationDataNumber`, and the `tcbDate` of its one level with the verdict's status.
    let (date, number) = collateral_says(&c.collateral_json, "UpToDate");
    assert_eq!((t.tcb_date.as_str(), t.tcb_evaluation_data_number), (date.as_str(), number));
    assert_eq!((date.as_str(), number), ("2024-03-13T00:00:00Z", 17));
    assert_eq!(t.event_log, None);
    assert_eq!(c.expected["tcb_status"], "UpToDate");
    assert_eq!(c.expected["advisory_ids"], serde_json::json!([]));
    assert_eq!(t.fmspc.to_hex(), "b0c06f000000");
    assert_eq!(t.pce_svn, 11);
    assert_eq!(t.mr_signer_seam.to_hex(), "00".repeat(48));
    assert_eq!(t.seam_attributes.to_hex(), "00".repeat(8));
}

/// From collateral JSON: the `tcbDate` of the single TCB level with `status`, and the TCB info's
/// `tcbEvaluationDataNumber`.
fn collateral_says(collateral_json: &[u8], status: &str) -> (String, u32) {
    let collateral: serde_json::Value = serde_json::from_slice(collateral_json).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(collateral["tcb_info"].as_str().unwrap()).unwrap();
    let levels: Vec<_> =
        info["tcbLevels"].as_array().unwrap().iter().filter(|l| l["tcbStatus"] == status).collect();
    assert_eq!(levels.len(), 1, "levels with status {status}");
    let number = info["tcbEvaluationDataNumber"].as_u64().unwrap();
    (levels[0]["tcbDate"].as_str().unwrap().to_owned(), u32::try_from(number).unwrap())
}

#[test]
fn v4_quote_verifies_again_from_the_warm_cache() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let v = production();
    let first = v.verify(&c.quote, &c.collateral, None, c.at).unwrap();
    let second = v.verify(&c.quote, &c.collateral, None, c.at).unwrap();
    assert_eq!(first, second);
}

#[test]
fn v5_quote_without_matching_tcb_level_fails_at_tcb() {
    let Some(c) = case("v5-dcap-qvl-no-tcb-level") else { return };
    let q = parse_quote(&c.quote).unwrap();
    assert_eq!(q.version, 5);
    assert_eq!(q.report.body, TdxBody::Tdx15);
    let e = &c.expected["claims"];
    assert_eq!(hex::encode(q.report.tee_tcb_svn2.unwrap()), hex_of(&e["tee_tcb_svn2"]));
    assert_eq!(hex::encode(q.report.mr_td), hex_of(&e["mr_td"]));
    assert_eq!(hex::encode(q.report.report_data), hex_of(&e["report_data"]));
    let err = production().verify(&c.quote, &c.collateral, None, c.at).unwrap_err();
    assert_eq!(err.step, Step::Tcb);
    assert_eq!(err.reason, Reason::NoMatch { what: "TCB level" });
}

#[test]
fn collateral_round_trips_through_json() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let again = TdxCollateral::from_json(&c.collateral.to_json()).unwrap();
    assert_eq!(again, c.collateral);
    assert_eq!(again.digest(), c.collateral.digest());
    assert!(!c.collateral_json.is_empty());
}
