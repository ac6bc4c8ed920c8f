//! The flattened-JSON JWE a released resource travels in:
//! `{"protected","encrypted_key","iv","ciphertext","tag"}`, every member unpadded base64url.
//!
//! - `ECDH-ES+A256KW`: ephemeral ECDH on the recipient's curve, Concat KDF (NIST SP 800-56A,
//!   RFC 7518 §4.6.2) with SHA-256, AlgorithmID = `"ECDH-ES+A256KW"`, empty PartyUInfo and
//!   PartyVInfo, SuppPubInfo = 256; the random content key is wrapped with AES-256 key wrap
//!   (RFC 3394). Header `{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv","kty","x","y"}}`.
//! - `RSA-OAEP-256`: OAEP with SHA-256 and MGF1-SHA-256. Header `{"alg":"RSA-OAEP-256","enc":"A256GCM"}`.
//! - `enc` is always `A256GCM` with a 12-byte IV and a 16-byte tag.
//!
//! **The AAD trap.** The JOSE rule is AAD = ASCII(`protected`) as received. The guest-components
//! client does not do that: it decodes `protected` into `{alg, enc, <other members>}`,
//! re-serializes it as compact JSON (members `alg`, `enc`, then the others sorted by name, nested
//! keys sorted), base64url-encodes that and uses *its* ASCII as AAD. So the encryptor here emits
//! exactly that serialization (then both rules agree, and standard JOSE libraries interoperate),
//! and the decryptor rebuilds the AAD the same way the upstream client does rather than using
//! the received string. Everything else is refused: `RSA1_5`, `dir`, unknown `alg` or `enc`, any
//! header member besides `alg`/`enc`/`epk`, an `epk` on another curve, padded base64.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, ECDH_P256, ECDH_P384};
use aws_lc_rs::key_wrap::{AesBlockCipher, KeyEncryptionKey, KeyWrap, AES_256};
use aws_lc_rs::rsa::{
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRngCore, OsRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::jcs::canonicalize;
use crate::jwk::Jwk;
use crate::keypair::{Secret, TeeKeyPair};
use crate::{b64, WireError, ALG_ECDH_ES_A256KW, ALG_RSA_OAEP_256, ENC_A256GCM};

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const CEK_LEN: usize = 32;
const WRAPPED_CEK_LEN: usize = CEK_LEN + 8;

/// A flattened-JSON JWE. Unknown members (`aad`, `header`, `unprotected`, ...) are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwe {
    pub protected: String,
    pub encrypted_key: String,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

impl Jwe {
    /// Parses a JWE from a response body.
    pub fn from_json(body: &[u8]) -> Result<Self, WireError> {
        serde_json::from_slice(body).map_err(|_| WireError::Json("JWE"))
    }

    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Encrypts `plaintext` to `recipient` with a fresh content key from the OS RNG.
pub fn encrypt(recipient: &Jwk, plaintext: &[u8]) -> Result<Jwe, WireError> {
    encrypt_with(recipient, plaintext, &mut OsRng)
}

/// Encrypts `plaintext` to `recipient`; the content key and IV come from `rng`, the ephemeral
/// ECDH key (and RSA-OAEP's seed) from aws-lc-rs's own RNG.
pub fn encrypt_with(
    recipient: &Jwk,
    plaintext: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Jwe, WireError> {
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    rng.fill_bytes(cek.as_mut_slice());
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(recipient.alg()));
    header.insert("enc".into(), Value::from(ENC_A256GCM));
    let encrypted_key = match recipient {
        Jwk::P256(pk) => {
            let peer = pk.to_encoded_point(false);
            ecdh_wrap(&ECDH_P256, "P-256", peer.as_bytes(), cek.as_slice(), &mut header)?
        }
        Jwk::P384(pk) => {
            let peer = pk.to_encoded_point(false);
            ecdh_wrap(&ECDH_P384, "P-384", peer.as_bytes(), cek.as_slice(), &mut header)?
        }
        Jwk::Rsa(pk) => rsa_oaep_encrypt(pk, cek.as_slice())?,
    };
    let protected = b64::encode(serialize_header(&header)?.as_bytes());
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let mut buf = plaintext.to_vec();
    let tag = gcm_key(cek.as_slice())?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut buf,
        )
        .map_err(|_| WireError::Crypto("AES-GCM encryption"))?;
    Ok(Jwe {
        protected,
        encrypted_key: b64::encode(&encrypted_key),
        iv: b64::encode(&iv),
        ciphertext: b64::encode(&buf),
        tag: b64::encode(tag.as_ref()),
    })
}

/// ECDH-ES+A256KW to the peer point `peer` (uncompressed SEC1): a fresh ephemeral key, its
/// public half as the header's `epk`, and the content key wrapped under the derived KEK.
fn ecdh_wrap(
    algorithm: &'static agreement::Algorithm,
    crv: &'static str,
    peer: &[u8],
    cek: &[u8],
    header: &mut Map<String, Value>,
) -> Result<Vec<u8>, WireError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let eph = agreement::EphemeralPrivateKey::generate(algorithm, &rng)
        .map_err(|_| WireError::Crypto("ephemeral key generation"))?;
    let eph_public = eph.compute_public_key().map_err(|_| WireError::Crypto("ephemeral key"))?;
    header.insert("epk".into(), epk_json(crv, eph_public.as_ref())?);
    agreement::agree_ephemeral(
        eph,
        agreement::UnparsedPublicKey::new(algorithm, peer),
        WireError::Crypto("ECDH"),
        |z| wrap(z, cek),
    )
}

/// RSA-OAEP-256 (SHA-256, MGF1-SHA-256) encryption of the content key.
fn rsa_oaep_encrypt(pk: &rsa::RsaPublicKey, cek: &[u8]) -> Result<Vec<u8>, WireError> {
    use rsa::pkcs8::EncodePublicKey;
    let err = |_| WireError::Crypto("RSA-OAEP encryption");
    let spki = pk.to_public_key_der().map_err(|_| WireError::Crypto("RSA public key"))?;
    let key = PublicEncryptingKey::from_der(spki.as_bytes())
        .map_err(|_| WireError::Crypto("RSA public key"))?;
    let key = OaepPublicEncryptingKey::new(key).map_err(err)?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key.encrypt(&OAEP_SHA256_MGF1SHA256, cek, &mut out, None).map_err(err)?.len();
    out.truncate(len);
    Ok(out)
}

fn gcm_key(cek: &[u8]) -> Result<LessSafeKey, WireError> {
    UnboundKey::new(&AES_256_GCM, cek)
        .map(LessSafeKey::new)
        .map_err(|_| WireError::Crypto("AES-GCM key"))
}

/// Decrypts `jwe` with the ephemeral key pair it was encrypted to.
pub fn decrypt(key: &TeeKeyPair, jwe: &Jwe) -> Result<Zeroizing<Vec<u8>>, WireError> {
    let header_bytes = b64::decode("protected", &jwe.protected)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| WireError::Json("protected header"))?;
    let aad = rebuild_aad(&header)?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(WireError::Header("no alg"))?;
    let enc = header.get("enc").and_then(Value::as_str).ok_or(WireError::Header("no enc"))?;
    if enc != ENC_A256GCM {
        return Err(WireError::Header("enc must be A256GCM"));
    }
    if header.keys().any(|k| !matches!(k.as_str(), "alg" | "enc" | "epk")) {
        return Err(WireError::Header("unsupported header member"));
    }
    let encrypted_key = b64::decode("encrypted_key", &jwe.encrypted_key)?;
    let cek = match (alg, &key.secret) {
        (ALG_ECDH_ES_A256KW, Secret::Ec(sk)) => {
            let (crv, len) =
                if sk.algorithm() == &ECDH_P256 { ("P-256", 32) } else { ("P-384", 48) };
            let (x, y) = epk_coords(&header, crv)?;
            if x.len() != len || y.len() != len {
                return Err(WireError::Jwk("EC coordinate has the wrong length"));
            }
            let mut epk = Vec::with_capacity(1 + 2 * len);
            epk.push(0x04);
            epk.extend_from_slice(&x);
            epk.extend_from_slice(&y);
            agreement::agree(
                sk,
                agreement::UnparsedPublicKey::new(sk.algorithm(), &epk),
                WireError::Jwk("EC point is not on the curve"),
                |z| unwrap(z, &encrypted_key),
            )?
        }
        (ALG_RSA_OAEP_256, Secret::Rsa(sk)) => {
            if header.contains_key("epk") {
                return Err(WireError::Header("epk with RSA-OAEP-256"));
            }
            let k = sk.key_size_bytes();
            if encrypted_key.len() != k {
                return Err(WireError::Length {
                    what: "encrypted_key",
                    expected: k,
                    actual: encrypted_key.len(),
                });
            }
            let oaep = OaepPrivateDecryptingKey::new(sk.clone())
                .map_err(|_| WireError::Crypto("RSA key"))?;
            let mut out = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
            let len = oaep
                .decrypt(&OAEP_SHA256_MGF1SHA256, &encrypted_key, &mut out, None)
                .map_err(|_| WireError::Decrypt("RSA-OAEP"))?
                .len();
            out.truncate(len);
            out
        }
        (ALG_ECDH_ES_A256KW | ALG_RSA_OAEP_256, _) => {
            return Err(WireError::Header("alg does not match the key pair"))
        }
        _ => return Err(WireError::Header("unsupported alg (ECDH-ES+A256KW or RSA-OAEP-256)")),
    };
    if cek.len() != CEK_LEN {
        return Err(WireError::Length {
            what: "content key",
            expected: CEK_LEN,
            actual: cek.len(),
        });
    }
    let iv: [u8; IV_LEN] = exact("iv", &b64::decode("iv", &jwe.iv)?)?;
    let tag: [u8; TAG_LEN] = exact("tag", &b64::decode("tag", &jwe.tag)?)?;
    let mut buf = Zeroizing::new(b64::decode("ciphertext", &jwe.ciphertext)?);
    buf.extend_from_slice(&tag);
    let len = gcm_key(cek.as_slice())?
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad.as_bytes()), buf.as_mut())
        .map_err(|_| WireError::Decrypt("A256GCM"))?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// The AAD the upstream client computes: base64url of the header re-serialized as compact JSON
/// with `alg`, `enc` first and every other member (and nested key) sorted by name.
pub fn rebuild_aad(header: &Map<String, Value>) -> Result<String, WireError> {
    Ok(b64::encode(serialize_header(header)?.as_bytes()))
}

fn serialize_header(header: &Map<String, Value>) -> Result<String, WireError> {
    let mut out = String::from("{");
    let mut first = true;
    let mut member = |out: &mut String, k: &str, v: &Value| -> Result<(), WireError> {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&canonicalize(&Value::from(k))?);
        out.push(':');
        out.push_str(&canonicalize(v)?);
        Ok(())
    };
    for k in ["alg", "enc"] {
        let v = header.get(k).ok_or(WireError::Header("alg and enc are required"))?;
        member(&mut out, k, v)?;
    }
    let mut rest: Vec<(&String, &Value)> =
        header.iter().filter(|(k, _)| k.as_str() != "alg" && k.as_str() != "enc").collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in rest {
        member(&mut out, k, v)?;
    }
    out.push('}');
    Ok(out)
}

/// `{"crv","kty","x","y"}` of an ephemeral public key given as an uncompressed SEC1 point.
fn epk_json(crv: &str, sec1: &[u8]) -> Result<Value, WireError> {
    let coords = sec1.strip_prefix(&[0x04]).ok_or(WireError::Crypto("ephemeral key"))?;
    let (x, y) = coords.split_at(coords.len() / 2);
    let mut m = Map::new();
    m.insert("crv".into(), Value::from(crv));
    m.insert("kty".into(), Value::from("EC"));
    m.insert("x".into(), Value::from(b64::encode(x)));
    m.insert("y".into(), Value::from(b64::encode(y)));
    Ok(Value::Object(m))
}

/// The `epk` coordinates after checking its members and curve.
fn epk_coords(
    header: &Map<String, Value>,
    crv: &'static str,
) -> Result<(Vec<u8>, Vec<u8>), WireError> {
    let epk = header.get("epk").and_then(Value::as_object).ok_or(WireError::Header("no epk"))?;
    if epk.keys().any(|k| !matches!(k.as_str(), "crv" | "kty" | "x" | "y")) {
        return Err(WireError::Header("unsupported epk member"));
    }
    if epk.get("kty").and_then(Value::as_str) != Some("EC") {
        return Err(WireError::Header("epk kty must be EC"));
    }
    if epk.get("crv").and_then(Value::as_str) != Some(crv) {
        return Err(WireError::Header("epk curve differs from the key pair's"));
    }
    let coord = |name: &'static str| {
        let s = epk.get(name).and_then(Value::as_str).ok_or(WireError::Header("epk coordinate"))?;
        b64::decode("epk coordinate", s)
    };
    Ok((coord("x")?, coord("y")?))
}

/// Concat KDF (RFC 7518 §4.6.2) with SHA-256. `alg_id`, `apu` and `apv` are the raw values; each
/// is written with its 32-bit big-endian length, then SuppPubInfo = `keydatalen_bits` (BE).
#[must_use]
pub fn concat_kdf(
    z: &[u8],
    alg_id: &[u8],
    apu: &[u8],
    apv: &[u8],
    keydatalen_bits: u32,
) -> Zeroizing<Vec<u8>> {
    let len_prefixed = |h: &mut Sha256, d: &[u8]| {
        h.update((d.len() as u32).to_be_bytes());
        h.update(d);
    };
    let want = (keydatalen_bits as usize).div_ceil(8);
    let mut out = Zeroizing::new(Vec::with_capacity(want + 32));
    let mut counter: u32 = 1;
    while out.len() < want {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        len_prefixed(&mut h, alg_id);
        len_prefixed(&mut h, apu);
        len_prefixed(&mut h, apv);
        h.update(keydatalen_bits.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter = counter.wrapping_add(1);
    }
    out.truncate(want);
    out
}

fn kek_from_z(z: &[u8]) -> Result<KeyEncryptionKey<AesBlockCipher>, WireError> {
    let derived = concat_kdf(z, ALG_ECDH_ES_A256KW.as_bytes(), &[], &[], 256);
    KeyEncryptionKey::new(&AES_256, derived.as_slice())
        .map_err(|_| WireError::Crypto("AES key wrap"))
}

fn wrap(z: &[u8], cek: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; WRAPPED_CEK_LEN];
    let len =
        kek_from_z(z)?.wrap(cek, &mut out).map_err(|_| WireError::Crypto("AES key wrap"))?.len();
    out.truncate(len);
    Ok(out)
}

fn unwrap(z: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, WireError> {
    if wrapped.len() != WRAPPED_CEK_LEN {
        return Err(WireError::Length {
            what: "encrypted_key",
            expected: WRAPPED_CEK_LEN,
            actual: wrapped.len(),
        });
    }
    let mut out = Zeroizing::new(vec![0u8; CEK_LEN]);
    let len = kek_from_z(z)?
        .unwrap(wrapped, &mut out)
        .map_err(|_| WireError::Decrypt("AES key unwrap"))?
        .len();
    out.truncate(len);
    Ok(out)
}

fn exact<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], WireError> {
    bytes.try_into().map_err(|_| WireError::Length { what, expected: N, actual: bytes.len() })
}
