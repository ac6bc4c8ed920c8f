//! Author keys: ECDSA P-384 key pairs that sign bundles, their identifiers (`kid` = SHA-256 of
//! the `SubjectPublicKeyInfo` DER), PEM import and export, and the trust set (keys + threshold) a
//! broker holds for one bundle name. Private keys never appear in `Debug` output or errors, and
//! their PEM text lives in zeroizing memory.

use std::fmt;

use p384::ecdsa::{SigningKey, VerifyingKey};
use p384::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A key identifier: SHA-256 of the author's `SubjectPublicKeyInfo` DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    fn of_spki_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a key could not be loaded or a trust set built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("not a PKCS#8 PEM P-384 private key")]
    PrivateKey,
    #[error("not an SPKI PEM P-384 public key")]
    PublicKey,
    #[error("key encoding failed")]
    Encode,
    #[error("threshold {threshold} is not between 1 and the number of distinct keys ({keys})")]
    Threshold { threshold: usize, keys: usize },
}

/// An author's public key and its identifier.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorPublicKey {
    kid: KeyId,
    key: VerifyingKey,
}

impl AuthorPublicKey {
    /// Reads an SPKI PEM (`-----BEGIN PUBLIC KEY-----`) P-384 key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_public_key_pem(pem).map_err(|_| KeyError::PublicKey)?;
        Self::from_key(key)
    }

    /// Reads an SPKI DER P-384 key.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_public_key_der(der).map_err(|_| KeyError::PublicKey)?;
        Self::from_key(key)
    }

    fn from_key(key: VerifyingKey) -> Result<Self, KeyError> {
        let der = key.to_public_key_der().map_err(|_| KeyError::Encode)?;
        Ok(Self { kid: KeyId::of_spki_der(der.as_bytes()), key })
    }

    #[must_use]
    pub fn kid(&self) -> KeyId {
        self.kid
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The key as SPKI PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key.to_public_key_pem(LineEnding::LF).map_err(|_| KeyError::Encode)
    }
}

impl fmt::Debug for AuthorPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorPublicKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// An author's private signing key. Zeroized on drop; `Debug` shows only the `kid`.
pub struct AuthorSigningKey {
    key: SigningKey,
    public: AuthorPublicKey,
}

impl AuthorSigningKey {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        Self::from_key(SigningKey::random(&mut rand_core::OsRng))
    }

    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) P-384 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::PrivateKey)?;
        Self::from_key(key)
    }

    fn from_key(key: SigningKey) -> Result<Self, KeyError> {
        let public = AuthorPublicKey::from_key(*key.verifying_key())?;
        Ok(Self { key, public })
    }

    /// The key as PKCS#8 PEM, in zeroizing memory.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.key.to_pkcs8_pem(LineEnding::LF).map_err(|_| KeyError::Encode)
    }

    #[must_use]
    pub fn public(&self) -> &AuthorPublicKey {
        &self.public
    }

    #[must_use]
    pub fn kid(&self) -> KeyId {
        self.public.kid
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for AuthorSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorSigningKey").field("kid", &self.public.kid).finish_non_exhaustive()
    }
}

/// The authors trusted for one bundle name and how many of them must sign.
#[derive(Debug, Clone)]
pub struct AuthorKeys {
    keys: Vec<AuthorPublicKey>,
    threshold: usize,
}

impl AuthorKeys {
    /// Builds a trust set; duplicate keys count once, and `threshold` must be between 1 and the
    /// number of distinct keys.
    pub fn new(keys: Vec<AuthorPublicKey>, threshold: usize) -> Result<Self, KeyError> {
        let mut distinct: Vec<AuthorPublicKey> = Vec::with_capacity(keys.len());
        for key in keys {
            if !distinct.iter().any(|k| k.kid == key.kid) {
                distinct.push(key);
            }
        }
        if threshold == 0 || threshold > distinct.len() {
            return Err(KeyError::Threshold { threshold, keys: distinct.len() });
        }
        Ok(Self { keys: distinct, threshold })
    }

    #[must_use]
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    #[must_use]
    pub fn keys(&self) -> &[AuthorPublicKey] {
        &self.keys
    }

    pub(crate) fn find(&self, kid: &KeyId) -> Option<&AuthorPublicKey> {
        self.keys.iter().find(|k| &k.kid == kid)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: tests fail loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn kid_is_sha256_of_spki_der_and_survives_pem_round_trip() {
        let sk = AuthorSigningKey::generate().unwrap();
        let pem = sk.public().to_pem().unwrap();
        let der = sk.public().verifying_key().to_public_key_der().unwrap();
        let expected: [u8; 32] = Sha256::digest(der.as_bytes()).into();
        assert_eq!(sk.kid().0, expected);
        assert_eq!(AuthorPublicKey::from_pem(&pem).unwrap().kid(), sk.kid());
        let again = AuthorSigningKey::from_pkcs8_pem(&sk.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(again.kid(), sk.kid());
    }

    #[test]
    fn debug_of_private_key_shows_only_kid() {
        let sk = AuthorSigningKey::generate().unwrap();
        let shown = format!("{sk:?}");
        assert_eq!(shown, format!("AuthorSigningKey {{ kid: KeyId({}), .. }}", sk.kid()));
    }

    #[test]
    fn threshold_must_fit_distinct_keys() {
        let a = AuthorSigningKey::generate().unwrap();
        let keys = vec![a.public().clone(), a.public().clone()];
        assert_eq!(
            AuthorKeys::new(keys.clone(), 2).unwrap_err(),
            KeyError::Threshold { threshold: 2, keys: 1 }
        );
        assert_eq!(
            AuthorKeys::new(keys.clone(), 0).unwrap_err(),
            KeyError::Threshold { threshold: 0, keys: 1 }
        );
        assert_eq!(AuthorKeys::new(keys, 1).unwrap().keys().len(), 1);
    }

    #[test]
    fn rejects_non_p384_or_garbage_keys() {
        assert_eq!(AuthorPublicKey::from_pem("not a key").unwrap_err(), KeyError::PublicKey);
        assert!(matches!(
            AuthorSigningKey::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(KeyError::PrivateKey)
        ));
    }
}
