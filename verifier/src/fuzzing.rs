//! Entry points for fuzzers and property tests. Each feeds arbitrary bytes to one parser of
//! untrusted input and discards the result: the property under test is that none of them panics,
//! whatever the bytes. The cargo-fuzz targets in `fuzz/` are one-line shims into these.

/// SEV-SNP attestation report (raw 1184-byte form).
pub fn snp_report(data: &[u8]) {
    let _ = crate::snp::parse_report(data);
}

/// guest-components SNP evidence JSON (`attestation_report` + `cert_chain`).
pub fn snp_coco_evidence(data: &[u8]) {
    let _ = crate::snp::report_from_coco_evidence(data);
}

/// TDX quote (v4 or v5).
pub fn tdx_quote(data: &[u8]) {
    let _ = crate::tdx::parse_quote(data);
}

/// SGX quote (v3).
pub fn sgx_quote(data: &[u8]) {
    let _ = crate::sgx::parse_sgx_quote(data);
}

/// TDX event log (CCEL), parsed and replayed against all-zero RTMRs (so the claims code runs
/// too whenever the replay happens to match).
pub fn tdx_event_log(data: &[u8]) {
    let _ = crate::tdx::eventlog::check_event_log(data, &[[0; 48]; 4]);
    if let Ok(log) = crate::tdx::eventlog::parse_event_log(data) {
        let rtmr = crate::tdx::eventlog::replay(&log);
        let _ = crate::tdx::eventlog::check_event_log(data, &rtmr);
    }
}

/// TDX collateral JSON (Intel PCS layout).
pub fn tdx_collateral(data: &[u8]) {
    let _ = crate::tdx::TdxCollateral::from_json(data);
}

/// X.509 certificate (DER or PEM): endorsements arrive from the network.
pub fn certificate(data: &[u8]) {
    let _ = crate::x509::Certificate::from_pem_or_der("certificate", data);
}

/// AMD CRL (DER): parsed and, when it names one of AMD's ARKs, signature-checked, as the
/// broker does with CRLs from KDS or an offline directory.
pub fn amd_crl(data: &[u8]) {
    static ANCHORS: std::sync::OnceLock<Option<crate::snp::SnpTrustAnchors>> =
        std::sync::OnceLock::new();
    let _ = crate::x509::Crl::from_der("AMD CRL", data);
    if let Some(anchors) = ANCHORS.get_or_init(|| crate::snp::SnpTrustAnchors::production().ok()) {
        let _ = crate::snp::check_crl(anchors, data);
    }
}

/// Azure HCL report, and the runtime data JSON inside it when the report parses.
pub fn azure_hcl_report(data: &[u8]) {
    if let Ok(hcl) = crate::azure::parse_hcl_report(data) {
        let _ = crate::azure::parse_runtime_data(hcl.runtime_data);
        let _ = crate::azure::tdreport::parse_td_report(hcl.hw_report);
    }
    let _ = crate::azure::parse_runtime_data(data);
}

/// TPMS_ATTEST (a vTPM quote message), and its PCR check against 24 zero PCRs.
pub fn azure_tpms_attest(data: &[u8]) {
    if let Ok(q) = crate::azure::TpmsAttest::parse(data) {
        let _ = crate::azure::check_pcrs(&q, &vec![vec![0u8; 32]; 24]);
    }
}

/// guest-components' Azure evidence JSON, both TEEs, every version.
pub fn azure_evidence(data: &[u8]) {
    let _ = crate::azure::AzureEvidence::from_json(crate::azure::AzureTee::Snp, data);
    let _ = crate::azure::AzureEvidence::from_json(crate::azure::AzureTee::Tdx, data);
}
