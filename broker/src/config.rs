//! The broker's configuration file, `keylatch.toml`: its typed form, loading (unknown keys are
//! errors), and resolution of relative paths against the file's own directory. Every key is
//! documented in `broker/CONFIG.md` and in the commented file `keylatch init` writes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;
use zeroize::Zeroizing;

mod collateral;
pub use collateral::CollateralConfig;

/// Default lifetime of a challenge session (seconds).
pub const DEFAULT_SESSION_LIFETIME_S: u64 = 300;
/// Default lifetime of an attestation token (seconds).
pub const DEFAULT_TOKEN_LIFETIME_S: u64 = 300;
/// Default request body limit (bytes): 2 MiB. The largest legitimate body is an attestation
/// with a TDX quote and its PCK chain plus init-data (tens of KiB); the headroom is for
/// evidence formats with more certificates, while a body this size still costs little memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 << 20;
/// Default time a client gets for each of: the TLS handshake, the request head, the request
/// body (seconds). A guest's whole request is a few KiB sent at once; ten seconds forgives a
/// congested network while a client that trickles bytes to hold a connection is cut off.
pub const DEFAULT_CLIENT_TIMEOUT_S: u64 = 10;

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
    pub collateral: CollateralConfig,
    /// Largest request body accepted (bytes).
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Time allowed for each of the TLS handshake, the request head and the request body.
    #[serde(default = "default_client_timeout")]
    pub client_timeout_s: u64,
    pub keystore: KeystoreConfig,
    /// Reference-value bundle names with their trusted authors (and optionally a bundle file).
    #[serde(default)]
    pub reference_values: Vec<ReferenceValuesConfig>,
    /// Resource lifecycle settings.
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// The tamper-evident audit log's checkpoint signing.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Log format and level.
    #[serde(default)]
    pub log: LogConfig,
    /// Per-client-address rate limit on the protocol endpoints.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Ed25519 PKCS#8 PEM key (mode 0600) that signs checkpoints; `keylatch init` or
    /// `keylatch audit keygen` writes it, with the verifier key auditors use beside it.
    #[serde(default = "default_audit_key")]
    pub signing_key: PathBuf,
    /// The log's name: the first line of every checkpoint and the verifier key's name.
    #[serde(default = "default_audit_origin")]
    pub origin: String,
    /// Sign a checkpoint once this many entries were appended since the last one...
    #[serde(default = "default_audit_entries")]
    pub checkpoint_every_entries: u64,
    /// ...or this many seconds passed and the log grew.
    #[serde(default = "default_audit_seconds")]
    pub checkpoint_every_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: default_audit_key(),
            origin: default_audit_origin(),
            checkpoint_every_entries: default_audit_entries(),
            checkpoint_every_seconds: default_audit_seconds(),
        }
    }
}

/// Checkpoint signing settings (`[audit]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub every_entries: u64,
    pub every_seconds: u64,
}

impl AuditConfig {
    /// The checkpoint schedule.
    #[must_use]
    pub fn schedule(&self) -> Schedule {
        Schedule {
            every_entries: self.checkpoint_every_entries,
            every_seconds: self.checkpoint_every_seconds,
        }
    }
}

/// Default file name of the audit checkpoint key (and, with `.pub`, its verifier key).
pub const DEFAULT_AUDIT_KEY: &str = "audit-signing-key.pem";
/// Default log origin.
pub const DEFAULT_AUDIT_ORIGIN: &str = "keylatch/audit";

fn default_audit_key() -> PathBuf {
    PathBuf::from(DEFAULT_AUDIT_KEY)
}
fn default_audit_origin() -> String {
    DEFAULT_AUDIT_ORIGIN.to_owned()
}
fn default_audit_entries() -> u64 {
    1000
}
fn default_audit_seconds() -> u64 {
    60
}

/// `[lifecycle]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// `keylatch resource list` (and `/metrics`) flag resources whose rotate-by date is within
    /// this many days as due soon.
    #[serde(default = "default_warning_days")]
    pub rotation_warning_days: u32,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self { rotation_warning_days: default_warning_days() }
    }
}

impl LifecycleConfig {
    /// The warning window in seconds.
    #[must_use]
    pub fn warning_window_s(&self) -> i64 {
        i64::from(self.rotation_warning_days) * 86_400
    }
}

/// Default warning window before a rotate-by date (`[lifecycle] rotation_warning_days`).
pub const DEFAULT_ROTATION_WARNING_DAYS: u32 = 30;

fn default_warning_days() -> u32 {
    DEFAULT_ROTATION_WARNING_DAYS
}

fn default_client_timeout() -> u64 {
    DEFAULT_CLIENT_TIMEOUT_S
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
    /// `sqlite` (one file, one broker process) or `postgres` (shared by any number of replicas).
    pub backend: StoreBackend,
    /// SQLite: the database file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// PostgreSQL: `postgres://user@host:port/database?sslmode=verify-full&sslrootcert=...`
    /// (a Unix socket directory as `?host=/run/postgresql`). Keep the password out of it: use
    /// `password_file`.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL: file holding the password (first line; mode 0600). Overrides a password in
    /// `url`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections per broker process (default 16).
    #[serde(default)]
    pub max_connections: Option<u32>,
}

impl StoreConfig {
    /// The PostgreSQL password from `password_file`, if one is configured. Errors name the file,
    /// never its contents.
    pub fn read_password(&self) -> Result<Option<Zeroizing<String>>, String> {
        let Some(path) = &self.password_file else { return Ok(None) };
        crate::files::check_private(path).map_err(|e| format!("[store] password_file: {e:#}"))?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("[store] password_file {}: {e}", path.display()))?,
        );
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(format!("[store] password_file {} is empty", path.display()));
        }
        Ok(Some(Zeroizing::new(line.to_owned())))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Sqlite,
    Postgres,
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
    /// A signed bundle file (`refval sign` output), imported into the store at start when newer
    /// than the stored version. Optional: without it, bundles arrive by publication
    /// (`PUT /admin/v1/reference-values/<name>`).
    #[serde(default)]
    pub bundle: Option<PathBuf>,
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
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse_str(&text, base).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks configuration text whose relative paths are relative to `base`.
    pub fn parse_str(text: &str, base: &Path) -> anyhow::Result<Self> {
        let mut config: Config = toml::from_str(text).context("parsing the configuration")?;
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
        self.store.path.as_mut().map(fix);
        self.store.password_file.as_mut().map(fix);
        fix(&mut self.token_signing_key);
        fix(&mut self.audit.signing_key);
        self.sim_pki.as_mut().map(fix);
        self.tdx_collateral.as_mut().map(fix);
        self.collateral.snp_cert_dir.as_mut().map(fix);
        self.collateral.amd_crl_dir.as_mut().map(fix);
        self.keystore.kek_file.as_mut().map(fix);
        if let Some(pkcs11) = self.keystore.pkcs11.as_mut() {
            if let keylatch_keystore::pkcs11::PinSource::File(pin) = &mut pkcs11.pin {
                fix(pin);
            }
        }
        for rv in &mut self.reference_values {
            rv.bundle.as_mut().map(fix);
            rv.author_keys.iter_mut().for_each(fix);
        }
    }

    /// Cross-field rules serde cannot express.
    pub fn check(&self) -> anyhow::Result<()> {
        if !keylatch_audit::note::is_valid_key_name(&self.audit.origin) {
            bail!("[audit] origin must be non-empty without spaces or '+'");
        }
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
        match self.store.backend {
            StoreBackend::Sqlite if self.store.path.is_none() => {
                bail!("[store] backend = \"sqlite\" needs path");
            }
            StoreBackend::Postgres if self.store.url.is_none() => {
                bail!("[store] backend = \"postgres\" needs url (and usually password_file)");
            }
            StoreBackend::Sqlite
                if self.store.url.is_some()
                    || self.store.password_file.is_some()
                    || self.store.max_connections.is_some() =>
            {
                bail!(
                    "[store] url, password_file and max_connections are for backend = \"postgres\""
                );
            }
            StoreBackend::Postgres if self.store.path.is_some() => {
                bail!("[store] path is for backend = \"sqlite\"");
            }
            _ => {}
        }
        self.collateral.check()?;
        if self.session_lifetime_s == 0 || self.token_lifetime_s == 0 {
            bail!("session_lifetime_s and token_lifetime_s must be positive");
        }
        if self.client_timeout_s == 0 {
            bail!("client_timeout_s must be positive");
        }
        self.rate_limit.check()?;
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

// ---- Operations settings (read by the HTTP edge; plain data here) ----

/// `[log]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human-readable, the default) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter: `info`, `warn`, `keylatch=debug,info`, ... `RUST_LOG`, when set,
    /// overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::default(), level: default_level() }
    }
}

fn default_level() -> String {
    "info".to_owned()
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Default sustained rate per address (requests per second).
pub const DEFAULT_PER_SECOND: u32 = 50;
/// Default burst per address (requests).
pub const DEFAULT_BURST: u32 = 300;

/// `[rate_limit]`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second per client address; 0 disables the limit.
    #[serde(default = "default_per_second")]
    pub per_second: u32,
    /// Requests an idle address may send at once.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { per_second: DEFAULT_PER_SECOND, burst: DEFAULT_BURST }
    }
}

fn default_per_second() -> u32 {
    DEFAULT_PER_SECOND
}
fn default_burst() -> u32 {
    DEFAULT_BURST
}

impl RateLimitConfig {
    /// Cross-field rule: an enabled limit needs a burst of at least one request.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.per_second > 0 && self.burst == 0 {
            anyhow::bail!("[rate_limit] burst must be at least 1 when per_second > 0");
        }
        Ok(())
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` on the broker's listener. Metrics carry counts and route names,
    /// no secrets; turn this off when the port is reachable by parties who should not see
    /// traffic volumes.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: default_enabled() }
    }
}

fn default_enabled() -> bool {
    true
}
