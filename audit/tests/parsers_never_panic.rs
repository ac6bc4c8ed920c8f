//! Arbitrary bytes never panic the checkpoint, note, key, frontier or export readers, and a
//! truncated or bit-flipped signed checkpoint never verifies.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

use keylatch_audit::auditor::verify_log_dir;
use keylatch_audit::checkpoint::{verify_checkpoint, Checkpoint, CheckpointSigner};
use keylatch_audit::export::{
    parse_entries, parse_manifest, parse_proof, CheckpointFile, LogExport,
};
use keylatch_audit::merkle::compact::Frontier;
use keylatch_audit::merkle::Hash;
use keylatch_audit::note::{open_note, NoteVerifierKey};
use proptest::prelude::*;
use zeroize::Zeroizing;

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed("keylatch.example/audit", &Zeroizing::new([3; 32])).unwrap()
}

/// Bytes biased towards the formats' own alphabet, so parsing gets past the first check.
fn note_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[a-z0-9/+=\n —.{}\":,\\[\\]]{0,300}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn checkpoint_and_note_readers_never_panic(bytes in note_like()) {
        let key = signer().verifier_key().clone();
        let _ = verify_checkpoint(&bytes, &key);
        let _ = open_note(&bytes, &key);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = Checkpoint::parse_body(text);
            let _ = NoteVerifierKey::parse(text);
        }
    }

    #[test]
    fn export_readers_never_panic(bytes in note_like()) {
        let _ = Frontier::from_bytes(&bytes);
        let _ = parse_entries(&bytes);
        let _ = parse_manifest(&bytes);
        let _ = parse_proof("p", &bytes);
        let cps = vec![CheckpointFile { name: "c".into(), text: bytes.clone() }];
        if let Ok(export) = LogExport::from_files(None, &bytes, cps, &[("p".into(), bytes.clone())]) {
            let _ = verify_log_dir(&export, signer().verifier_key());
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_breaks_a_signed_checkpoint(bit in 0usize..(8 * 200)) {
        let s = signer();
        let text = s.sign_checkpoint(12345, &Hash([7; 32])).unwrap().into_bytes();
        let mut flipped = text.clone();
        let byte = bit / 8 % flipped.len();
        flipped[byte] ^= 1 << (bit % 8);
        prop_assert!(verify_checkpoint(&flipped, s.verifier_key()).is_err());
    }
}

#[test]
fn every_truncated_prefix_of_a_signed_checkpoint_is_rejected() {
    let s = signer();
    let text = s.sign_checkpoint(9, &Hash([1; 32])).unwrap().into_bytes();
    assert!(verify_checkpoint(&text, s.verifier_key()).is_ok());
    for end in 0..text.len() {
        assert!(verify_checkpoint(&text[..end], s.verifier_key()).is_err(), "prefix {end}");
    }
}
