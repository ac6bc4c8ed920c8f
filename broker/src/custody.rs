//! Key custody: the one service module for resource lifecycle and KEK operations. Generate,
//! put, BYOK import, rotate, disable, enable, destroy, cryptoperiods, and KEK rotation, status,
//! re-wrap and retirement are async functions over `&dyn Store` and the keystore, taking the
//! acting principal and `now` (unix seconds) as inputs and returning typed results. The CLI
//! (`keylatch_cli::custody`) and the admin API are thin callers; every mutating call passes through
//! [`crate::decision::record_admin`], refused ones included. Read-only views (`list`, `show`,
//! [`cryptoperiod_status`]) are in `inventory`, KEK operations in `kek`; both re-exported here.
//!
//! Rules:
//! - every version is sealed by the keystore bound to (path, version); plaintext exists only in
//!   `Zeroizing` buffers on its way into the keystore and never in errors or logs;
//! - a new version (put, generate, import, rotate) becomes current; older ones stay, sealed,
//!   until the resource is destroyed;
//! - a disabled resource is never released (`resource-disabled`, 403) until enabled;
//! - destroy removes every version in one transaction and leaves a tombstone: the path can never
//!   be written or enabled again and releases answer `resource-destroyed` (404, a final answer
//!   for clients). Copies of the database made before (backups) still hold ciphertext under
//!   the KEK: rotating the KEK, re-wrapping and retiring the old KEK shreds those too;
//! - keystore failures write nothing: a version row is written only after sealing succeeded,
//!   and a re-wrapped row replaces its old value only if that value is unchanged.

use std::sync::Arc;

use keylatch_keystore::{Keystore, KeystoreError, ResourceBinding, SealedResource};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::decision::{record_admin, record_intent, AdminRecord};

mod inventory;
mod kek;
use crate::error::{ApiError, ErrorKind};
use crate::path::parse_path;
use crate::store::{
    LifecycleUpdate, ResourceLifecycle, ResourceState, Store, StoreError, StoredResource,
};
pub use inventory::{
    cryptoperiod_counts, cryptoperiod_status, due, list, show, CryptoperiodStatus, Due,
    ResourceDetail, ResourceSummary, VersionInfo,
};
pub use kek::{
    kek_retire, kek_rewrap, kek_rotate, kek_status, KekStatus, KekUse, RewrapReport, VersionKek,
};

/// Seconds in a day, for cryptoperiods.
const DAY_S: i64 = 86_400;
/// The AES-GCM tag the keystore appends; a sealed value is plaintext + tag.
const GCM_TAG_LEN: usize = 16;
/// Largest key `generate` makes (bytes).
pub const MAX_GENERATED_LEN: usize = 4096;
pub use crate::config::DEFAULT_ROTATION_WARNING_DAYS;

/// Who acts. The CLI is [`Actor::CLI`]; the admin API passes its authenticated principal.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub principal: &'a str,
    pub role: &'a str,
    pub client: Option<&'a str>,
    /// Where the action is recorded.
    pub audit: &'a crate::audit::AuditLog,
}

impl<'a> Actor<'a> {
    /// A store-direct command on the broker host.
    #[must_use]
    pub fn cli(audit: &'a crate::audit::AuditLog) -> Self {
        Actor { principal: "cli", role: "local", client: None, audit }
    }
}

/// Where a new version's key comes from.
pub enum Material {
    /// Bytes the operator supplies (`resource put`).
    Plaintext(Zeroizing<Vec<u8>>),
    /// A random key of this many bytes made inside the keystore.
    Generate(usize),
    /// A BYOK blob wrapped to the keystore's import key; the keystore unwraps it.
    Wrapped(Vec<u8>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plaintext(b) => write!(f, "Plaintext({} bytes)", b.len()),
            Self::Generate(n) => write!(f, "Generate({n})"),
            Self::Wrapped(b) => write!(f, "Wrapped({} bytes)", b.len()),
        }
    }
}

impl Material {
    fn operation(&self, rotate: bool) -> &'static str {
        match (self, rotate) {
            (_, true) => "resource.rotate",
            (Self::Plaintext(_), false) => "resource.put",
            (Self::Generate(_), false) => "resource.generate",
            (Self::Wrapped(_), false) => "resource.import",
        }
    }

    fn source(&self) -> &'static str {
        match self {
            Self::Plaintext(_) => "plaintext",
            Self::Generate(_) => "generated",
            Self::Wrapped(_) => "byok",
        }
    }
}

/// The rotate-by date a new version (or [`set_cryptoperiod`]) leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cryptoperiod {
    /// New version: restart the resource's cryptoperiod in days if it has one, else no date
    /// (an absolute date is met by the rotation). `set_cryptoperiod`: no change.
    Inherit,
    /// Rotate by this instant (unix seconds).
    Until(i64),
    /// Rotate this many days after the current version was made; restarts at every version.
    Days(u32),
    /// No rotate-by date.
    Clear,
}

/// A version that was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionAdded {
    pub path: String,
    pub version: u64,
    pub kek_id: String,
    pub rotate_by: Option<i64>,
}

/// A custody failure. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CustodyError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("no resource {0}")]
    NotFound(String),
    #[error("resource {0} is disabled")]
    Disabled(String),
    #[error("resource {0} was destroyed")]
    Destroyed(String),
    #[error("no key-encryption key {0} in the keystore")]
    UnknownKek(String),
    #[error("key-encryption key {id} cannot be retired: {why}")]
    KekInUse { id: String, why: String },
    /// The keystore cannot serve now; `keystore` names it (backend and location).
    #[error("keystore {keystore} unavailable: {cause}")]
    KeystoreUnavailable { keystore: String, cause: String },
    #[error("keystore: {0}")]
    Keystore(KeystoreError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The audit record could not be made durable; the action must not be reported done.
    #[error("audit: {0}")]
    Audit(ApiError),
}

impl CustodyError {
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidInput(_) => ErrorKind::BadRequest,
            Self::NotFound(_) | Self::UnknownKek(_) => ErrorKind::NotFound,
            Self::Disabled(_) => ErrorKind::ResourceDisabled,
            Self::Destroyed(_) => ErrorKind::ResourceDestroyed,
            Self::KekInUse { .. } => ErrorKind::KekInUse,
            Self::KeystoreUnavailable { .. } | Self::Store(StoreError::Unavailable(_)) => {
                ErrorKind::Unavailable
            }
            Self::Keystore(KeystoreError::InvalidInput(_) | KeystoreError::Integrity) => {
                ErrorKind::BadRequest
            }
            Self::Audit(e) => e.kind,
            Self::Keystore(_) | Self::Store(_) => ErrorKind::Internal,
        }
    }
}

impl From<CustodyError> for ApiError {
    fn from(e: CustodyError) -> Self {
        match e {
            CustodyError::Audit(a) => a,
            CustodyError::KeystoreUnavailable { keystore, cause } => {
                tracing::error!(%keystore, %cause, "keystore unavailable");
                crate::metrics::backend_error("keystore", "unavailable");
                ApiError::new(
                    ErrorKind::Unavailable,
                    format!("keystore {keystore} unavailable; retry later"),
                )
            }
            CustodyError::Store(StoreError::Unavailable(cause)) => {
                ApiError::unavailable("store", &cause)
            }
            CustodyError::Store(StoreError::Conflict(cause)) => {
                tracing::warn!(%cause, "concurrent change");
                ApiError::new(ErrorKind::Unavailable, "concurrent change; retry")
            }
            CustodyError::Store(other) => ApiError::internal("store", &other),
            CustodyError::Keystore(
                ref k @ (KeystoreError::InvalidInput(_) | KeystoreError::Integrity),
            ) => ApiError::new(ErrorKind::BadRequest, k.to_string()),
            CustodyError::Keystore(other) => ApiError::internal("keystore", &other),
            other => ApiError::new(other.kind(), other.to_string()),
        }
    }
}

/// A keystore error, with `Unavailable` naming the keystore.
#[must_use]
pub fn keystore_error(keystore: &dyn Keystore, e: KeystoreError) -> CustodyError {
    match e {
        KeystoreError::Unavailable(cause) => {
            let info = keystore.describe();
            CustodyError::KeystoreUnavailable {
                keystore: format!("{} ({})", info.backend, info.location),
                cause,
            }
        }
        other => CustodyError::Keystore(other),
    }
}

/// Runs a keystore call off the async runtime.
async fn on_keystore<T: Send + 'static>(
    keystore: &Arc<dyn Keystore>,
    f: impl FnOnce(&dyn Keystore) -> Result<T, KeystoreError> + Send + 'static,
) -> Result<T, CustodyError> {
    let ks = Arc::clone(keystore);
    let out = tokio::task::spawn_blocking(move || f(ks.as_ref()))
        .await
        .map_err(|e| CustodyError::InvalidInput(format!("keystore task failed: {e}")))?;
    out.map_err(|e| keystore_error(keystore.as_ref(), e))
}

/// Runs `change` bracketed by audit entries: an intent before it (not recorded: the change is
/// not attempted) and its outcome after; a failed outcome record turns success into
/// [`CustodyError::Audit`].
async fn audited<T>(
    actor: Actor<'_>,
    operation: &str,
    target: &str,
    change: impl std::future::Future<Output = Result<T, CustodyError>>,
    describe: impl FnOnce(&T) -> (Option<u64>, String),
) -> Result<T, CustodyError> {
    let who = AdminRecord {
        principal: actor.principal,
        role: actor.role,
        operation,
        target: Some(target),
        client: actor.client,
        ..AdminRecord::default()
    };
    record_intent(actor.audit, &who).await.map_err(CustodyError::Audit)?;
    let result = change.await;
    let (version, detail, outcome) = match &result {
        Ok(v) => {
            let (version, detail) = describe(v);
            (version, detail, "ok".to_owned())
        }
        Err(e) => (None, e.to_string(), e.kind().type_id().to_owned()),
    };
    let done =
        AdminRecord { version, allowed: result.is_ok(), outcome: &outcome, detail: &detail, ..who };
    record_admin(actor.audit, &done).await.map_err(CustodyError::Audit)?;
    result
}

fn checked_path(path: &str) -> Result<String, CustodyError> {
    parse_path(path).map_err(|e| CustodyError::InvalidInput(e.detail))
}

fn resolve_period(
    period: Cryptoperiod,
    previous: Option<&ResourceLifecycle>,
    base: i64,
) -> LifecycleUpdate {
    let days = |d: u32| LifecycleUpdate {
        rotate_by: Some(base.saturating_add(i64::from(d).saturating_mul(DAY_S))),
        cryptoperiod_days: Some(d),
    };
    match period {
        Cryptoperiod::Inherit => {
            previous.and_then(|p| p.cryptoperiod_days).map(days).unwrap_or_default()
        }
        Cryptoperiod::Until(t) => LifecycleUpdate { rotate_by: Some(t), cryptoperiod_days: None },
        Cryptoperiod::Days(d) => days(d),
        Cryptoperiod::Clear => LifecycleUpdate::default(),
    }
}

/// Adds a version to `path` (creating the resource if new): `resource put|generate|import`.
pub async fn put(
    store: &dyn Store,
    keystore: &Arc<dyn Keystore>,
    actor: Actor<'_>,
    now: i64,
    path: &str,
    material: Material,
    period: Cryptoperiod,
) -> Result<VersionAdded, CustodyError> {
    let operation = material.operation(false);
    let change = add_version(store, keystore, now, path, material, period, false);
    audited(actor, operation, path, change, added_detail).await
}

/// Adds a version to an existing resource: `resource rotate`. Without `material`, a random key
/// of the current version's length is generated in the keystore.
pub async fn rotate(
    store: &dyn Store,
    keystore: &Arc<dyn Keystore>,
    actor: Actor<'_>,
    now: i64,
    path: &str,
    material: Option<Material>,
    period: Cryptoperiod,
) -> Result<VersionAdded, CustodyError> {
    let change = async {
        let material = if let Some(m) = material {
            m
        } else {
            Material::Generate(current_len(store, path).await?)
        };
        add_version(store, keystore, now, path, material, period, true).await
    };
    audited(actor, "resource.rotate", path, change, added_detail).await
}

/// The plaintext length of `path`'s current version (a generated rotation keeps it).
async fn current_len(store: &dyn Store, path: &str) -> Result<usize, CustodyError> {
    let p = checked_path(path)?;
    let versions = store.resource_versions(Some(&p)).await?;
    let Some(current) = versions.last() else {
        return Err(gone_or_missing(store, p).await);
    };
    current
        .sealed
        .ciphertext
        .len()
        .checked_sub(GCM_TAG_LEN)
        .ok_or_else(|| CustodyError::Store(StoreError::Corrupt(format!("{p}: short ciphertext"))))
}

fn added_detail(v: &VersionAdded) -> (Option<u64>, String) {
    (Some(v.version), format!("sealed under {}; rotate_by {:?}", v.kek_id, v.rotate_by))
}

async fn add_version(
    store: &dyn Store,
    keystore: &Arc<dyn Keystore>,
    now: i64,
    path: &str,
    material: Material,
    period: Cryptoperiod,
    must_exist: bool,
) -> Result<VersionAdded, CustodyError> {
    let path = checked_path(path)?;
    if let Material::Generate(n) = material {
        if n == 0 || n > MAX_GENERATED_LEN {
            return Err(CustodyError::InvalidInput(format!(
                "generated key length must be 1..={MAX_GENERATED_LEN} bytes"
            )));
        }
    }
    if let Material::Plaintext(b) = &material {
        if b.is_empty() {
            return Err(CustodyError::InvalidInput("resource is empty".into()));
        }
    }
    let previous = store.resource_lifecycle(&path).await?;
    match previous.as_ref().map(|p| p.state) {
        Some(ResourceState::Destroyed) => return Err(CustodyError::Destroyed(path)),
        None if must_exist => return Err(CustodyError::NotFound(path)),
        _ => {}
    }
    let update = resolve_period(period, previous.as_ref(), now);
    let version = store.next_resource_version(&path).await?;
    let binding = ResourceBinding::new(path.clone(), version);
    tracing::debug!(%path, version, source = material.source(), "sealing a new version");
    let sealed: SealedResource = on_keystore(keystore, move |ks| match material {
        Material::Plaintext(b) => ks.seal(&binding, &b),
        Material::Generate(n) => ks.generate(&binding, n),
        Material::Wrapped(blob) => ks.import_wrapped(&binding, &blob),
    })
    .await?;
    let kek_id = sealed.kek_id.clone();
    let row = StoredResource { path: path.clone(), version, sealed, enabled: true, created: now };
    if !store.add_resource_version(&row, update).await? {
        return Err(CustodyError::Destroyed(path));
    }
    Ok(VersionAdded { path, version, kek_id, rotate_by: update.rotate_by })
}

/// `resource disable`: never released until enabled.
pub async fn disable(
    store: &dyn Store,
    actor: Actor<'_>,
    now: i64,
    path: &str,
) -> Result<(), CustodyError> {
    let change = set_state(store, now, path, ResourceState::Disabled);
    audited(actor, "resource.disable", path, change, |()| (None, String::new())).await
}

/// `resource enable`: released again (refused for a destroyed resource).
pub async fn enable(
    store: &dyn Store,
    actor: Actor<'_>,
    now: i64,
    path: &str,
) -> Result<(), CustodyError> {
    let change = set_state(store, now, path, ResourceState::Active);
    audited(actor, "resource.enable", path, change, |()| (None, String::new())).await
}

async fn set_state(
    store: &dyn Store,
    now: i64,
    path: &str,
    state: ResourceState,
) -> Result<(), CustodyError> {
    let path = checked_path(path)?;
    if store.set_resource_state(&path, state, now).await? {
        return Ok(());
    }
    Err(gone_or_missing(store, path).await)
}

/// Why a change to a non-destroyed resource found none.
async fn gone_or_missing(store: &dyn Store, path: String) -> CustodyError {
    match store.resource_lifecycle(&path).await {
        Ok(Some(l)) if l.state == ResourceState::Destroyed => CustodyError::Destroyed(path),
        Ok(_) => CustodyError::NotFound(path),
        Err(e) => e.into(),
    }
}

/// `resource destroy`: every version removed; final. Returns how many versions were removed.
pub async fn destroy(
    store: &dyn Store,
    actor: Actor<'_>,
    now: i64,
    path: &str,
) -> Result<u64, CustodyError> {
    let change = async {
        let path = checked_path(path)?;
        match store.destroy_resource(&path, now).await? {
            Some(n) => Ok(n),
            None => Err(gone_or_missing(store, path).await),
        }
    };
    audited(actor, "resource.destroy", path, change, |n| {
        (None, format!("crypto-shredded: {n} sealed versions removed"))
    })
    .await
}

/// `resource set-rotate-by`: changes the cryptoperiod; `Days` counts from the current
/// version's creation. Returns the new rotate-by date.
pub async fn set_cryptoperiod(
    store: &dyn Store,
    actor: Actor<'_>,
    now: i64,
    path: &str,
    period: Cryptoperiod,
) -> Result<Option<i64>, CustodyError> {
    let change = async {
        let path = checked_path(path)?;
        let previous = store.resource_lifecycle(&path).await?;
        let Some(previous) = previous.filter(|p| p.state != ResourceState::Destroyed) else {
            return Err(gone_or_missing(store, path).await);
        };
        let base = store.resource_versions(Some(&path)).await?.last().map_or(now, |v| v.created);
        let update = match period {
            Cryptoperiod::Inherit => LifecycleUpdate {
                rotate_by: previous.rotate_by,
                cryptoperiod_days: previous.cryptoperiod_days,
            },
            other => resolve_period(other, Some(&previous), base),
        };
        if !store.set_rotate_by(&path, update, now).await? {
            return Err(gone_or_missing(store, path).await);
        }
        Ok(update.rotate_by)
    };
    audited(actor, "resource.set-rotate-by", path, change, |t| (None, format!("rotate_by {t:?}")))
        .await
}

/// The version a release may unseal, from what the store holds for `path`
/// ([`Store::release_inputs`]): the current one of an active resource.
pub fn releasable(
    path: &str,
    state: Option<ResourceState>,
    current: Option<StoredResource>,
) -> Result<StoredResource, CustodyError> {
    match state {
        Some(ResourceState::Disabled) => return Err(CustodyError::Disabled(path.to_owned())),
        Some(ResourceState::Destroyed) => return Err(CustodyError::Destroyed(path.to_owned())),
        Some(ResourceState::Active) | None => {}
    }
    current.ok_or_else(|| CustodyError::NotFound(path.to_owned()))
}

/// The keystore's BYOK import public key (SubjectPublicKeyInfo DER), made on first use.
pub async fn import_public_key(keystore: &Arc<dyn Keystore>) -> Result<Vec<u8>, CustodyError> {
    on_keystore(keystore, |ks| ks.import_public_key()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_marks_overdue_at_the_instant_and_due_soon_inside_the_window() {
        assert_eq!(due(None, 100, 10), Due::NoDeadline);
        assert_eq!(due(Some(100), 100, 10), Due::Overdue);
        assert_eq!(due(Some(110), 100, 10), Due::DueSoon);
        assert_eq!(due(Some(111), 100, 10), Due::Ok);
    }

    #[test]
    fn new_version_restarts_a_cryptoperiod_in_days_and_drops_a_met_absolute_date() {
        let prev = |days| ResourceLifecycle {
            path: "a/b/c".into(),
            state: ResourceState::Active,
            rotate_by: Some(5),
            cryptoperiod_days: days,
            created: 0,
            updated: 0,
            destroyed: None,
        };
        assert_eq!(
            resolve_period(Cryptoperiod::Inherit, Some(&prev(Some(2))), 1000),
            LifecycleUpdate { rotate_by: Some(1000 + 2 * DAY_S), cryptoperiod_days: Some(2) }
        );
        assert_eq!(
            resolve_period(Cryptoperiod::Inherit, Some(&prev(None)), 1000),
            LifecycleUpdate::default()
        );
        assert_eq!(
            resolve_period(Cryptoperiod::Until(7), None, 1000),
            LifecycleUpdate { rotate_by: Some(7), cryptoperiod_days: None }
        );
    }

    #[test]
    fn material_debug_shows_lengths_not_bytes() {
        let m = Material::Plaintext(Zeroizing::new(b"secret-bytes".to_vec()));
        assert_eq!(format!("{m:?}"), "Plaintext(12 bytes)");
    }
}
