//! The fixed log verifier key the checkpoint and audit-export targets check signatures with
//! (included by both with `#[path]`; not a target itself).

use std::sync::OnceLock;

use keylatch_audit::{CheckpointSigner, NoteVerifierKey};

/// The origin the key is made for.
pub const ORIGIN: &str = "keylatch.fuzz/log";

pub fn key() -> Option<&'static NoteVerifierKey> {
    static KEY: OnceLock<Option<NoteVerifierKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        let seed = zeroize::Zeroizing::new([7u8; 32]);
        CheckpointSigner::from_seed(ORIGIN, &seed).ok().map(|s| s.verifier_key().clone())
    })
    .as_ref()
}
