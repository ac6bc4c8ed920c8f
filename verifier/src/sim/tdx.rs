//! The TDX simulator: a simulation Intel PKI ([`SimIntelPki`]: root CA, PCK platform CA, PCK
//! leaf with the SGX extension, TCB signing certificate), collateral signed by it (TCB info,
//! QE identity, CRLs) and quotes minted in the real binary format ([`SimTdxQuote`]). Everything
//! minted here goes through the same parser, chain, signature and TCB code as real quotes;
//! only the pinned root differs, and [`SimIntelPki::anchors`] marks it simulated.
//!
//! The sim platform: FMSPC `50806f000000`, PCE-ID `0000`, PCESVN 11, SGX TCB components
//! `03 03 02 02 04 01 00 05 00..`. The sim TCB info has, highest first: an `UpToDate` level
//! (those SGX components, TDX component 2 >= 3), an `OutOfDate` level ([`SIM_ADVISORY_OUT_OF_DATE`];
//! TDX component 2 >= 2) and a `Revoked` level (TDX component 2 >= 1); so `TEE_TCB_SVN`
//! `06 01 03 ..` is up to date, `06 01 02 ..` out of date, `06 01 01 ..` revoked and
//! `06 01 00 ..` matches no level. Module identity `TDX_01`: ISVSVN >= 6 up to date, >= 4 out of
//! date ([`SIM_ADVISORY_MODULE`]). QE identity: ISVSVN >= 4 up to date, >= 2 out of date.

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use der::asn1::{BitString, GeneralizedTime, OctetStringRef, UtcTime};
use der::pem::LineEnding;
use der::{Decode, Encode};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use crate::claims::TdxBody;
use crate::sim::{ecdsa_key_pair, ecdsa_sign};
use crate::tdx::quote::{encode_report_body, encode_td_report, SgxReportBody, TdReport};
use crate::tdx::{SgxExtensions, TdxCollateral, TdxTrustAnchors};
use crate::x509::Certificate;
use crate::Now;

/// Advisory ID of the sim TCB info's `OutOfDate` platform level.
pub const SIM_ADVISORY_OUT_OF_DATE: &str = "SIM-SA-00001";
/// Advisory ID of the sim TDX module identity's `OutOfDate` level.
pub const SIM_ADVISORY_MODULE: &str = "SIM-SA-00002";
/// Advisory ID of the sim QE identity's `OutOfDate` level.
pub const SIM_ADVISORY_QE: &str = "SIM-SA-00003";
/// MRSIGNER of the sim TD quoting enclave.
pub const SIM_QE_MRSIGNER: [u8; 32] = [0x5a; 32];

const SIM_FMSPC: [u8; 6] = [0x50, 0x80, 0x6f, 0x00, 0x00, 0x00];
const SIM_SGX_COMPONENTS: [u8; 16] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
const SIM_PCE_SVN: u16 = 11;
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Certificates of the sim PKI are valid 2020-01-01 .. 2049-12-31.
const CERT_NOT_BEFORE: u64 = 1_577_836_800;
const CERT_NOT_AFTER: u64 = 2_524_607_999;

/// A simulator failure (building or loading the sim PKI, or an impossible quote spec).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error("building {0} failed")]
    Build(&'static str),
    #[error("sim PKI file {0} is missing or malformed")]
    File(&'static str),
    #[error("invalid sim quote spec: {0}")]
    Spec(&'static str),
}

/// The simulation Intel PKI. Its private keys are simulation keys: they sign only simulated
/// evidence, which a broker accepts only when configured to.
pub struct SimIntelPki {
    root: Issued,
    pck_ca: Issued,
    pck: Issued,
    tcb_signer: Issued,
    platform: SgxExtensions,
}

/// A key and the certificate for it. `SigningKey` zeroizes itself on drop; `pair` is the same
/// key as aws-lc-rs holds it, for the raw signatures minted per quote and per collateral.
struct Issued {
    key: SigningKey,
    pair: EcdsaKeyPair,
    cert: Certificate,
    name: Name,
}

impl Issued {
    fn new(key: SigningKey, cert: Certificate, name: Name) -> Result<Self, SimError> {
        let der = key.to_pkcs8_der().map_err(|_| SimError::Build("PKCS#8 key"))?;
        let pair = ecdsa_key_pair(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes())
            .ok_or(SimError::Build("PKCS#8 key"))?;
        Ok(Self { key, pair, cert, name })
    }

    /// A raw `r || s` signature over `message`.
    fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>, SimError> {
        ecdsa_sign(&self.pair, message).ok_or(SimError::Build("signature"))
    }
}

impl std::fmt::Debug for SimIntelPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimIntelPki")
            .field("root_sha256", &hex::encode(self.root.cert.sha256()))
            .finish_non_exhaustive()
    }
}

/// What to put in a sim collateral.
#[derive(Debug, Clone)]
pub struct SimCollateralSpec {
    /// TCB info and QE identity `issueDate`, and the CRLs' `thisUpdate`.
    pub issue_date: Now,
    /// TCB info and QE identity `nextUpdate`, and the CRLs' `nextUpdate`.
    pub next_update: Now,
    /// Serial numbers (DER INTEGER content bytes) the PCK CA's CRL revokes.
    pub revoked_pck_serials: Vec<Vec<u8>>,
}

/// A quote to mint. `Default` is a v4 TDX 1.0 quote of a non-debug TD on an up-to-date TCB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTdxQuote {
    /// 4 or 5.
    pub version: u16,
    /// TDX 1.0 (v4 or v5) or TDX 1.5 (v5 only).
    pub body: TdxBody,
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    /// `TD_ATTRIBUTES` as they appear in the quote (little-endian); default `SEPT_VE_DISABLE`.
    pub td_attributes: [u8; 8],
    /// Sets TUD.DEBUG (bit 0) on top of `td_attributes`.
    pub debug: bool,
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TDX 1.5 only.
    pub tee_tcb_svn2: [u8; 16],
    /// TDX 1.5 only.
    pub mr_service_td: [u8; 48],
    /// The QE's ISVSVN (sim QE identity: 4 up to date, 2 out of date).
    pub qe_isv_svn: u16,
    /// Overrides the QE report's `REPORT_DATA`; `None` binds the attestation key as a real QE
    /// does. For negative tests.
    pub qe_report_data: Option<[u8; 64]>,
}

impl Default for SimTdxQuote {
    fn default() -> Self {
        Self {
            version: 4,
            body: TdxBody::Tdx10,
            tee_tcb_svn: [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            mr_seam: [0x11; 48],
            mr_signer_seam: [0; 48],
            seam_attributes: [0; 8],
            td_attributes: 0x1000_0000u64.to_le_bytes(),
            debug: false,
            xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
            mr_td: [0x22; 48],
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            rtmr: [[0x31; 48], [0x32; 48], [0x33; 48], [0; 48]],
            report_data: [0; 64],
            tee_tcb_svn2: [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            mr_service_td: [0; 48],
            qe_isv_svn: 4,
            qe_report_data: None,
        }
    }
}

const FILES: [&str; 8] = [
    "intel-root-ca.pem",
    "intel-root-ca.key.pem",
    "intel-pck-ca.pem",
    "intel-pck-ca.key.pem",
    "intel-pck.pem",
    "intel-pck.key.pem",
    "intel-tcb-signing.pem",
    "intel-tcb-signing.key.pem",
];

impl SimIntelPki {
    /// Generates a fresh sim PKI.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Result<Self, SimError> {
        let root_key = SigningKey::random(rng);
        let root_name = name("CN=Keylatch Sim Intel SGX Root CA,O=Keylatch Simulation")?;
        let root = issue(Profile::Root, &root_name, &root_key, &root_key, rng, None)?;

        let ca_key = SigningKey::random(rng);
        let ca_name = name("CN=Keylatch Sim Intel SGX PCK Platform CA,O=Keylatch Simulation")?;
        let ca_profile = Profile::SubCA { issuer: root_name.clone(), path_len_constraint: Some(0) };
        let pck_ca = issue(ca_profile, &ca_name, &ca_key, &root_key, rng, None)?;

        let mut ppid = [0u8; 16];
        rng.fill_bytes(&mut ppid);
        let mut instance = [0u8; 16];
        rng.fill_bytes(&mut instance);
        let platform = SgxExtensions {
            ppid,
            tcb_components: SIM_SGX_COMPONENTS,
            pce_svn: SIM_PCE_SVN,
            cpu_svn: SIM_SGX_COMPONENTS,
            pce_id: [0, 0],
            fmspc: SIM_FMSPC,
            sgx_type: 1,
            platform_instance_id: Some(instance),
            configuration: Some([Some(false), Some(false), Some(true)]),
        };
        let pck_key = SigningKey::random(rng);
        let pck_name = name("CN=Keylatch Sim Intel SGX PCK Certificate,O=Keylatch Simulation")?;
        let leaf = |issuer: &Name| Profile::Leaf {
            issuer: issuer.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        };
        let ext = SgxExt(encode_sgx_extension(&platform)?);
        let pck = issue(leaf(&ca_name), &pck_name, &pck_key, &ca_key, rng, Some(&ext))?;

        let tcb_key = SigningKey::random(rng);
        let tcb_name = name("CN=Keylatch Sim Intel SGX TCB Signing,O=Keylatch Simulation")?;
        let tcb_signer = issue(leaf(&root_name), &tcb_name, &tcb_key, &root_key, rng, None)?;

        Ok(Self {
            root: Issued::new(root_key, root, root_name)?,
            pck_ca: Issued::new(ca_key, pck_ca, ca_name)?,
            pck: Issued::new(pck_key, pck, pck_name)?,
            tcb_signer: Issued::new(tcb_key, tcb_signer, tcb_name)?,
            platform,
        })
    }

    /// The PKI as files: PEM certificates and PKCS#8 PEM keys, names prefixed `intel-`.
    #[must_use]
    pub fn to_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (stem, issued) in self.parts() {
            out.push((format!("{stem}.pem"), cert_pem(&issued.cert).into_bytes()));
            let key = issued
                .key
                .to_pkcs8_pem(LineEnding::LF)
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default();
            out.push((format!("{stem}.key.pem"), key));
        }
        out
    }

    /// Loads a PKI written by [`SimIntelPki::to_files`]; `get` returns a file's bytes by name.
    /// Each key must match its certificate and each certificate must be issued by its parent.
    pub fn from_files(get: impl Fn(&str) -> Option<Vec<u8>>) -> Result<Self, SimError> {
        let load = |i: usize| -> Result<Issued, SimError> {
            let (Some(cert_file), Some(key_file)) = (FILES.get(i * 2), FILES.get(i * 2 + 1)) else {
                return Err(SimError::File("intel-*"));
            };
            let (cert_file, key_file) = (*cert_file, *key_file);
            let cert_bytes = get(cert_file).ok_or(SimError::File(cert_file))?;
            let cert = Certificate::from_pem_or_der("sim certificate", &cert_bytes)
                .map_err(|_| SimError::File(cert_file))?;
            let key_bytes = zeroize::Zeroizing::new(get(key_file).ok_or(SimError::File(key_file))?);
            let key_text = std::str::from_utf8(&key_bytes).map_err(|_| SimError::File(key_file))?;
            let key = SigningKey::from_pkcs8_pem(key_text).map_err(|_| SimError::File(key_file))?;
            let public = key.verifying_key().to_encoded_point(false);
            let public = crate::x509::PublicKey::p256_from_sec1(key_file, public.as_bytes());
            if public.ok().as_ref() != Some(cert.public_key()) {
                return Err(SimError::File(key_file));
            }
            let name = Name::from_der(cert.subject_der()).map_err(|_| SimError::File(cert_file))?;
            Issued::new(key, cert, name)
        };
        let (root, pck_ca, pck, tcb_signer) = (load(0)?, load(1)?, load(2)?, load(3)?);
        let chained = root.cert.verify_self_signed("sim root").is_ok()
            && pck_ca.cert.verify_issued_by("sim PCK CA", &root.cert).is_ok()
            && pck.cert.verify_issued_by("sim PCK", &pck_ca.cert).is_ok()
            && tcb_signer.cert.verify_issued_by("sim TCB signer", &root.cert).is_ok();
        if !chained {
            return Err(SimError::File("intel-*.pem (chain)"));
        }
        let platform = pck
            .cert
            .extension(&crate::tdx::pck_sgx_extension_oid())
            .and_then(|e| SgxExtensions::from_der(e).ok())
            .ok_or(SimError::File("intel-pck.pem"))?;
        Ok(Self { root, pck_ca, pck, tcb_signer, platform })
    }

    /// Trust anchors pinning this PKI's root, marked simulated.
    #[must_use]
    pub fn anchors(&self) -> TdxTrustAnchors {
        TdxTrustAnchors::simulated(*self.root.cert.sha256())
    }

    /// The PCK certificate's serial number (DER INTEGER content bytes), to revoke it.
    #[must_use]
    pub fn pck_serial(&self) -> Vec<u8> {
        self.pck.cert.serial().to_vec()
    }

    /// The sim platform's SGX extension (as in its PCK certificate).
    #[must_use]
    pub fn platform(&self) -> &SgxExtensions {
        &self.platform
    }

    /// Collateral valid from `issue_date` to `next_update`, revoking nothing.
    pub fn collateral(&self, issue_date: Now, next_update: Now) -> Result<TdxCollateral, SimError> {
        self.collateral_with(&SimCollateralSpec {
            issue_date,
            next_update,
            revoked_pck_serials: Vec::new(),
        })
    }

    /// Collateral as `spec` says: signed TCB info (see the module docs for its levels), signed
    /// QE identity, root CA CRL and PCK CA CRL.
    pub fn collateral_with(&self, spec: &SimCollateralSpec) -> Result<TdxCollateral, SimError> {
        let issue = rfc3339(spec.issue_date)?;
        let next = rfc3339(spec.next_update)?;
        let tcb_info = self.tcb_info_json(&issue, &next);
        let qe_identity = qe_identity_json(&issue, &next);
        let (from, to) = (spec.issue_date.unix_timestamp(), spec.next_update.unix_timestamp());
        let root_crl = crl(&self.root, from, to, &[])?;
        let pck_crl = crl(&self.pck_ca, from, to, &spec.revoked_pck_serials)?;
        let signer_chain =
            format!("{}{}", cert_pem(&self.tcb_signer.cert), cert_pem(&self.root.cert));
        Ok(TdxCollateral::new(
            format!("{}{}", cert_pem(&self.pck_ca.cert), cert_pem(&self.root.cert)),
            root_crl,
            pck_crl,
            signer_chain.clone(),
            tcb_info.clone(),
            self.tcb_signer.sign_raw(tcb_info.as_bytes())?,
            signer_chain,
            qe_identity.clone(),
            self.tcb_signer.sign_raw(qe_identity.as_bytes())?,
            None,
        ))
    }

    /// Mints a quote in the real format: a fresh attestation key signs header and body; the sim
    /// QE report binds that key and is signed by the PCK key; the PCK chain rides in
    /// certification data type 5. The attestation key comes from aws-lc-rs's RNG; `_rng` stays
    /// so both simulators mint alike.
    pub fn mint(
        &self,
        spec: &SimTdxQuote,
        _rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, SimError> {
        if spec.version != 4 && spec.version != 5 {
            return Err(SimError::Spec("version must be 4 or 5"));
        }
        if spec.version == 4 && spec.body == TdxBody::Tdx15 {
            return Err(SimError::Spec("a v4 quote carries a TDX 1.0 body only"));
        }
        let mut td_attributes = spec.td_attributes;
        if spec.debug {
            td_attributes[0] |= 1;
        }
        let tdx15 = spec.body == TdxBody::Tdx15;
        let body = encode_td_report(&TdReport {
            body: spec.body,
            tee_tcb_svn: spec.tee_tcb_svn,
            mr_seam: spec.mr_seam,
            mr_signer_seam: spec.mr_signer_seam,
            seam_attributes: spec.seam_attributes,
            td_attributes,
            xfam: spec.xfam,
            mr_td: spec.mr_td,
            mr_config_id: spec.mr_config_id,
            mr_owner: spec.mr_owner,
            mr_owner_config: spec.mr_owner_config,
            rtmr: spec.rtmr,
            report_data: spec.report_data,
            tee_tcb_svn2: tdx15.then_some(spec.tee_tcb_svn2),
            mr_service_td: tdx15.then_some(spec.mr_service_td),
        });

        let mut quote = Vec::with_capacity(5000);
        quote.extend_from_slice(&spec.version.to_le_bytes());
        quote.extend_from_slice(&2u16.to_le_bytes());
        quote.extend_from_slice(&0x81u32.to_le_bytes());
        quote.extend_from_slice(&[0; 4]);
        quote.extend_from_slice(&INTEL_QE_VENDOR_ID);
        quote.extend_from_slice(&[0; 20]);
        if spec.version == 5 {
            quote.extend_from_slice(&(if tdx15 { 3u16 } else { 2u16 }).to_le_bytes());
            quote.extend_from_slice(&len_u32(body.len())?.to_le_bytes());
        }
        quote.extend_from_slice(&body);

        let att_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| SimError::Build("attestation key"))?;
        let quote_sig = ecdsa_sign(&att_key, &quote).ok_or(SimError::Build("quote signature"))?;
        let att_pub =
            att_key.public_key().as_ref().get(1..).ok_or(SimError::Build("attestation key"))?;

        let auth_data: Vec<u8> = (0u8..32).collect();
        let mut bind = [0u8; 64];
        let digest = Sha256::new().chain_update(att_pub).chain_update(&auth_data).finalize();
        bind[..32].copy_from_slice(&digest);
        let mut qe_attributes = [0u8; 16];
        qe_attributes[0] = 0x11;
        let qe_report = encode_report_body(&SgxReportBody {
            cpu_svn: self.platform.cpu_svn,
            misc_select: 0,
            isv_ext_prod_id: [0; 16],
            attributes: qe_attributes,
            mr_enclave: [0x7e; 32],
            mr_signer: SIM_QE_MRSIGNER,
            config_id: [0; 64],
            isv_prod_id: 2,
            isv_svn: spec.qe_isv_svn,
            config_svn: 0,
            isv_family_id: [0; 16],
            report_data: spec.qe_report_data.unwrap_or(bind),
        });
        let qe_sig = self.pck.sign_raw(&qe_report)?;

        let mut chain = String::new();
        for c in [&self.pck.cert, &self.pck_ca.cert, &self.root.cert] {
            chain.push_str(&cert_pem(c));
        }
        let mut chain = chain.into_bytes();
        chain.push(0);

        let mut cert_data = Vec::new();
        cert_data.extend_from_slice(&qe_report);
        cert_data.extend_from_slice(&qe_sig);
        cert_data.extend_from_slice(&len_u16(auth_data.len())?.to_le_bytes());
        cert_data.extend_from_slice(&auth_data);
        cert_data.extend_from_slice(&5u16.to_le_bytes());
        cert_data.extend_from_slice(&len_u32(chain.len())?.to_le_bytes());
        cert_data.extend_from_slice(&chain);

        let mut sig_data = Vec::new();
        sig_data.extend_from_slice(&quote_sig);
        sig_data.extend_from_slice(att_pub);
        sig_data.extend_from_slice(&6u16.to_le_bytes());
        sig_data.extend_from_slice(&len_u32(cert_data.len())?.to_le_bytes());
        sig_data.extend_from_slice(&cert_data);

        quote.extend_from_slice(&len_u32(sig_data.len())?.to_le_bytes());
        quote.extend_from_slice(&sig_data);
        Ok(quote)
    }

    fn parts(&self) -> [(&'static str, &Issued); 4] {
        [
            ("intel-root-ca", &self.root),
            ("intel-pck-ca", &self.pck_ca),
            ("intel-pck", &self.pck),
            ("intel-tcb-signing", &self.tcb_signer),
        ]
    }

    fn tcb_info_json(&self, issue: &str, next: &str) -> String {
        let comps = |svns: &[u8; 16]| -> Vec<serde_json::Value> {
            svns.iter().map(|s| serde_json::json!({ "svn": s })).collect()
        };
        let tdx = |c2: u8| {
            let mut t = [0u8; 16];
            t[2] = c2;
            comps(&t)
        };
        let lower = {
            let mut s = self.platform.tcb_components;
            s[7] = s[7].saturating_sub(1);
            s
        };
        let zero48 = "00".repeat(48);
        serde_json::json!({
            "id": "TDX",
            "version": 3,
            "issueDate": issue,
            "nextUpdate": next,
            "fmspc": hex::encode_upper(self.platform.fmspc),
            "pceId": hex::encode_upper(self.platform.pce_id),
            "tcbType": 0,
            "tcbEvaluationDataNumber": 1,
            "tdxModule": { "mrsigner": zero48, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF" },
            "tdxModuleIdentities": [{
                "id": "TDX_01",
                "mrsigner": zero48,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
                "tcbLevels": [
                    { "tcb": { "isvsvn": 6 }, "tcbDate": "2024-11-13T00:00:00Z", "tcbStatus": "UpToDate" },
                    { "tcb": { "isvsvn": 4 }, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "OutOfDate",
                      "advisoryIDs": [SIM_ADVISORY_MODULE] }
                ]
            }],
            "tcbLevels": [
                { "tcb": { "sgxtcbcomponents": comps(&self.platform.tcb_components), "pcesvn": self.platform.pce_svn, "tdxtcbcomponents": tdx(3) },
                  "tcbDate": "2024-11-13T00:00:00Z", "tcbStatus": "UpToDate" },
                { "tcb": { "sgxtcbcomponents": comps(&lower), "pcesvn": self.platform.pce_svn.saturating_sub(1), "tdxtcbcomponents": tdx(2) },
                  "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "OutOfDate", "advisoryIDs": [SIM_ADVISORY_OUT_OF_DATE] },
                { "tcb": { "sgxtcbcomponents": comps(&[0; 16]), "pcesvn": 0, "tdxtcbcomponents": tdx(1) },
                  "tcbDate": "2018-01-04T00:00:00Z", "tcbStatus": "Revoked", "advisoryIDs": ["SIM-SA-00000"] }
            ]
        })
        .to_string()
    }
}

fn qe_identity_json(issue: &str, next: &str) -> String {
    serde_json::json!({
        "id": "TD_QE",
        "version": 2,
        "issueDate": issue,
        "nextUpdate": next,
        "tcbEvaluationDataNumber": 1,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": hex::encode_upper(SIM_QE_MRSIGNER),
        "isvprodid": 2,
        "tcbLevels": [
            { "tcb": { "isvsvn": 4 }, "tcbDate": "2024-11-13T00:00:00Z", "tcbStatus": "UpToDate" },
            { "tcb": { "isvsvn": 2 }, "tcbDate": "2023-08-09T00:00:00Z", "tcbStatus": "OutOfDate",
              "advisoryIDs": [SIM_ADVISORY_QE] }
        ]
    })
    .to_string()
}

fn len_u32(n: usize) -> Result<u32, SimError> {
    u32::try_from(n).map_err(|_| SimError::Build("length field"))
}

fn len_u16(n: usize) -> Result<u16, SimError> {
    u16::try_from(n).map_err(|_| SimError::Build("length field"))
}

fn name(s: &str) -> Result<Name, SimError> {
    s.parse().map_err(|_| SimError::Build("certificate name"))
}

fn rfc3339(t: Now) -> Result<String, SimError> {
    t.replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .ok_or(SimError::Build("collateral date"))
}

fn x509_time(unix: u64) -> Result<Time, SimError> {
    let d = std::time::Duration::from_secs(unix);
    let bad = |_| SimError::Build("certificate time");
    // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
    if unix < 2_524_608_000 {
        Ok(Time::UtcTime(UtcTime::from_unix_duration(d).map_err(bad)?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_unix_duration(d).map_err(bad)?))
    }
}

fn unix(t: i64) -> Result<u64, SimError> {
    u64::try_from(t).map_err(|_| SimError::Build("time before 1970"))
}

fn cert_pem(c: &Certificate) -> String {
    der::pem::encode_string("CERTIFICATE", LineEnding::LF, c.der()).unwrap_or_default()
}

fn random_serial(rng: &mut impl CryptoRngCore) -> Result<SerialNumber, SimError> {
    let mut s = [0u8; 16];
    rng.fill_bytes(&mut s);
    s[0] = (s[0] & 0x7f) | 0x01; // positive, no leading zero byte
    SerialNumber::new(&s).map_err(|_| SimError::Build("serial number"))
}

/// The Intel SGX extension as a builder extension.
struct SgxExt(Vec<u8>);

impl const_oid::AssociatedOid for SgxExt {
    const OID: const_oid::ObjectIdentifier = crate::tdx::pck_sgx_extension_oid();
}

impl Encode for SgxExt {
    fn encoded_len(&self) -> der::Result<der::Length> {
        der::Length::try_from(self.0.len())
    }

    fn encode(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        writer.write(&self.0)
    }
}

impl x509_cert::ext::AsExtension for SgxExt {
    fn critical(&self, _: &Name, _: &[x509_cert::ext::Extension]) -> bool {
        false
    }
}

fn issue(
    profile: Profile,
    subject: &Name,
    subject_key: &SigningKey,
    issuer_key: &SigningKey,
    rng: &mut impl CryptoRngCore,
    sgx: Option<&SgxExt>,
) -> Result<Certificate, SimError> {
    let what = "sim certificate";
    let spki = SubjectPublicKeyInfoOwned::from_key(*subject_key.verifying_key())
        .map_err(|_| SimError::Build(what))?;
    let validity =
        Validity { not_before: x509_time(CERT_NOT_BEFORE)?, not_after: x509_time(CERT_NOT_AFTER)? };
    let mut b = CertificateBuilder::new(
        profile,
        random_serial(rng)?,
        validity,
        subject.clone(),
        spki,
        issuer_key,
    )
    .map_err(|_| SimError::Build(what))?;
    if let Some(ext) = sgx {
        b.add_extension(ext).map_err(|_| SimError::Build(what))?;
    }
    let cert = b.build::<DerSignature>().map_err(|_| SimError::Build(what))?;
    let der = cert.to_der().map_err(|_| SimError::Build(what))?;
    Certificate::from_der(what, &der).map_err(|_| SimError::Build(what))
}

fn crl(issuer: &Issued, from: i64, to: i64, revoked: &[Vec<u8>]) -> Result<Vec<u8>, SimError> {
    let what = "sim CRL";
    let algorithm = AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
        parameters: None,
    };
    let this_update = x509_time(unix(from)?)?;
    let revoked_certificates = revoked
        .iter()
        .map(|s| {
            Ok(RevokedCert {
                serial_number: SerialNumber::new(s).map_err(|_| SimError::Build(what))?,
                revocation_date: this_update,
                crl_entry_extensions: None,
            })
        })
        .collect::<Result<Vec<_>, SimError>>()?;
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: algorithm.clone(),
        issuer: issuer.name.clone(),
        this_update,
        next_update: Some(x509_time(unix(to)?)?),
        revoked_certificates: (!revoked_certificates.is_empty()).then_some(revoked_certificates),
        crl_extensions: None,
    };
    let tbs_der = tbs.to_der().map_err(|_| SimError::Build(what))?;
    let sig: DerSignature = signature::Signer::sign(&issuer.key, &tbs_der);
    let list = CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(sig.as_bytes()).map_err(|_| SimError::Build(what))?,
    };
    list.to_der().map_err(|_| SimError::Build(what))
}

/// DER of the SGX extension value for `p`.
fn encode_sgx_extension(p: &SgxExtensions) -> Result<Vec<u8>, SimError> {
    let bad = |_| SimError::Build("SGX extension");
    let base = crate::tdx::pck_sgx_extension_oid();
    let oid = |parent: const_oid::ObjectIdentifier, arc: u32| -> Result<Vec<u8>, SimError> {
        parent
            .push_arc(arc)
            .map_err(|_| SimError::Build("SGX extension OID"))?
            .to_der()
            .map_err(bad)
    };
    let octets = |b: &[u8]| -> Result<Vec<u8>, SimError> {
        OctetStringRef::new(b).map_err(bad)?.to_der().map_err(bad)
    };
    let entry = |oid: Vec<u8>, value: Vec<u8>| -> Result<Vec<u8>, SimError> {
        Ok(tlv(0x30, &[oid, value].concat()))
    };
    let tcb_oid = base.push_arc(2).map_err(|_| SimError::Build("SGX extension OID"))?;
    let mut tcb = Vec::new();
    for (k, svn) in (1u32..).zip(p.tcb_components) {
        tcb.extend(entry(oid(tcb_oid, k)?, svn.to_der().map_err(bad)?)?);
    }
    tcb.extend(entry(oid(tcb_oid, 17)?, p.pce_svn.to_der().map_err(bad)?)?);
    tcb.extend(entry(oid(tcb_oid, 18)?, octets(&p.cpu_svn)?)?);

    let mut body = Vec::new();
    body.extend(entry(oid(base, 1)?, octets(&p.ppid)?)?);
    body.extend(entry(oid(base, 2)?, tlv(0x30, &tcb))?);
    body.extend(entry(oid(base, 3)?, octets(&p.pce_id)?)?);
    body.extend(entry(oid(base, 4)?, octets(&p.fmspc)?)?);
    body.extend(entry(oid(base, 5)?, tlv(0x0a, &[p.sgx_type]))?);
    if let Some(id) = &p.platform_instance_id {
        body.extend(entry(oid(base, 6)?, octets(id)?)?);
    }
    if let Some(config) = &p.configuration {
        let config_oid = base.push_arc(7).map_err(|_| SimError::Build("SGX extension OID"))?;
        let mut c = Vec::new();
        for (k, v) in (1u32..).zip(config) {
            if let Some(v) = v {
                c.extend(entry(oid(config_oid, k)?, v.to_der().map_err(bad)?)?);
            }
        }
        body.extend(entry(oid(base, 7)?, tlv(0x30, &c))?);
    }
    Ok(tlv(0x30, &body))
}

/// A DER tag-length-value with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}
