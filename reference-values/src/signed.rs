//! Signed bundles: a tagged `COSE_Sign` (RFC 9052) whose payload is the bundle in deterministic
//! CBOR, with one ES384 signature per author (`kid` = SHA-256 of the author's SPKI DER, `alg`
//! and `kid` in each signature's protected header) and the content type in the body's protected
//! header. This module owns signing, co-signing, parsing, signature checking against a trust set,
//! and the decision whether a new bundle may replace the stored one.
//!
//! A [`VerifiedBundle`] can only be made here, after the signature threshold was met.

use coset::iana::{self, EnumI64};
use coset::{
    CborSerializable, ContentType, CoseSign, CoseSignBuilder, CoseSignature, CoseSignatureBuilder,
    HeaderBuilder, RegisteredLabelWithPrivate, TaggedCborSerializable,
};
use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::Signature;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::bundle::{Bundle, FormatError};
use crate::canonical::{self, CanonicalError};
use crate::keys::{AuthorKeys, AuthorSigningKey, KeyId};

/// The content type in the body's protected header.
pub const CONTENT_TYPE: &str = "application/vnd.keylatch.reference-values+cbor";
/// The largest signed bundle accepted, in bytes.
pub const MAX_SIGNED_LEN: usize = 1 << 20;
/// The most signatures one bundle may carry.
pub const MAX_SIGNATURES: usize = 32;
/// No external additional authenticated data: the content type already names the purpose.
const EXTERNAL_AAD: &[u8] = b"";
/// Length of an ES384 signature (r || s, 48 bytes each).
const ES384_SIG_LEN: usize = 96;

/// Why a signed bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("signed bundle is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("not a tagged COSE_Sign structure: {0}")]
    Cose(String),
    #[error("protected header content type is {found:?}, expected {CONTENT_TYPE:?}")]
    ContentType { found: Option<String> },
    #[error("unexpected COSE header: {0}")]
    UnexpectedHeader(&'static str),
    #[error("COSE_Sign has no payload")]
    NoPayload,
    #[error("payload: {0}")]
    Payload(#[from] CanonicalError),
    #[error("payload: {0}")]
    Format(#[from] FormatError),
    #[error("bundle has no signatures")]
    NoSignatures,
    #[error("bundle has {count} signatures, more than the {max} allowed")]
    TooManySignatures { count: usize, max: usize },
    #[error("signature {index}: {reason}")]
    MalformedSignature { index: usize, reason: &'static str },
    #[error("signed by key {kid}, which is not trusted for this bundle")]
    UnknownSigner { kid: KeyId },
    #[error("signature by key {kid} does not verify (payload or protected header changed)")]
    SignatureInvalid { kid: KeyId },
    #[error("{valid} valid signature(s) from distinct trusted keys, {required} required")]
    ThresholdNotMet { valid: usize, required: usize },
    #[error("already signed by key {kid}")]
    AlreadySigned { kid: KeyId },
    #[error("bundle expired at {} (now {})", rfc3339(*.expires), rfc3339(*.now))]
    Expired { expires: OffsetDateTime, now: OffsetDateTime },
    #[error("bundle name {candidate:?} does not match the stored bundle {stored:?}")]
    NameMismatch { stored: String, candidate: String },
    #[error("bundle version {candidate} is not greater than the stored version {stored}")]
    VersionNotGreater { stored: u64, candidate: u64 },
    #[error("COSE encoding failed")]
    Encode,
}

/// A parsed, structurally valid signed bundle whose signatures have NOT been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedBundle {
    cose: CoseSign,
    bundle: Bundle,
}

impl SignedBundle {
    /// Signs `bundle` with every key in `keys` (each key once).
    pub fn sign(bundle: &Bundle, keys: &[&AuthorSigningKey]) -> Result<Self, BundleError> {
        bundle.validate()?;
        if keys.is_empty() {
            return Err(BundleError::NoSignatures);
        }
        let payload = canonical::to_vec(bundle)?;
        let protected = HeaderBuilder::new().content_type(CONTENT_TYPE.to_owned()).build();
        let cose = CoseSignBuilder::new().protected(protected).payload(payload).build();
        // Fix the protected header's bytes now, so signatures cover exactly what is sent.
        let cose =
            CoseSign::from_tagged_slice(&cose.to_tagged_vec().map_err(|_| BundleError::Encode)?)
                .map_err(|e| BundleError::Cose(e.to_string()))?;
        let mut signed = Self { cose, bundle: bundle.clone() };
        for key in keys {
            signed.cosign(key)?;
        }
        Ok(signed)
    }

    /// Adds one signature by `key`; the payload and the other signatures stay as they are.
    pub fn cosign(&mut self, key: &AuthorSigningKey) -> Result<(), BundleError> {
        let kid = key.kid();
        if self.signature_kids().iter().any(|k| k.as_ref() == Some(&kid)) {
            return Err(BundleError::AlreadySigned { kid });
        }
        if self.cose.signatures.len() >= MAX_SIGNATURES {
            return Err(BundleError::TooManySignatures {
                count: self.cose.signatures.len() + 1,
                max: MAX_SIGNATURES,
            });
        }
        let protected =
            HeaderBuilder::new().algorithm(iana::Algorithm::ES384).key_id(kid.0.to_vec()).build();
        let mut sig = CoseSignatureBuilder::new().protected(protected).build();
        // Fix the signature's protected header bytes before signing, as for the body.
        sig = CoseSignature::from_slice(&sig.to_vec().map_err(|_| BundleError::Encode)?)
            .map_err(|e| BundleError::Cose(e.to_string()))?;
        let tbs = self.cose.tbs_data(EXTERNAL_AAD, &sig);
        let value: Signature = key.signing_key().sign(&tbs);
        sig.signature = value.to_bytes().to_vec();
        self.cose.signatures.push(sig);
        Ok(())
    }

    /// Parses a tagged `COSE_Sign` and its payload. Checks structure only, not signatures.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_SIGNED_LEN {
            return Err(BundleError::TooLarge { size: bytes.len(), max: MAX_SIGNED_LEN });
        }
        let cose =
            CoseSign::from_tagged_slice(bytes).map_err(|e| BundleError::Cose(e.to_string()))?;
        let header = &cose.protected.header;
        match &header.content_type {
            Some(ContentType::Text(t)) if t == CONTENT_TYPE => {}
            Some(ContentType::Text(t)) => {
                return Err(BundleError::ContentType { found: Some(t.clone()) })
            }
            Some(ContentType::Assigned(a)) => {
                return Err(BundleError::ContentType { found: Some(a.to_i64().to_string()) })
            }
            None => return Err(BundleError::ContentType { found: None }),
        }
        let only_content_type = HeaderBuilder::new().content_type(CONTENT_TYPE.to_owned()).build();
        if *header != only_content_type {
            return Err(BundleError::UnexpectedHeader(
                "body protected header holds more than the content type",
            ));
        }
        if !cose.unprotected.is_empty() {
            return Err(BundleError::UnexpectedHeader("body unprotected header is not empty"));
        }
        if cose.signatures.is_empty() {
            return Err(BundleError::NoSignatures);
        }
        if cose.signatures.len() > MAX_SIGNATURES {
            return Err(BundleError::TooManySignatures {
                count: cose.signatures.len(),
                max: MAX_SIGNATURES,
            });
        }
        let payload = cose.payload.as_deref().ok_or(BundleError::NoPayload)?;
        let bundle: Bundle = canonical::from_slice(payload)?;
        bundle.validate()?;
        Ok(Self { cose, bundle })
    }

    /// The tagged `COSE_Sign` encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        self.cose.clone().to_tagged_vec().map_err(|_| BundleError::Encode)
    }

    /// The bundle as the payload states it. Not authenticated: use [`verify_bundle`] or
    /// [`check_replacement`] before relying on it.
    #[must_use]
    pub fn unverified_bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// SHA-256 of the signed payload (the canonical bundle bytes): the bundle's digest for audit.
    #[must_use]
    pub fn payload_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.cose.payload.as_deref().unwrap_or_default()).into()
    }

    /// The `kid` of each signature in order (`None` where a signature has no usable `kid`).
    #[must_use]
    pub fn signature_kids(&self) -> Vec<Option<KeyId>> {
        self.cose
            .signatures
            .iter()
            .map(|s| <[u8; 32]>::try_from(s.protected.header.key_id.as_slice()).ok().map(KeyId))
            .collect()
    }
}

/// A bundle whose signatures met its trust set's threshold. Only this module makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    signed: SignedBundle,
    signers: Vec<KeyId>,
}

impl VerifiedBundle {
    #[must_use]
    pub fn bundle(&self) -> &Bundle {
        &self.signed.bundle
    }

    /// The distinct trusted keys whose signatures verified, in signature order.
    #[must_use]
    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }

    #[must_use]
    pub fn signed(&self) -> &SignedBundle {
        &self.signed
    }

    /// SHA-256 of the canonical payload.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        self.signed.payload_sha256()
    }
}

/// Checks every signature against `trust` and the threshold, without looking at expiry (so a
/// stored bundle can be reloaded and still appraise as expired, with a reason).
///
/// Every signature must be by a trusted key and must verify: a signature by an unknown key or
/// a trusted key's signature that fails is an error, not something skipped. The same key
/// signing more than once counts once.
pub fn verify_signatures(
    candidate: &SignedBundle,
    trust: &AuthorKeys,
) -> Result<VerifiedBundle, BundleError> {
    let mut signers: Vec<KeyId> = Vec::new();
    for (index, sig) in candidate.cose.signatures.iter().enumerate() {
        let kid = check_signature_headers(index, sig)?;
        let key = trust.find(&kid).ok_or(BundleError::UnknownSigner { kid })?;
        let value = Signature::from_slice(&sig.signature).map_err(|_| {
            BundleError::MalformedSignature { index, reason: "not an ES384 r||s value" }
        })?;
        let tbs = candidate.cose.tbs_data(EXTERNAL_AAD, sig);
        key.verifying_key()
            .verify(&tbs, &value)
            .map_err(|_| BundleError::SignatureInvalid { kid })?;
        if !signers.contains(&kid) {
            signers.push(kid);
        }
    }
    if signers.len() < trust.threshold() {
        return Err(BundleError::ThresholdNotMet {
            valid: signers.len(),
            required: trust.threshold(),
        });
    }
    Ok(VerifiedBundle { signed: candidate.clone(), signers })
}

/// Checks signatures and that the bundle has not expired at `now`.
pub fn verify_bundle(
    candidate: &SignedBundle,
    trust: &AuthorKeys,
    now: OffsetDateTime,
) -> Result<VerifiedBundle, BundleError> {
    let verified = verify_signatures(candidate, trust)?;
    let expires = verified.bundle().expires;
    if now >= expires {
        return Err(BundleError::Expired { expires, now });
    }
    Ok(verified)
}

/// Decides whether `candidate` may replace `stored`: enough valid signatures from distinct
/// trusted keys, not expired, the same name, and a greater version (no rollback, no replay).
/// `trust` is the key set and threshold configured for the candidate's bundle name.
pub fn check_replacement(
    stored: Option<&VerifiedBundle>,
    candidate: &SignedBundle,
    trust: &AuthorKeys,
    now: OffsetDateTime,
) -> Result<VerifiedBundle, BundleError> {
    let verified = verify_bundle(candidate, trust, now)?;
    if let Some(stored) = stored {
        let (old, new) = (stored.bundle(), verified.bundle());
        if old.name != new.name {
            return Err(BundleError::NameMismatch {
                stored: old.name.clone(),
                candidate: new.name.clone(),
            });
        }
        if new.version <= old.version {
            return Err(BundleError::VersionNotGreater {
                stored: old.version,
                candidate: new.version,
            });
        }
    }
    Ok(verified)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn check_signature_headers(index: usize, sig: &CoseSignature) -> Result<KeyId, BundleError> {
    let malformed = |reason| BundleError::MalformedSignature { index, reason };
    let header = &sig.protected.header;
    if header.alg != Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384)) {
        return Err(malformed("protected header alg is not ES384"));
    }
    let kid = <[u8; 32]>::try_from(header.key_id.as_slice())
        .map_err(|_| malformed("protected header kid is not 32 bytes"))?;
    let expected =
        HeaderBuilder::new().algorithm(iana::Algorithm::ES384).key_id(kid.to_vec()).build();
    if *header != expected {
        return Err(malformed("protected header holds more than alg and kid"));
    }
    if !sig.unprotected.is_empty() {
        return Err(malformed("unprotected header is not empty"));
    }
    if sig.signature.len() != ES384_SIG_LEN {
        return Err(malformed("signature is not 96 bytes"));
    }
    Ok(KeyId(kid))
}
