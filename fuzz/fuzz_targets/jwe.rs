//! A JWE as the guest agent receives it from a (possibly hostile) broker: parsing, the
//! protected header, and decryption attempts with a fixed P-256 and RSA key.
#![no_main]

use std::sync::OnceLock;

use keylatch_wire::{jwe, KeyKind, TeeKeyPair};

fn keys() -> &'static [TeeKeyPair] {
    static KEYS: OnceLock<Vec<TeeKeyPair>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [KeyKind::P256, KeyKind::Rsa3072]
            .into_iter()
            .filter_map(|k| TeeKeyPair::generate(k).ok())
            .collect()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = jwe::Jwe::from_json(data) {
        for key in keys() {
            let _ = jwe::decrypt(key, &parsed);
        }
    }
});
