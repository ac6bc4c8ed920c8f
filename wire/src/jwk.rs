//! The `tee-pubkey` JWK: the public half of the guest's ephemeral key, which the broker wraps the
//! released resource to. Accepted forms (what guest-components and `keylatch-agent` send):
//!
//! - `{"kty":"EC","crv":"P-256"|"P-384","alg":"ECDH-ES+A256KW","x":..,"y":..}`
//! - `{"kty":"RSA","alg":"RSA-OAEP-256","n":..,"e":..}` with a modulus of at least 2048 bits.
//!
//! Parsing is strict: unpadded canonical base64url, coordinates of exactly the field size, a
//! point on the curve, no leading zero octet in `n`/`e`. Because of that, re-serializing a parsed
//! [`Jwk`] gives back the very strings received, so the REPORT_DATA binding the broker recomputes
//! from a parsed key equals the one the guest computed from its own.

use kbs_types::TeePubKey;
use rsa::traits::PublicKeyParts;
use rsa::BigUint;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{b64, WireError, ALG_ECDH_ES_A256KW, ALG_RSA_OAEP_256};

/// Smallest RSA modulus we encrypt to.
pub const MIN_RSA_BITS: usize = 2048;

/// A parsed tee-pubkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jwk {
    P256(p256::PublicKey),
    P384(p384::PublicKey),
    Rsa(rsa::RsaPublicKey),
}

impl Jwk {
    /// The JWE `alg` this key is used with.
    #[must_use]
    pub fn alg(&self) -> &'static str {
        match self {
            Self::P256(_) | Self::P384(_) => ALG_ECDH_ES_A256KW,
            Self::Rsa(_) => ALG_RSA_OAEP_256,
        }
    }

    /// The `kbs-types` form (what goes into `runtime-data.tee-pubkey`).
    #[must_use]
    pub fn to_tee_pubkey(&self) -> TeePubKey {
        let ec = |crv: &str, x: Option<Vec<u8>>, y: Option<Vec<u8>>| TeePubKey::EC {
            crv: crv.to_owned(),
            alg: ALG_ECDH_ES_A256KW.to_owned(),
            x: b64::encode(&x.unwrap_or_default()),
            y: b64::encode(&y.unwrap_or_default()),
        };
        match self {
            Self::P256(pk) => {
                let p = p256::EncodedPoint::from(pk);
                ec("P-256", p.x().map(|x| x.to_vec()), p.y().map(|y| y.to_vec()))
            }
            Self::P384(pk) => {
                let p = p384::EncodedPoint::from(pk);
                ec("P-384", p.x().map(|x| x.to_vec()), p.y().map(|y| y.to_vec()))
            }
            Self::Rsa(pk) => TeePubKey::RSA {
                alg: ALG_RSA_OAEP_256.to_owned(),
                k_mod: b64::encode(&pk.n().to_bytes_be()),
                k_exp: b64::encode(&pk.e().to_bytes_be()),
            },
        }
    }

    /// Parses the `kbs-types` form strictly.
    pub fn from_tee_pubkey(key: &TeePubKey) -> Result<Self, WireError> {
        match key {
            TeePubKey::EC { crv, alg, x, y } => {
                if alg != ALG_ECDH_ES_A256KW {
                    return Err(WireError::Jwk("EC key alg must be ECDH-ES+A256KW"));
                }
                let x = b64::decode("tee-pubkey x", x)?;
                let y = b64::decode("tee-pubkey y", y)?;
                match crv.as_str() {
                    "P-256" => Ok(Self::P256(ec_point::<p256::NistP256>(&x, &y, 32)?)),
                    "P-384" => Ok(Self::P384(ec_point::<p384::NistP384>(&x, &y, 48)?)),
                    _ => Err(WireError::Jwk("unsupported curve (P-256 or P-384)")),
                }
            }
            TeePubKey::RSA { alg, k_mod, k_exp } => {
                if alg != ALG_RSA_OAEP_256 {
                    return Err(WireError::Jwk("RSA key alg must be RSA-OAEP-256"));
                }
                let n = b64::decode("tee-pubkey n", k_mod)?;
                let e = b64::decode("tee-pubkey e", k_exp)?;
                if n.first().is_none_or(|b| *b == 0) || e.first().is_none_or(|b| *b == 0) {
                    return Err(WireError::Jwk("RSA n and e must be minimal big-endian"));
                }
                let pk =
                    rsa::RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
                        .map_err(|_| WireError::Jwk("invalid RSA public key"))?;
                if pk.n().bits() < MIN_RSA_BITS {
                    return Err(WireError::Jwk("RSA modulus shorter than 2048 bits"));
                }
                Ok(Self::Rsa(pk))
            }
            TeePubKey::AKP { .. } => Err(WireError::Jwk("AKP keys are not supported")),
        }
    }

    /// The JSON form, as it is hashed into the REPORT_DATA binding.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_tee_pubkey()).unwrap_or(serde_json::Value::Null)
    }

    /// Parses a JSON JWK strictly.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, WireError> {
        let key: TeePubKey =
            serde_json::from_value(value.clone()).map_err(|_| WireError::Json("tee-pubkey"))?;
        Self::from_tee_pubkey(&key)
    }
}

pub(crate) fn ec_point<C>(
    x: &[u8],
    y: &[u8],
    len: usize,
) -> Result<elliptic_curve::PublicKey<C>, WireError>
where
    C: elliptic_curve::CurveArithmetic + elliptic_curve::point::PointCompression,
    elliptic_curve::AffinePoint<C>:
        elliptic_curve::sec1::FromEncodedPoint<C> + elliptic_curve::sec1::ToEncodedPoint<C>,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
{
    if x.len() != len || y.len() != len {
        return Err(WireError::Jwk("EC coordinate has the wrong length"));
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * len);
    sec1.push(0x04);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    elliptic_curve::PublicKey::<C>::from_sec1_bytes(&sec1)
        .map_err(|_| WireError::Jwk("EC point is not on the curve"))
}

impl Serialize for Jwk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_tee_pubkey().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Jwk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let key = TeePubKey::deserialize(d)?;
        Self::from_tee_pubkey(&key).map_err(serde::de::Error::custom)
    }
}
