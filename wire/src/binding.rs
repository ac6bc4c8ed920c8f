//! The REPORT_DATA binding: the hash that ties the broker's one-time nonce and the guest's
//! ephemeral key into the signed hardware report.
//!
//! `SHA-384(JCS({"additional-evidence": A, "nonce": N, "tee-pubkey": JWK}))` — SHA-384 because the
//! challenge's `extra-params` is `""` (no `selected-hash-algorithm`). SNP and TDX attesters
//! zero-pad the 48 bytes to the 64-byte REPORT_DATA; the sample TEE sends the 48 bytes as they are.

use sha2::{Digest, Sha384};

use crate::jcs::canonicalize;
use crate::jwk::Jwk;

/// The 48-byte digest (the sample TEE's `report_data`).
#[must_use]
pub fn report_data_binding_48(
    nonce: &str,
    tee_pubkey: &Jwk,
    additional_evidence: &str,
) -> [u8; 48] {
    let doc = serde_json::json!({
        "additional-evidence": additional_evidence,
        "nonce": nonce,
        "tee-pubkey": tee_pubkey.to_json(),
    });
    // Only strings and objects: canonicalization cannot fail on this document.
    let canonical = canonicalize(&doc).unwrap_or_default();
    Sha384::digest(canonical.as_bytes()).into()
}

/// The 64-byte REPORT_DATA for SNP and TDX: the digest followed by 16 zero bytes.
#[must_use]
pub fn report_data_binding(nonce: &str, tee_pubkey: &Jwk, additional_evidence: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    let digest = report_data_binding_48(nonce, tee_pubkey, additional_evidence);
    out.iter_mut().zip(digest.iter()).for_each(|(o, d)| *o = *d);
    out
}
