//! Real SEV-SNP evidence (see the vectors README): every case verifies at its `at` time with
//! exactly the claims in its expected.json, and the ways it must fail do fail, at the right step.

mod snp_common;

use sha2::{Digest, Sha256};
use snp_common::{assert_claims, at, expected, production_anchors, read, vectors, REAL_CASES};
use verifier::snp::{parse_report, SnpEndorsements, SnpTrustAnchors, SnpVerifier};
use verifier::{Reason, Step};

#[test]
fn every_real_report_verifies_with_its_expected_claims() {
    let Some(dir) = vectors() else { return };
    let verifier = SnpVerifier::new(production_anchors(&dir));
    for (case, signer) in REAL_CASES {
        let exp = expected(&dir, case);
        let report = read(&dir, &format!("{case}/report.bin"));
        let e = SnpEndorsements::new(read(&dir, &format!("{case}/{signer}")));
        let claims = verifier.verify(&report, &e, None, at(&exp)).unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_claims(&claims, &exp);
        assert_eq!(claims.evidence_sha256.0, <[u8; 32]>::from(Sha256::digest(&report)));
        // The warm path (cache hit) returns the very same claims.
        assert_eq!(verifier.verify(&report, &e, None, at(&exp)).unwrap(), claims, "{case} warm");
    }
}
