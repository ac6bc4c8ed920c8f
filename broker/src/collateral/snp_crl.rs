//! AMD CRLs for SEV-SNP chains: which CRL a report's chain needs and where it comes from.
//! KDS serves one per product and signing-key kind, at the CRL distribution points of the ASK
//! and ASVK: `{kds_url}/vcek/v1/{Milan|Genoa|Turin}/crl` and `{kds_url}/vlek/v1/{product}/crl`
//! (DER X.509 v2 CRLs signed by the product's ARK; checked by the verifier, not here).
//!
//! Order: the offline file (`amd_crl_dir`/`amd_crl_file`) while current, then memory, then the
//! store (`amd-crl` rows, with their nextUpdate), then KDS (rate-limited by [`Upstream`]).
//! "Current" is `now <= nextUpdate + amd_crl_grace_s`; a CRL that is not is never handed on while
//! a current one may be fetched, and when none can be had the answer is 503
//! `collateral-unavailable`. Only chains whose signer names one of AMD's ASKs/ASVKs cause a
//! fetch; every offline CRL also goes to the verifier as is, which applies those its anchors
//! issued (that is how a simulation PKI's CRL is staged).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use verifier::claims::{SnpProduct, SnpSigningKey};
use verifier::snp::SnpTrustAnchors;
use verifier::x509::Crl;

use super::cache::{Cache, Stored};
use super::http::Upstream;
use super::{der_from_any, on_fetch_error, on_hit, unavailable, CollateralConfig, Kind, Source};
use crate::error::ApiError;
use crate::store::collateral::CollateralStore;

type Key = (SnpSigningKey, SnpProduct);

/// How many CRLs the memory cache keeps before it is cleared (there are far fewer keys).
const MEMORY_LIMIT: usize = 64;

/// A CRL's DER and its nextUpdate (Unix seconds).
#[derive(Debug, Clone)]
struct Held {
    der: Arc<[u8]>,
    next_update: i64,
}

/// Where AMD CRLs come from.
#[derive(Debug)]
pub struct AmdCrlSource {
    check: bool,
    grace_s: u32,
    offline: HashMap<Key, Held>,
    kds_url: String,
    upstream: Option<Arc<Upstream>>,
    cache: Cache<Held>,
    production: SnpTrustAnchors,
}

fn kind_name(kind: SnpSigningKey) -> &'static str {
    match kind {
        SnpSigningKey::Vcek => "vcek",
        SnpSigningKey::Vlek => "vlek",
    }
}

fn parse(der: &[u8]) -> Option<Held> {
    let next_update = Crl::from_der("AMD CRL", der).ok()?.next_update();
    Some(Held { der: der.into(), next_update })
}

impl AmdCrlSource {
    pub(super) fn new(
        config: &CollateralConfig,
        upstream: Option<Arc<Upstream>>,
        store: Arc<dyn CollateralStore>,
    ) -> anyhow::Result<Self> {
        let offline = match &config.amd_crl_dir {
            Some(dir) => load_offline(dir, &config.amd_crl_file)?,
            None => HashMap::new(),
        };
        Ok(Self {
            check: config.amd_crl_check,
            grace_s: config.amd_crl_grace_s,
            offline,
            kds_url: config.kds_url.trim_end_matches('/').to_owned(),
            upstream,
            cache: Cache::new(Kind::AmdCrl, MEMORY_LIMIT, store),
            production: SnpTrustAnchors::production()
                .map_err(|e| anyhow::anyhow!("AMD roots: {e}"))?,
        })
    }

    /// Whether hardware chains must be checked against a CRL, and the grace after nextUpdate.
    #[must_use]
    pub fn policy(&self) -> (bool, u32) {
        (self.check, self.grace_s)
    }

    /// The CRLs to verify the chain of `signer` (DER or PEM) with: the current CRL for its
    /// AMD product and kind (when checking is on and the signer names an AMD intermediate),
    /// and every offline CRL.
    pub async fn for_signer(&self, signer: &[u8], now: i64) -> Result<Vec<Arc<[u8]>>, ApiError> {
        let mut out: Vec<Arc<[u8]>> = Vec::new();
        // The signer is parsed only when a CRL may be needed for it.
        let needed = self
            .check
            .then(|| self.production.issuer_named_by(signer))
            .flatten()
            .map(|(p, k)| (k, p));
        if let Some(key) = needed {
            out.push(self.current(key, now).await?);
        }
        for (key, held) in &self.offline {
            if Some(*key) != needed {
                out.push(Arc::clone(&held.der));
            }
        }
        Ok(out)
    }

    fn fresh(&self, held: &Held, now: i64) -> bool {
        now <= held.next_update.saturating_add(i64::from(self.grace_s))
    }

    /// The current CRL for `key`: offline, then the caches, then KDS.
    async fn current(&self, key: Key, now: i64) -> Result<Arc<[u8]>, ApiError> {
        let fresh = |h: &Held| self.fresh(h, now);
        if let Some(held) = self.offline.get(&key).filter(|h| fresh(h)) {
            on_hit(Kind::AmdCrl, Source::Offline);
            return Ok(Arc::clone(&held.der));
        }
        let (kind, product) = key;
        let cache_key = format!("{}/{}", kind_name(kind), product.kds_name());
        let from_store = |body: &str| {
            STANDARD
                .decode(body)
                .ok()
                .and_then(|d| parse(&d))
                .ok_or_else(|| "not base64 of a CRL".to_owned())
        };
        let held = self.cache.get(cache_key, fresh, from_store, || self.fetch(key, now)).await?;
        Ok(held.der)
    }

    /// The current CRL for `key` from KDS.
    async fn fetch(&self, (kind, product): Key, now: i64) -> Result<Held, ApiError> {
        let name = verifier::snp::crl_name(product);
        let Some(upstream) = &self.upstream else {
            return Err(unavailable(format!(
                "no current {name} ({} chain) offline or cached, and fetching is disabled",
                kind_name(kind)
            )));
        };
        let url = format!("{}/{}/v1/{}/crl", self.kds_url, kind_name(kind), product.kds_name());
        let fetched = upstream.get(&url).await.map_err(|e| {
            on_fetch_error(Kind::AmdCrl, &e);
            unavailable(format!("{name} from AMD KDS: {e}"))
        })?;
        let held = der_from_any(&fetched.body)
            .and_then(|d| parse(&d))
            .ok_or_else(|| unavailable(format!("{name} from AMD KDS ({url}) is not a CRL")))?;
        if !self.fresh(&held, now) {
            return Err(unavailable(format!("{name} from AMD KDS is past its nextUpdate")));
        }
        Ok(held)
    }
}

/// A CRL as the store keeps it: base64 DER, with its nextUpdate.
impl Stored for Held {
    fn body(&self) -> String {
        STANDARD.encode(&self.der)
    }

    fn next_update(&self) -> Option<i64> {
        Some(self.next_update)
    }
}

/// Reads `dir/amd_crl_file` for every kind and product; absent files are skipped, files that
/// are not CRLs stop the start.
fn load_offline(dir: &Path, pattern: &str) -> anyhow::Result<HashMap<Key, Held>> {
    let mut out = HashMap::new();
    for kind in [SnpSigningKey::Vcek, SnpSigningKey::Vlek] {
        for product in SnpProduct::ALL {
            let name =
                pattern.replace("{kind}", kind_name(kind)).replace("{product}", product.kds_name());
            let path = dir.join(name);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            let held = der_from_any(&bytes)
                .and_then(|d| parse(&d))
                .with_context(|| format!("{}: not a DER or PEM CRL", path.display()))?;
            out.insert((kind, product), held);
        }
    }
    tracing::info!(dir = %dir.display(), crls = out.len(), "offline AMD CRLs read");
    Ok(out)
}
