//! Benchmark (prints figures; not a test): the cost of a warm `TdxVerifier::verify` against two
//! raw ECDSA P-256 verifications (quote signature + QE report signature), the floor the warm
//! path is measured against. Uses the real v4 vector when `KEYLATCH_VECTORS` (or
//! `../shared/vectors`) has it, and a sim quote otherwise.
//!
//! `cargo run -p verifier --example tdx_warm_path --release`

// reason: a benchmark binary; failing loudly on bad input is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use p256::ecdsa::signature::Verifier;
use rand_core::OsRng;
use verifier::sim::tdx::{SimIntelPki, SimTdxQuote};
use verifier::tdx::{parse_quote, TdxCollateral, TdxTrustAnchors, TdxVerifier};

fn main() {
    let dir = std::env::var_os("KEYLATCH_VECTORS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        PathBuf::from,
    );
    let case = dir.join("tdx/v4-dcap-qvl");
    let (quote, collateral, verifier, now, label) = if case.is_dir() {
        let quote = std::fs::read(case.join("quote.bin")).unwrap();
        let collateral =
            TdxCollateral::from_json(&std::fs::read(case.join("collateral.json")).unwrap())
                .unwrap();
        let now = time::macros::datetime!(2025-07-19 10:00:34 UTC);
        (quote, collateral, TdxVerifier::new(TdxTrustAnchors::production()), now, "real v4 quote")
    } else {
        let pki = SimIntelPki::generate(&mut OsRng).unwrap();
        let now = time::macros::datetime!(2026-01-15 12:00:00 UTC);
        let collateral =
            pki.collateral(now - time::Duration::days(1), now + time::Duration::days(1)).unwrap();
        let quote = pki.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
        (quote, collateral, TdxVerifier::new(pki.anchors()), now, "sim v4 quote")
    };

    let cold = Instant::now();
    verifier.verify(&quote, &collateral, None, now).unwrap();
    let cold = cold.elapsed();

    // The floor: the two signature verifications a warm path cannot avoid.
    let q = parse_quote(&quote).unwrap();
    let mut sec1 = [4u8; 65];
    sec1[1..].copy_from_slice(&q.attestation_key);
    let att = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&q.signature).unwrap();
    let signed = &quote[..q.signed_len];
    let pck_der = {
        let pem = String::from_utf8_lossy(&q.pck_chain_pem).into_owned();
        verifier::x509::pem_certificates("pck", pem.as_bytes()).unwrap().remove(0)
    };
    let pck = verifier::x509::Certificate::from_der("pck", &pck_der).unwrap();
    let verifier::x509::PublicKey::P256(pck_key) = pck.public_key().clone() else {
        unreachable!("Intel PCK keys are P-256")
    };
    let qe_sig = p256::ecdsa::Signature::from_slice(&q.qe_report_signature).unwrap();

    let n = 2000u32;
    let start = Instant::now();
    for _ in 0..n {
        att.verify(black_box(signed), black_box(&sig)).unwrap();
        pck_key.verify(black_box(&q.qe_report_raw), black_box(&qe_sig)).unwrap();
    }
    let raw = start.elapsed() / n;

    let start = Instant::now();
    for _ in 0..n {
        black_box(verifier.verify(black_box(&quote), &collateral, None, now).unwrap());
    }
    let warm = start.elapsed() / n;

    println!("{label}: cold verify {cold:?}");
    println!("two raw ECDSA P-256 verifies: {raw:?}");
    println!(
        "warm verify: {warm:?} ({:.2}x the two raw verifies)",
        warm.as_secs_f64() / raw.as_secs_f64()
    );
}
