//! The guest's ephemeral key pair: made fresh for each handshake, its public half sent as the
//! `tee-pubkey` and bound into the hardware report, its private half used once to open the JWE.
//! The private keys live inside aws-lc-rs (which cleanses key memory when it frees it) and no
//! `Debug` prints them.

use aws_lc_rs::agreement::{self, ECDH_P256, ECDH_P384};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
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
    /// A P-256 or P-384 ECDH key (its algorithm says which).
    Ec(agreement::PrivateKey),
    Rsa(PrivateDecryptingKey),
}

/// An ephemeral TEE key pair.
pub struct TeeKeyPair {
    pub(crate) secret: Secret,
    public: Jwk,
}

impl std::fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeKeyPair").field("kind", &self.kind()).finish_non_exhaustive()
    }
}

impl TeeKeyPair {
    /// Generates a key pair of `kind` from aws-lc-rs's RNG (the operating system's).
    pub fn generate(kind: KeyKind) -> Result<Self, WireError> {
        let gen_err = |_| WireError::Crypto("key generation");
        let secret = match kind {
            KeyKind::P256 => {
                Secret::Ec(agreement::PrivateKey::generate(&ECDH_P256).map_err(gen_err)?)
            }
            KeyKind::P384 => {
                Secret::Ec(agreement::PrivateKey::generate(&ECDH_P384).map_err(gen_err)?)
            }
            KeyKind::Rsa3072 => Secret::Rsa(
                PrivateDecryptingKey::generate(KeySize::Rsa3072)
                    .map_err(|_| WireError::Crypto("RSA key generation"))?,
            ),
        };
        let public = public_jwk(&secret)?;
        Ok(Self { secret, public })
    }

    #[must_use]
    pub fn kind(&self) -> KeyKind {
        match &self.public {
            Jwk::P256(_) => KeyKind::P256,
            Jwk::P384(_) => KeyKind::P384,
            Jwk::Rsa(_) => KeyKind::Rsa3072,
        }
    }

    /// The public half as the `tee-pubkey` JWK.
    #[must_use]
    pub fn public_jwk(&self) -> Jwk {
        self.public.clone()
    }

    /// Exports the private key as PKCS#8 PEM. Only for handing a key to another JOSE
    /// implementation in interoperability tests; an agent never exports its key.
    pub fn danger_to_pkcs8_pem(&self) -> Result<Zeroizing<String>, WireError> {
        use p256::pkcs8::der::pem::{encode_string, LineEnding};
        let err = |_| WireError::Crypto("PKCS#8 export");
        let der: Pkcs8V1Der<'static> = match &self.secret {
            Secret::Ec(k) => k.as_der().map_err(err)?,
            Secret::Rsa(k) => k.as_der().map_err(err)?,
        };
        let pem = encode_string("PRIVATE KEY", LineEnding::LF, der.as_ref())
            .map_err(|_| WireError::Crypto("PKCS#8 export"))?;
        Ok(Zeroizing::new(pem))
    }
}

/// The public half of `secret` in its RustCrypto JWK form (parsed strictly, as a peer's would be).
fn public_jwk(secret: &Secret) -> Result<Jwk, WireError> {
    let err = || WireError::Crypto("public key");
    match secret {
        Secret::Ec(k) => {
            let public = k.compute_public_key().map_err(|_| err())?;
            let sec1 = public.as_ref();
            if k.algorithm() == &ECDH_P256 {
                p256::PublicKey::from_sec1_bytes(sec1).map(Jwk::P256).map_err(|_| err())
            } else {
                p384::PublicKey::from_sec1_bytes(sec1).map(Jwk::P384).map_err(|_| err())
            }
        }
        Secret::Rsa(k) => {
            use rsa::pkcs8::DecodePublicKey;
            let spki = k.public_key().as_der().map_err(|_| err())?;
            rsa::RsaPublicKey::from_public_key_der(spki.as_ref()).map(Jwk::Rsa).map_err(|_| err())
        }
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
