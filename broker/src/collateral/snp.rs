//! SEV-SNP endorsements: the evidence's certificate table first, then the offline directory,
//! then the memory and store caches, then AMD KDS. KDS URL (AMD spec 57230, as `snpguest`
//! builds it): `{kds_url}/vcek/v1/{Milan|Genoa|Turin}/{hwID hex}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`
//! with SPLs as two-digit decimals; Turin adds `fmcSPL` first and its hwID is the first 8
//! bytes of `CHIP_ID`. The response is the DER certificate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use verifier::claims::{SnpProduct, SnpSigningKey, SnpTcb};
use verifier::snp::{parse_report, CocoSnpEvidence, EndorsementId, SnpEndorsements, VcekId};

use super::cache::{Cache, Stored};
use super::http::{FetchError, Upstream};
use super::{der_from_any, on_fetch_error, on_hit, unavailable, CollateralConfig, Kind, Source};
use crate::error::ApiError;
use crate::store::collateral::CollateralStore;

/// How many VCEKs the memory cache keeps before it is cleared.
const MEMORY_LIMIT: usize = 4096;

/// VCEKs and VLEKs from the offline directory.
#[derive(Debug, Default)]
struct Offline {
    /// By (hwID, TCB).
    vceks: HashMap<(Vec<u8>, SnpTcb), Vec<u8>>,
    /// By TCB; a VLEK is not bound to a chip.
    vleks: HashMap<SnpTcb, Vec<Vec<u8>>>,
}

/// Where SNP endorsements come from.
#[derive(Debug)]
pub struct SnpSource {
    offline: Offline,
    kds_url: String,
    /// AMD KDS, shared with [`super::snp_crl`] (one rate limit for the service).
    upstream: Option<Arc<Upstream>>,
    cache: Cache<Arc<[u8]>>,
}

impl SnpSource {
    pub(super) fn new(
        config: &CollateralConfig,
        upstream: Option<Arc<Upstream>>,
        store: Arc<dyn CollateralStore>,
    ) -> anyhow::Result<Self> {
        let offline = match &config.snp_cert_dir {
            Some(dir) => load_offline(dir)?,
            None => Offline::default(),
        };
        Ok(Self {
            offline,
            kds_url: config.kds_url.trim_end_matches('/').to_owned(),
            upstream,
            cache: Cache::new(Kind::SnpVcek, MEMORY_LIMIT, store),
        })
    }

    /// Endorsements for guest-components SNP evidence, or `None` when the evidence carries its
    /// own (it is preferred) or does not parse (the verifier names the failure).
    pub async fn endorsements(
        &self,
        ev: &CocoSnpEvidence,
    ) -> Result<Option<SnpEndorsements>, ApiError> {
        if ev.endorsements().is_some() {
            return Ok(None);
        }
        self.for_report(&ev.report).await.map(Some)
    }

    /// Endorsements for a raw 1184-byte report that carries no certificate.
    pub async fn for_report(&self, report: &[u8]) -> Result<SnpEndorsements, ApiError> {
        let parsed = parse_report(report).map_err(|e| unavailable(format!("SNP report: {e}")))?;
        let products = candidate_products(&parsed);
        if parsed.key_info.signing_key == SnpSigningKey::Vlek {
            for product in products {
                let Ok(tcb) = parsed.reported_tcb.decode("REPORTED_TCB", product) else {
                    continue;
                };
                if let Some(vlek) = self.offline.vleks.get(&tcb).and_then(|v| v.first()) {
                    on_hit(Kind::SnpVcek, Source::Offline);
                    return Ok(SnpEndorsements::new(vlek.clone()));
                }
            }
            return Err(unavailable(
                "no VLEK in the evidence or in snp_cert_dir for this TCB (KDS does not serve VLEKs)",
            ));
        }
        // A version 2 report may be Milan or Genoa: the next product is tried only when KDS
        // says it has no such chip (404); any other failure ends the search.
        let mut last = None;
        for product in products {
            let Ok(id) = VcekId::for_report(&parsed, product) else { continue };
            match self.vcek(&id).await {
                Ok(der) => return Ok(SnpEndorsements::new(der.to_vec())),
                Err((e, true)) => last = Some(e),
                Err((e, false)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| unavailable("no VCEK can be named for this report")))
    }

    /// The VCEK for `id`: offline, then the caches, then KDS. The flag on an error: KDS said 404.
    async fn vcek(&self, id: &VcekId) -> Result<Arc<[u8]>, (ApiError, bool)> {
        if let Some(der) = self.offline.vceks.get(&(id.hw_id.clone(), id.tcb)) {
            on_hit(Kind::SnpVcek, Source::Offline);
            return Ok(Arc::from(der.as_slice()));
        }
        let key = cache_key(id);
        let from_store = |body: &str| {
            STANDARD
                .decode(body)
                .ok()
                .filter(|d| matches(d, id))
                .map(Arc::from)
                .ok_or_else(|| "not base64 of the VCEK for this chip and TCB".to_owned())
        };
        self.cache.get(key.clone(), |_| true, from_store, || self.fetch(id, &key)).await
    }

    /// The VCEK for `id` from KDS.
    async fn fetch(&self, id: &VcekId, key: &str) -> Result<Arc<[u8]>, (ApiError, bool)> {
        let Some(upstream) = &self.upstream else {
            return Err((
                unavailable(format!(
                    "no VCEK for {key} in the evidence or snp_cert_dir, and fetching is disabled"
                )),
                false,
            ));
        };
        let url = format!("{}{}", self.kds_url, kds_path(id));
        let der = match upstream.get(&url).await {
            Ok(f) => {
                der_from_any(&f.body).filter(|d| matches(d, id)).ok_or_else(|| FetchError::GaveUp {
                    url: url.clone(),
                    attempts: 1,
                    last: "response is not the VCEK for this chip and TCB".to_owned(),
                })
            }
            Err(e) => Err(e),
        };
        der.map(Arc::from).map_err(|e| {
            on_fetch_error(Kind::SnpVcek, &e);
            let not_found = matches!(e, FetchError::NotFound { .. });
            (unavailable(format!("VCEK from AMD KDS: {e}")), not_found)
        })
    }
}

/// A VCEK or VLEK (DER) as the store keeps it: base64, with no expiry.
impl Stored for Arc<[u8]> {
    fn body(&self) -> String {
        STANDARD.encode(self)
    }

    fn next_update(&self) -> Option<i64> {
        None
    }
}

/// The products a report may be: its CPUID's (v3+); for version 2, Turin when only the first
/// 8 bytes of `CHIP_ID` are set (as `snpguest` decides), else Milan then Genoa.
fn candidate_products(report: &verifier::snp::AttestationReport) -> Vec<SnpProduct> {
    if let Some(p) = report.product() {
        return vec![p];
    }
    let tail_zero = report.chip_id.get(8..).is_some_and(|t| t.iter().all(|b| *b == 0));
    if tail_zero && report.chip_id.iter().any(|b| *b != 0) {
        vec![SnpProduct::Turin]
    } else {
        vec![SnpProduct::Milan, SnpProduct::Genoa]
    }
}

/// The KDS path of the VCEK `id` names.
#[must_use]
pub fn kds_path(id: &VcekId) -> String {
    let t = id.tcb;
    let fmc = t.fmc.map(|f| format!("fmcSPL={f:02}&")).unwrap_or_default();
    format!(
        "/vcek/v1/{}/{}?{fmc}blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        id.product.kds_name(),
        hex::encode(&id.hw_id),
        t.bootloader,
        t.tee,
        t.snp,
        t.microcode
    )
}

/// The cache key `<product>/<hwID hex>/<tcb>`.
fn cache_key(id: &VcekId) -> String {
    let t = id.tcb;
    let fmc = t.fmc.map_or_else(|| "-".to_owned(), |f| f.to_string());
    format!(
        "{}/{}/{fmc}.{}.{}.{}.{}",
        id.product.as_str(),
        hex::encode(&id.hw_id),
        t.bootloader,
        t.tee,
        t.snp,
        t.microcode
    )
}

/// The certificate was issued for exactly this chip and TCB.
fn matches(der: &[u8], id: &VcekId) -> bool {
    EndorsementId::of_certificate(der).is_ok_and(|e| {
        e.hw_id.as_deref() == Some(id.hw_id.as_slice())
            && e.tcb == id.tcb
            && e.product.is_none_or(|p| p == id.product)
    })
}

/// Indexes every `*.der` / `*.pem` certificate in `dir`.
fn load_offline(dir: &Path) -> anyhow::Result<Offline> {
    let mut out = Offline::default();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if !matches!(ext, "der" | "pem" | "crt" | "cer") {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let der = der_from_any(&bytes)
            .with_context(|| format!("{}: not a DER or PEM certificate", path.display()))?;
        let id = EndorsementId::of_certificate(&der)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        match id.hw_id {
            Some(hw) => {
                out.vceks.insert((hw, id.tcb), der);
            }
            None => out.vleks.entry(id.tcb).or_default().push(der),
        }
    }
    tracing::info!(
        dir = %dir.display(),
        vceks = out.vceks.len(),
        vleks = out.vleks.values().map(Vec::len).sum::<usize>(),
        "offline SNP certificates indexed"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kds_path_for_milan_and_turin() {
        let tcb = SnpTcb { fmc: None, bootloader: 2, tee: 0, snp: 5, microcode: 68 };
        let id = VcekId { product: SnpProduct::Milan, hw_id: vec![0xab; 64], tcb };
        assert_eq!(
            kds_path(&id),
            format!("/vcek/v1/Milan/{}?blSPL=02&teeSPL=00&snpSPL=05&ucodeSPL=68", "ab".repeat(64))
        );
        let tcb = SnpTcb { fmc: Some(1), bootloader: 3, tee: 0, snp: 21, microcode: 72 };
        let id = VcekId { product: SnpProduct::Turin, hw_id: vec![0x01; 8], tcb };
        assert_eq!(
            kds_path(&id),
            "/vcek/v1/Turin/0101010101010101?fmcSPL=01&blSPL=03&teeSPL=00&snpSPL=21&ucodeSPL=72"
        );
    }
}
