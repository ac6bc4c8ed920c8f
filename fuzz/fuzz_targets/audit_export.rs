//! An audit-log export as an auditor receives it (untrusted files): the manifest, entries.jsonl,
//! a checkpoint and a consistency proof, split from the input at 0xFF bytes, parsed and — when
//! they parse — verified against a fixed log key. Must never panic.
#![no_main]

use keylatch_audit::export::CheckpointFile;
use keylatch_audit::{verify_log_dir, LogExport};

#[path = "log_key.rs"]
mod log_key;

use log_key::key;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xFF);
    let manifest = parts.next().filter(|m| !m.is_empty());
    let entries = parts.next().unwrap_or_default();
    let checkpoints = parts
        .next()
        .map(|text| vec![CheckpointFile { name: "checkpoint-1".into(), text: text.to_vec() }])
        .unwrap_or_default();
    let proofs: Vec<(String, Vec<u8>)> =
        parts.map(|p| ("proof-1".to_owned(), p.to_vec())).collect();
    if let Ok(export) = LogExport::from_files(manifest, entries, checkpoints, &proofs) {
        if let Some(key) = key() {
            let _ = verify_log_dir(&export, key);
        }
    }
});
