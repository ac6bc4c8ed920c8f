//! The TDX verifier: the numbered steps from quote bytes to [`Claims`], and the caches that make
//! the warm path two ECDSA verifications (QE report and quote) plus hashing.
//!
//! Caches: verified collateral by [`TdxCollateral::digest`]; verified PCK chains by (collateral
//! digest, SHA-256 of the PEM chain), since revocation was checked against that collateral's
//! CRLs. Each entry keeps the window in which everything it vouches for is valid, and `now` is
//! checked against it on every call; outside it the full step runs again (to fail with its
//! precise reason, or to succeed with a newer window). Only successes are cached. Both caches
//! are bounded, evicting the oldest entry.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};

use super::anchors::TdxTrustAnchors;
use super::collateral::{verify_collateral, verify_raw_p256, TdxCollateral, VerifiedCollateral};
use super::eventlog;
use super::pck::{verify_pck_chain, VerifiedPck};
use super::quote::{parse_quote, QeReport, Quote};
use super::tcb::{self, QeLevel};
use crate::claims::{Claims, TdAttributes, TdxClaims, Tee};
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::PublicKey;
use crate::{HexBytes, Now};

/// Intel's QE vendor ID (quote header bytes 12..28).
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// How many verified collaterals (one per FMSPC and collateral version) are kept.
const COLLATERAL_CACHE: usize = 64;
/// How many verified PCK chains (one per platform and collateral) are kept.
const CHAIN_CACHE: usize = 4096;

/// (collateral digest, SHA-256 of the PEM PCK chain).
type ChainKey = ([u8; 32], [u8; 32]);

/// Verifies TDX quotes against one set of trust anchors. `verify` takes `&self` and may be
/// called from many threads; the caches are behind locks held only for lookups and inserts.
#[derive(Debug)]
pub struct TdxVerifier {
    anchors: TdxTrustAnchors,
    collaterals: RwLock<Bounded<[u8; 32], Arc<VerifiedCollateral>>>,
    chains: RwLock<Bounded<ChainKey, Arc<VerifiedPck>>>,
}

impl TdxVerifier {
    #[must_use]
    pub fn new(anchors: TdxTrustAnchors) -> Self {
        Self {
            anchors,
            collaterals: RwLock::new(Bounded::new(COLLATERAL_CACHE)),
            chains: RwLock::new(Bounded::new(CHAIN_CACHE)),
        }
    }

    #[must_use]
    pub fn anchors(&self) -> &TdxTrustAnchors {
        &self.anchors
    }

    /// Verifies `quote` with `collateral` at `now`; when `expected_report_data` is given, the
    /// TD report's `REPORT_DATA` must equal it. Steps, in order, each failure naming its step:
    ///
    /// 1. parse ([`Step::Parse`]);
    /// 2. collateral ([`Step::Collateral`]);
    /// 3. PCK chain ([`Step::Chain`]);
    /// 4. QE report signature by the PCK key ([`Step::Signature`]);
    /// 5. QE report binds the attestation key ([`Step::QeIdentity`]);
    /// 6. QE report against the QE identity ([`Step::QeIdentity`]);
    /// 7. quote signature by the attestation key ([`Step::Signature`]);
    /// 8. TCB ([`Step::Tcb`]);
    /// 9. `REPORT_DATA` ([`Step::ReportData`]).
    ///
    /// RTMRs stay opaque values; [`TdxVerifier::verify_with_event_log`] also replays a log.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &TdxCollateral,
        expected_report_data: Option<&[u8; 64]>,
        now: Now,
    ) -> Result<Claims, VerifyError> {
        self.verify_with_event_log(quote, None, collateral, expected_report_data, now)
    }

    /// [`TdxVerifier::verify`], then, when `event_log` (the CCEL bytes) is given, step 10:
    /// parse the log, replay it into RTMR0-3 and require exactly the quote's RTMRs
    /// ([`Step::EventLog`], naming the RTMR); the claims then carry `tdx.event_log`.
    pub fn verify_with_event_log(
        &self,
        quote: &[u8],
        event_log: Option<&[u8]>,
        collateral: &TdxCollateral,
        expected_report_data: Option<&[u8; 64]>,
        now: Now,
    ) -> Result<Claims, VerifyError> {
        let now_s = now.unix_timestamp();
        let parsed = parse_quote(quote)?;
        let col = self.verified_collateral(collateral, now_s)?;
        let pck = self.verified_chain(&parsed, collateral.digest(), &col, now_s)?;
        verify_qe_report_signature(&parsed, &pck)?;
        check_qe_binding(&parsed)?;
        let qe_level = check_qe_identity(&parsed, &col)?;
        verify_quote_signature(quote, &parsed)?;
        let verdict =
            tcb::evaluate(&col.tcb_info, &pck.ext, &parsed.report, qe_level).at(Step::Tcb)?;
        check_report_data(&parsed, expected_report_data)?;
        let event_log =
            event_log.map(|log| eventlog::check_event_log(log, &parsed.report.rtmr)).transpose()?;
        let mut claims = claims(quote, parsed, &pck, verdict, self.anchors.is_simulated());
        if let Some(tdx) = claims.tdx.as_mut() {
            tdx.event_log = event_log;
        }
        Ok(claims)
    }

    fn verified_collateral(
        &self,
        c: &TdxCollateral,
        now: i64,
    ) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let key = *c.digest();
        let cached = read(&self.collaterals).get(&key).cloned();
        if let Some(v) = cached.filter(|v| (v.not_before..=v.not_after).contains(&now)) {
            return Ok(v);
        }
        let v = Arc::new(verify_collateral(c, &self.anchors, now)?);
        write(&self.collaterals).insert(key, Arc::clone(&v));
        Ok(v)
    }

    fn verified_chain(
        &self,
        quote: &Quote,
        collateral_digest: &[u8; 32],
        col: &VerifiedCollateral,
        now: i64,
    ) -> Result<Arc<VerifiedPck>, VerifyError> {
        let key = (*collateral_digest, Sha256::digest(&quote.pck_chain_pem).into());
        let cached = read(&self.chains).get(&key).cloned();
        if let Some(v) = cached.filter(|v| (v.not_before..=v.not_after).contains(&now)) {
            return Ok(v);
        }
        let v = Arc::new(verify_pck_chain(
            &quote.pck_chain_pem,
            &col.root_crl,
            &col.pck_crl,
            &self.anchors,
            now,
        )?);
        write(&self.chains).insert(key, Arc::clone(&v));
        Ok(v)
    }
}

/// A map that keeps at most `cap` entries, evicting the oldest insert.
#[derive(Debug)]
struct Bounded<K, V> {
    cap: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Self { cap, map: HashMap::new(), order: VecDeque::new() }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_some() {
            return;
        }
        self.order.push_back(k);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

// A poisoned lock only means another thread panicked while holding it; the maps hold verified
// values inserted whole, so their content stays sound.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Step 4: the PCK key signed the QE report.
fn verify_qe_report_signature(q: &Quote, pck: &VerifiedPck) -> Result<(), VerifyError> {
    verify_raw_p256(&pck.key, "QE report", &q.qe_report_raw, &q.qe_report_signature)
        .at(Step::Signature)
}

/// Step 5: QE `REPORT_DATA` = SHA-256(attestation key || QE auth data) || 32 zero bytes.
fn check_qe_binding(q: &Quote) -> Result<(), VerifyError> {
    let mut h = Sha256::new();
    h.update(q.attestation_key);
    h.update(&q.qe_auth_data);
    let mut expected = [0u8; 64];
    expected[..32].copy_from_slice(&h.finalize());
    if q.qe_report.report_data != expected {
        return Err(VerifyError::new(
            Step::QeIdentity,
            Reason::Mismatch {
                what: "QE REPORT_DATA (attestation key binding)",
                expected: hex::encode(expected),
                actual: hex::encode(q.qe_report.report_data),
            },
        ));
    }
    Ok(())
}

/// Step 6: the QE is Intel's TD quoting enclave at an acceptable ISVSVN.
fn check_qe_identity<'c>(
    q: &Quote,
    col: &'c VerifiedCollateral,
) -> Result<&'c QeLevel, VerifyError> {
    qe_identity(&q.qe_report, &q.qe_vendor_id, col).at(Step::QeIdentity)
}

fn qe_identity<'c>(
    r: &QeReport,
    vendor: &[u8; 16],
    col: &'c VerifiedCollateral,
) -> Result<&'c QeLevel, Reason> {
    let id = &col.qe_identity;
    let mismatch = |what, expected: &[u8], actual: &[u8]| Reason::Mismatch {
        what,
        expected: hex::encode(expected),
        actual: hex::encode(actual),
    };
    if vendor != &INTEL_QE_VENDOR_ID {
        return Err(mismatch("QE vendor ID", &INTEL_QE_VENDOR_ID, vendor));
    }
    if r.mr_signer != id.mrsigner {
        return Err(mismatch("QE MRSIGNER", &id.mrsigner, &r.mr_signer));
    }
    if r.isv_prod_id != id.isvprodid {
        return Err(Reason::Mismatch {
            what: "QE ISVPRODID",
            expected: id.isvprodid.to_string(),
            actual: r.isv_prod_id.to_string(),
        });
    }
    let masked = |v: &[u8], m: &[u8]| -> Vec<u8> { v.iter().zip(m).map(|(a, b)| a & b).collect() };
    let misc = r.misc_select.to_le_bytes();
    let (want, have) =
        (masked(&id.miscselect, &id.miscselect_mask), masked(&misc, &id.miscselect_mask));
    if want != have {
        return Err(mismatch("QE MISCSELECT (masked)", &want, &have));
    }
    let (want, have) =
        (masked(&id.attributes, &id.attributes_mask), masked(&r.attributes, &id.attributes_mask));
    if want != have {
        return Err(mismatch("QE ATTRIBUTES (masked)", &want, &have));
    }
    id.levels
        .iter()
        .find(|l| r.isv_svn >= l.isvsvn)
        .ok_or(Reason::NoMatch { what: "QE identity TCB level for the QE's ISVSVN" })
}

/// Step 7: the attestation key signed the header and body exactly as they appear in the quote
/// (for v5 including the body type and size fields).
fn verify_quote_signature(bytes: &[u8], q: &Quote) -> Result<(), VerifyError> {
    let bad = || VerifyError::new(Step::Signature, Reason::BadSignature { what: "quote" });
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..].copy_from_slice(&q.attestation_key);
    let key = PublicKey::p256_from_sec1("attestation key", &sec1).at(Step::Signature)?;
    let signed = bytes.get(..q.signed_len).ok_or_else(bad)?;
    verify_raw_p256(&key, "quote", signed, &q.signature).at(Step::Signature)
}

/// Step 9: `REPORT_DATA` is what the caller expects (nonce and key binding).
fn check_report_data(q: &Quote, expected: Option<&[u8; 64]>) -> Result<(), VerifyError> {
    match expected {
        Some(e) if e != &q.report.report_data => Err(VerifyError::new(
            Step::ReportData,
            Reason::Mismatch {
                what: "REPORT_DATA",
                expected: hex::encode(e),
                actual: hex::encode(q.report.report_data),
            },
        )),
        _ => Ok(()),
    }
}

fn claims(
    bytes: &[u8],
    q: Quote,
    pck: &VerifiedPck,
    verdict: tcb::TcbVerdict,
    simulated: bool,
) -> Claims {
    let r = q.report;
    let attrs = u64::from_le_bytes(r.td_attributes);
    let bit = |n: u32| attrs & (1u64 << n) != 0;
    Claims {
        tee: Tee::Tdx,
        simulated,
        report_data: HexBytes(r.report_data),
        evidence_sha256: HexBytes(Sha256::digest(bytes).into()),
        snp: None,
        tdx: Some(TdxClaims {
            quote_version: q.version,
            body: r.body,
            tee_tcb_svn: HexBytes(r.tee_tcb_svn),
            mr_seam: HexBytes(r.mr_seam),
            mr_signer_seam: HexBytes(r.mr_signer_seam),
            seam_attributes: HexBytes(r.seam_attributes),
            td_attributes: TdAttributes {
                raw: HexBytes(r.td_attributes),
                debug: bit(0),
                sept_ve_disable: bit(28),
                pks: bit(30),
                kl: bit(31),
                perfmon: bit(63),
            },
            xfam: HexBytes(r.xfam),
            mr_td: HexBytes(r.mr_td),
            mr_config_id: HexBytes(r.mr_config_id),
            mr_owner: HexBytes(r.mr_owner),
            mr_owner_config: HexBytes(r.mr_owner_config),
            rtmr: r.rtmr.map(HexBytes),
            tee_tcb_svn2: r.tee_tcb_svn2.map(HexBytes),
            mr_service_td: r.mr_service_td.map(HexBytes),
            tcb_status: verdict.status,
            advisory_ids: verdict.advisory_ids,
            tcb_date: verdict.tcb_date,
            tcb_evaluation_data_number: verdict.tcb_evaluation_data_number,
            fmspc: HexBytes(pck.ext.fmspc),
            pce_svn: pck.ext.pce_svn,
            event_log: None,
        }),
        azure: None,
    }
}
