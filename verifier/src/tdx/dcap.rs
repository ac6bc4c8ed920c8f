//! The steps every Intel DCAP ECDSA quote shares, TDX (versions 4 and 5) and SGX (version 3),
//! and the caches that make their warm path two ECDSA verifications (QE report and quote) plus
//! hashing: collateral, PCK chain, QE report signature, QE binding of the attestation key, QE
//! identity and quote signature. [`super::TdxVerifier`] and [`crate::sgx::SgxVerifier`] run
//! these, then their own TCB rules and claims.
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
use super::pck::{verify_pck_chain, VerifiedPck};
use super::quote::{QuoteSignature, SgxReportBody};
use super::tcb::{IntelTee, QeLevel};
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::PublicKey;

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

/// What the shared steps established: the verified collateral, the PCK chain and the QE's TCB
/// level, for the TEE's own TCB rules.
pub(crate) struct Endorsed {
    pub(crate) collateral: Arc<VerifiedCollateral>,
    pub(crate) pck: Arc<VerifiedPck>,
    pub(crate) qe_level: QeLevel,
}

/// One set of trust anchors and the caches of what was verified under them.
#[derive(Debug)]
pub(crate) struct DcapCore {
    anchors: TdxTrustAnchors,
    collaterals: RwLock<Bounded<[u8; 32], Arc<VerifiedCollateral>>>,
    chains: RwLock<Bounded<ChainKey, Arc<VerifiedPck>>>,
}

impl DcapCore {
    pub(crate) fn new(anchors: TdxTrustAnchors) -> Self {
        Self {
            anchors,
            collaterals: RwLock::new(Bounded::new(COLLATERAL_CACHE)),
            chains: RwLock::new(Bounded::new(CHAIN_CACHE)),
        }
    }

    pub(crate) fn anchors(&self) -> &TdxTrustAnchors {
        &self.anchors
    }

    /// The shared steps, in order, each failure naming its step:
    ///
    /// - collateral ([`Step::Collateral`]), which must be for the quote's TEE;
    /// - PCK chain ([`Step::Chain`]);
    /// - QE report signature by the PCK key ([`Step::Signature`]);
    /// - QE report binds the attestation key ([`Step::QeIdentity`]);
    /// - QE report against the QE identity ([`Step::QeIdentity`]);
    /// - quote signature by the attestation key ([`Step::Signature`]).
    ///
    /// `tee` is the quote's TEE (its collateral must be for the same), `quote` the quote as
    /// given and `q` its parsed signature.
    pub(crate) fn endorse(
        &self,
        tee: IntelTee,
        quote: &[u8],
        q: &QuoteSignature,
        collateral: &TdxCollateral,
        now: i64,
    ) -> Result<Endorsed, VerifyError> {
        let col = self.verified_collateral(collateral, now)?;
        col.require(tee)?;
        let pck = self.verified_chain(&q.qe.pck_chain_pem, collateral.digest(), &col, now)?;
        verify_raw_p256(&pck.key, "QE report", &q.qe.qe_report_raw, &q.qe.qe_report_signature)
            .at(Step::Signature)?;
        check_qe_binding(q)?;
        let qe_level =
            qe_identity(&q.qe.qe_report, &q.qe_vendor_id, &col).at(Step::QeIdentity)?.clone();
        verify_quote_signature(quote, q)?;
        Ok(Endorsed { collateral: col, pck, qe_level })
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
        pck_chain_pem: &[u8],
        collateral_digest: &[u8; 32],
        col: &VerifiedCollateral,
        now: i64,
    ) -> Result<Arc<VerifiedPck>, VerifyError> {
        let key = (*collateral_digest, Sha256::digest(pck_chain_pem).into());
        let cached = read(&self.chains).get(&key).cloned();
        if let Some(v) = cached.filter(|v| (v.not_before..=v.not_after).contains(&now)) {
            return Ok(v);
        }
        let v = Arc::new(verify_pck_chain(
            pck_chain_pem,
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

/// QE `REPORT_DATA` = SHA-256(attestation key || QE auth data) || 32 zero bytes.
fn check_qe_binding(q: &QuoteSignature) -> Result<(), VerifyError> {
    let mut h = Sha256::new();
    h.update(q.attestation_key);
    h.update(&q.qe.qe_auth_data);
    let mut expected = [0u8; 64];
    expected[..32].copy_from_slice(&h.finalize());
    if q.qe.qe_report.report_data != expected {
        return Err(VerifyError::new(
            Step::QeIdentity,
            Reason::Mismatch {
                what: "QE REPORT_DATA (attestation key binding)",
                expected: hex::encode(expected),
                actual: hex::encode(q.qe.qe_report.report_data),
            },
        ));
    }
    Ok(())
}

/// The QE is Intel's quoting enclave (the one the QE identity describes) at an acceptable
/// ISVSVN.
fn qe_identity<'c>(
    r: &SgxReportBody,
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

/// The attestation key signed the header and body exactly as they appear in the quote (for v5
/// including the body type and size fields).
fn verify_quote_signature(quote: &[u8], q: &QuoteSignature) -> Result<(), VerifyError> {
    let bad = || VerifyError::new(Step::Signature, Reason::BadSignature { what: "quote" });
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..].copy_from_slice(&q.attestation_key);
    let key = PublicKey::p256_from_sec1("attestation key", &sec1).at(Step::Signature)?;
    let signed = quote.get(..q.signed_len).ok_or_else(bad)?;
    verify_raw_p256(&key, "quote", signed, &q.signature).at(Step::Signature)
}

/// `REPORT_DATA` is what the caller expects (nonce and key binding).
pub(crate) fn check_report_data(
    actual: &[u8; 64],
    expected: Option<&[u8; 64]>,
) -> Result<(), VerifyError> {
    match expected {
        Some(e) if e != actual => Err(VerifyError::new(
            Step::ReportData,
            Reason::Mismatch {
                what: "REPORT_DATA",
                expected: hex::encode(e),
                actual: hex::encode(actual),
            },
        )),
        _ => Ok(()),
    }
}
