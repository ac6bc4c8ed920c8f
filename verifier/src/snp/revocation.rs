//! AMD revocation for SEV-SNP chains: this module owns the question "does AMD's CRL for this
//! product revoke a certificate of this chain, and is that CRL fit to answer?".
//!
//! AMD KDS serves the CRLs named by the ASK's and ASVK's CRL distribution points,
//! `https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/crl` and `.../vlek/v1/{product}/crl`:
//! DER X.509 v2 CRLs issued and signed (RSASSA-PSS SHA-384) by the product's ARK. They are
//! collateral: the caller passes them in ([`SnpRevocation`]) with `now`; this module fetches
//! nothing. Rules:
//!
//! - a CRL applies to a chain when its issuer is the chain's ARK; its signature is then checked
//!   with that (pinned) ARK by the same code that checks certificate signatures. One that names
//!   the ARK but does not verify fails ([`Step::Collateral`]); it is never skipped. CRLs issued
//!   by another ARK (another product, or the simulation PKI) do not apply and are ignored, so
//!   one list can serve every trust domain;
//! - every applicable CRL must hold at `now`: `thisUpdate <= now <= nextUpdate + grace`, else
//!   [`Step::Collateral`] (the broker answers "collateral unavailable", never a pass);
//! - when revocation is [`required`](SnpRevocation::required), a chain with no applicable CRL
//!   fails at [`Step::Collateral`] (missing);
//! - a listed serial of the chain's ASK/ASVK (issued by the ARK, so the entry is exactly its)
//!   or of its VCEK/VLEK fails at [`Step::Chain`] with [`Reason::RevokedBy`]. AMD's VCEKs and
//!   VLEKs all carry serial number 0 and AMD supersedes them by TCB rather than listing them,
//!   so a listed 0 refuses every VCEK and VLEK of the product: the fail-closed reading.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};

use crate::claims::SnpProduct;
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::Crl;

use super::anchors::SnpTrustAnchors;

/// How many checked CRLs a verifier remembers before the cache is cleared.
const CACHE_LIMIT: usize = 64;

/// The CRLs (DER) to check a chain against, the grace after `nextUpdate`, and whether a chain
/// without an applicable CRL is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnpRevocation {
    pub crls: Vec<Arc<[u8]>>,
    /// Seconds after a CRL's `nextUpdate` during which it is still accepted.
    pub grace_s: u32,
    /// Refuse (at [`Step::Collateral`]) a chain for which no CRL applies.
    pub required: bool,
}

impl SnpRevocation {
    /// Revocation checked, and a CRL for the chain's product required.
    #[must_use]
    pub fn required(crls: Vec<Arc<[u8]>>, grace_s: u32) -> Self {
        Self { crls, grace_s, required: true }
    }

    /// Revocation checked against the CRLs that apply; a chain none applies to passes. For a
    /// domain with no CRL service (the simulation PKI, whose CRLs only come from files).
    #[must_use]
    pub fn when_given(crls: Vec<Arc<[u8]>>, grace_s: u32) -> Self {
        Self { crls, grace_s, required: false }
    }
}

/// The chain facts revocation needs.
#[derive(Debug)]
pub(crate) struct ChainSerials<'a> {
    pub(crate) product: SnpProduct,
    pub(crate) intermediate: (&'static str, &'a [u8]),
    pub(crate) signer: (&'static str, &'a [u8]),
}

/// A CRL parsed once, with the SHA-256 of the ARK that signed it (`None`: issued by no ARK of
/// these anchors, so it applies to none of their chains).
#[derive(Debug)]
struct CheckedCrl {
    crl: Crl,
    ark_sha256: Option<[u8; 32]>,
}

/// Parsed and signature-checked CRLs by SHA-256 of their DER (successes only).
#[derive(Debug, Default)]
pub(crate) struct CrlCache(RwLock<HashMap<[u8; 32], Arc<CheckedCrl>>>);

/// The name a product's CRL goes by in errors.
#[must_use]
pub fn crl_name(product: SnpProduct) -> &'static str {
    match product {
        SnpProduct::Milan => "AMD Milan CRL",
        SnpProduct::Genoa => "AMD Genoa CRL",
        SnpProduct::Turin => "AMD Turin CRL",
    }
}

/// Parses `der` as an AMD CRL and checks its signature against the ARK of these anchors that
/// issued it. Pure; for tools that want to vet a CRL file before use.
pub fn check_crl(anchors: &SnpTrustAnchors, der: &[u8]) -> Result<Option<SnpProduct>, VerifyError> {
    let checked = parse_and_check(anchors, der)?;
    Ok(checked
        .ark_sha256
        .and_then(|sha| anchors.products().find(|p| anchors.ark_sha256(*p) == Some(&sha))))
}

fn parse_and_check(anchors: &SnpTrustAnchors, der: &[u8]) -> Result<CheckedCrl, VerifyError> {
    let crl = Crl::from_der("AMD CRL", der).at(Step::Collateral)?;
    let issuer = anchors
        .products()
        .filter_map(|p| anchors.get(p))
        .map(|pa| &pa.ark)
        .find(|ark| ark.subject_der() == crl.issuer_der());
    let Some(ark) = issuer else { return Ok(CheckedCrl { crl, ark_sha256: None }) };
    crl.verify_issued_by("AMD CRL", ark).at(Step::Collateral)?;
    Ok(CheckedCrl { crl, ark_sha256: Some(*ark.sha256()) })
}

impl CrlCache {
    fn get(&self, anchors: &SnpTrustAnchors, der: &[u8]) -> Result<Arc<CheckedCrl>, VerifyError> {
        let key: [u8; 32] = Sha256::digest(der).into();
        let hit = self.0.read().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let checked = Arc::new(parse_and_check(anchors, der)?);
        let mut cache = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&checked));
        Ok(checked)
    }

    /// The revocation step: every applicable CRL is sound and current, and lists no
    /// certificate of the chain.
    pub(crate) fn check(
        &self,
        anchors: &SnpTrustAnchors,
        chain: &ChainSerials<'_>,
        revocation: &SnpRevocation,
        now: i64,
    ) -> Result<(), VerifyError> {
        let name = crl_name(chain.product);
        let ark = anchors
            .ark_sha256(chain.product)
            .ok_or(Reason::NoMatch { what: "trusted ARK for this product" })
            .at(Step::Chain)?;
        let mut applied = 0usize;
        for der in &revocation.crls {
            let checked = self.get(anchors, der)?;
            if checked.ark_sha256.as_ref() != Some(ark) {
                continue;
            }
            applied += 1;
            let crl = &checked.crl;
            if now < crl.this_update() {
                return Err(VerifyError::new(
                    Step::Collateral,
                    Reason::NotYetValid { what: name, not_before: crl.this_update(), now },
                ));
            }
            if now > crl.next_update().saturating_add(i64::from(revocation.grace_s)) {
                return Err(VerifyError::new(
                    Step::Collateral,
                    Reason::Expired { what: name, not_after: crl.next_update(), now },
                ));
            }
            for (what, serial) in [chain.intermediate, chain.signer] {
                if crl.lists_serial(serial) {
                    return Err(VerifyError::new(
                        Step::Chain,
                        Reason::RevokedBy {
                            what,
                            serial: hex::encode(serial),
                            crl: name,
                            this_update: crl.this_update(),
                        },
                    ));
                }
            }
        }
        if applied == 0 && revocation.required {
            return Err(VerifyError::new(Step::Collateral, Reason::Missing { what: name }));
        }
        Ok(())
    }
}
