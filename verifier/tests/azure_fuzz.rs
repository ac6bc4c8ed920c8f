//! Property tests: no input makes the Azure parsers panic (HCL report, runtime data, TDREPORT,
//! TPMS_ATTEST, evidence JSON), whether arbitrary bytes or mutations of valid structures.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

use proptest::prelude::*;
use verifier::azure::hcl::{encode_hcl_report, encode_runtime_data, HW_REPORT_LEN};
use verifier::azure::{AkPublicKey, HclReportType, TpmsAttest};
use verifier::fuzzing::{azure_evidence, azure_hcl_report, azure_tpms_attest};

fn valid_hcl() -> Vec<u8> {
    let ak = AkPublicKey { modulus: vec![0xC1; 256], exponent: vec![1, 0, 1] };
    let rt = encode_runtime_data(&ak, &verifier::AzureVmConfiguration::default(), &[0; 64]);
    encode_hcl_report(HclReportType::Snp, &[0x11; HW_REPORT_LEN], &rt).unwrap()
}

fn valid_quote() -> Vec<u8> {
    TpmsAttest::quote_sha256(&[7; 48], &[[3; 32]; 24]).unwrap().to_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn azure_parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        azure_hcl_report(&bytes);
        azure_tpms_attest(&bytes);
        azure_evidence(&bytes);
    }

    #[test]
    fn azure_hcl_report_never_panics_on_mutations(i in 0usize..2600, b in any::<u8>(), cut in 0usize..2600) {
        let mut hcl = valid_hcl();
        hcl[i] = b;
        azure_hcl_report(&hcl);
        azure_hcl_report(&hcl[..cut]);
    }

    #[test]
    fn azure_tpms_attest_never_panics_on_mutations(i in 0usize..200, b in any::<u8>(), cut in 0usize..200) {
        let mut q = valid_quote();
        let n = q.len();
        q[i % n] = b;
        azure_tpms_attest(&q);
        azure_tpms_attest(&q[..cut.min(n)]);
    }
}
