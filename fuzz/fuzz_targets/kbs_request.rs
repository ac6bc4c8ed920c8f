//! Untrusted KBS 0.4.0 request bodies as the broker reads them: the `/auth` request, the
//! `/attest` body and its tee-pubkey (JWK → key, and the REPORT_DATA binding over it).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<keylatch_wire::kbs_types::Request>(data);
    if let Ok(attestation) = serde_json::from_slice::<keylatch_wire::kbs_types::Attestation>(data) {
        if let Ok(jwk) = keylatch_wire::Jwk::from_tee_pubkey(&attestation.runtime_data.tee_pubkey) {
            let _ = keylatch_wire::report_data_binding(&attestation.runtime_data.nonce, &jwk, "");
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = keylatch_wire::Jwk::from_json(&value);
        let _ = keylatch_wire::jcs::canonicalize(&value);
    }
});
