//! Signed checkpoints and note verifier keys as an offline auditor reads them from a
//! (possibly hostile) log directory.
#![no_main]

use keylatch_audit::{verify_checkpoint, NoteVerifierKey};

#[path = "log_key.rs"]
mod log_key;

use log_key::key;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(key) = key() {
        let _ = verify_checkpoint(data, key);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = NoteVerifierKey::parse(text);
        let _ = keylatch_audit::Checkpoint::parse_body(text);
    }
});
