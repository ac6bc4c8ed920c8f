//! Property tests: no input makes the SNP report parser or the guest-components evidence
//! reader panic, whether arbitrary bytes or mutations of a valid report and evidence.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod snp_common;

use proptest::prelude::*;
use verifier::snp::{
    coco_evidence_json, parse_report, report_from_coco_evidence, SnpEndorsements, SnpVerifier,
};

fn valid_report() -> &'static (Vec<u8>, Vec<u8>) {
    static R: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let spec =
            verifier::sim::snp::SimSnpReport::for_product(verifier::claims::SnpProduct::Turin);
        snp_common::sim_pki().mint(&spec, &mut rand_core::OsRng).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_report_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let _ = parse_report(&bytes);
    }

    #[test]
    fn parse_report_never_panics_on_mutated_reports(
        edits in proptest::collection::vec((0usize..1184, any::<u8>()), 1..16),
        version in prop_oneof![Just(2u8), Just(3), Just(5), any::<u8>()],
    ) {
        let mut bytes = valid_report().0.clone();
        bytes[0] = version;
        for (at, value) in edits {
            bytes[at] = value;
        }
        if let Ok(report) = parse_report(&bytes) {
            // Whatever parses re-encodes to the same bytes: no field is dropped or invented.
            prop_assert_eq!(report.to_bytes(), bytes);
        }
    }

    #[test]
    fn verify_never_panics_on_mutated_reports(edits in proptest::collection::vec((0usize..1184, any::<u8>()), 1..4)) {
        let (report, signer) = valid_report();
        let mut bytes = report.clone();
        for (at, value) in edits {
            bytes[at] = value;
        }
        let verifier = SnpVerifier::new(snp_common::sim_pki().anchors().unwrap());
        let result = verifier.verify(&bytes, &SnpEndorsements::new(signer.clone()), None, snp_common::sim_now());
        prop_assert_eq!(result.is_ok(), &bytes == report);
    }

    #[test]
    fn coco_evidence_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = report_from_coco_evidence(&bytes);
    }

    #[test]
    fn coco_evidence_never_panics_on_mutated_json(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (report, signer) = valid_report();
        let mut json = coco_evidence_json(report, Some((verifier::claims::SnpSigningKey::Vcek, signer))).unwrap();
        for (at, value) in edits {
            let i = at.index(json.len());
            json[i] = value;
        }
        let _ = report_from_coco_evidence(&json);
    }
}

#[test]
fn coco_evidence_rejects_wrong_lengths_and_missing_fields() {
    let (report, _) = valid_report();
    let json = coco_evidence_json(report, None).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(report_from_coco_evidence(&json).is_ok());
    v["attestation_report"]["chip_id"] = serde_json::json!([1, 2, 3]);
    let err = report_from_coco_evidence(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert_eq!(err.step, verifier::Step::Parse);
    v["attestation_report"].as_object_mut().unwrap().remove("chip_id");
    assert!(report_from_coco_evidence(&serde_json::to_vec(&v).unwrap()).is_err());
}
