//! X.509 certificates as the verifiers need them: parsed once into the fields we check
//! (validity, issuer/subject, extensions, public key, signature over the exact TBS bytes), and
//! signature verification for the three algorithms hardware vendors use: RSASSA-PSS with
//! SHA-384 (AMD ARK/ASK/ASVK), ECDSA P-384 with SHA-384 and ECDSA P-256 with SHA-256 (Intel).
//!
//! General-purpose path building (webpki, rustls) does not fit here: AMD certificates use
//! RSA-PSS and serial number 0, the chains are fixed by the hardware design, and roots are
//! pinned by fingerprint. So chains are checked link by link by the TEE modules with these
//! primitives; certificate decoding itself is the `x509-cert` crate's.

use aws_lc_rs::signature::{self as aws_sig, ParsedPublicKey, VerificationAlgorithm};
use const_oid::db::rfc5912;
use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::spki::{AlgorithmIdentifierRef, ObjectIdentifier};

use crate::error::Reason;

/// A signature algorithm this crate accepts in certificates, CRLs and signed collateral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSASSA-PSS, SHA-384, MGF1-SHA-384, salt length 48 (AMD's certificates).
    RsaPssSha384,
    EcdsaP256Sha256,
    EcdsaP384Sha384,
}

/// The curve or scheme of a [`PublicKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    Rsa,
}

/// A public key of a kind the hardware PKIs use, parsed once (by aws-lc-rs) when its
/// certificate is parsed, so every later signature check skips key decoding. EC keys are held
/// for fixed-width `r || s` signatures (the hardware formats); DER signatures from certificates
/// and CRLs are converted to that form before they are checked.
#[derive(Clone)]
pub struct PublicKey {
    kind: KeyKind,
    parsed: ParsedPublicKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kind", &self.kind)
            .field("key", &hex::encode(self.parsed.as_ref()))
            .finish()
    }
}

/// Two keys are equal when they are of one kind and their encodings (SEC1 point, PKCS#1) match.
impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.parsed.as_ref() == other.parsed.as_ref()
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// Parses a P-256 key from its uncompressed SEC1 point (`04 || x || y`), as TDX quotes
    /// carry the attestation key.
    pub fn p256_from_sec1(what: &'static str, point: &[u8]) -> Result<Self, Reason> {
        Self::parse(what, KeyKind::P256, point)
    }

    fn parse(what: &'static str, kind: KeyKind, bytes: &[u8]) -> Result<Self, Reason> {
        let algorithm: &'static dyn VerificationAlgorithm = match kind {
            KeyKind::P256 => &aws_sig::ECDSA_P256_SHA256_FIXED,
            KeyKind::P384 => &aws_sig::ECDSA_P384_SHA384_FIXED,
            KeyKind::Rsa => &aws_sig::RSA_PSS_2048_8192_SHA384,
        };
        // aws-lc-rs also accepts a whole SubjectPublicKeyInfo here; we hand it only the bare
        // key of the kind named, so the kind is never taken from the bytes.
        if kind != KeyKind::Rsa && bytes.first() != Some(&0x04) {
            return Err(Reason::Malformed { what });
        }
        ParsedPublicKey::new(algorithm, bytes)
            .map(|parsed| Self { kind, parsed })
            .map_err(|_| Reason::Malformed { what })
    }

    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key as parsed: an uncompressed SEC1 point (EC) or a PKCS#1 `RSAPublicKey` (RSA).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.parsed.as_ref()
    }

    /// Verifies a DER-encoded (ECDSA) or raw (RSA) signature over `message`.
    pub fn verify(
        &self,
        what: &'static str,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Reason> {
        let bad = || Reason::BadSignature { what };
        match (self.kind, algorithm) {
            (KeyKind::P256, SignatureAlgorithm::EcdsaP256Sha256) => {
                let sig = p256::ecdsa::Signature::from_der(signature).map_err(|_| bad())?;
                self.verify_fixed(what, message, &sig.to_bytes())
            }
            (KeyKind::P384, SignatureAlgorithm::EcdsaP384Sha384) => {
                let sig = p384::ecdsa::Signature::from_der(signature).map_err(|_| bad())?;
                self.verify_fixed(what, message, &sig.to_bytes())
            }
            (KeyKind::Rsa, SignatureAlgorithm::RsaPssSha384) => {
                self.parsed.verify_sig(message, signature).map_err(|_| bad())
            }
            _ => Err(Reason::UnsupportedAlgorithm { what }),
        }
    }

    /// Verifies a fixed-width `r || s` ECDSA signature (32 + 32 bytes with SHA-256 for P-256,
    /// 48 + 48 with SHA-384 for P-384) over `message`: Intel's quote and collateral encoding,
    /// and AMD's report signature once its little-endian fields are turned around.
    pub fn verify_fixed(
        &self,
        what: &'static str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Reason> {
        if self.kind == KeyKind::Rsa {
            return Err(Reason::UnsupportedAlgorithm { what });
        }
        self.parsed.verify_sig(message, signature).map_err(|_| Reason::BadSignature { what })
    }

    /// Parses a SubjectPublicKeyInfo (DER) into one of the supported key kinds.
    pub fn from_spki_der(what: &'static str, der: &[u8]) -> Result<Self, Reason> {
        let spki = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|_| Reason::Malformed { what })?;
        Self::from_spki(what, &spki)
    }

    fn from_spki(
        what: &'static str,
        spki: &x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
    ) -> Result<Self, Reason> {
        let bits = spki.subject_public_key.as_bytes().ok_or(Reason::Malformed { what })?;
        let algorithm = spki.algorithm.oid;
        if algorithm == rfc5912::ID_EC_PUBLIC_KEY {
            let curve: ObjectIdentifier = spki
                .algorithm
                .parameters
                .ok_or(Reason::Malformed { what })?
                .decode_as()
                .map_err(|_| Reason::Malformed { what })?;
            if curve == rfc5912::SECP_256_R_1 {
                return Self::parse(what, KeyKind::P256, bits);
            }
            if curve == rfc5912::SECP_384_R_1 {
                return Self::parse(what, KeyKind::P384, bits);
            }
            return Err(Reason::UnsupportedAlgorithm { what });
        }
        if algorithm == rfc5912::RSA_ENCRYPTION || algorithm == rfc5912::ID_RSASSA_PSS {
            return Self::parse(what, KeyKind::Rsa, bits);
        }
        Err(Reason::UnsupportedAlgorithm { what })
    }
}

/// Maps an AlgorithmIdentifier to a supported signature algorithm, checking PSS parameters.
pub fn signature_algorithm(
    what: &'static str,
    id: &AlgorithmIdentifierRef<'_>,
) -> Result<SignatureAlgorithm, Reason> {
    if id.oid == rfc5912::ECDSA_WITH_SHA_256 {
        return Ok(SignatureAlgorithm::EcdsaP256Sha256);
    }
    if id.oid == rfc5912::ECDSA_WITH_SHA_384 {
        return Ok(SignatureAlgorithm::EcdsaP384Sha384);
    }
    if id.oid == rfc5912::ID_RSASSA_PSS {
        let params: rsa::pkcs1::RsaPssParams<'_> = id
            .parameters
            .ok_or(Reason::Malformed { what })?
            .decode_as()
            .map_err(|_| Reason::Malformed { what })?;
        let mgf_hash = params.mask_gen.parameters.map(|p| p.oid);
        if params.hash.oid != rfc5912::ID_SHA_384
            || mgf_hash != Some(rfc5912::ID_SHA_384)
            || params.salt_len != 48
        {
            return Err(Reason::UnsupportedAlgorithm { what });
        }
        return Ok(SignatureAlgorithm::RsaPssSha384);
    }
    Err(Reason::UnsupportedAlgorithm { what })
}

/// The outer SEQUENCE of a certificate or CRL, keeping the signed part as raw bytes so the
/// signature is checked over exactly what the issuer signed.
#[derive(der::Sequence)]
pub(crate) struct SignedEnvelope<'a> {
    pub(crate) tbs: AnyRef<'a>,
    pub(crate) algorithm: AlgorithmIdentifierRef<'a>,
    pub(crate) signature: BitStringRef<'a>,
}

/// The parts of a signed ASN.1 object (certificate or CRL) needed to check its signature.
#[derive(Debug, Clone)]
pub(crate) struct SignedParts {
    pub(crate) tbs_der: Vec<u8>,
    pub(crate) algorithm: SignatureAlgorithm,
    pub(crate) signature: Vec<u8>,
}

impl SignedParts {
    pub(crate) fn from_der(what: &'static str, der: &[u8]) -> Result<Self, Reason> {
        let envelope = SignedEnvelope::from_der(der).map_err(|_| Reason::Malformed { what })?;
        Ok(Self {
            tbs_der: envelope.tbs.to_der().map_err(|_| Reason::Malformed { what })?,
            algorithm: signature_algorithm(what, &envelope.algorithm)?,
            signature: envelope.signature.as_bytes().ok_or(Reason::Malformed { what })?.to_vec(),
        })
    }

    pub(crate) fn verify_with(&self, what: &'static str, key: &PublicKey) -> Result<(), Reason> {
        key.verify(what, self.algorithm, &self.tbs_der, &self.signature)
    }
}

/// A parsed certificate: the fields verification reads, and its own DER.
#[derive(Debug, Clone)]
pub struct Certificate {
    der: Vec<u8>,
    sha256: [u8; 32],
    signed: SignedParts,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    serial: Vec<u8>,
    not_before: i64,
    not_after: i64,
    public_key: PublicKey,
    extensions: Vec<(ObjectIdentifier, Vec<u8>)>,
}

impl Certificate {
    /// Parses a DER certificate. `what` names it in errors ("VCEK certificate", ...).
    pub fn from_der(what: &'static str, der: &[u8]) -> Result<Self, Reason> {
        let malformed = || Reason::Malformed { what };
        let signed = SignedParts::from_der(what, der)?;
        let cert = x509_cert::Certificate::from_der(der).map_err(|_| malformed())?;
        let tbs = &cert.tbs_certificate;
        let spki_der = tbs.subject_public_key_info.to_der().map_err(|_| malformed())?;
        let extensions = tbs
            .extensions
            .iter()
            .flatten()
            .map(|e| (e.extn_id, e.extn_value.as_bytes().to_vec()))
            .collect();
        Ok(Self {
            der: der.to_vec(),
            sha256: Sha256::digest(der).into(),
            signed,
            subject_der: tbs.subject.to_der().map_err(|_| malformed())?,
            issuer_der: tbs.issuer.to_der().map_err(|_| malformed())?,
            serial: tbs.serial_number.as_bytes().to_vec(),
            not_before: unix_seconds(tbs.validity.not_before),
            not_after: unix_seconds(tbs.validity.not_after),
            public_key: PublicKey::from_spki_der(what, &spki_der)?,
            extensions,
        })
    }

    /// Parses a certificate given as DER or as a single PEM block.
    pub fn from_pem_or_der(what: &'static str, bytes: &[u8]) -> Result<Self, Reason> {
        if bytes.starts_with(b"-----BEGIN") {
            let certs = pem_certificates(what, bytes)?;
            return match certs.as_slice() {
                [one] => Self::from_der(what, one),
                _ => {
                    Err(Reason::InvalidValue { what, why: "expected exactly one PEM certificate" })
                }
            };
        }
        Self::from_der(what, bytes)
    }

    #[must_use]
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER encoding: the fingerprint roots are pinned by.
    #[must_use]
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    #[must_use]
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    #[must_use]
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    #[must_use]
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    #[must_use]
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    #[must_use]
    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }

    /// The raw value (inside the OCTET STRING) of the extension with this OID.
    #[must_use]
    pub fn extension(&self, oid: &ObjectIdentifier) -> Option<&[u8]> {
        self.extensions.iter().find(|(id, _)| id == oid).map(|(_, v)| v.as_slice())
    }

    /// Fails unless `now` (Unix seconds) lies within notBefore..=notAfter.
    pub fn check_valid_at(&self, what: &'static str, now: i64) -> Result<(), Reason> {
        check_window(what, self.not_before, self.not_after, now)
    }

    /// Checks that `issuer` issued this certificate: names chain and the signature verifies.
    pub fn verify_issued_by(&self, what: &'static str, issuer: &Certificate) -> Result<(), Reason> {
        if self.issuer_der != issuer.subject_der {
            return Err(Reason::InvalidValue {
                what,
                why: "issuer name differs from the issuing certificate's subject",
            });
        }
        self.signed.verify_with(what, &issuer.public_key)
    }

    /// True for a self-issued certificate whose signature verifies under its own key.
    pub fn verify_self_signed(&self, what: &'static str) -> Result<(), Reason> {
        self.verify_issued_by(what, self)
    }
}

/// Fails unless `not_before <= now <= not_after`.
pub fn check_window(
    what: &'static str,
    not_before: i64,
    not_after: i64,
    now: i64,
) -> Result<(), Reason> {
    if now < not_before {
        return Err(Reason::NotYetValid { what, not_before, now });
    }
    if now > not_after {
        return Err(Reason::Expired { what, not_after, now });
    }
    Ok(())
}

fn unix_seconds(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// Splits PEM text into the DER of each `CERTIFICATE` block, in order.
pub fn pem_certificates(what: &'static str, pem: &[u8]) -> Result<Vec<Vec<u8>>, Reason> {
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, b"-----BEGIN CERTIFICATE-----") {
        let block = rest.get(start..).unwrap_or_default();
        let end = find(block, END).ok_or(Reason::Malformed { what })? + END.len();
        let (label, der) = der::pem::decode_vec(block.get(..end).unwrap_or_default())
            .map_err(|_| Reason::Malformed { what })?;
        if label != "CERTIFICATE" {
            return Err(Reason::Malformed { what });
        }
        out.push(der);
        rest = block.get(end..).unwrap_or_default();
    }
    if out.is_empty() {
        return Err(Reason::Missing { what });
    }
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parsed certificate revocation list: who issued it, when it is valid, which serial numbers
/// it revokes, and its signature over the exact TBS bytes.
#[derive(Debug, Clone)]
pub struct Crl {
    signed: SignedParts,
    issuer_der: Vec<u8>,
    this_update: i64,
    next_update: i64,
    revoked_serials: Vec<Vec<u8>>,
}

impl Crl {
    /// Parses a DER CRL. A CRL without `nextUpdate` is rejected: a list that never expires
    /// cannot tell a stale copy from a fresh one.
    pub fn from_der(what: &'static str, der: &[u8]) -> Result<Self, Reason> {
        let malformed = || Reason::Malformed { what };
        let signed = SignedParts::from_der(what, der)?;
        let crl = x509_cert::crl::CertificateList::from_der(der).map_err(|_| malformed())?;
        let tbs = &crl.tbs_cert_list;
        let next_update = tbs.next_update.ok_or(Reason::Missing { what })?;
        let revoked_serials = tbs
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| r.serial_number.as_bytes().to_vec())
            .collect();
        Ok(Self {
            signed,
            issuer_der: tbs.issuer.to_der().map_err(|_| malformed())?,
            this_update: unix_seconds(tbs.this_update),
            next_update: unix_seconds(next_update),
            revoked_serials,
        })
    }

    #[must_use]
    pub fn this_update(&self) -> i64 {
        self.this_update
    }

    #[must_use]
    pub fn next_update(&self) -> i64 {
        self.next_update
    }

    /// Fails unless `now` (Unix seconds) lies within thisUpdate..=nextUpdate.
    pub fn check_valid_at(&self, what: &'static str, now: i64) -> Result<(), Reason> {
        check_window(what, self.this_update, self.next_update, now)
    }

    /// Checks that `issuer` issued this CRL: names chain and the signature verifies.
    pub fn verify_issued_by(&self, what: &'static str, issuer: &Certificate) -> Result<(), Reason> {
        if self.issuer_der != issuer.subject_der {
            return Err(Reason::InvalidValue {
                what,
                why: "CRL issuer name differs from the issuing certificate's subject",
            });
        }
        self.signed.verify_with(what, &issuer.public_key)
    }

    /// The DER of the issuer name.
    #[must_use]
    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }

    /// True when `serial` (the DER content bytes of a serial number, as
    /// [`Certificate::serial`] gives them) is listed, whoever issued the certificate.
    #[must_use]
    pub fn lists_serial(&self, serial: &[u8]) -> bool {
        self.revoked_serials.iter().any(|s| s.as_slice() == serial)
    }

    /// True when `cert` was issued by this CRL's issuer and its serial number is listed.
    #[must_use]
    pub fn revokes(&self, cert: &Certificate) -> bool {
        cert.issuer_der == self.issuer_der && self.lists_serial(&cert.serial)
    }
}
