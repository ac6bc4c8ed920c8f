//! Simulated Azure SEV-SNP evidence: the HCL report minted around a sim SNP report parses,
//! carries the AK it was given, and its SNP report verifies as a bare SNP report with
//! REPORT_DATA = SHA-256(runtime data) || zeros.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod snp_common;

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use snp_common::{sim_now, sim_pki};
use verifier::azure::{parse_hcl_report, parse_runtime_data, AkPublicKey, HclReportType};
use verifier::sim::azure::{mint_snp_hcl_report, SimHcl};
use verifier::sim::snp::SimSnpReport;
use verifier::snp::{SnpEndorsements, SnpVerifier};

fn ak() -> AkPublicKey {
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pk = kp.public_key();
    AkPublicKey {
        modulus: pk.modulus().big_endian_without_leading_zero().to_vec(),
        exponent: pk.exponent().big_endian_without_leading_zero().to_vec(),
    }
}

#[test]
fn azure_sim_hcl_report_binds_runtime_data_into_a_verifiable_snp_report() {
    let ak = ak();
    let mut hcl = SimHcl::new(ak.clone());
    hcl.user_data[..4].copy_from_slice(&[1, 2, 3, 4]);
    let (bytes, vcek) =
        mint_snp_hcl_report(sim_pki(), &SimSnpReport::default(), &hcl, &mut OsRng).unwrap();
    assert_eq!(bytes.len(), 2600);
    let parsed = parse_hcl_report(&bytes).unwrap();
    assert_eq!(parsed.report_type, HclReportType::Snp);
    let runtime = parse_runtime_data(parsed.runtime_data).unwrap();
    assert_eq!(runtime.ak, ak);
    assert_eq!(runtime.user_data.unwrap(), format!("01020304{}", "00".repeat(60)));
    let mut expected = [0u8; 64];
    expected[..32].copy_from_slice(&Sha256::digest(parsed.runtime_data));
    let claims = SnpVerifier::new(sim_pki().anchors().unwrap())
        .verify(parsed.hw_report, &SnpEndorsements::new(vcek), Some(&expected), sim_now())
        .unwrap();
    assert!(claims.simulated);
    assert_eq!(claims.snp.unwrap().vmpl, 0);
}
