//! Attestation tokens: JWTs (RFC 7519) in JWS compact form, signed ES256 by the broker's P-256
//! key. [`TokenKey::sign`] issues, [`TokenKey::verify`] accepts only what this broker issued:
//! header `alg` exactly `ES256` (so `none` and every other algorithm are refused before any
//! signature check), a valid signature, `iss` ours, and `nbf <= now < exp`.
//!
//! Written by hand on aws-lc-rs (the broker's one crypto provider; a token is signed on every
//! attestation and verified on every bearer-token request) rather than with a JWT crate: the
//! one we would want (`jsonwebtoken`) brings its own PEM/ASN.1 code for what is ~100 lines
//! here, and owning the verify path keeps the algorithm check explicit. The key file stays the
//! PKCS#8 PEM it always was (RustCrypto `p256` reads and writes the PEM).

use std::path::Path;

use anyhow::Context as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use p256::pkcs8::der::pem::{self, LineEnding};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use keylatch_wire::b64;

/// The `iss` of every token.
pub const ISSUER: &str = "keylatch";

/// Why a token was refused. Messages name the check, never echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("token is not a JWS compact serialization")]
    Format,
    #[error("token header algorithm {0:?} is not ES256")]
    Algorithm(String),
    #[error("token signature does not verify")]
    Signature,
    #[error("token issuer is not {ISSUER}")]
    Issuer,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    /// The broker could not sign a token (aws-lc-rs reports only allocation failure).
    #[error("token could not be signed")]
    Signing,
}

/// The broker's token-signing key. No `Debug` that prints it.
pub struct TokenKey {
    signing: EcdsaKeyPair,
    /// The public half, parsed once.
    verifying: ParsedPublicKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey").finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A fresh key.
    pub fn generate() -> anyhow::Result<Self> {
        let signing = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow::anyhow!("generating the token key"))?;
        Self::from_pair(signing)
    }

    /// Loads a PKCS#8 PEM P-256 key; refuses a file group or others may read.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        crate::files::check_private(path)?;
        let pem = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let not_p256 = || anyhow::anyhow!("{}: not a PKCS#8 P-256 key", path.display());
        let (label, der) = pem::decode_vec(pem.as_bytes()).map_err(|_| not_p256())?;
        let der = Zeroizing::new(der);
        if label != "PRIVATE KEY" {
            return Err(not_p256());
        }
        let signing = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| not_p256())?;
        Self::from_pair(signing)
    }

    fn from_pair(signing: EcdsaKeyPair) -> anyhow::Result<Self> {
        let verifying =
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signing.public_key().as_ref())
                .map_err(|_| anyhow::anyhow!("parsing the token key's public half"))?;
        Ok(Self { signing, verifying })
    }

    /// The PKCS#8 PEM of the private key.
    pub fn to_pkcs8_pem(&self) -> anyhow::Result<Zeroizing<String>> {
        let der =
            self.signing.to_pkcs8v1().map_err(|_| anyhow::anyhow!("encoding the token key"))?;
        pem::encode_string("PRIVATE KEY", LineEnding::LF, der.as_ref())
            .map(Zeroizing::new)
            .map_err(|_| anyhow::anyhow!("encoding the token key"))
    }

    /// Signs `claims` (an object) as a JWT, adding `iss`. aws-lc-rs fails to sign only when it
    /// cannot allocate; that is an error here, so no unusable token is ever handed out (or
    /// recorded as issued).
    pub fn sign(&self, mut claims: Map<String, Value>) -> Result<String, TokenError> {
        claims.insert("iss".into(), json!(ISSUER));
        let header = b64::encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let payload = b64::encode(Value::Object(claims).to_string().as_bytes());
        let signing_input = format!("{header}.{payload}");
        let signature = self
            .signing
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| TokenError::Signing)?;
        Ok(format!("{signing_input}.{}", b64::encode(signature.as_ref())))
    }

    /// Verifies `token` at `now` (Unix seconds) and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Format);
        };
        let header: Map<String, Value> = b64::decode("token header", h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Format)?;
        match header.get("alg").and_then(Value::as_str) {
            Some("ES256") => {}
            Some(other) => return Err(TokenError::Algorithm(other.chars().take(16).collect())),
            None => return Err(TokenError::Algorithm(String::new())),
        }
        if header.contains_key("crit") {
            return Err(TokenError::Format);
        }
        let sig_bytes = b64::decode("token signature", s).map_err(|_| TokenError::Signature)?;
        let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(TokenError::Format)?;
        self.verifying
            .verify_sig(signing_input.as_bytes(), &sig_bytes)
            .map_err(|_| TokenError::Signature)?;
        let claims: Map<String, Value> = b64::decode("token payload", p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Format)?;
        if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
            return Err(TokenError::Issuer);
        }
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or(TokenError::Format)?;
        let nbf = claims.get("nbf").and_then(Value::as_i64).ok_or(TokenError::Format)?;
        if now >= exp {
            return Err(TokenError::Expired { exp, now });
        }
        if now < nbf {
            return Err(TokenError::NotYetValid { nbf, now });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(nbf: i64, exp: i64) -> Map<String, Value> {
        let Value::Object(m) = json!({"nbf": nbf, "exp": exp, "jti": "j1"}) else { unreachable!() };
        m
    }

    #[test]
    fn accepts_own_token_within_validity() {
        let key = TokenKey::generate().unwrap();
        let t = key.sign(claims(100, 200)).unwrap();
        let c = key.verify(&t, 150).unwrap();
        assert_eq!(c.get("jti"), Some(&json!("j1")));
        assert_eq!(c.get("iss"), Some(&json!("keylatch")));
    }

    #[test]
    fn refuses_expired_and_not_yet_valid_tokens() {
        let key = TokenKey::generate().unwrap();
        let t = key.sign(claims(100, 200)).unwrap();
        assert_eq!(key.verify(&t, 200), Err(TokenError::Expired { exp: 200, now: 200 }));
        assert_eq!(key.verify(&t, 99), Err(TokenError::NotYetValid { nbf: 100, now: 99 }));
    }

    #[test]
    fn refuses_alg_none_and_other_algorithms() {
        let key = TokenKey::generate().unwrap();
        let t = key.sign(claims(100, 200)).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let none = format!("{}.{payload}.", b64::encode(br#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(key.verify(&none, 150), Err(TokenError::Algorithm("none".into())));
        let hs = format!("{}.{payload}.AAAA", b64::encode(br#"{"alg":"HS256"}"#));
        assert_eq!(key.verify(&hs, 150), Err(TokenError::Algorithm("HS256".into())));
    }

    #[test]
    fn refuses_token_of_another_key_and_edited_payload() {
        let key = TokenKey::generate().unwrap();
        let other = TokenKey::generate().unwrap();
        let t = other.sign(claims(100, 200)).unwrap();
        assert_eq!(key.verify(&t, 150), Err(TokenError::Signature));
        let mine = key.sign(claims(100, 200)).unwrap();
        let mut parts: Vec<&str> = mine.split('.').collect();
        let edited = b64::encode(br#"{"nbf":100,"exp":999999,"iss":"keylatch"}"#);
        parts[1] = &edited;
        assert_eq!(key.verify(&parts.join("."), 150), Err(TokenError::Signature));
        assert_eq!(key.verify("a.b", 150), Err(TokenError::Format));
    }

    #[test]
    fn loads_a_rustcrypto_written_key_and_signs_what_rustcrypto_verifies() {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::EncodePrivateKey as _;
        let old = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token-signing-key.pem");
        std::fs::write(&path, old.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&path, perms).unwrap();
        let key = TokenKey::load(&path).unwrap();
        let t = key.sign(claims(100, 200)).unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&b64::decode("sig", sig).unwrap()).unwrap();
        old.verifying_key().verify(input.as_bytes(), &sig).unwrap();
        assert!(key.verify(&t, 150).is_ok());
        let reloaded = key.to_pkcs8_pem().unwrap();
        assert!(reloaded.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
