//! Key custody. This crate owns everything that touches resource plaintext at rest: the
//! [`Keystore`] interface the broker seals and unseals resources through, and its backends
//! (`soft` here; `pkcs11` for HSMs). It is a crate of its own so that the one piece of code
//! holding key-encryption keys, and the PKCS#11 dependency, stay isolated from the server.
//!
//! A stored resource is a [`SealedResource`]: AES-256-GCM ciphertext whose associated data is the
//! resource's [`ResourceBinding`] (path and version), so a ciphertext moved to another resource
//! or version fails to open. Plaintext only ever leaves as `Zeroizing` bytes.
//!
//! Key lifecycle beyond sealing lives here too: BYOK import ([`byok`], the customer-side
//! [`wrap_for_import`]) and KEK rotation ([`Keystore::rotate_kek`], [`Keystore::rewrap`],
//! [`Keystore::retire_kek`]).

pub mod byok;
pub mod pkcs11;
pub mod soft;

pub use byok::wrap_for_import;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Which resource a sealed value belongs to. Its [`ResourceBinding::aad`] is the associated data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceBinding {
    pub path: String,
    pub version: u64,
}

impl ResourceBinding {
    #[must_use]
    pub fn new(path: impl Into<String>, version: u64) -> Self {
        Self { path: path.into(), version }
    }

    /// The associated data: `keylatch-resource-v1`, NUL, the path's byte length (u32 BE), the
    /// path, the version (u64 BE). Length-prefixed, so no two bindings share an encoding.
    #[must_use]
    pub fn aad(&self) -> Vec<u8> {
        let path = self.path.as_bytes();
        let mut out = Vec::with_capacity(32 + path.len());
        out.extend_from_slice(b"keylatch-resource-v1\0");
        out.extend_from_slice(&u32::try_from(path.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(path);
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// How a resource was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SealAlgorithm {
    /// AES-256-GCM, 12-byte nonce, 16-byte tag appended to the ciphertext.
    #[serde(rename = "A256GCM")]
    Aes256Gcm,
}

/// What the store keeps for one resource version. Contains no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedResource {
    /// The key-encryption key that sealed it.
    pub kek_id: String,
    pub algorithm: SealAlgorithm,
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub ciphertext: Vec<u8>,
}

/// A keystore's self-description, for `/readyz` and start-up logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeystoreInfo {
    /// `soft` or `pkcs11`.
    pub backend: &'static str,
    /// The KEK file or the token label.
    pub location: String,
    pub current_kek: String,
    /// True for backends that must not hold production keys.
    pub development_only: bool,
}

/// A keystore failure. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The HSM or key file cannot be reached now; the broker answers 503 and retries later.
    #[error("keystore unavailable: {0}")]
    Unavailable(String),
    /// Authentication failed: the ciphertext was altered or belongs to another resource/version.
    #[error("sealed resource does not open: wrong binding or altered ciphertext")]
    Integrity,
    /// The sealed value names a KEK this keystore does not hold.
    #[error("unknown key-encryption key {0}")]
    UnknownKek(String),
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The keystore's configuration or files are wrong (permissions, format).
    #[error("keystore configuration: {0}")]
    Config(String),
    /// This backend does not implement the operation (only keystores outside this crate).
    #[error("keystore backend does not support {0}")]
    Unsupported(&'static str),
    /// The HSM refused an operation for a reason other than being unreachable (a PKCS#11 return
    /// value and the function that returned it; never key bytes).
    #[error("HSM refused the operation: {0}")]
    Hsm(String),
}

/// Seals and unseals resources under a key-encryption key the caller never sees.
pub trait Keystore: Send + Sync {
    fn describe(&self) -> KeystoreInfo;

    /// Cheap check that the backend can serve now.
    fn health(&self) -> Result<(), KeystoreError>;

    fn seal(
        &self,
        binding: &ResourceBinding,
        plaintext: &[u8],
    ) -> Result<SealedResource, KeystoreError>;

    fn unseal(
        &self,
        binding: &ResourceBinding,
        sealed: &SealedResource,
    ) -> Result<Zeroizing<Vec<u8>>, KeystoreError>;

    /// A fresh random key of `len` bytes, sealed; the caller never sees it in plaintext.
    fn generate(
        &self,
        binding: &ResourceBinding,
        len: usize,
    ) -> Result<SealedResource, KeystoreError>;

    // Lifecycle. The defaults exist only so that keystores written outside this crate (test
    // doubles) keep compiling; both backends here implement every method.

    /// The SubjectPublicKeyInfo (DER) of the RSA-3072 import key that BYOK blobs are wrapped to.
    /// Created on first call; the private half never leaves the keystore.
    fn import_public_key(&self) -> Result<Vec<u8>, KeystoreError> {
        Err(KeystoreError::Unsupported("import_public_key"))
    }

    /// Opens a BYOK blob (see [`byok`]: RSA-OAEP-SHA-256 of an ephemeral AES-256 key, then
    /// AES-KWP of the key) made for [`Keystore::import_public_key`] and seals the key it carries.
    fn import_wrapped(
        &self,
        binding: &ResourceBinding,
        wrapped: &[u8],
    ) -> Result<SealedResource, KeystoreError> {
        let _ = (binding, wrapped);
        Err(KeystoreError::Unsupported("import_wrapped"))
    }

    /// Makes a new KEK and makes it current; returns its id. Older KEKs still open what they
    /// sealed until [`Keystore::retire_kek`].
    fn rotate_kek(&self) -> Result<String, KeystoreError> {
        Err(KeystoreError::Unsupported("rotate_kek"))
    }

    /// Every KEK this keystore holds, oldest first; the last one is current.
    fn kek_ids(&self) -> Result<Vec<String>, KeystoreError> {
        Err(KeystoreError::Unsupported("kek_ids"))
    }

    /// Destroys a KEK that is not current. The caller guarantees that nothing sealed under it is
    /// still needed (every resource has been re-wrapped): what it sealed can never be opened again.
    fn retire_kek(&self, kek_id: &str) -> Result<(), KeystoreError> {
        let _ = kek_id;
        Err(KeystoreError::Unsupported("retire_kek"))
    }

    /// The same resource sealed under the current KEK. Idempotent: a value already under the
    /// current KEK comes back unchanged, so an interrupted rotation can simply be run again.
    fn rewrap(
        &self,
        binding: &ResourceBinding,
        sealed: &SealedResource,
    ) -> Result<SealedResource, KeystoreError> {
        if sealed.kek_id == self.describe().current_kek {
            return Ok(sealed.clone());
        }
        let plaintext = self.unseal(binding, sealed)?;
        self.seal(binding, &plaintext)
    }
}

/// Serde for `Vec<u8>` as lowercase hex.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_with_shifted_boundaries_encode_differently() {
        let a = ResourceBinding::new("a/b", 1).aad();
        let b = ResourceBinding::new("a/b\0\0\0\0\0\0\0", 0).aad();
        assert_ne!(a, b);
        assert_ne!(ResourceBinding::new("r/t/x", 1).aad(), ResourceBinding::new("r/t/x", 2).aad());
    }
}
