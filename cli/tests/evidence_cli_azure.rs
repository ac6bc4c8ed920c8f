//! `keylatch evidence verify` on real Azure confidential VM evidence (trustee's test data under
//! `azure/` in the vectors), with only the arguments each expected.json gives: the SEV-SNP cases
//! verify and print every expected claim; the TDX cases, which come without Intel collateral,
//! fail at the collateral step after everything else verified. Skipped (with a message) where
//! the vectors have no `azure/` folder.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const CASES: [&str; 6] =
    ["snp-milan-v0", "snp-milan-v1", "snp-milan-v2", "snp-genoa-v0", "tdx-v0", "tdx-v1"];

/// `keylatch evidence verify` with what expected.json says: tee, evidence, at, nonce.
fn verify(case: &Path, expected: &Value, evidence: &Path) -> Output {
    let evidence = evidence.display().to_string();
    let args = [
        "evidence",
        "verify",
        "--tee",
        expected["tee"].as_str().unwrap(),
        "--evidence",
        &evidence,
        "--at",
        expected["at"].as_str().unwrap(),
        "--nonce",
        expected["nonce"].as_str().unwrap(),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_keylatch")).args(args).output().unwrap();
    assert!(out.status.code().is_some(), "{}", case.display());
    out
}

#[test]
fn azure_evidence_verify_reproduces_every_expected_claim_of_the_real_cases() {
    let Some(dir) = keylatch_test_vectors::azure_dir() else { return };
    let mut checked = 0;
    for name in CASES {
        let case = dir.join(name);
        let expected: Value =
            serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
        let out = verify(&case, &expected, &case.join(expected["evidence"].as_str().unwrap()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if expected["expect"] == "invalid" {
            assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
            let step = expected["failing_step"].as_str().unwrap();
            assert!(stderr.starts_with(&format!("error: {step}: ")), "{name}: {stderr}");
            checked += 1;
            continue;
        }
        assert!(out.status.success(), "{name}: {stderr}");
        let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = &expected["claims"];
        assert_eq!(claims["tee"], expected["tee"]);
        assert_eq!(claims["simulated"], false);
        assert_eq!(claims["report_data"], c["report_data"]);
        assert_eq!(claims["snp"]["product"], expected["product"].as_str().unwrap().to_lowercase());
        for field in ["measurement", "vmpl", "chip_id"] {
            assert_eq!(claims["snp"][field], c[field], "{name}: {field}");
        }
        assert_eq!(claims["azure"]["pcrs"], c["pcrs"], "{name}");
        assert_eq!(claims["azure"]["evidence_version"], expected["evidence_version"]);
        assert_eq!(claims["azure"]["user_data"], c["user-data"]);
        let vm = &claims["azure"]["vm_configuration"];
        for (theirs, ours) in [
            ("secure-boot", "secure_boot"),
            ("tpm-enabled", "tpm_enabled"),
            ("tpm-persisted", "tpm_persisted"),
            ("console-enabled", "console_enabled"),
            ("vmUniqueId", "vm_unique_id"),
            ("root-cert-thumbprint", "root_cert_thumbprint"),
        ] {
            let want = c["vm-configuration"].get(theirs).cloned().unwrap_or(Value::Null);
            assert_eq!(vm[ours], want, "{name}: {theirs}");
        }
        checked += 10 + c["pcrs"].as_object().unwrap().len();
    }
    assert!(checked > 100, "only {checked} fields compared");
}

#[test]
fn azure_evidence_verify_names_the_step_of_a_tampered_copy() {
    let Some(dir) = keylatch_test_vectors::azure_dir() else { return };
    let case = dir.join("snp-milan-v2");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
    let mut evidence: Value =
        serde_json::from_slice(&std::fs::read(case.join("evidence.json")).unwrap()).unwrap();
    // The last PCR value with its first hex digit changed.
    let pcr = evidence["tpm_quote"]["pcrs"][23].as_str().unwrap();
    let flipped = format!("{}{}", if pcr.starts_with('0') { "1" } else { "0" }, &pcr[1..]);
    evidence["tpm_quote"]["pcrs"][23] = flipped.into();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("evidence.json");
    std::fs::write(&path, evidence.to_string()).unwrap();
    let out = verify(&case, &expected, &path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: pcrs: PCR digest mismatch"), "{stderr}");
}
