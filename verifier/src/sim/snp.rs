//! Simulated AMD SEV-SNP: a simulation PKI shaped like AMD's (ARK → ASK → VCEK, ARK → ASVK →
//! VLEK, RSASSA-PSS SHA-384 with salt 48, VCEK/VLEK serial number 0, AMD's TCB/`hwID`/product
//! extensions) and attestation reports minted in the real binary layout, signed with ECDSA
//! P-384 by a VCEK made for the report's chip and TCB (or by the PKI's VLEK). Minted evidence
//! goes through exactly the verifier's code; only the anchors ([`SimAmdPki::anchors`]) differ,
//! and they mark every claim set `simulated: true`.
//!
//! The sim CA keys are RSA-2048 rather than AMD's RSA-4096: the chain logic and the signature
//! scheme are identical, and 2048-bit key generation keeps tests and quickstarts fast.
//!
//! Certificates are assembled from a `TbsCertificate` here rather than with `x509-cert`'s
//! builder: its profiles add SKI/AKI/basic-constraints extensions and cannot add AMD's
//! arbitrary-OID extensions without the `hazmat` feature, and AMD's serial number 0 needs no
//! builder either.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};

use der::asn1::{BitString, GeneralizedTime, Ia5StringRef, OctetString, UtcTime};
use der::{Decode, Encode};
use rand_core::CryptoRngCore;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sha2::Sha384;
use signature::{RandomizedSigner, SignatureEncoding};
use spki::{DynSignatureAlgorithmIdentifier, EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate as X509Certificate, TbsCertificate, Version};

use crate::claims::{SnpFirmwareVersion, SnpProduct, SnpSigningKey, SnpTcb};
use crate::error::VerifyError;
use crate::sim::{ecdsa_key_pair, ecdsa_sign};
use crate::snp::amd_ext;
use crate::snp::report::{cpuid_for, AttestationReport, KeyInfo, RawTcb, SIGNED_LEN};
use crate::snp::SnpTrustAnchors;
use crate::x509::{pem_certificates, Certificate, PublicKey};

/// 2000-01-01T00:00:00Z, the default start of sim certificate validity.
pub const SIM_NOT_BEFORE: i64 = 946_684_800;
/// 2099-12-31T23:59:59Z, the default end of sim certificate validity.
pub const SIM_NOT_AFTER: i64 = 4_102_444_799;
/// Sim CA key size (see the module comment).
const SIM_RSA_BITS: usize = 2048;

const ARK_NAME: &str = "CN=ARK-Keylatch-Sim,O=Keylatch Simulation,C=US";
const ASK_NAME: &str = "CN=SEV-Keylatch-Sim,O=Keylatch Simulation,C=US";
const ASVK_NAME: &str = "CN=SEV-VLEK-Keylatch-Sim,O=Keylatch Simulation,C=US";
const VCEK_NAME: &str = "CN=SEV-VCEK,O=Keylatch Simulation,C=US";
const VLEK_NAME: &str = "CN=SEV-VLEK,O=Keylatch Simulation,C=US";

/// What went wrong building or loading simulation material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimSnpError {
    #[error("simulation PKI file {0} is missing")]
    MissingFile(&'static str),
    #[error("simulation PKI file {0} does not decode")]
    BadFile(&'static str),
    #[error("simulation PKI key {0} does not match its certificate")]
    KeyMismatch(&'static str),
    #[error("cannot encode {0}")]
    Encoding(&'static str),
    #[error("invalid simulated report: {0}")]
    InvalidSpec(&'static str),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// An RSA certificate authority of the sim PKI. No `Debug` that prints the key.
struct SimCa {
    key: rsa::RsaPrivateKey,
    cert_der: Vec<u8>,
    name: Name,
}

/// The simulation PKI: ARK, ASK and ASVK (RSA, RSASSA-PSS SHA-384) and a VLEK key (P-384).
pub struct SimAmdPki {
    ark: SimCa,
    ask: SimCa,
    asvk: SimCa,
    vlek_key: p384::SecretKey,
    /// The VLEK as the aws-lc-rs key pair that signs reports.
    vlek_pair: Arc<EcdsaKeyPair>,
    /// Signer certificates already minted, so one sim chip at one TCB keeps one VCEK (as a
    /// real chip does) and a verifier's chain cache sees the same certificate again.
    signers: std::sync::Mutex<std::collections::HashMap<SignerId, Signer>>,
}

/// A signer's key pair (aws-lc-rs) and its certificate (DER).
type Signer = (Arc<EcdsaKeyPair>, Vec<u8>);

/// What makes a signer certificate: its kind, product, TCB, hwID override and validity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SignerId {
    signing_key: SnpSigningKey,
    product: SnpProduct,
    chip_id: [u8; 64],
    tcb: SnpTcb,
    hw_id: Option<Vec<u8>>,
    validity: Option<(i64, i64)>,
}

impl std::fmt::Debug for SimAmdPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ark_sha256 = <sha2::Sha256 as sha2::Digest>::digest(&self.ark.cert_der);
        f.debug_struct("SimAmdPki")
            .field("ark_sha256", &hex::encode(ark_sha256))
            .finish_non_exhaustive()
    }
}

/// What to put in a simulated report. `Default` is a v5 Genoa report signed by a VCEK.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // reason: independent switches a test sets one by one
pub struct SimSnpReport {
    /// 2, 3 or 5.
    pub version: u32,
    pub product: SnpProduct,
    pub signing_key: SnpSigningKey,
    pub measurement: [u8; 48],
    pub report_data: [u8; 64],
    pub host_data: [u8; 32],
    /// `GUEST_POLICY`, raw (bit 19 is DEBUG, bit 17 must be one).
    pub policy: u64,
    pub vmpl: u32,
    pub guest_svn: u32,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub platform_info: u64,
    /// The chip's ID; on Turin only the first 8 bytes are the `hwID`.
    pub chip_id: [u8; 64],
    /// Write `CHIP_ID` as zeros (the host's `MaskChipId`).
    pub mask_chip_id: bool,
    /// `REPORTED_TCB`; `fmc` must be set exactly on Turin.
    pub reported_tcb: SnpTcb,
    /// CURRENT/COMMITTED/LAUNCH TCB; `None` means equal to `reported_tcb`.
    pub current_tcb: Option<SnpTcb>,
    /// Test hook: TCB written into the signer certificate instead of `reported_tcb`.
    pub signer_tcb: Option<SnpTcb>,
    /// Test hook: `hwID` written into the VCEK instead of the chip's.
    pub signer_hw_id: Option<Vec<u8>>,
    /// Signer certificate validity (Unix seconds); `None` is the wide sim default.
    pub signer_validity: Option<(i64, i64)>,
}

impl Default for SimSnpReport {
    fn default() -> Self {
        Self::for_product(SnpProduct::Genoa)
    }
}

impl SimSnpReport {
    /// Sensible values for `product`: v5, VCEK, SMT-allowed policy without DEBUG, a TCB with
    /// FMC on Turin, and a `CHIP_ID` whose unused bytes are zero on Turin.
    #[must_use]
    pub fn for_product(product: SnpProduct) -> Self {
        let mut chip_id = [0u8; 64];
        let used = amd_ext::hw_id_len(product);
        chip_id.iter_mut().take(used).enumerate().for_each(|(i, b)| *b = 0xC0 ^ (i as u8));
        let fmc = matches!(product, SnpProduct::Turin).then_some(1);
        Self {
            version: 5,
            product,
            signing_key: SnpSigningKey::Vcek,
            measurement: [0x4D; 48],
            report_data: [0; 64],
            host_data: [0; 32],
            policy: 0x3_0000,
            vmpl: 0,
            guest_svn: 0,
            family_id: [0; 16],
            image_id: [0; 16],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            platform_info: 0x25,
            chip_id,
            mask_chip_id: false,
            reported_tcb: SnpTcb { bootloader: 10, tee: 0, snp: 23, microcode: 72, fmc },
            current_tcb: None,
            signer_tcb: None,
            signer_hw_id: None,
            signer_validity: None,
        }
    }
}

impl SimAmdPki {
    /// Generates a fresh simulation PKI.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Result<Self, SimSnpError> {
        let window = (SIM_NOT_BEFORE, SIM_NOT_AFTER);
        let ark_key = rsa_key(rng)?;
        let ark_name = name(ARK_NAME)?;
        let ark_spki = rsa_spki(&ark_key)?;
        let ark_der =
            sign_cert(rng, &ark_key, &ark_name, &ark_name, ark_spki, 1, window, Vec::new())?;
        let ark = SimCa { key: ark_key, cert_der: ark_der, name: ark_name };
        let sev_ca = sub_ca(rng, &ark, ASK_NAME, 2)?;
        let asvk_ca = sub_ca(rng, &ark, ASVK_NAME, 3)?;
        Self::assemble(ark, sev_ca, asvk_ca, p384::SecretKey::random(rng))
    }

    /// The PKI from its CAs and VLEK key, with no signer minted yet.
    fn assemble(
        ark: SimCa,
        sev_ca: SimCa,
        asvk_ca: SimCa,
        vlek_key: p384::SecretKey,
    ) -> Result<Self, SimSnpError> {
        let der = vlek_key.to_pkcs8_der().map_err(|_| SimSnpError::Encoding("VLEK key"))?;
        let vlek_pair = ecdsa_key_pair(&ECDSA_P384_SHA384_FIXED_SIGNING, der.as_bytes())
            .map(Arc::new)
            .ok_or(SimSnpError::Encoding("VLEK key"))?;
        Ok(Self {
            ark,
            ask: sev_ca,
            asvk: asvk_ca,
            vlek_key,
            vlek_pair,
            signers: std::sync::Mutex::default(),
        })
    }

    /// Trust anchors for this PKI (simulated: every claim set says `simulated: true`).
    pub fn anchors(&self) -> Result<SnpTrustAnchors, VerifyError> {
        SnpTrustAnchors::simulated(
            &self.ark.cert_der,
            &self.ask.cert_der,
            Some(&self.asvk.cert_der),
        )
    }

    /// DER of the sim ARK, ASK and ASVK.
    #[must_use]
    pub fn ark_der(&self) -> &[u8] {
        &self.ark.cert_der
    }

    #[must_use]
    pub fn ask_der(&self) -> &[u8] {
        &self.ask.cert_der
    }

    #[must_use]
    pub fn asvk_der(&self) -> &[u8] {
        &self.asvk.cert_der
    }

    /// A CRL as AMD KDS serves one (`vcek/v1/{product}/crl`): X.509 v2, issued and signed
    /// (RSASSA-PSS SHA-384) by the sim ARK, listing `revoked` serial numbers (DER content
    /// bytes, as [`Certificate::serial`] gives them; the sim ASK's is `[2]`, the ASVK's `[3]`,
    /// every VCEK's and VLEK's `[0]`), valid from `this_update` to `next_update` (Unix
    /// seconds). Returns the DER.
    pub fn crl(
        &self,
        revoked: &[&[u8]],
        (this_update, next_update): (i64, i64),
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, SimSnpError> {
        use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
        let enc = |_| SimSnpError::Encoding("CRL");
        let entries = revoked
            .iter()
            .map(|serial| {
                Ok(RevokedCert {
                    serial_number: SerialNumber::new(serial).map_err(enc)?,
                    revocation_date: x509_time(this_update)?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, SimSnpError>>()?;
        let algorithm = pss_algorithm(&self.ark.key)?;
        let tbs = TbsCertList {
            version: Version::V2,
            signature: algorithm.clone(),
            issuer: self.ark.name.clone(),
            this_update: x509_time(this_update)?,
            next_update: Some(x509_time(next_update)?),
            revoked_certificates: (!entries.is_empty()).then_some(entries),
            crl_extensions: None,
        };
        let signature = pss_sign(rng, &self.ark.key, &tbs.to_der().map_err(enc)?)?;
        CertificateList { tbs_cert_list: tbs, signature_algorithm: algorithm, signature }
            .to_der()
            .map_err(enc)
    }

    /// The PKI as files: `amd-{ark,ask,asvk}.pem` certificates and `amd-{ark,ask,asvk,vlek}-key.pem`
    /// PKCS#8 keys. The caller writes them (keys with mode 0600).
    pub fn to_files(&self) -> Result<Vec<(String, Vec<u8>)>, SimSnpError> {
        let mut out = Vec::new();
        for (file, ca) in [("amd-ark", &self.ark), ("amd-ask", &self.ask), ("amd-asvk", &self.asvk)]
        {
            let pem = der::pem::encode_string("CERTIFICATE", LineEnding::LF, &ca.cert_der)
                .map_err(|_| SimSnpError::Encoding("certificate PEM"))?;
            out.push((format!("{file}.pem"), pem.into_bytes()));
            let key = ca
                .key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| SimSnpError::Encoding("RSA key PEM"))?;
            out.push((format!("{file}-key.pem"), key.as_bytes().to_vec()));
        }
        let vlek = self
            .vlek_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| SimSnpError::Encoding("VLEK key PEM"))?;
        out.push(("amd-vlek-key.pem".to_owned(), vlek.as_bytes().to_vec()));
        Ok(out)
    }

    /// Loads a PKI saved by [`to_files`](Self::to_files); `get` returns a file's bytes.
    /// Checks each key against its certificate and the chain against the ARK.
    pub fn from_files(get: impl Fn(&str) -> Option<Vec<u8>>) -> Result<Self, SimSnpError> {
        let ark = load_ca(&get, "amd-ark.pem", "amd-ark-key.pem")?;
        let sev_ca = load_ca(&get, "amd-ask.pem", "amd-ask-key.pem")?;
        let asvk_ca = load_ca(&get, "amd-asvk.pem", "amd-asvk-key.pem")?;
        let vlek_pem =
            get("amd-vlek-key.pem").ok_or(SimSnpError::MissingFile("amd-vlek-key.pem"))?;
        let vlek_text =
            std::str::from_utf8(&vlek_pem).map_err(|_| SimSnpError::BadFile("amd-vlek-key.pem"))?;
        let vlek_key = p384::SecretKey::from_pkcs8_pem(vlek_text)
            .map_err(|_| SimSnpError::BadFile("amd-vlek-key.pem"))?;
        let pki = Self::assemble(ark, sev_ca, asvk_ca, vlek_key)?;
        pki.anchors()?;
        Ok(pki)
    }

    /// Mints a report as `spec` says, with a signer certificate for it: a fresh VCEK for the
    /// chip and TCB (issued by the sim ASK), or the PKI's VLEK (issued by the sim ASVK).
    /// Returns (report bytes, signer certificate DER).
    pub fn mint(
        &self,
        spec: &SimSnpReport,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Vec<u8>, Vec<u8>), SimSnpError> {
        if !matches!(spec.version, 2 | 3 | 5) {
            return Err(SimSnpError::InvalidSpec("version must be 2, 3 or 5"));
        }
        let product = spec.product;
        let tcb = |t: &SnpTcb| {
            RawTcb::encode(t, product)
                .map_err(|_| SimSnpError::InvalidSpec("fmc set exactly on Turin"))
        };
        let reported = tcb(&spec.reported_tcb)?;
        let current = tcb(spec.current_tcb.as_ref().unwrap_or(&spec.reported_tcb))?;
        let (signing_key, signer_der) = self.signer(spec, rng)?;
        let mut report_id = [0u8; 32];
        rng.fill_bytes(&mut report_id);
        let firmware = SnpFirmwareVersion { major: 1, minor: 55, build: 40 };
        let mut report = AttestationReport {
            version: spec.version,
            guest_svn: spec.guest_svn,
            policy: spec.policy,
            family_id: spec.family_id,
            image_id: spec.image_id,
            vmpl: spec.vmpl,
            signature_algo: crate::snp::report::SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: current,
            platform_info: spec.platform_info,
            key_info: KeyInfo {
                author_key_en: false,
                mask_chip_key: false,
                signing_key: spec.signing_key,
            },
            report_data: spec.report_data,
            measurement: spec.measurement,
            host_data: spec.host_data,
            id_key_digest: spec.id_key_digest,
            author_key_digest: spec.author_key_digest,
            report_id,
            report_id_ma: [0xFF; 32],
            reported_tcb: reported,
            cpuid: (spec.version >= 3).then(|| cpuid_for(product)),
            chip_id: if spec.mask_chip_id { [0; 64] } else { spec.chip_id },
            committed_tcb: current,
            current_version: firmware,
            committed_version: firmware,
            launch_tcb: current,
            launch_mit_vector: (spec.version >= 5).then_some(1),
            current_mit_vector: (spec.version >= 5).then_some(1),
            signature_r: [0; 72],
            signature_s: [0; 72],
        };
        let unsigned = report.to_bytes();
        let signed = unsigned.get(..SIGNED_LEN).ok_or(SimSnpError::Encoding("report"))?;
        let sig = ecdsa_sign(&signing_key, signed).ok_or(SimSnpError::Encoding("signature"))?;
        let (r, s) = sig.split_at(sig.len() / 2);
        report.signature_r = le72(r);
        report.signature_s = le72(s);
        Ok((report.to_bytes(), signer_der))
    }

    /// The VCEK or VLEK for this report: minted once per [`SignerId`], then reused.
    fn signer(
        &self,
        spec: &SimSnpReport,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Signer, SimSnpError> {
        let id = SignerId {
            signing_key: spec.signing_key,
            product: spec.product,
            chip_id: spec.chip_id,
            tcb: spec.signer_tcb.unwrap_or(spec.reported_tcb),
            hw_id: spec.signer_hw_id.clone(),
            validity: spec.signer_validity,
        };
        let mut signers = self.signers.lock().map_err(|_| SimSnpError::Encoding("signer cache"))?;
        if let Some(found) = signers.get(&id) {
            return Ok(found.clone());
        }
        let key = match spec.signing_key {
            SnpSigningKey::Vcek => Arc::new(
                EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
                    .map_err(|_| SimSnpError::Encoding("VCEK key generation"))?,
            ),
            SnpSigningKey::Vlek => Arc::clone(&self.vlek_pair),
        };
        let spki = key
            .public_key()
            .as_der()
            .ok()
            .and_then(|der| SubjectPublicKeyInfoOwned::from_der(der.as_ref()).ok())
            .ok_or(SimSnpError::Encoding("signer public key"))?;
        let der = self.signer_cert(spec, spki, rng)?;
        signers.insert(id, (Arc::clone(&key), der.clone()));
        Ok((key, der))
    }

    fn signer_cert(
        &self,
        spec: &SimSnpReport,
        spki: SubjectPublicKeyInfoOwned,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, SimSnpError> {
        let product = spec.product;
        let tcb = spec.signer_tcb.unwrap_or(spec.reported_tcb);
        let mut exts = vec![
            ext(amd_ext::OID_STRUCT_VERSION, 0u8.to_der())?,
            ext(amd_ext::OID_PRODUCT_NAME, ia5(product_name(product)))?,
            ext(amd_ext::OID_BL_SPL, tcb.bootloader.to_der())?,
            ext(amd_ext::OID_TEE_SPL, tcb.tee.to_der())?,
            ext(amd_ext::OID_SNP_SPL, tcb.snp.to_der())?,
            ext(amd_ext::OID_UCODE_SPL, tcb.microcode.to_der())?,
        ];
        if let Some(fmc) = tcb.fmc {
            exts.push(ext(amd_ext::OID_FMC_SPL, fmc.to_der())?);
        }
        let (ca, subject) = match spec.signing_key {
            SnpSigningKey::Vcek => {
                let len = amd_ext::hw_id_len(product);
                let hw_id = spec
                    .signer_hw_id
                    .clone()
                    .unwrap_or_else(|| spec.chip_id.iter().take(len).copied().collect());
                exts.push(ext(amd_ext::OID_HW_ID, Ok(hw_id))?);
                (&self.ask, VCEK_NAME)
            }
            SnpSigningKey::Vlek => {
                exts.push(ext(amd_ext::OID_CSP_ID, ia5("keylatch-sim"))?);
                (&self.asvk, VLEK_NAME)
            }
        };
        let window = spec.signer_validity.unwrap_or((SIM_NOT_BEFORE, SIM_NOT_AFTER));
        sign_cert(rng, &ca.key, &ca.name, &name(subject)?, spki, 0, window, exts)
    }
}

fn product_name(product: SnpProduct) -> &'static str {
    match product {
        SnpProduct::Milan => "Milan-B0",
        SnpProduct::Genoa => "Genoa-B1",
        SnpProduct::Turin => "Turin-C1",
    }
}

/// A 48-byte big-endian scalar as the report's 72-byte little-endian field.
fn le72(be: &[u8]) -> [u8; 72] {
    let mut out = [0u8; 72];
    out.iter_mut().zip(be.iter().rev()).for_each(|(d, s)| *d = *s);
    out
}

fn rsa_key(rng: &mut impl CryptoRngCore) -> Result<rsa::RsaPrivateKey, SimSnpError> {
    rsa::RsaPrivateKey::new(rng, SIM_RSA_BITS)
        .map_err(|_| SimSnpError::Encoding("RSA key generation"))
}

fn rsa_spki(key: &rsa::RsaPrivateKey) -> Result<SubjectPublicKeyInfoOwned, SimSnpError> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| SimSnpError::Encoding("RSA public key"))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes())
        .map_err(|_| SimSnpError::Encoding("RSA public key"))
}

fn name(s: &str) -> Result<Name, SimSnpError> {
    Name::from_str(s).map_err(|_| SimSnpError::Encoding("certificate name"))
}

fn ia5(s: &str) -> der::Result<Vec<u8>> {
    Ia5StringRef::new(s)?.to_der()
}

fn ext(
    oid: const_oid::ObjectIdentifier,
    value: der::Result<Vec<u8>>,
) -> Result<Extension, SimSnpError> {
    let bad = |_| SimSnpError::Encoding("certificate extension");
    Ok(Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(value.map_err(bad)?).map_err(bad)?,
    })
}

/// `UTCTime` before 2050, `GeneralizedTime` from 2050 on (RFC 5280 4.1.2.5).
fn x509_time(unix: i64) -> Result<Time, SimSnpError> {
    const Y2050: i64 = 2_524_608_000;
    let bad = SimSnpError::InvalidSpec("certificate time out of range");
    let d = Duration::from_secs(
        u64::try_from(unix).map_err(|_| SimSnpError::InvalidSpec("negative certificate time"))?,
    );
    if unix < Y2050 {
        UtcTime::from_unix_duration(d).map(Time::UtcTime).map_err(|_| bad)
    } else {
        GeneralizedTime::from_unix_duration(d).map(Time::GeneralTime).map_err(|_| bad)
    }
}

fn sub_ca(
    rng: &mut impl CryptoRngCore,
    ark: &SimCa,
    subject: &str,
    serial: u8,
) -> Result<SimCa, SimSnpError> {
    let key = rsa_key(rng)?;
    let subject = name(subject)?;
    let spki = rsa_spki(&key)?;
    let cert_der = sign_cert(
        rng,
        &ark.key,
        &ark.name,
        &subject,
        spki,
        serial,
        (SIM_NOT_BEFORE, SIM_NOT_AFTER),
        Vec::new(),
    )?;
    Ok(SimCa { key, cert_der, name: subject })
}

/// Assembles and signs a certificate with RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48.
#[allow(clippy::too_many_arguments)] // reason: one call site per certificate kind; a struct would only rename them
fn sign_cert(
    rng: &mut impl CryptoRngCore,
    issuer_key: &rsa::RsaPrivateKey,
    issuer: &Name,
    subject: &Name,
    spki: SubjectPublicKeyInfoOwned,
    serial: u8,
    (not_before, not_after): (i64, i64),
    extensions: Vec<Extension>,
) -> Result<Vec<u8>, SimSnpError> {
    let enc = |_| SimSnpError::Encoding("certificate");
    let algorithm = pss_algorithm(issuer_key)?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).map_err(enc)?,
        signature: algorithm.clone(),
        issuer: issuer.clone(),
        validity: Validity { not_before: x509_time(not_before)?, not_after: x509_time(not_after)? },
        subject: subject.clone(),
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: (!extensions.is_empty()).then_some(extensions),
    };
    let signature = pss_sign(rng, issuer_key, &tbs.to_der().map_err(enc)?)?;
    let cert = X509Certificate { tbs_certificate: tbs, signature_algorithm: algorithm, signature };
    cert.to_der().map_err(enc)
}

fn pss_signer(key: &rsa::RsaPrivateKey) -> rsa::pss::SigningKey<Sha384> {
    rsa::pss::SigningKey::<Sha384>::new_with_salt_len(key.clone(), 48)
}

/// The AlgorithmIdentifier of RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48.
fn pss_algorithm(key: &rsa::RsaPrivateKey) -> Result<spki::AlgorithmIdentifierOwned, SimSnpError> {
    pss_signer(key)
        .signature_algorithm_identifier()
        .map_err(|_| SimSnpError::Encoding("PSS parameters"))
}

/// RSASSA-PSS SHA-384 (salt 48) over `tbs_der`, as the BIT STRING of a certificate or CRL.
fn pss_sign(
    rng: &mut impl CryptoRngCore,
    key: &rsa::RsaPrivateKey,
    tbs_der: &[u8],
) -> Result<BitString, SimSnpError> {
    let sig = pss_signer(key).sign_with_rng(rng, tbs_der);
    BitString::from_bytes(&sig.to_bytes()).map_err(|_| SimSnpError::Encoding("signature"))
}

fn load_ca(
    get: &impl Fn(&str) -> Option<Vec<u8>>,
    cert_file: &'static str,
    key_file: &'static str,
) -> Result<SimCa, SimSnpError> {
    let pem = get(cert_file).ok_or(SimSnpError::MissingFile(cert_file))?;
    let der = match pem_certificates(cert_file, &pem)
        .map_err(|_| SimSnpError::BadFile(cert_file))?
        .as_slice()
    {
        [one] => one.clone(),
        _ => return Err(SimSnpError::BadFile(cert_file)),
    };
    let cert =
        Certificate::from_der(cert_file, &der).map_err(|_| SimSnpError::BadFile(cert_file))?;
    let key_pem = get(key_file).ok_or(SimSnpError::MissingFile(key_file))?;
    let key_text = zeroize::Zeroizing::new(
        String::from_utf8(key_pem).map_err(|_| SimSnpError::BadFile(key_file))?,
    );
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&key_text)
        .map_err(|_| SimSnpError::BadFile(key_file))?;
    let public =
        key.to_public_key().to_public_key_der().map_err(|_| SimSnpError::BadFile(key_file))?;
    if PublicKey::from_spki_der(key_file, public.as_bytes()).ok().as_ref()
        != Some(cert.public_key())
    {
        return Err(SimSnpError::KeyMismatch(key_file));
    }
    let name = Name::from_der(cert.subject_der()).map_err(|_| SimSnpError::BadFile(cert_file))?;
    Ok(SimCa { key, cert_der: der, name })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: a test fails loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn cert_times_switch_to_generalized_in_2050() {
        assert!(matches!(x509_time(SIM_NOT_BEFORE).unwrap(), Time::UtcTime(_)));
        assert!(matches!(x509_time(SIM_NOT_AFTER).unwrap(), Time::GeneralTime(_)));
    }

    #[test]
    fn le72_reverses_into_the_low_bytes() {
        let mut be = [0u8; 48];
        be[0] = 0xAA;
        be[47] = 0x01;
        let le = le72(&be);
        assert_eq!((le[0], le[47], le[48]), (0x01, 0xAA, 0));
    }
}
