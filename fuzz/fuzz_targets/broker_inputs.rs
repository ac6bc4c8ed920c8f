//! What the broker parses from clients outside the evidence itself: a bearer token (split,
//! base64url, JSON header, algorithm, signature), a resource path from the URL, and a release
//! policy as a key custodian sends it. Must never panic.
#![no_main]

use std::sync::OnceLock;

fn token_key() -> &'static keylatch_broker::token::TokenKey {
    static KEY: OnceLock<keylatch_broker::token::TokenKey> = OnceLock::new();
    KEY.get_or_init(keylatch_broker::token::TokenKey::generate)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = token_key().verify(text, 1_700_000_000);
    let _ = keylatch_broker::path::parse_path(text);
    if let Ok(policy) = keylatch_broker::policy::Policy::parse(text) {
        let _ = policy.canonical_json();
    }
});
