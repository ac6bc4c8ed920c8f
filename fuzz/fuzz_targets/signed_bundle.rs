//! A signed reference-value bundle (COSE_Sign, CBOR payload) as the broker receives it on
//! publication: structure, payload validation and signature checks against a fixed key set.
#![no_main]

use std::sync::OnceLock;

use reference_values::{verify_signatures, AuthorKeys, AuthorSigningKey, SignedBundle};

fn trust() -> Option<&'static AuthorKeys> {
    static TRUST: OnceLock<Option<AuthorKeys>> = OnceLock::new();
    TRUST
        .get_or_init(|| {
            let key = AuthorSigningKey::generate().ok()?;
            AuthorKeys::new(vec![key.public().clone()], 1).ok()
        })
        .as_ref()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedBundle::from_bytes(data) {
        let _ = signed.unverified_bundle().validate();
        let _ = signed.signature_kids();
        if let Some(trust) = trust() {
            let _ = verify_signatures(&signed, trust);
        }
        let _ = signed.to_bytes();
    }
});
