//! KEK operations of [`crate::custody`]: rotate, status (which KEK seals each version),
//! resumable re-wrap (one row per transaction, compare-and-swap on the old sealed value) and
//! retirement, refused while anything depends on the KEK.

use std::collections::BTreeMap;
use std::sync::Arc;

use keylatch_keystore::{Keystore, ResourceBinding};
use serde::Serialize;

use super::{audited, on_keystore, Actor, CustodyError};
use crate::store::Store;

/// How many KEK-sealed versions one KEK holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KekUse {
    pub id: String,
    pub current: bool,
    /// True when the keystore holds it (false: versions sealed under a KEK that is gone).
    pub held: bool,
    pub versions: u64,
}

/// Which KEK seals each version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionKek {
    pub path: String,
    pub version: u64,
    pub kek_id: String,
}

/// `kek status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KekStatus {
    pub current: String,
    pub keks: Vec<KekUse>,
    pub versions: Vec<VersionKek>,
}

/// What one `kek rewrap` run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RewrapReport {
    pub rewrapped: u64,
    pub already_current: u64,
    /// Rows that changed between reading and writing (left for the next run).
    pub skipped_changed: u64,
    /// Rows still under an older KEK after this run (a `limit` stopped it, or skips).
    pub remaining: u64,
}

/// `kek rotate`: a new KEK becomes current; returns its id.
pub async fn kek_rotate(
    keystore: &Arc<dyn Keystore>,
    actor: Actor<'_>,
) -> Result<String, CustodyError> {
    let change = on_keystore(keystore, |ks| ks.rotate_kek());
    let target = keystore.describe().location;
    audited(actor, "kek.rotate", &target, change, |id| (None, format!("new current KEK {id}")))
        .await
}

/// `kek status`: the KEKs held, and which one seals each version.
pub async fn kek_status(
    store: &dyn Store,
    keystore: &Arc<dyn Keystore>,
) -> Result<KekStatus, CustodyError> {
    let held = on_keystore(keystore, |ks| ks.kek_ids()).await?;
    let current = held.last().cloned().unwrap_or_default();
    let versions = store.resource_versions(None).await?;
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for v in &versions {
        *counts.entry(v.sealed.kek_id.as_str()).or_default() += 1;
    }
    let mut keks: Vec<KekUse> = held
        .iter()
        .map(|id| KekUse {
            id: id.clone(),
            current: *id == current,
            held: true,
            versions: counts.get(id.as_str()).copied().unwrap_or(0),
        })
        .collect();
    for (id, n) in &counts {
        if !held.iter().any(|h| h == id) {
            keks.push(KekUse { id: (*id).to_owned(), current: false, held: false, versions: *n });
        }
    }
    Ok(KekStatus {
        current,
        keks,
        versions: versions
            .iter()
            .map(|v| VersionKek {
                path: v.path.clone(),
                version: v.version,
                kek_id: v.sealed.kek_id.clone(),
            })
            .collect(),
    })
}

/// `kek rewrap`: re-seals every version not under the current KEK, one row per transaction,
/// so an interrupted run loses nothing and a second run finishes it. `limit` stops after that
/// many re-wrapped rows.
pub async fn kek_rewrap(
    store: &dyn Store,
    keystore: &Arc<dyn Keystore>,
    actor: Actor<'_>,
    limit: Option<u64>,
) -> Result<RewrapReport, CustodyError> {
    let change = rewrap_all(store, keystore, limit);
    let target = keystore.describe().location;
    audited(actor, "kek.rewrap", &target, change, |r| {
        (None, format!("{} re-wrapped, {} remaining", r.rewrapped, r.remaining))
    })
    .await
}

async fn rewrap_all(
    store: &dyn Store,
    keystore: &Arc<dyn Keystore>,
    limit: Option<u64>,
) -> Result<RewrapReport, CustodyError> {
    let held = on_keystore(keystore, |ks| ks.kek_ids()).await?;
    let current = held.last().cloned().unwrap_or_default();
    let mut report = RewrapReport::default();
    for row in store.resource_versions(None).await? {
        if row.sealed.kek_id == current {
            report.already_current += 1;
            continue;
        }
        if limit.is_some_and(|l| report.rewrapped >= l) {
            report.remaining += 1;
            continue;
        }
        let binding = ResourceBinding::new(row.path.clone(), row.version);
        let old = row.sealed.clone();
        let new = on_keystore(keystore, move |ks| ks.rewrap(&binding, &old)).await?;
        if store.replace_sealed(&row, &new).await? {
            report.rewrapped += 1;
        } else {
            report.skipped_changed += 1;
            report.remaining += 1;
        }
    }
    Ok(report)
}

/// `kek retire`: destroys a KEK that is not current and seals no stored version.
pub async fn kek_retire(
    store: &dyn Store,
    keystore: &Arc<dyn Keystore>,
    actor: Actor<'_>,
    id: &str,
) -> Result<(), CustodyError> {
    let change = async {
        let held = on_keystore(keystore, |ks| ks.kek_ids()).await?;
        if !held.iter().any(|h| h == id) {
            return Err(CustodyError::UnknownKek(id.to_owned()));
        }
        if held.last().is_some_and(|c| c == id) {
            return Err(CustodyError::KekInUse { id: id.to_owned(), why: "it is current".into() });
        }
        let using =
            store.resource_versions(None).await?.iter().filter(|v| v.sealed.kek_id == id).count();
        if using > 0 {
            return Err(CustodyError::KekInUse {
                id: id.to_owned(),
                why: format!("{using} resource versions are sealed under it (run kek rewrap)"),
            });
        }
        let owned = id.to_owned();
        on_keystore(keystore, move |ks| ks.retire_kek(&owned)).await
    };
    audited(actor, "kek.retire", id, change, |()| (None, "destroyed in the keystore".into())).await
}
