//! The SEV-SNP simulator: minted reports of every version, product and signing key verify
//! under the simulation anchors with exactly the values minted and `simulated: true`; the
//! simulation and production anchors never accept each other's evidence; the PKI survives a
//! round trip through files.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod snp_common;

use rand_core::OsRng;
use snp_common::{sim_now, sim_pki};
use verifier::claims::{SnpProduct, SnpSigningKey, SnpTcb};
use verifier::sim::snp::{SimAmdPki, SimSnpReport};
use verifier::snp::{
    coco_evidence_json, parse_report, report_from_coco_evidence, SnpEndorsements, SnpTrustAnchors,
    SnpVerifier,
};
use verifier::{Reason, Step};

fn sim_verifier() -> SnpVerifier {
    SnpVerifier::new(sim_pki().anchors().unwrap())
}

fn spec(version: u32, product: SnpProduct, signing_key: SnpSigningKey) -> SimSnpReport {
    let mut s = SimSnpReport::for_product(product);
    s.version = version;
    s.signing_key = signing_key;
    s.report_data = [0xA5; 64];
    s.host_data = [0x42; 32];
    s.measurement = [0x17; 48];
    s.vmpl = 2;
    s.guest_svn = 7;
    s.family_id = [0xF1; 16];
    s.image_id = [0x1D; 16];
    s.policy = 0x3_0000 | (1 << 19);
    s.mask_chip_id = signing_key == SnpSigningKey::Vlek;
    s
}

#[test]
fn minted_reports_of_every_version_product_and_key_verify_with_exact_fields() {
    let verifier = sim_verifier();
    let mut checked = 0;
    for product in SnpProduct::ALL {
        for version in [2, 3, 5] {
            for kind in [SnpSigningKey::Vcek, SnpSigningKey::Vlek] {
                let s = spec(version, product, kind);
                let (report, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
                assert_eq!(report.len(), 1184);
                let claims = verifier
                    .verify(&report, &SnpEndorsements::new(signer), Some(&s.report_data), sim_now())
                    .unwrap_or_else(|e| panic!("{product:?} v{version} {kind:?}: {e}"));
                assert!(claims.simulated);
                assert_eq!(claims.report_data.0, s.report_data);
                let snp = claims.snp.unwrap();
                assert_eq!(snp.version, version);
                assert_eq!(snp.product, product);
                assert_eq!(snp.signing_key, kind);
                assert_eq!(snp.measurement.0, s.measurement);
                assert_eq!(snp.host_data.0, s.host_data);
                assert_eq!(snp.vmpl, 2);
                assert_eq!(snp.guest_svn, 7);
                assert_eq!(snp.family_id.0, s.family_id);
                assert_eq!(snp.image_id.0, s.image_id);
                assert_eq!(snp.policy.raw, 0xB_0000);
                assert!(snp.policy.debug);
                assert_eq!(snp.reported_tcb, s.reported_tcb);
                assert_eq!(snp.current_tcb, s.reported_tcb);
                assert_eq!(snp.reported_tcb.fmc, (product == SnpProduct::Turin).then_some(1));
                assert_eq!(snp.cpuid.is_some(), version >= 3);
                assert_eq!(snp.launch_mit_vector.is_some(), version >= 5);
                let chip = if kind == SnpSigningKey::Vlek { [0; 64] } else { s.chip_id };
                assert_eq!(snp.chip_id.0, chip);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 18);
}

#[test]
fn turin_vcek_carries_an_eight_byte_hw_id_and_fmc() {
    let s = spec(3, SnpProduct::Turin, SnpSigningKey::Vcek);
    let (_, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
    let cert = verifier::x509::Certificate::from_der("VCEK", &signer).unwrap();
    let hw_id = cert.extension(&"1.3.6.1.4.1.3704.1.4".parse().unwrap()).unwrap();
    assert_eq!(hw_id, &s.chip_id[..8]);
    let fmc = cert.extension(&"1.3.6.1.4.1.3704.1.3.9".parse().unwrap()).unwrap();
    assert_eq!(fmc, [0x02, 0x01, 0x01]);
    assert_eq!(cert.serial(), [0]);
}

#[test]
fn simulated_evidence_fails_under_production_anchors() {
    let verifier = SnpVerifier::new(SnpTrustAnchors::production().unwrap());
    for kind in [SnpSigningKey::Vcek, SnpSigningKey::Vlek] {
        let (report, signer) =
            sim_pki().mint(&spec(3, SnpProduct::Milan, kind), &mut OsRng).unwrap();
        let err =
            verifier.verify(&report, &SnpEndorsements::new(signer), None, sim_now()).unwrap_err();
        assert_eq!(err.step, Step::Chain, "{err}");
    }
}

#[test]
fn a_second_simulation_pki_does_not_verify_the_first_ones_evidence() {
    let other = SimAmdPki::generate(&mut OsRng).unwrap();
    assert_ne!(other.ark_der(), sim_pki().ark_der());
    let (report, signer) = sim_pki().mint(&SimSnpReport::default(), &mut OsRng).unwrap();
    let err = SnpVerifier::new(other.anchors().unwrap())
        .verify(&report, &SnpEndorsements::new(signer), None, sim_now())
        .unwrap_err();
    assert_eq!(err.step, Step::Chain);
}

#[test]
fn vcek_with_a_different_tcb_fails_at_the_tcb_step() {
    let mut s = spec(5, SnpProduct::Genoa, SnpSigningKey::Vcek);
    s.signer_tcb = Some(SnpTcb { microcode: 73, ..s.reported_tcb });
    let (report, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
    let err =
        sim_verifier().verify(&report, &SnpEndorsements::new(signer), None, sim_now()).unwrap_err();
    assert_eq!(err.step, Step::Tcb, "{err}");
    assert!(matches!(err.reason, Reason::Mismatch { .. }));
}

#[test]
fn turin_fmc_mismatch_fails_at_the_tcb_step() {
    let mut s = spec(5, SnpProduct::Turin, SnpSigningKey::Vcek);
    s.signer_tcb = Some(SnpTcb { fmc: Some(2), ..s.reported_tcb });
    let (report, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
    let err =
        sim_verifier().verify(&report, &SnpEndorsements::new(signer), None, sim_now()).unwrap_err();
    assert_eq!(err.step, Step::Tcb, "{err}");
}

#[test]
fn vcek_for_another_chip_fails_at_the_chip_id_step() {
    let mut s = spec(5, SnpProduct::Milan, SnpSigningKey::Vcek);
    s.signer_hw_id = Some(vec![0x99; 64]);
    let (report, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
    let err =
        sim_verifier().verify(&report, &SnpEndorsements::new(signer), None, sim_now()).unwrap_err();
    assert_eq!(err.step, Step::ChipId, "{err}");
    assert!(matches!(err.reason, Reason::Mismatch { .. }));
}

#[test]
fn masked_chip_id_with_a_vcek_fails_at_the_chip_id_step() {
    let mut s = spec(3, SnpProduct::Genoa, SnpSigningKey::Vcek);
    s.mask_chip_id = true;
    let (report, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
    let err =
        sim_verifier().verify(&report, &SnpEndorsements::new(signer), None, sim_now()).unwrap_err();
    assert_eq!(err.step, Step::ChipId, "{err}");
}

#[test]
fn unexpected_report_data_fails_at_the_report_data_step() {
    let s = spec(5, SnpProduct::Genoa, SnpSigningKey::Vcek);
    let (report, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
    let err = sim_verifier()
        .verify(&report, &SnpEndorsements::new(signer), Some(&[0; 64]), sim_now())
        .unwrap_err();
    assert_eq!(err.step, Step::ReportData);
}

#[test]
fn signer_outside_its_validity_fails_at_the_chain_step() {
    let mut s = spec(5, SnpProduct::Genoa, SnpSigningKey::Vcek);
    let nb = sim_now().unix_timestamp() + 10;
    s.signer_validity = Some((nb, nb + 100));
    let (report, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
    let v = sim_verifier();
    let e = SnpEndorsements::new(signer);
    let err = v.verify(&report, &e, None, sim_now()).unwrap_err();
    assert_eq!(err.step, Step::Chain);
    assert!(matches!(err.reason, Reason::NotYetValid { what: "VCEK certificate", .. }), "{err}");
    // The cached chain is re-checked against `now`: valid inside, expired after.
    let inside = sim_now() + time::Duration::seconds(50);
    assert!(v.verify(&report, &e, None, inside).is_ok());
    let after = sim_now() + time::Duration::seconds(111);
    assert!(matches!(
        v.verify(&report, &e, None, after).unwrap_err().reason,
        Reason::Expired { .. }
    ));
}

#[test]
fn sim_pki_round_trips_through_files() {
    let files = sim_pki().to_files().unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "amd-ark.pem",
            "amd-ark-key.pem",
            "amd-ask.pem",
            "amd-ask-key.pem",
            "amd-asvk.pem",
            "amd-asvk-key.pem",
            "amd-vlek-key.pem"
        ]
    );
    let get = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone());
    let loaded = SimAmdPki::from_files(get).unwrap();
    assert_eq!(loaded.ark_der(), sim_pki().ark_der());
    assert_eq!(loaded.ask_der(), sim_pki().ask_der());
    assert_eq!(loaded.asvk_der(), sim_pki().asvk_der());
    // The loaded PKI mints evidence that the original's anchors accept (same keys), VLEK too.
    for kind in [SnpSigningKey::Vcek, SnpSigningKey::Vlek] {
        let (report, signer) = loaded.mint(&spec(5, SnpProduct::Milan, kind), &mut OsRng).unwrap();
        assert!(sim_verifier()
            .verify(&report, &SnpEndorsements::new(signer), None, sim_now())
            .is_ok());
    }
    // A missing file is named.
    let err = SimAmdPki::from_files(|n: &str| if n == "amd-ask.pem" { None } else { get(n) })
        .unwrap_err();
    assert_eq!(err.to_string(), "simulation PKI file amd-ask.pem is missing");
}

#[test]
fn simulated_evidence_travels_in_the_guest_components_json_form() {
    for (product, version, kind) in [
        (SnpProduct::Milan, 2, SnpSigningKey::Vcek),
        (SnpProduct::Turin, 2, SnpSigningKey::Vcek),
        (SnpProduct::Genoa, 3, SnpSigningKey::Vlek),
        (SnpProduct::Turin, 5, SnpSigningKey::Vcek),
    ] {
        let s = spec(version, product, kind);
        let (report, signer) = sim_pki().mint(&s, &mut OsRng).unwrap();
        let json = coco_evidence_json(&report, Some((kind, &signer))).unwrap();
        let evidence = report_from_coco_evidence(&json).unwrap();
        assert_eq!(evidence.report, report, "{product:?} v{version}");
        assert_eq!(evidence.signer(), Some(signer.as_slice()));
        let claims = sim_verifier()
            .verify(&evidence.report, &evidence.endorsements().unwrap(), None, sim_now())
            .unwrap();
        assert_eq!(claims.snp.unwrap().product, product);
    }
}

#[test]
fn minted_reports_parse_with_their_cpuid_product() {
    let (report, _) =
        sim_pki().mint(&spec(3, SnpProduct::Turin, SnpSigningKey::Vcek), &mut OsRng).unwrap();
    assert_eq!(parse_report(&report).unwrap().product(), Some(SnpProduct::Turin));
}
