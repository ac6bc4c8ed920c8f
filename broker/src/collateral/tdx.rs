//! TDX collateral: the offline file (one collateral for every quote) or directory (`*.json`
//! files, indexed by the FMSPC of their TCB info), then the memory and store caches, then
//! Intel PCS / a PCCS (API v4):
//!
//! - `GET /sgx/certification/v4/pckcrl?ca={platform|processor}&encoding=der`: DER CRL, issuer
//!   chain in `SGX-PCK-CRL-Issuer-Chain`;
//! - `GET /tdx/certification/v4/tcb?fmspc={FMSPC}`: `{"tcbInfo": {...}, "signature": hex}`,
//!   issuer chain in `TCB-Info-Issuer-Chain` (`SGX-TCB-Info-Issuer-Chain` on older servers);
//! - `GET /tdx/certification/v4/qe/identity`: `{"enclaveIdentity": {...}, "signature": hex}`,
//!   issuer chain in `SGX-Enclave-Identity-Issuer-Chain`;
//! - the root CA CRL from `root_ca_crl_url` (DER, PEM or a PCCS's hex).
//!
//! Issuer chains arrive URL-encoded (percent-encoded PEM). The signed JSON is kept as the exact
//! text of the `tcbInfo` / `enclaveIdentity` member (never re-serialized). Collateral is used
//! until its earliest `nextUpdate`; then it is fetched again, and the stale copy is not used.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use verifier::tdx::{CollateralNeed, TdxCollateral, TdxCollateralParts, TdxTrustAnchors};

use super::cache::{Cache, Stored};
use super::http::{CollateralFetcher, FetchError, Fetched, Upstream};
use super::{der_from_any, on_fetch_error, on_hit, unavailable, CollateralConfig, Kind, Source};
use crate::error::ApiError;
use crate::store::collateral::CollateralStore;

/// How many (FMSPC, CA) collaterals the memory cache keeps before it is cleared.
const MEMORY_LIMIT: usize = 256;

/// Collateral with the instant it stops being usable.
#[derive(Debug, Clone)]
struct Entry {
    collateral: Arc<TdxCollateral>,
    next_update: i64,
}

#[derive(Debug, Default)]
enum Offline {
    #[default]
    None,
    /// One file for every quote.
    File(Entry),
    /// By FMSPC.
    Dir(HashMap<[u8; 6], Entry>),
}

/// Where TDX collateral comes from.
#[derive(Debug)]
pub struct TdxSource {
    offline: Offline,
    pcs_url: String,
    root_ca_crl_url: String,
    upstream: Option<Upstream>,
    production_root: [u8; 32],
    cache: Cache<Entry>,
}

impl TdxSource {
    pub(super) fn new(
        config: &CollateralConfig,
        offline: Option<&Path>,
        store: Arc<dyn CollateralStore>,
        fetcher: Option<Arc<dyn CollateralFetcher>>,
    ) -> anyhow::Result<Self> {
        let offline = match offline {
            Some(p) if p.is_dir() => Offline::Dir(load_dir(p)?),
            Some(p) => Offline::File(load_file(p)?),
            None => Offline::None,
        };
        Ok(Self {
            offline,
            pcs_url: config.pcs_url.trim_end_matches('/').to_owned(),
            root_ca_crl_url: config.root_ca_crl_url(),
            upstream: fetcher.map(|f| Upstream::new(config, f)),
            production_root: *TdxTrustAnchors::production().root_sha256(),
            cache: Cache::new(Kind::Tdx, MEMORY_LIMIT, store),
        })
    }

    /// Collateral for a raw quote at `now` (Unix seconds).
    pub async fn for_quote(
        &self,
        quote: &[u8],
        now: i64,
    ) -> Result<Option<Arc<TdxCollateral>>, ApiError> {
        let Ok(need) = CollateralNeed::for_quote(quote) else { return Ok(None) };
        if need.chain_root_sha256 != self.production_root {
            return Ok(None);
        }
        let fresh = |e: &Entry| e.next_update > now;
        let offline = match &self.offline {
            Offline::None => None,
            Offline::File(e) => Some(e),
            Offline::Dir(m) => m.get(&need.fmspc),
        };
        if let Some(e) = offline {
            if fresh(e) || self.upstream.is_none() {
                on_hit(Kind::Tdx, Source::Offline);
                return Ok(Some(Arc::clone(&e.collateral)));
            }
            tracing::warn!(fmspc = %hex::encode(need.fmspc), "offline TDX collateral is past nextUpdate; fetching");
        }
        let key = format!("{}/{}", hex::encode(need.fmspc), need.ca.as_str());
        let from_store = |body: &str| decode_entry(body.as_bytes()).map_err(|e| e.to_string());
        let entry =
            self.cache.get(key, fresh, from_store, || self.fetch_current(&need, now)).await?;
        Ok(Some(entry.collateral))
    }

    /// Collateral for `need` from Intel PCS that is current at `now`.
    async fn fetch_current(&self, need: &CollateralNeed, now: i64) -> Result<Entry, ApiError> {
        let Some(upstream) = &self.upstream else {
            return Err(unavailable(format!(
                "no current TDX collateral for FMSPC {} offline, and fetching is disabled",
                hex::encode(need.fmspc)
            )));
        };
        let collateral = self.fetch(upstream, need).await.map_err(|e| {
            on_fetch_error(Kind::Tdx, &e);
            unavailable(format!("TDX collateral from Intel PCS: {e}"))
        })?;
        let next_update = collateral
            .next_update()
            .map_err(|e| unavailable(format!("fetched TDX collateral: {e}")))?;
        if next_update <= now {
            return Err(unavailable("fetched TDX collateral is already past its nextUpdate"));
        }
        Ok(Entry { collateral: Arc::new(collateral), next_update })
    }

    async fn fetch(
        &self,
        upstream: &Upstream,
        need: &CollateralNeed,
    ) -> Result<TdxCollateral, FetchError> {
        let base = &self.pcs_url;
        let fmspc = hex::encode_upper(need.fmspc);
        let url =
            format!("{base}/sgx/certification/v4/pckcrl?ca={}&encoding=der", need.ca.as_str());
        let crl = upstream.get(&url).await?;
        let pck_crl_issuer_chain = header(&crl, &url, &["SGX-PCK-CRL-Issuer-Chain"])?;
        let pck_crl =
            der_from_any(&crl.body).ok_or_else(|| bad(&url, "PCK CRL is not DER, PEM or hex"))?;

        let url = format!("{base}/tdx/certification/v4/tcb?fmspc={fmspc}");
        let tcb = upstream.get(&url).await?;
        let tcb_info_issuer_chain =
            header(&tcb, &url, &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"])?;
        let (tcb_info, tcb_info_signature) = signed_member(&tcb.body, "tcbInfo")
            .ok_or_else(|| bad(&url, "not {\"tcbInfo\": {...}, \"signature\": hex}"))?;

        let url = format!("{base}/tdx/certification/v4/qe/identity");
        let qe = upstream.get(&url).await?;
        let qe_identity_issuer_chain = header(&qe, &url, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let (qe_identity, qe_identity_signature) = signed_member(&qe.body, "enclaveIdentity")
            .ok_or_else(|| bad(&url, "not {\"enclaveIdentity\": {...}, \"signature\": hex}"))?;

        let url = &self.root_ca_crl_url;
        let root = upstream.get(url).await?;
        let root_ca_crl = der_from_any(&root.body)
            .ok_or_else(|| bad(url, "root CA CRL is not DER, PEM or hex"))?;

        Ok(TdxCollateral::from_parts(TdxCollateralParts {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
        }))
    }
}

/// TDX collateral as the store keeps it: its JSON, with its earliest nextUpdate.
impl Stored for Entry {
    fn body(&self) -> String {
        String::from_utf8_lossy(&self.collateral.to_json()).into_owned()
    }

    fn next_update(&self) -> Option<i64> {
        Some(self.next_update)
    }
}

fn bad(url: &str, why: &str) -> FetchError {
    FetchError::GaveUp { url: url.to_owned(), attempts: 1, last: why.to_owned() }
}

/// The first of `names` present, percent-decoded.
fn header(f: &Fetched, url: &str, names: &[&str]) -> Result<String, FetchError> {
    let raw = names
        .iter()
        .find_map(|n| f.header(n))
        .ok_or_else(|| bad(url, "issuer chain header missing"))?;
    percent_decode(raw).ok_or_else(|| bad(url, "issuer chain header is not percent-encoded UTF-8"))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `{"<member>": <object>, "signature": "<hex>"}` → (exact object text, signature bytes).
fn signed_member(body: &[u8], member: &str) -> Option<(String, Vec<u8>)> {
    #[derive(Deserialize)]
    struct Signed<'a> {
        #[serde(rename = "tcbInfo", borrow, default)]
        tcb_info: Option<&'a RawValue>,
        #[serde(rename = "enclaveIdentity", borrow, default)]
        enclave_identity: Option<&'a RawValue>,
        signature: String,
    }
    let s: Signed<'_> = serde_json::from_slice(body).ok()?;
    let raw = match member {
        "tcbInfo" => s.tcb_info?,
        _ => s.enclave_identity?,
    };
    Some((raw.get().to_owned(), hex::decode(&s.signature).ok()?))
}

fn decode_entry(json: &[u8]) -> anyhow::Result<Entry> {
    let c = TdxCollateral::from_json(json).map_err(|e| anyhow::anyhow!("{e}"))?;
    let next_update = c.next_update().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Entry { collateral: Arc::new(c), next_update })
}

fn load_file(p: &Path) -> anyhow::Result<Entry> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    decode_entry(&bytes).with_context(|| p.display().to_string())
}

fn load_dir(dir: &Path) -> anyhow::Result<HashMap<[u8; 6], Entry>> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let e = load_file(&path)?;
        let fmspc =
            e.collateral.fmspc().map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        out.insert(fmspc, e);
    }
    tracing::info!(dir = %dir.display(), fmspcs = out.len(), "offline TDX collateral indexed");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decode_reads_pem_headers_and_rejects_broken_escapes() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERTIFICATE-----%0AMII").as_deref(),
            Some("-----BEGIN CERTIFICATE-----\nMII")
        );
        assert_eq!(percent_decode("abc%2"), None);
        assert_eq!(percent_decode("abc%zz"), None);
    }

    #[test]
    fn signed_member_keeps_the_exact_text() {
        let body = br#"{"tcbInfo":{"b":1, "a":[2]},"signature":"0aff"}"#;
        let (text, sig) = signed_member(body, "tcbInfo").unwrap_or_default();
        assert_eq!(text, r#"{"b":1, "a":[2]}"#);
        assert_eq!(sig, vec![0x0a, 0xff]);
        assert_eq!(signed_member(body, "enclaveIdentity"), None);
    }
}
