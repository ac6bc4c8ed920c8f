//! The broker's configuration file, `keylatch.toml`: its typed form, loading (unknown keys are
//! errors), and resolution of relative paths against the file's own directory. Every key is
//! documented in `kbs/CONFIG.md` and in the commented file `keylatch init` writes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// Default lifetime of a challenge session (seconds).
pub const DEFAULT_SESSION_LIFETIME_S: u64 = 300;
/// Default lifetime of an attestation token (seconds).
pub const DEFAULT_TOKEN_LIFETIME_S: u64 = 300;
/// Default request body limit (bytes): evidence with certificates fits many times over.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// `keylatch.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Socket address to listen on, e.g. `0.0.0.0:8443`.
    pub listen: String,
    /// Serve plain HTTP instead of HTTPS. Only for a broker behind a TLS-terminating proxy on
    /// the same host; the broker warns loudly.
    #[serde(default)]
    pub insecure_http: bool,
    /// Certificate chain and key (PEM) for HTTPS. Required unless `insecure_http`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    pub store: StoreConfig,
    /// How long a challenge (nonce) may be answered.
    #[serde(default = "default_session")]
    pub session_lifetime_s: u64,
    /// How long an attestation token is valid.
    #[serde(default = "default_token")]
    pub token_lifetime_s: u64,
    /// ES256 (P-256) PKCS#8 PEM key that signs attestation tokens; mode 0600.
    pub token_signing_key: PathBuf,
    /// Accept Trustee's unsigned `sample` TEE (development only).
    #[serde(default)]
    pub allow_sample: bool,
    /// Accept evidence signed by the simulation PKI in `sim_pki`.
    #[serde(default)]
    pub allow_simulated: bool,
    /// Directory of the simulation PKI (`keylatch sim init`). Without `allow_simulated` it is
    /// only used to recognize simulated evidence and refuse it by name.
    #[serde(default)]
    pub sim_pki: Option<PathBuf>,
    /// Intel collateral for hardware TDX quotes: a JSON file as `verifier::tdx::TdxCollateral`
    /// reads it (used for every quote), or a directory of such files (chosen by FMSPC).
    #[serde(default)]
    pub tdx_collateral: Option<PathBuf>,
    /// Where collateral missing from evidence comes from (offline, AMD KDS, Intel PCS/PCCS).
    #[serde(default)]
    pub collateral: crate::collateral::CollateralConfig,
    /// Largest request body accepted (bytes).
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    pub keystore: KeystoreConfig,
    /// Signed reference-value bundles, loaded at start.
    #[serde(default)]
    pub reference_values: Vec<ReferenceValuesConfig>,
}

fn default_session() -> u64 {
    DEFAULT_SESSION_LIFETIME_S
}
fn default_token() -> u64 {
    DEFAULT_TOKEN_LIFETIME_S
}
fn default_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8), mode 0600.
    pub key: PathBuf,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (PostgreSQL comes with its own issue).
    pub backend: StoreBackend,
    /// SQLite database file.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Sqlite,
}

/// `[keystore]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoreConfig {
    /// `pkcs11` (KEK inside an HSM token) or `soft` (KEK in a local file; development only).
    pub backend: KeystoreBackend,
    /// The soft backend's KEK file, mode 0600.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
    /// The pkcs11 backend: `{ module = "...so", token_label = "...", pin = { file = "..." } }`
    /// (or `pin = { env = "VAR" }`; never the PIN itself).
    #[serde(default)]
    pub pkcs11: Option<keylatch_keystore::pkcs11::Pkcs11Config>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeystoreBackend {
    Soft,
    Pkcs11,
}

/// One `[[reference_values]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValuesConfig {
    /// The bundle name policies refer to; must equal the name inside the bundle.
    pub name: String,
    /// The signed bundle (`refval sign` output).
    pub bundle: PathBuf,
    /// PEM public keys of the authors trusted for this bundle.
    pub author_keys: Vec<PathBuf>,
    /// How many distinct trusted authors must have signed.
    pub threshold: usize,
}

impl Config {
    /// Reads and checks `path`; relative paths inside are made relative to its directory.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        config.resolve(base);
        config.check()?;
        Ok(config)
    }

    /// Makes every relative path relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(tls) = &mut self.tls {
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
        fix(&mut self.store.path);
        fix(&mut self.token_signing_key);
        self.sim_pki.as_mut().map(fix);
        self.tdx_collateral.as_mut().map(fix);
        self.collateral.snp_cert_dir.as_mut().map(fix);
        self.keystore.kek_file.as_mut().map(fix);
        if let Some(pkcs11) = self.keystore.pkcs11.as_mut() {
            if let keylatch_keystore::pkcs11::PinSource::File(pin) = &mut pkcs11.pin {
                fix(pin);
            }
        }
        for rv in &mut self.reference_values {
            fix(&mut rv.bundle);
            rv.author_keys.iter_mut().for_each(fix);
        }
    }

    /// Cross-field rules serde cannot express.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.tls.is_none() && !self.insecure_http {
            bail!("[tls] cert and key are required unless insecure_http = true");
        }
        if self.allow_simulated && self.sim_pki.is_none() {
            bail!("allow_simulated = true needs sim_pki (the simulation PKI directory)");
        }
        if self.keystore.backend == KeystoreBackend::Pkcs11 && self.keystore.pkcs11.is_none() {
            bail!("[keystore] backend = \"pkcs11\" needs pkcs11 = {{ module, token_label, pin }}");
        }
        if self.keystore.backend == KeystoreBackend::Soft && self.keystore.kek_file.is_none() {
            bail!("[keystore] backend = \"soft\" needs kek_file");
        }
        self.collateral.check()?;
        if self.session_lifetime_s == 0 || self.token_lifetime_s == 0 {
            bail!("session_lifetime_s and token_lifetime_s must be positive");
        }
        for rv in &self.reference_values {
            if rv.threshold == 0 || rv.threshold > rv.author_keys.len() {
                bail!(
                    "reference_values {:?}: threshold {} must be between 1 and the number of author_keys ({})",
                    rv.name,
                    rv.threshold,
                    rv.author_keys.len()
                );
            }
        }
        Ok(())
    }
}
