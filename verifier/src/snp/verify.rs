//! SEV-SNP report verification as numbered steps, each its own function naming its [`Step`]:
//!
//! 1. parse the report strictly ([`Step::Parse`]);
//! 2. verify the signer chain: VCEK ← ASK ← ARK or VLEK ← ASVK ← ARK, the ARK pinned, the kind
//!    agreeing with the report's `SIGNING_KEY` ([`Step::Chain`], cached, see below);
//! 3. every certificate of that chain is valid at `now` ([`Step::Chain`]);
//! 4. with [`SnpVerifier::verify_with_revocation`]: AMD's CRL for the product is sound and
//!    current ([`Step::Collateral`]) and revokes no certificate of the chain ([`Step::Chain`]),
//!    see [`revocation`](super::revocation);
//! 5. the product named by the report's CPUID (v3+) is the chain's product ([`Step::Chain`]);
//! 6. the signer's TCB extensions equal `REPORTED_TCB` ([`Step::Tcb`]);
//! 7. a VCEK's `hwID` equals `CHIP_ID` ([`Step::ChipId`]);
//! 8. the ECDSA P-384 signature over bytes `0x000..0x2A0` verifies ([`Step::Signature`]);
//! 9. `REPORT_DATA` is what the caller expected ([`Step::ReportData`]).
//!
//! Masked `CHIP_ID` (all zero): accepted only from a VLEK, which is not bound to a chip and
//! has no `hwID`. A VCEK is per chip; a VCEK-signed report must name the chip the VCEK was
//! issued for, so a masked `CHIP_ID` with a VCEK fails at [`Step::ChipId`].
//!
//! Warm path: step 2 costs RSA-4096 verifications and certificate parsing, so its result is
//! cached per signer certificate (and intermediates and expected kind/product): the
//! P-384 key, TCB extensions, `hwID`, product, kind and the chain's combined validity window.
//! Only successes are cached; the window is re-checked against `now` on every call. A warm
//! `verify` is a report parse, two SHA-256 passes and one ECDSA P-384 verification.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};

use crate::claims::{Claims, SnpProduct, SnpSigningKey, SnpTcb, Tee};
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::{check_window, Certificate, KeyKind, PublicKey};
use crate::{HexBytes, Now};

use super::amd_ext;
use super::anchors::{issued_by_ark, ProductAnchors, SnpTrustAnchors};
use super::normalize::snp_claims;
use super::report::{parse_report, AttestationReport, SIGNED_LEN};
use super::revocation::{ChainSerials, CrlCache, SnpRevocation};

/// How many verified signer chains are remembered before the cache is cleared.
const CACHE_LIMIT: usize = 1024;

/// The certificates that endorse a report: the signer (VCEK or VLEK, DER or PEM) and any
/// intermediates (ASK or ASVK, DER or PEM) not already in the trust anchors. Intermediates
/// are used only after they check out against the pinned ARK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnpEndorsements {
    pub signer: Vec<u8>,
    pub intermediates: Vec<Vec<u8>>,
}

impl SnpEndorsements {
    #[must_use]
    pub fn new(signer: impl Into<Vec<u8>>) -> Self {
        Self { signer: signer.into(), intermediates: Vec::new() }
    }

    #[must_use]
    pub fn with_intermediate(mut self, cert: impl Into<Vec<u8>>) -> Self {
        self.intermediates.push(cert.into());
        self
    }
}

/// What a verified signer chain established; the cache's value.
#[derive(Debug)]
struct VerifiedSigner {
    /// The signer's P-384 key, parsed once.
    key: PublicKey,
    kind: SnpSigningKey,
    product: SnpProduct,
    tcb: SnpTcb,
    hw_id: Option<Vec<u8>>,
    /// Serial numbers of the signer and of its ASK/ASVK, for revocation.
    signer_serial: Vec<u8>,
    issuer_serial: Vec<u8>,
    not_before: (i64, &'static str),
    not_after: (i64, &'static str),
}

/// Verifies SEV-SNP reports against a fixed set of trust anchors. Cheap to share: `verify`
/// takes `&self` and may run on many threads.
#[derive(Debug)]
pub struct SnpVerifier {
    anchors: SnpTrustAnchors,
    cache: RwLock<HashMap<[u8; 32], Arc<VerifiedSigner>>>,
    crls: CrlCache,
}

impl SnpVerifier {
    #[must_use]
    pub fn new(anchors: SnpTrustAnchors) -> Self {
        Self { anchors, cache: RwLock::new(HashMap::new()), crls: CrlCache::default() }
    }

    #[must_use]
    pub fn anchors(&self) -> &SnpTrustAnchors {
        &self.anchors
    }

    /// Verifies `report` (the 1184 bytes) endorsed by `endorsements` at `now`, without
    /// consulting AMD's CRLs (step 4 skipped): for offline use where no CRL is at hand.
    pub fn verify(
        &self,
        report: &[u8],
        endorsements: &SnpEndorsements,
        expected_report_data: Option<&[u8; 64]>,
        now: Now,
    ) -> Result<Claims, VerifyError> {
        self.verify_steps(report, endorsements, expected_report_data, now, None)
    }

    /// [`verify`](Self::verify) with step 4: the chain is checked against `revocation`'s CRLs.
    pub fn verify_with_revocation(
        &self,
        report: &[u8],
        endorsements: &SnpEndorsements,
        expected_report_data: Option<&[u8; 64]>,
        now: Now,
        revocation: &SnpRevocation,
    ) -> Result<Claims, VerifyError> {
        self.verify_steps(report, endorsements, expected_report_data, now, Some(revocation))
    }

    fn verify_steps(
        &self,
        report: &[u8],
        endorsements: &SnpEndorsements,
        expected_report_data: Option<&[u8; 64]>,
        now: Now,
        revocation: Option<&SnpRevocation>,
    ) -> Result<Claims, VerifyError> {
        let parsed = parse_report(report)?; // 1
        let signer = self.signer_chain(&parsed, endorsements)?; // 2
        check_validity(&signer, now.unix_timestamp())?; // 3
        if let Some(revocation) = revocation {
            let chain = ChainSerials {
                product: signer.product,
                intermediate: (issuer_what(signer.kind), &signer.issuer_serial),
                signer: (signer_what(signer.kind), &signer.signer_serial),
            };
            self.crls.check(&self.anchors, &chain, revocation, now.unix_timestamp())?;
            // 4
        }
        let product = check_product(&parsed, &signer)?; // 5
        let tcbs = parsed.tcbs(product).at(Step::Parse)?;
        check_tcb(tcbs.reported, signer.tcb)?; // 6
        check_chip_id(&parsed, &signer, product)?; // 7
        check_signature(report, &parsed, &signer.key)?; // 8
        check_report_data(&parsed, expected_report_data)?; // 9
        Ok(Claims {
            tee: Tee::Snp,
            simulated: self.anchors.is_simulated(),
            report_data: HexBytes(parsed.report_data),
            evidence_sha256: HexBytes(Sha256::digest(report).into()),
            snp: Some(snp_claims(&parsed, product, signer.kind, &tcbs)),
            tdx: None,
            azure: None,
        })
    }

    /// Step 2, through the cache.
    fn signer_chain(
        &self,
        report: &AttestationReport,
        endorsements: &SnpEndorsements,
    ) -> Result<Arc<VerifiedSigner>, VerifyError> {
        let kind = report.key_info.signing_key;
        let hint = report.product();
        let key = cache_key(kind, hint, endorsements);
        let cached = self.cache.read().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        if let Some(hit) = cached {
            return Ok(hit);
        }
        let verified = Arc::new(verify_signer_chain(&self.anchors, kind, hint, endorsements)?);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&verified));
        Ok(verified)
    }
}

/// SHA-256 over everything step 2 depends on besides the (fixed) anchors. Bytes are hashed
/// as supplied (DER or PEM), so the warm path decodes nothing.
fn cache_key(
    kind: SnpSigningKey,
    hint: Option<SnpProduct>,
    endorsements: &SnpEndorsements,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([kind as u8, hint.map_or(0xFF, |p| p as u8)]);
    for part in std::iter::once(&endorsements.signer).chain(&endorsements.intermediates) {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

fn signer_what(kind: SnpSigningKey) -> &'static str {
    match kind {
        SnpSigningKey::Vcek => "VCEK certificate",
        SnpSigningKey::Vlek => "VLEK certificate",
    }
}

fn issuer_what(kind: SnpSigningKey) -> &'static str {
    match kind {
        SnpSigningKey::Vcek => "ASK certificate",
        SnpSigningKey::Vlek => "ASVK certificate",
    }
}

/// Step 2 uncached: find the signer's issuer among the anchors' and the endorsements'
/// intermediates for the signer's product, check each link, and extract what later steps need.
fn verify_signer_chain(
    anchors: &SnpTrustAnchors,
    kind: SnpSigningKey,
    hint: Option<SnpProduct>,
    endorsements: &SnpEndorsements,
) -> Result<VerifiedSigner, VerifyError> {
    let what = signer_what(kind);
    let signer = Certificate::from_pem_or_der(what, &endorsements.signer).at(Step::Chain)?;
    let extra = endorsements
        .intermediates
        .iter()
        .map(|b| Certificate::from_pem_or_der("endorsement intermediate certificate", b))
        .collect::<Result<Vec<_>, _>>()
        .at(Step::Chain)?;
    let named = amd_ext::product_name(&signer).at(Step::Chain)?;
    let wanted = named.or(hint);
    let mut failure =
        Reason::NoMatch { what: "trusted ASK/ASVK that issued the signer certificate" };
    for product in anchors.products().filter(|p| wanted.is_none_or(|w| w == *p)) {
        let Some(pa) = anchors.get(product) else { continue };
        match find_issuer(pa, kind, &signer, &extra) {
            Ok(issuer) => return signer_facts(pa, kind, &signer, &issuer),
            Err(Some(reason)) => failure = reason,
            Err(None) => {}
        }
    }
    Err(VerifyError::new(Step::Chain, failure))
}

/// The intermediate of `pa` that issued `signer`. `Err(None)`: no candidate by name;
/// `Err(Some(reason))`: a candidate by name whose signature did not verify.
fn find_issuer(
    pa: &ProductAnchors,
    kind: SnpSigningKey,
    signer: &Certificate,
    extra: &[Certificate],
) -> Result<Certificate, Option<Reason>> {
    let what = signer_what(kind);
    let from_anchors = pa.intermediate(kind).into_iter().cloned();
    let from_endorsements = extra.iter().filter(|c| {
        c.subject_der() == signer.issuer_der()
            && c.issuer_der() == pa.ark.subject_der()
            && intermediate_kind(c) == kind
    });
    let mut failure = None;
    for issuer in from_anchors.chain(from_endorsements.filter_map(|c| {
        issued_by_ark(&pa.ark, c.der(), "endorsement intermediate certificate").ok()
    })) {
        if issuer.subject_der() != signer.issuer_der() {
            continue;
        }
        match signer.verify_issued_by(what, &issuer) {
            Ok(()) => return Ok(issuer),
            Err(reason) => failure = Some(reason),
        }
    }
    Err(failure)
}

/// An intermediate supplied in the endorsements is an ASVK when its `commonName` says VLEK
/// ("SEV-VLEK-Milan"), otherwise an ASK ("SEV-Milan").
fn intermediate_kind(cert: &Certificate) -> SnpSigningKey {
    match amd_ext::common_name(cert) {
        Some(cn) if cn.contains("VLEK") => SnpSigningKey::Vlek,
        _ => SnpSigningKey::Vcek,
    }
}

fn signer_facts(
    pa: &ProductAnchors,
    kind: SnpSigningKey,
    signer: &Certificate,
    issuer: &Certificate,
) -> Result<VerifiedSigner, VerifyError> {
    let what = signer_what(kind);
    let key = signer.public_key();
    if key.kind() != KeyKind::P384 {
        return Err(VerifyError::new(Step::Chain, Reason::UnsupportedAlgorithm { what }));
    }
    let hw_id = amd_ext::hw_id(signer);
    match (kind, &hw_id) {
        (SnpSigningKey::Vcek, None) => {
            return Err(VerifyError::new(
                Step::ChipId,
                Reason::Missing { what: "VCEK hwID extension" },
            ))
        }
        (SnpSigningKey::Vlek, Some(_)) => {
            return Err(VerifyError::new(
                Step::Chain,
                Reason::InvalidValue { what, why: "carries a hwID: it is a VCEK, not a VLEK" },
            ))
        }
        _ => {}
    }
    let tcb = amd_ext::cert_tcb(signer, pa.product).at(Step::Tcb)?;
    let chain = [(signer, what), (issuer, issuer_what(kind)), (&pa.ark, "ARK certificate")];
    let not_before = chain
        .iter()
        .map(|(c, w)| (c.not_before(), *w))
        .max_by_key(|(t, _)| *t)
        .unwrap_or((i64::MAX, what));
    let not_after = chain
        .iter()
        .map(|(c, w)| (c.not_after(), *w))
        .min_by_key(|(t, _)| *t)
        .unwrap_or((i64::MIN, what));
    Ok(VerifiedSigner {
        key: key.clone(),
        kind,
        product: pa.product,
        tcb,
        hw_id,
        signer_serial: signer.serial().to_vec(),
        issuer_serial: issuer.serial().to_vec(),
        not_before,
        not_after,
    })
}

/// Step 3: every certificate of the chain is valid at `now`.
fn check_validity(signer: &VerifiedSigner, now: i64) -> Result<(), VerifyError> {
    let (not_before, last_to_start) = signer.not_before;
    let (not_after, first_to_end) = signer.not_after;
    if now < not_before {
        return Err(VerifyError::new(
            Step::Chain,
            Reason::NotYetValid { what: last_to_start, not_before, now },
        ));
    }
    check_window(first_to_end, not_before, not_after, now).at(Step::Chain)
}

/// Step 4: the report's CPUID product (v3+) is the chain's product. Version 2 reports take
/// the chain's.
fn check_product(
    report: &AttestationReport,
    signer: &VerifiedSigner,
) -> Result<SnpProduct, VerifyError> {
    match report.product() {
        Some(p) if p != signer.product => Err(VerifyError::new(
            Step::Chain,
            Reason::Mismatch {
                what: "product (report CPUID vs signer chain)",
                expected: p.as_str().to_owned(),
                actual: signer.product.as_str().to_owned(),
            },
        )),
        _ => Ok(signer.product),
    }
}

fn tcb_text(t: SnpTcb) -> String {
    let fmc = t.fmc.map_or_else(|| "-".to_owned(), |f| f.to_string());
    format!("bl={} tee={} snp={} ucode={} fmc={fmc}", t.bootloader, t.tee, t.snp, t.microcode)
}

/// Step 5: the signer's TCB extensions equal `REPORTED_TCB`.
fn check_tcb(reported: SnpTcb, endorsed: SnpTcb) -> Result<(), VerifyError> {
    if reported == endorsed {
        return Ok(());
    }
    Err(VerifyError::new(
        Step::Tcb,
        Reason::Mismatch {
            what: "REPORTED_TCB (expected: signer certificate TCB extensions)",
            expected: tcb_text(endorsed),
            actual: tcb_text(reported),
        },
    ))
}

/// Step 6: a VCEK's `hwID` is the report's `CHIP_ID` (Turin: its first 8 bytes).
fn check_chip_id(
    report: &AttestationReport,
    signer: &VerifiedSigner,
    product: SnpProduct,
) -> Result<(), VerifyError> {
    let Some(hw_id) = &signer.hw_id else {
        return Ok(()); // a VLEK: not bound to a chip (checked in step 2)
    };
    if report.chip_id.iter().all(|b| *b == 0) {
        return Err(VerifyError::new(
            Step::ChipId,
            Reason::InvalidValue { what: "CHIP_ID", why: "masked (all zero) with a VCEK signer" },
        ));
    }
    let len = amd_ext::hw_id_len(product);
    if hw_id.len() != len {
        return Err(VerifyError::new(
            Step::ChipId,
            Reason::InvalidValue {
                what: "VCEK hwID extension",
                why: "wrong length for the product",
            },
        ));
    }
    let chip = report.chip_id.get(..len).unwrap_or_default();
    if chip == hw_id.as_slice() {
        return Ok(());
    }
    Err(VerifyError::new(
        Step::ChipId,
        Reason::Mismatch {
            what: "CHIP_ID (expected: VCEK hwID)",
            expected: hex::encode(hw_id),
            actual: hex::encode(chip),
        },
    ))
}

/// 72-byte little-endian to a 48-byte big-endian P-384 scalar, written into `be`; the top 24
/// bytes must be zero.
fn le72_to_be48(le: &[u8; 72], be: &mut [u8]) -> Option<()> {
    let (low, high) = le.split_at(48);
    if high.iter().any(|b| *b != 0) || be.len() != 48 {
        return None;
    }
    be.iter_mut().zip(low.iter().rev()).for_each(|(d, s)| *d = *s);
    Some(())
}

/// Step 7: ECDSA P-384 / SHA-384 over bytes `0x000..0x2A0`.
fn check_signature(
    bytes: &[u8],
    report: &AttestationReport,
    key: &PublicKey,
) -> Result<(), VerifyError> {
    let what = "SNP report";
    if report.key_info.mask_chip_key {
        return Err(VerifyError::new(
            Step::Signature,
            Reason::InvalidValue {
                what: "KEY_INFO.MASK_CHIP_KEY",
                why: "the firmware did not sign this report",
            },
        ));
    }
    let bad = || VerifyError::new(Step::Signature, Reason::BadSignature { what });
    let mut sig = [0u8; 96];
    let (r, s) = sig.split_at_mut(48);
    le72_to_be48(&report.signature_r, r).ok_or_else(bad)?;
    le72_to_be48(&report.signature_s, s).ok_or_else(bad)?;
    let signed = bytes.get(..SIGNED_LEN).ok_or_else(bad)?;
    key.verify_fixed(what, signed, &sig).at(Step::Signature)
}

/// Step 8: `REPORT_DATA` equals the expected value, when the caller gives one.
fn check_report_data(
    report: &AttestationReport,
    expected: Option<&[u8; 64]>,
) -> Result<(), VerifyError> {
    match expected {
        Some(e) if *e != report.report_data => Err(VerifyError::new(
            Step::ReportData,
            Reason::Mismatch {
                what: "REPORT_DATA",
                expected: hex::encode(e),
                actual: hex::encode(report.report_data),
            },
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: a test fails loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn signature_scalars_are_little_endian_with_zero_high_bytes() {
        let mut le = [0u8; 72];
        le[0] = 1;
        le[47] = 0xAB;
        let mut be = [0u8; 48];
        le72_to_be48(&le, &mut be).unwrap();
        assert_eq!(be[0], 0xAB);
        assert_eq!(be[47], 1);
        le[48] = 1;
        assert_eq!(le72_to_be48(&le, &mut be), None);
    }

    #[test]
    fn cache_key_depends_on_every_input() {
        let a = SnpEndorsements::new(vec![1, 2]);
        let b = SnpEndorsements::new(vec![1]).with_intermediate(vec![2]);
        let k = |kind, hint, e| cache_key(kind, hint, e);
        assert_ne!(k(SnpSigningKey::Vcek, None, &a), k(SnpSigningKey::Vcek, None, &b));
        assert_ne!(k(SnpSigningKey::Vcek, None, &a), k(SnpSigningKey::Vlek, None, &a));
        assert_ne!(
            k(SnpSigningKey::Vcek, None, &a),
            k(SnpSigningKey::Vcek, Some(SnpProduct::Milan), &a)
        );
    }

    #[test]
    fn report_data_mismatch_names_its_step() {
        let tcb = SnpTcb::default();
        assert!(check_tcb(tcb, tcb).is_ok());
        let other = SnpTcb { snp: 1, ..tcb };
        assert_eq!(check_tcb(tcb, other).unwrap_err().step, Step::Tcb);
    }
}
