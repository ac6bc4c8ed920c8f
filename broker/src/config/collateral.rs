//! The `[collateral]` section of `keylatch.toml`: where collateral for hardware evidence comes
//! from (offline directory, AMD KDS, Intel PCS or a PCCS) and how politely it is fetched.

use std::path::PathBuf;

use serde::Deserialize;

/// AMD's Key Distribution Service.
pub const DEFAULT_KDS_URL: &str = "https://kds.amd.com";
/// Intel's Provisioning Certification Service.
pub const DEFAULT_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// Where Intel PCS users get the SGX root CA CRL (the root certificate's CRL distribution
/// point); a PCCS serves it at `/sgx/certification/v4/rootcacrl` instead.
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// `[collateral]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollateralConfig {
    /// Fetch collateral that is neither in the evidence nor offline (false: offline only).
    pub fetch: bool,
    /// AMD KDS base URL (VCEKs).
    pub kds_url: String,
    /// Intel PCS or PCCS base URL (TDX TCB info, QE identity, PCK CRLs).
    pub pcs_url: String,
    /// Root CA CRL URL; default: Intel's when `pcs_url` is Intel PCS, else the PCCS
    /// `rootcacrl` endpoint.
    pub root_ca_crl_url: Option<String>,
    /// Offline VCEK/VLEK certificates (`*.der` or `*.pem`), indexed at start by their `hwID`
    /// and TCB extensions.
    pub snp_cert_dir: Option<PathBuf>,
    /// Requests per second to each upstream service (KDS allows few).
    pub requests_per_second: u32,
    /// Retries after HTTP 429, 5xx or a transport error before giving up.
    pub max_retries: u32,
    /// First backoff between retries (milliseconds), doubled on each retry.
    pub backoff_initial_ms: u64,
    /// Longest wait honoured (a longer `Retry-After` gives up at once), seconds.
    pub max_backoff_s: u64,
    /// Timeout of one HTTP request, seconds.
    pub timeout_s: u64,
    /// Check AMD's CRLs (KDS `vcek|vlek/v1/{product}/crl`) for SEV-SNP hardware chains; when on,
    /// evidence whose CRL cannot be had current is answered 503 `collateral-unavailable`.
    pub amd_crl_check: bool,
    /// Seconds an AMD CRL is still accepted after its `nextUpdate`.
    pub amd_crl_grace_s: u32,
    /// Offline AMD CRLs (DER or PEM), read at start; used before the caches and KDS.
    pub amd_crl_dir: Option<PathBuf>,
    /// File name of each CRL in `amd_crl_dir`: `{kind}` becomes `vcek` or `vlek`, `{product}`
    /// becomes `Milan`, `Genoa` or `Turin` (as in the KDS path).
    pub amd_crl_file: String,
}

impl Default for CollateralConfig {
    fn default() -> Self {
        Self {
            fetch: true,
            kds_url: DEFAULT_KDS_URL.to_owned(),
            pcs_url: DEFAULT_PCS_URL.to_owned(),
            root_ca_crl_url: None,
            snp_cert_dir: None,
            requests_per_second: 2,
            max_retries: 3,
            backoff_initial_ms: 500,
            max_backoff_s: 60,
            timeout_s: 10,
            amd_crl_check: true,
            amd_crl_grace_s: 86_400,
            amd_crl_dir: None,
            amd_crl_file: "{kind}-{product}.crl".to_owned(),
        }
    }
}

impl CollateralConfig {
    /// The root CA CRL URL in effect.
    #[must_use]
    pub fn root_ca_crl_url(&self) -> String {
        match &self.root_ca_crl_url {
            Some(u) => u.clone(),
            None if self.pcs_url.trim_end_matches('/') == DEFAULT_PCS_URL => {
                INTEL_ROOT_CA_CRL_URL.to_owned()
            }
            None => {
                format!("{}/sgx/certification/v4/rootcacrl", self.pcs_url.trim_end_matches('/'))
            }
        }
    }

    /// Rules serde cannot express.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.requests_per_second == 0 {
            anyhow::bail!("[collateral] requests_per_second must be positive");
        }
        if self.timeout_s == 0 {
            anyhow::bail!("[collateral] timeout_s must be positive");
        }
        if !self.amd_crl_file.contains("{product}") || !self.amd_crl_file.contains("{kind}") {
            anyhow::bail!("[collateral] amd_crl_file must contain {{kind}} and {{product}}");
        }
        Ok(())
    }
}
