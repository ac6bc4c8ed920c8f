//! Real Azure confidential VM evidence (confidential-containers/trustee's test data, under
//! `azure/` in the vectors): every SEV-SNP case verifies against AMD's pinned roots with every
//! claim of its expected.json; tampered copies fail at the step that owns what was changed. The
//! TDX cases carry no Intel collateral: everything that needs none is verified, and the TD
//! quote's own verification is shown to stop at the collateral step.
//!
//! The `azure/` cases are not in shared/vectors yet: without them each test prints why it skipped.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

use serde_json::Value;
use verifier::azure::{
    check_vtpm, parse_hcl_report, verify_az_snp, verify_az_tdx, AzSnpInputs, AzureEvidence,
    AzureTee,
};
use verifier::snp::{SnpTrustAnchors, SnpVerifier};
use verifier::tdx::{parse_quote, TdxTrustAnchors, TdxVerifier};
use verifier::{Claims, Reason, Step, VerifyError};

const SNP_CASES: [&str; 4] = ["snp-milan-v0", "snp-milan-v1", "snp-milan-v2", "snp-genoa-v0"];
const TDX_CASES: [&str; 2] = ["tdx-v0", "tdx-v1"];

struct Case {
    evidence: Vec<u8>,
    expected: Value,
}

impl Case {
    fn load(dir: &std::path::Path, name: &str) -> Self {
        let expected: Value =
            serde_json::from_slice(&std::fs::read(dir.join(name).join("expected.json")).unwrap())
                .unwrap();
        let evidence =
            std::fs::read(dir.join(name).join(expected["evidence"].as_str().unwrap())).unwrap();
        Self { evidence, expected }
    }

    fn nonce(&self) -> Vec<u8> {
        hex::decode(self.expected["nonce"].as_str().unwrap()).unwrap()
    }

    fn at(&self) -> verifier::Now {
        time::OffsetDateTime::parse(
            self.expected["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    }
}

fn snp_verifier() -> SnpVerifier {
    SnpVerifier::new(SnpTrustAnchors::production().unwrap())
}

fn verify_snp(v: &SnpVerifier, case: &Case, json: &[u8]) -> Result<Claims, VerifyError> {
    let inputs = AzSnpInputs { fallback: None, revocation: None };
    verify_az_snp(v, json, inputs, Some(&case.nonce()), case.at())
}

fn assert_azure_claims(claims: &Claims, e: &Value) {
    let az = claims.azure.as_ref().unwrap();
    let c = &e["claims"];
    assert_eq!(u64::from(az.evidence_version), e["evidence_version"].as_u64().unwrap());
    assert_eq!(claims.report_data.to_hex(), c["report_data"].as_str().unwrap());
    let pcrs = serde_json::to_value(&az.pcrs).unwrap();
    assert_eq!(pcrs, c["pcrs"]);
    let vm = &c["vm-configuration"];
    let cfg = &az.vm_configuration;
    assert_eq!(cfg.secure_boot, vm["secure-boot"].as_bool());
    assert_eq!(cfg.tpm_enabled, vm["tpm-enabled"].as_bool());
    assert_eq!(cfg.tpm_persisted, vm["tpm-persisted"].as_bool());
    assert_eq!(cfg.console_enabled, vm["console-enabled"].as_bool());
    assert_eq!(cfg.vm_unique_id.as_deref(), vm["vmUniqueId"].as_str());
    assert_eq!(cfg.root_cert_thumbprint.as_deref(), vm["root-cert-thumbprint"].as_str());
    assert_eq!(az.user_data.as_deref(), c["user-data"].as_str());
}

#[test]
fn azure_real_snp_cases_verify_with_every_expected_claim() {
    let Some(dir) = keylatch_test_vectors::azure_dir() else { return };
    let v = snp_verifier();
    for name in SNP_CASES {
        let case = Case::load(&dir, name);
        let e = &case.expected;
        assert_eq!(e["expect"], "valid", "{name}");
        let claims =
            verify_snp(&v, &case, &case.evidence).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(claims.tee.as_str(), "az-snp-vtpm");
        assert!(!claims.simulated);
        let snp = claims.snp.as_ref().unwrap();
        assert_eq!(snp.product.kds_name(), e["product"].as_str().unwrap(), "{name}");
        assert_eq!(snp.measurement.to_hex(), e["claims"]["measurement"].as_str().unwrap());
        assert_eq!(snp.chip_id.to_hex(), e["claims"]["chip_id"].as_str().unwrap());
        assert_eq!(u64::from(snp.vmpl), e["claims"]["vmpl"].as_u64().unwrap());
        assert_azure_claims(&claims, e);
    }
}

/// Rewrites a version 1 or 2 evidence JSON with `edit` applied to its decoded parts.
fn tampered(json: &[u8], edit: impl FnOnce(&mut AzureEvidence)) -> Vec<u8> {
    let mut ev = AzureEvidence::from_json(AzureTee::Snp, json).unwrap();
    edit(&mut ev);
    ev.to_json().unwrap()
}

#[test]
fn azure_tampered_real_snp_evidence_fails_at_the_right_step() {
    let Some(dir) = keylatch_test_vectors::azure_dir() else { return };
    let v = snp_verifier();
    for name in ["snp-milan-v1", "snp-milan-v2"] {
        let case = Case::load(&dir, name);
        let json = &case.evidence;
        // The runtime data (the AK's JSON) is what REPORT_DATA commits to.
        let rt_byte = tampered(json, |e| e.hcl_report[0x4D4 + 40] ^= 0x01);
        // A byte of the embedded SNP report (its measurement) breaks the VCEK signature.
        let snp_byte = tampered(json, |e| e.hcl_report[0x20 + 0x90] ^= 0x01);
        let msg_byte = tampered(json, |e| e.tpm_quote.message[20] ^= 0x01);
        let sig_byte = tampered(json, |e| e.tpm_quote.signature[7] ^= 0x01);
        let pcr_value = tampered(json, |e| e.tpm_quote.pcrs[7][0] ^= 0x01);
        let pcrs_truncated = tampered(json, |e| {
            e.tpm_quote.pcrs.pop();
        });
        let hcl_type = tampered(json, |e| e.hcl_report[0x4C8] = 4);
        for (what, bytes, step) in [
            ("runtime data byte", rt_byte, Step::RuntimeData),
            ("SNP report byte", snp_byte, Step::Signature),
            ("TPM quote message byte", msg_byte, Step::TpmQuote),
            ("TPM quote signature byte", sig_byte, Step::TpmQuote),
            ("a PCR value", pcr_value, Step::Pcrs),
            ("PCR list truncated", pcrs_truncated, Step::Pcrs),
            ("HCL report type", hcl_type, Step::HclReport),
        ] {
            let e = verify_snp(&v, &case, &bytes).unwrap_err();
            assert_eq!(e.step, step, "{name}: {what}: {e}");
        }
        let other = Case {
            expected: {
                let mut e = case.expected.clone();
                e["nonce"] = "00".repeat(48).into();
                e
            },
            evidence: vec![],
        };
        let e = verify_az_snp(
            &v,
            json,
            AzSnpInputs { fallback: None, revocation: None },
            Some(&other.nonce()),
            case.at(),
        )
        .unwrap_err();
        assert_eq!(e.step, Step::ReportData, "{name}: wrong nonce: {e}");
    }
}

#[test]
fn azure_real_snp_evidence_after_its_certificates_expire_fails_at_chain() {
    let Some(dir) = keylatch_test_vectors::azure_dir() else { return };
    let case = Case::load(&dir, "snp-milan-v1");
    let late = time::macros::datetime!(2050-01-01 0:00 UTC);
    let inputs = AzSnpInputs { fallback: None, revocation: None };
    let e = verify_az_snp(&snp_verifier(), &case.evidence, inputs, Some(&case.nonce()), late)
        .unwrap_err();
    assert_eq!(e.step, Step::Chain, "{e}");
}

#[test]
fn azure_real_tdx_cases_verify_up_to_the_collateral_they_lack() {
    let Some(dir) = keylatch_test_vectors::azure_dir() else { return };
    for name in TDX_CASES {
        let case = Case::load(&dir, name);
        let e = &case.expected;
        assert_eq!(e["failing_step"], "collateral", "{name}");
        let ev = AzureEvidence::from_json(AzureTee::Tdx, &case.evidence).unwrap();
        let hcl = parse_hcl_report(&ev.hcl_report).unwrap();
        // The runtime-data binding and the TD report = TD quote match, without collateral.
        let td = verifier::azure::tdreport::parse_td_report(hcl.hw_report).unwrap();
        assert_eq!(td.report_data, hcl.expected_report_data(), "{name}");
        let verifier::azure::AzureHardware::Tdx { td_quote } = &ev.hardware else { panic!() };
        let quote = parse_quote(td_quote).unwrap();
        assert_eq!(quote.report.report_data, td.report_data);
        assert_eq!(quote.report.mr_td, td.mr_td);
        assert_eq!(quote.report.rtmr, td.rtmr);
        assert_eq!(hex::encode(td.mr_td), e["claims"]["mr_td"].as_str().unwrap());
        // The vTPM side: AK from the runtime data, quote signature, nonce, PCRs.
        let az = check_vtpm(&ev, &hcl, Some(&case.nonce())).unwrap();
        assert_eq!(serde_json::to_value(&az.pcrs).unwrap(), e["claims"]["pcrs"]);
        // The TD quote itself needs Intel collateral, which the upstream data does not have:
        // every other step passes, and verification stops at the collateral step.
        let err = verify_az_tdx(
            &TdxVerifier::new(TdxTrustAnchors::production()),
            &case.evidence,
            None,
            Some(&case.nonce()),
            case.at(),
        )
        .unwrap_err();
        assert_eq!(err.step, Step::Collateral, "{name}: {err}");
        assert!(matches!(err.reason, Reason::Missing { .. }), "{err}");
        // A wrong nonce is found before that.
        let e = verify_az_tdx(
            &TdxVerifier::new(TdxTrustAnchors::production()),
            &case.evidence,
            None,
            Some(b"other"),
            case.at(),
        )
        .unwrap_err();
        assert_eq!(e.step, Step::ReportData, "{name}: {e}");
    }
}
