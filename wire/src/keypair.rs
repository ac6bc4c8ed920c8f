//! The guest's ephemeral key pair: made fresh for each handshake, its public half sent as the
//! `tee-pubkey` and bound into the hardware report, its private half used once to open the JWE.
//! Private keys zeroize on drop (the RustCrypto types do so themselves) and no `Debug` prints them.

use rand_core::{CryptoRngCore, OsRng};
use zeroize::Zeroizing;

use crate::jwk::Jwk;
use crate::WireError;

/// Which kind of ephemeral key to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// EC P-256 with `ECDH-ES+A256KW` (the upstream client's default).
    P256,
    /// EC P-384 with `ECDH-ES+A256KW`.
    P384,
    /// RSA 3072 with `RSA-OAEP-256`.
    Rsa3072,
}

pub(crate) enum Secret {
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// An ephemeral TEE key pair.
pub struct TeeKeyPair {
    pub(crate) secret: Secret,
}

impl std::fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeKeyPair").field("kind", &self.kind()).finish_non_exhaustive()
    }
}

impl TeeKeyPair {
    /// Generates a key pair of `kind` from the operating system's RNG.
    pub fn generate(kind: KeyKind) -> Result<Self, WireError> {
        Self::generate_with(kind, &mut OsRng)
    }

    /// Generates a key pair of `kind` from `rng`.
    pub fn generate_with(kind: KeyKind, rng: &mut impl CryptoRngCore) -> Result<Self, WireError> {
        let secret = match kind {
            KeyKind::P256 => Secret::P256(p256::SecretKey::random(rng)),
            KeyKind::P384 => Secret::P384(p384::SecretKey::random(rng)),
            KeyKind::Rsa3072 => Secret::Rsa(Box::new(
                rsa::RsaPrivateKey::new(rng, 3072)
                    .map_err(|_| WireError::Crypto("RSA key generation"))?,
            )),
        };
        Ok(Self { secret })
    }

    #[must_use]
    pub fn kind(&self) -> KeyKind {
        match &self.secret {
            Secret::P256(_) => KeyKind::P256,
            Secret::P384(_) => KeyKind::P384,
            Secret::Rsa(_) => KeyKind::Rsa3072,
        }
    }

    /// The public half as the `tee-pubkey` JWK.
    #[must_use]
    pub fn public_jwk(&self) -> Jwk {
        match &self.secret {
            Secret::P256(k) => Jwk::P256(k.public_key()),
            Secret::P384(k) => Jwk::P384(k.public_key()),
            Secret::Rsa(k) => Jwk::Rsa(k.to_public_key()),
        }
    }

    /// Exports the private key as PKCS#8 PEM. Only for handing a key to another JOSE
    /// implementation in interoperability tests; an agent never exports its key.
    pub fn danger_to_pkcs8_pem(&self) -> Result<Zeroizing<String>, WireError> {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let err = |_| WireError::Crypto("PKCS#8 export");
        let doc = match &self.secret {
            Secret::P256(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(err)?,
            Secret::P384(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(err)?,
            Secret::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(err)?,
        };
        Ok(Zeroizing::new(doc.as_str().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_print_private_key() {
        let kp = TeeKeyPair::generate(KeyKind::P256).unwrap();
        let pem = kp.danger_to_pkcs8_pem().unwrap();
        let dbg = format!("{kp:?}");
        assert_eq!(dbg, "TeeKeyPair { kind: P256, .. }");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
