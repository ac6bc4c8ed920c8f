//! The broker, built once from the configuration: store, audit log, keystore, verifiers,
//! collateral service, token key, reference-value bundles and settings ([`Broker`]). Cheap to
//! clone (one `Arc`). TLS and everything else about serving HTTP belong to the edge.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use keylatch_keystore::soft::SoftKeystore;
use keylatch_keystore::Keystore;
use reference_values::{AuthorKeys, AuthorPublicKey};

use crate::admin::registry::BundleRegistry;
use crate::collateral::{CollateralFetcher, CollateralService, CollateralStore};
use crate::config::{Config, KeystoreBackend};
use crate::evidence::Verifiers;
use crate::store::Store;
use crate::token::TokenKey;

/// How long simulated TDX collateral minted at start stays valid (days).
const SIM_COLLATERAL_DAYS: i64 = 30;

/// Settings the handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub session_lifetime_s: i64,
    pub token_lifetime_s: i64,
    pub allow_sample: bool,
    pub allow_simulated: bool,
    pub max_body_bytes: usize,
    /// `client_timeout_s`: for each of the TLS handshake, the request head and the body.
    pub client_timeout: std::time::Duration,
    /// Whether cookies get `Secure` (the server speaks HTTPS).
    pub secure_cookie: bool,
    /// `[lifecycle] rotation_warning_days` in seconds (the `/metrics` due-soon gauge).
    pub rotation_warning_window_s: i64,
    /// `[rate_limit]`.
    pub rate_limit: crate::config::RateLimitConfig,
    /// `[metrics]`.
    pub metrics: crate::config::MetricsConfig,
}

/// Everything a broker operation needs.
#[derive(Clone, Debug)]
pub struct Broker(pub Arc<Inner>);

/// The contents of [`Broker`].
pub struct Inner {
    pub store: Arc<dyn Store>,
    /// The audit log every decision is appended to (group-commit writer).
    pub audit: crate::audit::AuditLog,
    pub keystore: Arc<dyn Keystore>,
    pub verifiers: Arc<Verifiers>,
    /// Collateral for hardware evidence (offline, cached, fetched).
    pub collateral: Arc<crate::collateral::CollateralService>,
    pub token_key: TokenKey,
    /// Reference-value trust sets and the current bundles (read from the store).
    pub bundles: BundleRegistry,
    pub settings: Settings,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.store)
            .field("keystore", &self.keystore.describe())
            .field("settings", &self.settings)
            .field("bundles", &self.bundles)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Broker {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Broker {
    /// Builds the broker from a loaded configuration. `fetcher` fetches collateral from AMD KDS
    /// and Intel PCS when `[collateral] fetch` is on (the edge supplies it; `None` fetches
    /// nothing).
    pub async fn from_config(
        config: &Config,
        fetcher: Option<Arc<dyn CollateralFetcher>>,
    ) -> anyhow::Result<Self> {
        let store = crate::store::open(&config.store).await.context("opening the store")?;
        let collateral_store: Arc<dyn CollateralStore> = store.clone();
        let keystore = open_keystore(config)?;
        let signer = crate::audit::load_signer(&config.audit.signing_key, &config.audit.origin)?;
        let audit =
            crate::audit::AuditLog::start(Arc::clone(&store), signer, config.audit.schedule());
        let token_key = TokenKey::load(&config.token_signing_key)?;
        let now = time::OffsetDateTime::now_utc();
        // Offline TDX collateral (`tdx_collateral`) is served by the collateral service, which
        // also knows its nextUpdate.
        let collateral = CollateralService::new(
            &config.collateral,
            config.tdx_collateral.as_deref(),
            collateral_store,
            fetcher,
        )?;
        let sim = match &config.sim_pki {
            Some(dir) => {
                let pki = crate::evidence::load_sim_pki(dir)?;
                let (snp, tdx) = pki.anchors().map_err(|e| anyhow::anyhow!("sim PKI: {e}"))?;
                let col = pki
                    .intel
                    .collateral(
                        now - time::Duration::days(1),
                        now + time::Duration::days(SIM_COLLATERAL_DAYS),
                    )
                    .map_err(|e| anyhow::anyhow!("sim TDX collateral: {e}"))?;
                if config.allow_simulated {
                    tracing::warn!(dir = %dir.display(), "allow_simulated = true: SIMULATED evidence is accepted (claims say simulated: true)");
                }
                Some((snp, tdx, col))
            }
            None => None,
        };
        if config.allow_sample {
            tracing::warn!(
                "allow_sample = true: the UNSIGNED sample TEE is accepted where policies name it"
            );
        }
        let mut verifiers = Verifiers::new(None, sim, config.allow_simulated, config.allow_sample)
            .map_err(|e| anyhow::anyhow!("trust anchors: {e}"))?;
        verifiers.amd_crl_required = config.collateral.amd_crl_check;
        verifiers.amd_crl_grace_s = config.collateral.amd_crl_grace_s;
        let bundles = load_bundles(config, store.as_ref()).await?;
        let settings = Settings {
            session_lifetime_s: i64::try_from(config.session_lifetime_s).unwrap_or(i64::MAX),
            token_lifetime_s: i64::try_from(config.token_lifetime_s).unwrap_or(i64::MAX),
            allow_sample: config.allow_sample,
            allow_simulated: config.allow_simulated,
            max_body_bytes: config.max_body_bytes,
            client_timeout: std::time::Duration::from_secs(config.client_timeout_s),
            secure_cookie: !config.insecure_http,
            rotation_warning_window_s: config.lifecycle.warning_window_s(),
            rate_limit: config.rate_limit,
            metrics: config.metrics,
        };
        Ok(Self(Arc::new(Inner {
            store,
            audit,
            keystore,
            verifiers: Arc::new(verifiers),
            collateral: Arc::new(collateral),
            token_key,
            bundles,
            settings,
        })))
    }
}

/// Opens the configured keystore backend.
pub fn open_keystore(config: &Config) -> anyhow::Result<Arc<dyn Keystore>> {
    match config.keystore.backend {
        KeystoreBackend::Soft => {
            let path = config.keystore.kek_file.as_deref().context("[keystore] kek_file")?;
            let ks = SoftKeystore::open(path).map_err(|e| anyhow::anyhow!("keystore: {e}"))?;
            tracing::warn!(kek_file = %path.display(), "soft keystore: KEK in a local file (development only)");
            Ok(Arc::new(ks))
        }
        KeystoreBackend::Pkcs11 => {
            let pkcs11 = config.keystore.pkcs11.clone().context("[keystore] pkcs11")?;
            let label = pkcs11.token_label.clone();
            let ks = keylatch_keystore::pkcs11::Pkcs11Keystore::open(pkcs11)
                .map_err(|e| anyhow::anyhow!("keystore: {e}"))?;
            tracing::info!(token = %label, "pkcs11 keystore: KEK held in the HSM token");
            Ok(Arc::new(ks))
        }
    }
}

/// Builds the reference-value registry from `[[reference_values]]` (author keys and threshold
/// per name) and imports each configured bundle file into the store when it is newer than the
/// stored version (signatures and threshold checked; expiry not: an expired bundle appraises
/// every claim set as a mismatch, with that reason).
async fn load_bundles(config: &Config, store: &dyn Store) -> anyhow::Result<BundleRegistry> {
    let mut trust = BTreeMap::new();
    for rv in &config.reference_values {
        let keys = rv
            .author_keys
            .iter()
            .map(|p| {
                let pem = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                AuthorPublicKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let keys = AuthorKeys::new(keys, rv.threshold)
            .map_err(|e| anyhow::anyhow!("reference_values {:?}: {e}", rv.name))?;
        if trust.insert(rv.name.clone(), keys).is_some() {
            bail!("reference_values {:?} is configured twice", rv.name);
        }
    }
    let registry = BundleRegistry::new(trust);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for rv in &config.reference_values {
        if let Some(file) = &rv.bundle {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            registry
                .import(store, &rv.name, &bytes, now)
                .await
                .with_context(|| format!("{}", file.display()))?;
        }
    }
    Ok(registry)
}
