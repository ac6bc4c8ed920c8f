//! The KBS protocol 0.4.0 wire facts that both sides of a key release need, in one place so the
//! broker (`kbs`) and the guest agent (`keylatch-agent`) cannot drift apart:
//!
//! - [`jwk`]: the `tee-pubkey` JWKs (EC P-256/P-384 `ECDH-ES+A256KW`, RSA `RSA-OAEP-256`), parsed
//!   strictly (canonical unpadded base64url, points on the curve, RSA ≥ 2048 bits);
//! - [`keypair`]: the guest's ephemeral [`TeeKeyPair`], private parts zeroized on drop;
//! - [`jcs`] and [`binding`]: RFC 8785 canonical JSON and the `REPORT_DATA` binding of nonce and key;
//! - [`jwe`]: the flattened-JSON JWE a resource travels in, both directions;
//! - [`error_body`]: the `{"type", "detail"}` body of every non-200 reply.
//!
//! The wire types of `kbs-types` (Request, Challenge, Attestation, ...) are re-exported as
//! [`kbs_types`]. This crate does no I/O.

pub mod b64;
pub mod binding;
pub mod error_body;
pub mod jcs;
pub mod jwe;
pub mod jwk;
pub mod keypair;

pub use binding::{report_data_binding, report_data_binding_48};
pub use error_body::ErrorBody;
pub use jwe::{decrypt, encrypt, Jwe};
pub use jwk::Jwk;
pub use kbs_types;
pub use keypair::{KeyKind, TeeKeyPair};

/// The protocol version this crate speaks; servers require an exact match.
pub const KBS_PROTOCOL_VERSION: &str = "0.4.0";

/// JWE key-management algorithm for EC tee-pubkeys.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// JWE key-management algorithm for RSA tee-pubkeys.
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
/// The only content-encryption algorithm.
pub const ENC_A256GCM: &str = "A256GCM";

/// A wire-level failure. Messages never contain key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Not canonical unpadded base64url (padding, bad characters, non-zero trailing bits).
    #[error("{0}: not canonical base64url without padding")]
    Base64(&'static str),
    /// A JSON document did not have the expected shape.
    #[error("{0}: malformed JSON")]
    Json(&'static str),
    /// A JWK we do not accept: wrong `kty`/`crv`/`alg` combination, bad point, short RSA key.
    #[error("tee-pubkey: {0}")]
    Jwk(&'static str),
    /// A JWE algorithm or header we refuse (`RSA1_5`, `dir`, unknown `alg`/`enc`, extra members).
    #[error("JWE header: {0}")]
    Header(&'static str),
    /// A JWE member has the wrong length.
    #[error("JWE {what}: expected {expected} bytes, got {actual}")]
    Length { what: &'static str, expected: usize, actual: usize },
    /// Key unwrap or content decryption failed (wrong key or tampered message).
    #[error("JWE decryption failed at {0}")]
    Decrypt(&'static str),
    /// A cryptographic operation failed while encrypting or generating keys.
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// JCS input we cannot canonicalize (non-finite number).
    #[error("JCS: {0}")]
    Jcs(&'static str),
}
