//! Reference-value bundles as the broker appraises them: the trust set (author keys and
//! threshold) configured for each name, and the newest stored version of each, read from the
//! store through a small cache. Publication invalidates the cache at once; other replicas see a
//! publication within [`CACHE_TTL`]. Bundle files named in the configuration are imported into
//! the store at start when newer than what it holds ([`BundleRegistry::import`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reference_values::{verify_signatures, AuthorKeys, SignedBundle, VerifiedBundle};

use crate::error::ApiError;
use crate::store::{Store, StoredBundle};

/// How long a replica may appraise against its cached bundles before re-reading the store.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// What the cache holds: when it was loaded and the verified current bundles.
type Cached = (Instant, Arc<Vec<VerifiedBundle>>);

/// Trust sets per bundle name and the cache of current bundles.
#[derive(Debug)]
pub struct BundleRegistry {
    trust: BTreeMap<String, AuthorKeys>,
    cache: RwLock<Option<Cached>>,
}

impl BundleRegistry {
    #[must_use]
    pub fn new(trust: BTreeMap<String, AuthorKeys>) -> Self {
        Self { trust, cache: RwLock::new(None) }
    }

    /// The trust set configured for `name`.
    #[must_use]
    pub fn trust(&self, name: &str) -> Option<&AuthorKeys> {
        self.trust.get(name)
    }

    /// Every configured name with its trust set.
    pub fn configured(&self) -> impl Iterator<Item = (&String, &AuthorKeys)> {
        self.trust.iter()
    }

    /// Drops the cache: the next appraisal reads the store.
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cache.write() {
            *c = None;
        }
    }

    /// The newest stored version of every configured name, signatures checked against the
    /// current trust set (expiry is not checked here: an expired bundle appraises every claim
    /// set as a mismatch, with that reason).
    pub async fn current(&self, store: &dyn Store) -> Result<Arc<Vec<VerifiedBundle>>, ApiError> {
        if let Ok(c) = self.cache.read() {
            if let Some((at, bundles)) = c.as_ref() {
                if at.elapsed() < CACHE_TTL {
                    return Ok(Arc::clone(bundles));
                }
            }
        }
        let rows = store.current_bundles().await.map_err(|e| crate::error::store_error(&e))?;
        let bundles = Arc::new(rows.iter().filter_map(|row| self.verify_stored(row)).collect());
        if let Ok(mut c) = self.cache.write() {
            *c = Some((Instant::now(), Arc::clone(&bundles)));
        }
        Ok(bundles)
    }

    /// A stored row, verified; `None` (logged) when its name is no longer configured or its
    /// signatures no longer meet the trust set.
    fn verify_stored(&self, row: &StoredBundle) -> Option<VerifiedBundle> {
        let Some(trust) = self.trust.get(&row.name) else {
            tracing::debug!(name = %row.name, "stored bundle not configured; not appraised");
            return None;
        };
        let checked = SignedBundle::from_bytes(&row.signed)
            .and_then(|s| verify_signatures(&s, trust))
            .ok()
            .filter(|v| v.bundle().name == row.name);
        if checked.is_none() {
            tracing::error!(name = %row.name, version = row.version, "stored bundle does not verify against the configured author keys; not appraised");
        }
        checked
    }

    /// Imports a configured bundle file's contents into the store when it is newer than the
    /// stored version of its name (signatures and threshold checked, not expiry).
    pub async fn import(
        &self,
        store: &dyn Store,
        name: &str,
        bytes: &[u8],
        now: i64,
    ) -> anyhow::Result<()> {
        let trust = self
            .trust
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("reference_values {name:?} is not configured"))?;
        let signed = SignedBundle::from_bytes(bytes)?;
        let verified = verify_signatures(&signed, trust)?;
        let bundle = verified.bundle();
        if bundle.name != name {
            anyhow::bail!("bundle is named {:?}, configured as {name:?}", bundle.name);
        }
        let stored = store.bundle_versions(name).await?;
        if let Some(newest) = stored.first() {
            if newest.version >= bundle.version {
                tracing::info!(
                    name,
                    file = bundle.version,
                    stored = newest.version,
                    "reference values: the store holds this version or a newer one"
                );
                return Ok(());
            }
        }
        store
            .put_bundle(&StoredBundle {
                name: name.to_owned(),
                version: bundle.version,
                signed: bytes.to_vec(),
                digest: hex::encode(verified.digest()),
                expires: bundle.expires.unix_timestamp(),
                publisher: "config".to_owned(),
                published: now,
            })
            .await?;
        self.invalidate();
        tracing::info!(
            name,
            version = bundle.version,
            "reference values imported from the configuration"
        );
        Ok(())
    }
}
