//! Signed checkpoints and note verifier keys as an offline auditor reads them from a
//! (possibly hostile) log directory.
#![no_main]

use std::sync::OnceLock;

use keylatch_audit::{verify_checkpoint, CheckpointSigner, NoteVerifierKey};

fn key() -> Option<&'static NoteVerifierKey> {
    static KEY: OnceLock<Option<NoteVerifierKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        let seed = zeroize::Zeroizing::new([7u8; 32]);
        CheckpointSigner::from_seed("keylatch.fuzz/log", &seed).ok().map(|s| s.verifier_key().clone())
    })
    .as_ref()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(key) = key() {
        let _ = verify_checkpoint(data, key);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = NoteVerifierKey::parse(text);
        let _ = keylatch_audit::Checkpoint::parse_body(text);
    }
});
