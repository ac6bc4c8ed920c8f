//! Real SEV-SNP evidence (see the vectors README): every case verifies at its `at` time with
//! exactly the claims in its expected.json, and the ways it must fail do fail, at the right step.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod snp_common;

use sha2::{Digest, Sha256};
use snp_common::{assert_claims, at, expected, production_anchors, read, REAL_CASES};
use verifier::claims::{SnpProduct, SnpSigningKey};
use verifier::snp::{
    coco_evidence_json, parse_report, report_from_coco_evidence, CocoCertType, SnpEndorsements,
    SnpTrustAnchors, SnpVerifier,
};
use verifier::{Reason, Step};

#[test]
fn every_real_report_verifies_with_its_expected_claims() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let verifier = SnpVerifier::new(production_anchors());
    for (case, signer) in REAL_CASES {
        let exp = expected(&dir, case);
        let report = read(&dir, &format!("{case}/report.bin"));
        let e = SnpEndorsements::new(read(&dir, &format!("{case}/{signer}")));
        let claims = verifier
            .verify(&report, &e, None, at(&exp))
            .unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_claims(&claims, &exp);
        assert_eq!(claims.evidence_sha256.0, <[u8; 32]>::from(Sha256::digest(&report)));
        // The warm path (cache hit) returns the very same claims.
        assert_eq!(verifier.verify(&report, &e, None, at(&exp)).unwrap(), claims, "{case} warm");
    }
}

fn case_inputs(
    dir: &std::path::Path,
    case: &str,
    signer: &str,
) -> (Vec<u8>, SnpEndorsements, verifier::Now) {
    let report = read(dir, &format!("{case}/report.bin"));
    let e = SnpEndorsements::new(read(dir, &format!("{case}/{signer}")));
    (report, e, at(&expected(dir, case)))
}

#[test]
fn guest_components_evidence_rebuilds_the_signed_genoa_v3_report() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let case = "coco/snp-genoa-v3";
    let exp = expected(&dir, case);
    let evidence =
        report_from_coco_evidence(&read(&dir, &format!("{case}/evidence.json"))).unwrap();
    assert_eq!(evidence.report.len(), 1184);
    assert_eq!(evidence.certs.len(), 1);
    assert_eq!(evidence.certs[0].cert_type, CocoCertType::Vcek);
    let endorsements = evidence.endorsements().unwrap();
    let verifier = SnpVerifier::new(production_anchors());
    let claims = verifier.verify(&evidence.report, &endorsements, None, at(&exp)).unwrap();
    assert_claims(&claims, &exp);
    // And the inverse: the report written back as JSON reads back to the same bytes.
    let json =
        coco_evidence_json(&evidence.report, Some((SnpSigningKey::Vcek, &endorsements.signer)))
            .unwrap();
    assert_eq!(report_from_coco_evidence(&json).unwrap(), evidence);
}

#[test]
fn real_reports_round_trip_through_the_guest_components_form() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    for (case, signer) in REAL_CASES {
        let (report, e, _) = case_inputs(&dir, case, signer);
        let kind = parse_report(&report).unwrap().key_info.signing_key;
        let json = coco_evidence_json(&report, Some((kind, &e.signer))).unwrap();
        assert_eq!(report_from_coco_evidence(&json).unwrap().report, report, "{case}");
    }
}

#[test]
fn debug_policy_report_verifies_and_says_debug() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let (report, e, now) = case_inputs(&dir, "snp/milan-v2-go-sev-guest", "vcek.der");
    let claims = SnpVerifier::new(production_anchors()).verify(&report, &e, None, now).unwrap();
    let policy = claims.snp.unwrap().policy;
    assert!(policy.debug);
    assert_eq!(policy.raw, 0xb0000);
}

#[test]
fn vlek_expires_one_second_after_not_after() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let (report, e, _) = case_inputs(&dir, "snp/milan-v3-vlek", "vlek.der");
    let vlek = verifier::x509::Certificate::from_der("VLEK", &e.signer).unwrap();
    let not_after = vlek.not_after();
    assert_eq!(not_after, 1_765_404_861); // 2025-12-10T22:14:21Z
    let t = |s| time::OffsetDateTime::from_unix_timestamp(s).unwrap();
    // Only the production anchors (the ASVK comes from the vector roots, read at test time).
    let verifier = SnpVerifier::new(production_anchors());
    assert!(verifier.verify(&report, &e, None, t(not_after)).is_ok());
    let err = verifier.verify(&report, &e, None, t(not_after + 1)).unwrap_err();
    assert_eq!(
        err,
        verifier::VerifyError::new(
            Step::Chain,
            Reason::Expired { what: "VLEK certificate", not_after, now: not_after + 1 }
        )
    );
}

#[test]
fn vlek_verifies_under_the_built_in_asvk_and_with_its_asvk_in_the_endorsements() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let (report, e, now) = case_inputs(&dir, "snp/milan-v3-vlek", "vlek.der");
    let bare = SnpVerifier::new(SnpTrustAnchors::production().unwrap());
    assert!(bare.verify(&report, &e, None, now).is_ok());
    let with_asvk = e.clone().with_intermediate(read(&dir, "roots/amd/milan/asvk.pem"));
    assert!(bare.verify(&report, &with_asvk, None, now).is_ok());
    // Without Milan's ARK no ASVK helps: Milan's needs that ARK, and Genoa's did not issue it.
    let genoa_only =
        SnpVerifier::new(SnpTrustAnchors::production().unwrap().only(&[SnpProduct::Genoa]));
    for asvk in ["roots/amd/milan/asvk.pem", "roots/amd/genoa/asvk.pem"] {
        let e = e.clone().with_intermediate(read(&dir, asvk));
        assert_eq!(genoa_only.verify(&report, &e, None, now).unwrap_err().step, Step::Chain);
    }
}

/// Every case under `snp/` and `coco/`, verified with exactly what its expected.json names
/// (its evidence, its endorsement if any, its `at`) under the production anchors alone: valid
/// cases give the expected claims, invalid ones fail at `failing_step`.
#[test]
fn every_vector_case_verifies_as_its_expected_json_says_with_production_anchors_only() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let verifier = SnpVerifier::new(SnpTrustAnchors::production().unwrap());
    let mut seen = 0;
    for group in ["snp", "coco"] {
        let mut cases: Vec<_> =
            std::fs::read_dir(dir.join(group)).unwrap().map(|e| e.unwrap().path()).collect();
        cases.sort();
        for case_dir in cases {
            let case = format!("{group}/{}", case_dir.file_name().unwrap().to_str().unwrap());
            let exp = expected(&dir, &case);
            assert_eq!(exp["tee"], "snp", "{case}");
            let evidence = read(&dir, &format!("{case}/{}", exp["evidence"].as_str().unwrap()));
            let (report, endorsements) = if let Some(file) = exp.get("endorsement") {
                let signer = read(&dir, &format!("{case}/{}", file.as_str().unwrap()));
                (evidence, SnpEndorsements::new(signer))
            } else {
                let coco = report_from_coco_evidence(&evidence).unwrap();
                let e = coco.endorsements().unwrap();
                (coco.report, e)
            };
            let outcome = verifier.verify(&report, &endorsements, None, at(&exp));
            match exp["expect"].as_str().unwrap() {
                "valid" => assert_claims(&outcome.unwrap_or_else(|e| panic!("{case}: {e}")), &exp),
                "invalid" => assert_eq!(
                    outcome.unwrap_err().step.as_str(),
                    exp["failing_step"].as_str().unwrap(),
                    "{case}"
                ),
                other => panic!("{case}: expect {other}"),
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} cases");
}

#[test]
fn every_truncated_prefix_of_every_real_report_fails_to_parse() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    for (case, _) in REAL_CASES {
        let report = read(&dir, &format!("{case}/report.bin"));
        assert!(parse_report(&report).is_ok());
        for len in 0..report.len() {
            let err = parse_report(&report[..len]).unwrap_err();
            assert_eq!(err.step, Step::Parse);
            assert!(
                matches!(err.reason, Reason::Truncated { needed: 1184, .. }),
                "{case} {len}: {err}"
            );
        }
        let mut longer = report.clone();
        longer.push(0);
        assert!(matches!(
            parse_report(&longer).unwrap_err().reason,
            Reason::TrailingData { extra: 1, .. }
        ));
    }
}

/// Every single-bit flip in the signed region (0x000..0x2A0) and in the signature (r and s,
/// 144 bytes; the rest of the signature field is reserved and fails parsing) of every real
/// report fails verification: 4 reports x 816 bytes x 8 bits.
#[test]
fn every_bit_flip_in_the_signed_region_or_signature_of_any_real_report_fails_verification() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let verifier = SnpVerifier::new(production_anchors());
    let mut flips = 0usize;
    for (case, signer) in REAL_CASES {
        let (report, e, now) = case_inputs(&dir, case, signer);
        verifier.verify(&report, &e, None, now).unwrap();
        let positions: Vec<(usize, u8)> =
            (0..0x2A0 + 144).flat_map(|byte| (0..8).map(move |bit| (byte, bit))).collect();
        let failed = std::thread::scope(|scope| {
            let workers: Vec<_> = positions
                .chunks(positions.len() / 2 + 1)
                .map(|chunk| {
                    let (report, e, verifier) = (&report, &e, &verifier);
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .filter(|&&(byte, bit)| {
                                let mut bad = report.clone();
                                bad[byte] ^= 1 << bit;
                                verifier.verify(&bad, e, None, now).is_err()
                            })
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum::<usize>()
        });
        assert_eq!(failed, positions.len(), "{case}: some flipped report verified");
        flips += failed;
    }
    assert_eq!(flips, 4 * (0x2A0 + 144) * 8);
}

#[test]
fn milan_report_fails_with_genoa_anchors_only() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let (report, e, now) = case_inputs(&dir, "snp/milan-v2-virtee", "vcek.der");
    let genoa_only =
        SnpVerifier::new(SnpTrustAnchors::production().unwrap().only(&[SnpProduct::Genoa]));
    let err = genoa_only.verify(&report, &e, None, now).unwrap_err();
    assert_eq!(err.step, Step::Chain, "{err}");
}

#[test]
fn another_reports_vcek_fails() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let verifier = SnpVerifier::new(production_anchors());
    let (report, _, now) = case_inputs(&dir, "snp/milan-v2-virtee", "vcek.der");
    let other = SnpEndorsements::new(read(&dir, "snp/milan-v2-go-sev-guest/vcek.der"));
    // Same product, different chip and TCB: the TCB extensions differ first.
    let err = verifier.verify(&report, &other, None, now).unwrap_err();
    assert_eq!(err.step, Step::Tcb, "{err}");
    // A Genoa VCEK for a Milan report: its chain is Genoa's, the TCB is not the report's.
    let genoa = SnpEndorsements::new(read(&dir, "snp/genoa-v5-oak/vcek.der"));
    assert!(verifier.verify(&report, &genoa, None, now).is_err());
    // A v3 Milan report (CPUID says Milan) with a Genoa VCEK: product mismatch at the chain step.
    let (vlek_report, _, vlek_now) = case_inputs(&dir, "snp/milan-v3-vlek", "vlek.der");
    let err = verifier.verify(&vlek_report, &genoa, None, vlek_now).unwrap_err();
    assert_eq!(err.step, Step::Chain, "{err}");
}

#[test]
fn tampered_vcek_fails_at_the_chain_step() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let verifier = SnpVerifier::new(production_anchors());
    let (report, e, now) = case_inputs(&dir, "snp/milan-v2-virtee", "vcek.der");
    // Flip one byte inside the TBS: in the subject public key, and in the blSPL extension.
    let cert = &e.signer;
    let spki_at =
        cert.windows(7).position(|w| w == [0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62]).unwrap() + 20;
    let bl_spl = [0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x9c, 0x78, 0x01, 0x03, 0x01];
    let ext_at = cert.windows(bl_spl.len()).position(|w| w == bl_spl).unwrap() + bl_spl.len() + 4;
    for at in [spki_at, ext_at] {
        let mut bad = cert.clone();
        bad[at] ^= 0x01;
        let err = verifier.verify(&report, &SnpEndorsements::new(bad), None, now).unwrap_err();
        assert_eq!(err.step, Step::Chain, "byte {at}: {err}");
    }
}

#[test]
fn real_evidence_fails_under_simulation_anchors() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let sim = SnpVerifier::new(snp_common::sim_pki().anchors().unwrap());
    for (case, signer) in REAL_CASES {
        let (report, e, now) = case_inputs(&dir, case, signer);
        assert_eq!(sim.verify(&report, &e, None, now).unwrap_err().step, Step::Chain, "{case}");
    }
}

#[test]
fn wrong_report_data_fails_at_the_report_data_step() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let (report, e, now) = case_inputs(&dir, "snp/genoa-v5-oak", "vcek.der");
    let verifier = SnpVerifier::new(production_anchors());
    let actual: [u8; 64] = report[0x50..0x90].try_into().unwrap();
    assert!(verifier.verify(&report, &e, Some(&actual), now).is_ok());
    let mut wrong = actual;
    wrong[63] ^= 1;
    assert_eq!(verifier.verify(&report, &e, Some(&wrong), now).unwrap_err().step, Step::ReportData);
}
