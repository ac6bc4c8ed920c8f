//! Collateral acquisition for hardware evidence: this module owns the question "which
//! certificates and signed collateral does this report or quote need, and where do they come
//! from?". The verifier crate stays pure; everything with I/O and a clock is here.
//!
//! - SEV-SNP ([`snp`]): the VCEK/VLEK from the evidence's certificate table when present, else
//!   from the offline directory (`snp_cert_dir`), else from AMD KDS (VCEKs only; KDS does not
//!   serve VLEKs publicly), cached by (product, hwID, TCB) in memory and in the store.
//! - TDX ([`tdx`]): the offline file or directory (`tdx_collateral`), else Intel PCS / a PCCS,
//!   assembled into [`verifier::tdx::TdxCollateral`] and cached until its earliest
//!   `nextUpdate`; expired collateral is never handed to the verifier while fresh collateral
//!   can be fetched.
//! - AMD CRLs ([`snp_crl`]): for SEV-SNP hardware chains, the product's CRL from the offline
//!   directory (`amd_crl_dir`), the caches, or AMD KDS, handed to the verifier with every
//!   offline CRL; none current to be had is 503 like any missing collateral.
//! - `cache`: the memory cache and the store's table in front of each upstream, with one fetch
//!   at a time; each source looks in its offline directory or file first.
//! - [`http`]: rate limit, backoff with `Retry-After`, bounded retries; one attempt is a
//!   [`CollateralFetcher`] the HTTP edge supplies.
//! - the `collateral` table is the store's ([`crate::store::collateral`]).
//!
//! Failure: when collateral is needed and cannot be had, the client gets 503 with type
//! `collateral-unavailable` ([`ErrorKind::CollateralUnavailable`]): the evidence was not judged,
//! and a retry later may succeed. Evidence that is simply wrong still fails verification with
//! the verifier's step.
//!
//! Simulated evidence never causes a fetch: TDX quotes are fetched for only when their PCK
//! chain ends in Intel's production root, and SNP evidence carries its (simulated) VCEK.

mod cache;
pub mod http;
pub mod snp;
pub mod snp_crl;
pub mod tdx;

use std::sync::Arc;

use verifier::azure::{AzureEvidence, AzureHardware};
use verifier::{CocoEvidence, Now};

pub use crate::config::CollateralConfig;
pub use crate::store::collateral::{CachedCollateral, CollateralStore};
pub use http::{BoxFuture, CollateralFetcher, Fetched, TransportError};

use crate::error::{ApiError, ErrorKind};

/// Collateral found for hardware evidence (the simulation domain never uses it). SNP
/// endorsements carried by the evidence take precedence over `snp`.
#[derive(Debug, Clone, Default)]
pub struct HardwareCollateral {
    pub snp: Option<verifier::snp::SnpEndorsements>,
    pub tdx: Option<Arc<verifier::tdx::TdxCollateral>>,
    /// AMD CRLs (DER) for SNP chains; each domain applies those its ARKs issued.
    pub snp_crls: Vec<Arc<[u8]>>,
}

/// Which kind of collateral an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SnpVcek,
    AmdCrl,
    Tdx,
}

impl Kind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SnpVcek => "snp-vcek",
            Self::AmdCrl => "amd-crl",
            Self::Tdx => "tdx",
        }
    }
}

/// Where collateral was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Offline,
    Memory,
    Store,
    Fetched,
}

impl Source {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Memory => "memory",
            Self::Store => "store",
            Self::Fetched => "fetched",
        }
    }
}

/// The single call site for "collateral found without fetching" (offline, memory, store).
/// METRICS: point `metrics::collateral_hit()` here.
fn on_hit(kind: Kind, source: Source) {
    tracing::debug!(kind = kind.as_str(), source = source.as_str(), "collateral hit");
}

/// The single call site for "a fetch from KDS/PCS failed".
/// METRICS: point `metrics::collateral_fetch_error()` here.
fn on_fetch_error(kind: Kind, error: &dyn std::fmt::Display) {
    tracing::warn!(kind = kind.as_str(), %error, "collateral fetch failed");
}

/// Collateral could not be had: answered 503 `collateral-unavailable`.
#[must_use]
pub fn unavailable(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::CollateralUnavailable, detail)
}

/// Finds collateral for hardware evidence. Built once per process; cheap to share.
#[derive(Debug)]
pub struct CollateralService {
    snp: snp::SnpSource,
    amd_crl: snp_crl::AmdCrlSource,
    tdx: tdx::TdxSource,
}

impl CollateralService {
    /// Builds the service; reads the offline directory and file now. `fetcher` makes the GETs
    /// when `config.fetch` is on; fetching without one is refused here, not at the first miss.
    pub fn new(
        config: &CollateralConfig,
        tdx_offline: Option<&std::path::Path>,
        store: Arc<dyn CollateralStore>,
        fetcher: Option<Arc<dyn CollateralFetcher>>,
    ) -> anyhow::Result<Self> {
        config.check()?;
        let fetcher = match (config.fetch, fetcher) {
            (true, Some(f)) => Some(f),
            (true, None) => anyhow::bail!(
                "[collateral] fetch = true, but this program has no HTTP client to fetch with"
            ),
            (false, _) => None,
        };
        // One KDS upstream for VCEKs and CRLs: they share its rate limit and backoff.
        let kds = fetcher.clone().map(|f| Arc::new(http::Upstream::new(config, f)));
        Ok(Self {
            snp: snp::SnpSource::new(config, kds.clone(), Arc::clone(&store))?,
            amd_crl: snp_crl::AmdCrlSource::new(config, kds, Arc::clone(&store))?,
            tdx: tdx::TdxSource::new(config, tdx_offline, store, fetcher)?,
        })
    }

    /// The collateral decoded `evidence` needs beyond what it carries (an SNP report without
    /// its signer certificate, AMD CRLs for its chain, TDX collateral for its FMSPC).
    pub async fn resolve(
        &self,
        evidence: &CocoEvidence,
        now: Now,
    ) -> Result<HardwareCollateral, ApiError> {
        match evidence {
            CocoEvidence::Snp(ev) => {
                let snp = self.snp.endorsements(ev).await?;
                let signer = match &snp {
                    Some(e) => Some(e.signer.clone()),
                    None => ev.signer().map(<[u8]>::to_vec),
                };
                self.with_crls(snp, signer, now).await
            }
            CocoEvidence::Tdx(ev) => Ok(HardwareCollateral {
                snp: None,
                tdx: self.tdx.for_quote(&ev.quote, now.unix_timestamp()).await?,
                snp_crls: Vec::new(),
            }),
            CocoEvidence::AzSnpVtpm(ev) => {
                // The attester always sends the VCEK; KDS only when it is absent.
                let Some((vcek, report)) = azure_snp_parts(&ev.evidence) else {
                    return Ok(HardwareCollateral::default());
                };
                let snp = match vcek {
                    Some(_) => None,
                    None => Some(self.snp.for_report(&report).await?),
                };
                let signer = vcek.or_else(|| snp.as_ref().map(|e| e.signer.clone()));
                self.with_crls(snp, signer, now).await
            }
            CocoEvidence::AzTdxVtpm(ev) => Ok(HardwareCollateral {
                snp: None,
                tdx: match &ev.evidence.hardware {
                    AzureHardware::Tdx { td_quote } => {
                        self.tdx.for_quote(td_quote, now.unix_timestamp()).await?
                    }
                    AzureHardware::Snp { .. } => None,
                },
                snp_crls: Vec::new(),
            }),
        }
    }

    /// SNP collateral: `snp` endorsements found (if any) and the AMD CRLs for `signer`.
    async fn with_crls(
        &self,
        snp: Option<verifier::snp::SnpEndorsements>,
        signer: Option<Vec<u8>>,
        now: Now,
    ) -> Result<HardwareCollateral, ApiError> {
        let snp_crls = match signer {
            Some(s) => self.amd_crl.for_signer(&s, now.unix_timestamp()).await?,
            None => Vec::new(),
        };
        Ok(HardwareCollateral { snp, tdx: None, snp_crls })
    }

    /// The SNP side (for tests and tools).
    #[must_use]
    pub fn snp(&self) -> &snp::SnpSource {
        &self.snp
    }

    /// The AMD CRL side (for tests and tools).
    #[must_use]
    pub fn amd_crl(&self) -> &snp_crl::AmdCrlSource {
        &self.amd_crl
    }

    /// The TDX side (for tests and tools).
    #[must_use]
    pub fn tdx(&self) -> &tdx::TdxSource {
        &self.tdx
    }
}

/// The VCEK or VLEK that guest-components SNP evidence carries, if any.
/// The VCEK (when sent) and the SNP report of decoded az-snp-vtpm evidence, if its HCL report
/// parses.
fn azure_snp_parts(ev: &AzureEvidence) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    let report = verifier::azure::parse_hcl_report(&ev.hcl_report).ok()?.hw_report.to_vec();
    let AzureHardware::Snp { vcek } = &ev.hardware else { return None };
    Some(((!vcek.is_empty()).then(|| vcek.clone()), report))
}

/// Decodes a CRL or certificate body that may be DER, PEM or hex text (PCCS serves the root
/// CA CRL as hex).
#[must_use]
pub fn der_from_any(body: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if body.first() == Some(&0x30) {
        return Some(body.to_vec());
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.starts_with("-----BEGIN") {
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.trim().chars())
            .collect();
        return base64::engine::general_purpose::STANDARD.decode(b64).ok();
    }
    hex::decode(text).ok()
}
