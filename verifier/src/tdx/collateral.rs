//! TDX collateral: the JSON document the broker stores ([`TdxCollateral`], the layout of
//! dcap-qvl's `QuoteCollateralV3`), the signed TCB info and QE identity it carries decoded into
//! typed values, and the collateral step: issuer chains to the pinned root, root and PCK CRLs,
//! signatures over the exact signed JSON text, and validity at `now`. The same layout and step
//! serve SGX quotes ([`crate::sgx`]): their collateral differs only in the TCB info and QE
//! identity ids ("SGX", "QE"), which [`VerifiedCollateral::require`] checks per quote.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::anchors::TdxTrustAnchors;
use super::fields::{hex_array, parse_date, parse_status};
use super::tcb::{IntelTee, QeLevel, TcbInfo};
use crate::claims::TcbStatus;
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::{self, Certificate, Crl, KeyKind, PublicKey};

/// Collateral for TDX quotes from one platform family (FMSPC): Intel's signed TCB info and QE
/// identity with their issuer chains, and the root CA and PCK CA CRLs. Immutable once parsed;
/// [`TdxCollateral::digest`] identifies its exact content (the verifier's cache key).
#[derive(Clone, PartialEq, Eq)]
pub struct TdxCollateral {
    pub(crate) pck_crl_issuer_chain: String,
    pub(crate) root_ca_crl: Vec<u8>,
    pub(crate) pck_crl: Vec<u8>,
    pub(crate) tcb_info_issuer_chain: String,
    pub(crate) tcb_info: String,
    pub(crate) tcb_info_signature: Vec<u8>,
    pub(crate) qe_identity_issuer_chain: String,
    pub(crate) qe_identity: String,
    pub(crate) qe_identity_signature: Vec<u8>,
    /// Carried through for layout compatibility; never read. The PCK chain always comes from the
    /// quote's certification data (type 5).
    pub(crate) pck_certificate_chain: Option<String>,
    digest: [u8; 32],
}

impl std::fmt::Debug for TdxCollateral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdxCollateral")
            .field("digest", &hex::encode(self.digest))
            .finish_non_exhaustive()
    }
}

/// The JSON layout: strings for PEM chains and signed JSON text, lowercase hex for DER CRLs
/// and raw signatures.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollateralJson {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pck_certificate_chain: Option<String>,
}

impl TdxCollateral {
    /// Parses the collateral JSON. Failures are [`Step::Collateral`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, VerifyError> {
        let malformed = |what| VerifyError::new(Step::Collateral, Reason::Malformed { what });
        let j: CollateralJson =
            serde_json::from_slice(bytes).map_err(|_| malformed("TDX collateral JSON"))?;
        let hex = |s: &str, what| hex::decode(s).map_err(|_| malformed(what));
        Ok(Self::new(
            j.pck_crl_issuer_chain,
            hex(&j.root_ca_crl, "root CA CRL hex")?,
            hex(&j.pck_crl, "PCK CRL hex")?,
            j.tcb_info_issuer_chain,
            j.tcb_info,
            hex(&j.tcb_info_signature, "TCB info signature hex")?,
            j.qe_identity_issuer_chain,
            j.qe_identity,
            hex(&j.qe_identity_signature, "QE identity signature hex")?,
            j.pck_certificate_chain,
        ))
    }

    /// The same JSON layout [`TdxCollateral::from_json`] reads.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        let j = CollateralJson {
            pck_crl_issuer_chain: self.pck_crl_issuer_chain.clone(),
            root_ca_crl: hex::encode(&self.root_ca_crl),
            pck_crl: hex::encode(&self.pck_crl),
            tcb_info_issuer_chain: self.tcb_info_issuer_chain.clone(),
            tcb_info: self.tcb_info.clone(),
            tcb_info_signature: hex::encode(&self.tcb_info_signature),
            qe_identity_issuer_chain: self.qe_identity_issuer_chain.clone(),
            qe_identity: self.qe_identity.clone(),
            qe_identity_signature: hex::encode(&self.qe_identity_signature),
            pck_certificate_chain: self.pck_certificate_chain.clone(),
        };
        // Serializing a struct of strings cannot fail; an empty document would fail to parse.
        serde_json::to_vec_pretty(&j).unwrap_or_default()
    }

    /// SHA-256 over every field (length-prefixed): two collaterals with equal digests are
    /// byte-for-byte the same collateral.
    #[must_use]
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The signed TCB info JSON text, exactly as signed.
    #[must_use]
    pub fn tcb_info_json(&self) -> &str {
        &self.tcb_info
    }

    /// The signed QE identity JSON text, exactly as signed.
    #[must_use]
    pub fn qe_identity_json(&self) -> &str {
        &self.qe_identity
    }

    #[allow(clippy::too_many_arguments)] // reason: one argument per collateral item, all named
    pub(crate) fn new(
        pck_crl_issuer_chain: String,
        root_ca_crl: Vec<u8>,
        pck_crl: Vec<u8>,
        tcb_info_issuer_chain: String,
        tcb_info: String,
        tcb_info_signature: Vec<u8>,
        qe_identity_issuer_chain: String,
        qe_identity: String,
        qe_identity_signature: Vec<u8>,
        pck_certificate_chain: Option<String>,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"keylatch tdx collateral v1");
        let fields: [&[u8]; 10] = [
            pck_crl_issuer_chain.as_bytes(),
            &root_ca_crl,
            &pck_crl,
            tcb_info_issuer_chain.as_bytes(),
            tcb_info.as_bytes(),
            &tcb_info_signature,
            qe_identity_issuer_chain.as_bytes(),
            qe_identity.as_bytes(),
            &qe_identity_signature,
            pck_certificate_chain.as_deref().unwrap_or("\u{0}absent").as_bytes(),
        ];
        for f in fields {
            h.update((f.len() as u64).to_be_bytes());
            h.update(f);
        }
        Self {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain,
            digest: h.finalize().into(),
        }
    }
}

/// Collateral that passed the collateral step, with the window in which every item in it
/// (certificates, CRLs, TCB info, QE identity) is valid.
#[derive(Debug)]
pub(crate) struct VerifiedCollateral {
    pub(crate) tcb_info: TcbInfo,
    pub(crate) qe_identity: QeIdentity,
    pub(crate) root_crl: Crl,
    pub(crate) pck_crl: Crl,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl VerifiedCollateral {
    /// The TCB info and the QE identity must both be for `tee` (a TDX quote needs ids "TDX" and
    /// "TD_QE", an SGX quote "SGX" and "QE"). Checked per quote rather than in the collateral
    /// step, so one verified collateral is cached whatever quote first used it.
    pub(crate) fn require(&self, tee: IntelTee) -> Result<(), VerifyError> {
        let wrong =
            |what, why| Err(VerifyError::new(Step::Collateral, Reason::InvalidValue { what, why }));
        let why = match tee {
            IntelTee::Sgx => "not for SGX quotes",
            IntelTee::Tdx => "not for TDX quotes",
        };
        if self.tcb_info.tee != tee {
            return wrong("TCB info id", why);
        }
        if self.qe_identity.tee != tee {
            return wrong("QE identity id", why);
        }
        Ok(())
    }
}

/// The QE identity (`TD_QE` or `QE`, version 2), decoded.
#[derive(Debug, Clone)]
pub(crate) struct QeIdentity {
    pub(crate) tee: IntelTee,
    pub(crate) miscselect: [u8; 4],
    pub(crate) miscselect_mask: [u8; 4],
    pub(crate) attributes: [u8; 16],
    pub(crate) attributes_mask: [u8; 16],
    pub(crate) mrsigner: [u8; 32],
    pub(crate) isvprodid: u16,
    /// Highest ISVSVN first.
    pub(crate) levels: Vec<QeLevel>,
}

/// Step 2 (collateral): everything the collateral says must hold at `now` and chain to the
/// pinned root. Failures are [`Step::Collateral`].
pub(crate) fn verify_collateral(
    c: &TdxCollateral,
    anchors: &TdxTrustAnchors,
    now: i64,
) -> Result<VerifiedCollateral, VerifyError> {
    verify(c, anchors, now).at(Step::Collateral)
}

/// Tracks the intersection of validity windows.
struct Window(i64, i64);

impl Window {
    fn add(&mut self, not_before: i64, not_after: i64) {
        self.0 = self.0.max(not_before);
        self.1 = self.1.min(not_after);
    }
}

fn verify(
    c: &TdxCollateral,
    anchors: &TdxTrustAnchors,
    now: i64,
) -> Result<VerifiedCollateral, Reason> {
    let mut window = Window(i64::MIN, i64::MAX);

    let root_crl = Crl::from_der("root CA CRL", &c.root_ca_crl)?;
    let (tcb_signer, root) = issuer_chain(
        "TCB info issuer chain",
        &c.tcb_info_issuer_chain,
        anchors,
        &root_crl,
        now,
        &mut window,
    )?;
    root_crl.verify_issued_by("root CA CRL", &root)?;
    root_crl.check_valid_at("root CA CRL", now)?;
    window.add(root_crl.this_update(), root_crl.next_update());

    verify_raw_p256(
        tcb_signer.public_key(),
        "TCB info",
        c.tcb_info.as_bytes(),
        &c.tcb_info_signature,
    )?;
    let tcb_info = TcbInfo::from_json(&c.tcb_info)?;
    check_window("TCB info", tcb_info.issue_date, tcb_info.next_update, now, &mut window)?;

    let (qe_signer, _) = issuer_chain(
        "QE identity issuer chain",
        &c.qe_identity_issuer_chain,
        anchors,
        &root_crl,
        now,
        &mut window,
    )?;
    verify_raw_p256(
        qe_signer.public_key(),
        "QE identity",
        c.qe_identity.as_bytes(),
        &c.qe_identity_signature,
    )?;
    let (qe_identity, issue, next) = parse_qe_identity(&c.qe_identity)?;
    check_window("QE identity", issue, next, now, &mut window)?;

    let (pck_ca, _) = issuer_chain(
        "PCK CRL issuer chain",
        &c.pck_crl_issuer_chain,
        anchors,
        &root_crl,
        now,
        &mut window,
    )?;
    let pck_crl = Crl::from_der("PCK CRL", &c.pck_crl)?;
    pck_crl.verify_issued_by("PCK CRL", &pck_ca)?;
    pck_crl.check_valid_at("PCK CRL", now)?;
    window.add(pck_crl.this_update(), pck_crl.next_update());

    Ok(VerifiedCollateral {
        tcb_info,
        qe_identity,
        root_crl,
        pck_crl,
        not_before: window.0,
        not_after: window.1,
    })
}

fn check_window(
    what: &'static str,
    from: i64,
    to: i64,
    now: i64,
    window: &mut Window,
) -> Result<(), Reason> {
    x509::check_window(what, from, to, now)?;
    window.add(from, to);
    Ok(())
}

/// A collateral issuer chain: exactly `[signer, root]`, the root pinned and self-signed, the
/// signer issued by it and not on the root CA CRL, both valid at `now`.
fn issuer_chain(
    what: &'static str,
    pem: &str,
    anchors: &TdxTrustAnchors,
    root_crl: &Crl,
    now: i64,
    window: &mut Window,
) -> Result<(Certificate, Certificate), Reason> {
    let ders = x509::pem_certificates(what, pem.as_bytes())?;
    let [signer, root] = ders.as_slice() else {
        return Err(Reason::InvalidValue { what, why: "expected exactly two certificates" });
    };
    let root = Certificate::from_der(what, root)?;
    anchors.check_root(what, &root)?;
    root.check_valid_at(what, now)?;
    window.add(root.not_before(), root.not_after());
    let signer = Certificate::from_der(what, signer)?;
    signer.verify_issued_by(what, &root)?;
    signer.check_valid_at(what, now)?;
    window.add(signer.not_before(), signer.not_after());
    if root_crl.revokes(&signer) {
        return Err(Reason::Revoked { what });
    }
    Ok((signer, root))
}

/// Verifies a raw `r || s` ECDSA P-256 / SHA-256 signature (Intel's collateral and quote
/// signature encoding).
pub(crate) fn verify_raw_p256(
    key: &PublicKey,
    what: &'static str,
    message: &[u8],
    signature: &[u8],
) -> Result<(), Reason> {
    if key.kind() != KeyKind::P256 {
        return Err(Reason::UnsupportedAlgorithm { what });
    }
    key.verify_fixed(what, message, signature)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<QeLevelJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeLevelJson {
    tcb: QeTcbJson,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct QeTcbJson {
    isvsvn: u16,
}

/// Statuses Intel's QVL accepts in a QE identity.
const QE_STATUSES: &[TcbStatus] = &[
    TcbStatus::UpToDate,
    TcbStatus::OutOfDate,
    TcbStatus::ConfigurationNeeded,
    TcbStatus::Revoked,
    TcbStatus::OutOfDateConfigurationNeeded,
];

fn parse_qe_identity(text: &str) -> Result<(QeIdentity, i64, i64), Reason> {
    let what = "QE identity";
    let j: QeIdentityJson = serde_json::from_str(text).map_err(|_| Reason::Malformed { what })?;
    let tee = [IntelTee::Tdx, IntelTee::Sgx]
        .into_iter()
        .find(|t| t.qe_identity_id() == j.id)
        .ok_or(Reason::InvalidValue { what: "QE identity id", why: "expected TD_QE or QE" })?;
    if j.version != 2 {
        return Err(Reason::UnsupportedVersion { what, version: j.version });
    }
    let mut levels = j
        .tcb_levels
        .into_iter()
        .map(|l| {
            Ok(QeLevel {
                isvsvn: l.tcb.isvsvn,
                status: parse_status("QE identity TCB level", &l.tcb_status, QE_STATUSES)?,
                advisory_ids: l.advisory_ids,
            })
        })
        .collect::<Result<Vec<_>, Reason>>()?;
    levels.sort_by_key(|l| std::cmp::Reverse(l.isvsvn));
    let identity = QeIdentity {
        tee,
        miscselect: hex_array("QE identity miscselect", &j.miscselect)?,
        miscselect_mask: hex_array("QE identity miscselectMask", &j.miscselect_mask)?,
        attributes: hex_array("QE identity attributes", &j.attributes)?,
        attributes_mask: hex_array("QE identity attributesMask", &j.attributes_mask)?,
        mrsigner: hex_array("QE identity mrsigner", &j.mrsigner)?,
        isvprodid: j.isvprodid,
        levels,
    };
    Ok((
        identity,
        parse_date("QE identity issueDate", &j.issue_date)?,
        parse_date("QE identity nextUpdate", &j.next_update)?,
    ))
}
