//! Read-only views of [`crate::custody`]: `resource list` and `show`, and the cryptoperiod
//! standing of every live resource ([`cryptoperiod_status`], which `/metrics` reads).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{checked_path, CustodyError};
use crate::store::{ResourceLifecycle, ResourceState, Store, StoredResource};

/// Where a resource stands against its rotate-by date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Due {
    NoDeadline,
    Ok,
    /// Within the warning window.
    DueSoon,
    Overdue,
}

/// One line of `resource list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceSummary {
    pub path: String,
    pub state: ResourceState,
    pub current_version: Option<u64>,
    pub versions: u64,
    pub created: i64,
    pub updated: i64,
    pub rotate_by: Option<i64>,
    pub cryptoperiod_days: Option<u32>,
    pub due: Due,
}

/// One version in `resource show` (no ciphertext).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version: u64,
    pub created: i64,
    pub kek_id: String,
    pub current: bool,
}

/// `resource show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceDetail {
    #[serde(flatten)]
    pub summary: ResourceSummary,
    pub destroyed: Option<i64>,
    pub version_list: Vec<VersionInfo>,
}

/// One resource's cryptoperiod, for `/metrics` and `resource list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CryptoperiodStatus {
    pub path: String,
    pub rotate_by: Option<i64>,
    pub due: Due,
    /// Seconds until `rotate_by` (negative when overdue).
    pub seconds_left: Option<i64>,
}

/// Where a rotate-by date stands at `now` with a warning window of `window_s` seconds.
#[must_use]
pub fn due(rotate_by: Option<i64>, now: i64, window_s: i64) -> Due {
    match rotate_by {
        None => Due::NoDeadline,
        Some(t) if t <= now => Due::Overdue,
        Some(t) if t <= now.saturating_add(window_s) => Due::DueSoon,
        Some(_) => Due::Ok,
    }
}

fn summary(
    l: &ResourceLifecycle,
    versions: &[&StoredResource],
    now: i64,
    window_s: i64,
) -> ResourceSummary {
    let live = l.state != ResourceState::Destroyed;
    ResourceSummary {
        path: l.path.clone(),
        state: l.state,
        current_version: versions.last().map(|v| v.version),
        versions: u64::try_from(versions.len()).unwrap_or(u64::MAX),
        created: l.created,
        updated: l.updated,
        rotate_by: l.rotate_by,
        cryptoperiod_days: l.cryptoperiod_days,
        due: if live { due(l.rotate_by, now, window_s) } else { Due::NoDeadline },
    }
}

/// `resource list`: every resource (destroyed ones too), by path.
pub async fn list(
    store: &dyn Store,
    now: i64,
    window_s: i64,
) -> Result<Vec<ResourceSummary>, CustodyError> {
    let all = store.resource_versions(None).await?;
    let mut by_path: BTreeMap<&str, Vec<&StoredResource>> = BTreeMap::new();
    for v in &all {
        by_path.entry(v.path.as_str()).or_default().push(v);
    }
    Ok(store
        .resource_lifecycles()
        .await?
        .iter()
        .map(|l| {
            let versions = by_path.get(l.path.as_str()).map_or(&[][..], Vec::as_slice);
            summary(l, versions, now, window_s)
        })
        .collect())
}

/// `resource show`.
pub async fn show(
    store: &dyn Store,
    now: i64,
    window_s: i64,
    path: &str,
) -> Result<ResourceDetail, CustodyError> {
    let path = checked_path(path)?;
    let l = store
        .resource_lifecycle(&path)
        .await?
        .ok_or_else(|| CustodyError::NotFound(path.clone()))?;
    let versions = store.resource_versions(Some(&path)).await?;
    let refs: Vec<&StoredResource> = versions.iter().collect();
    let current = versions.last().map(|v| v.version);
    Ok(ResourceDetail {
        summary: summary(&l, &refs, now, window_s),
        destroyed: l.destroyed,
        version_list: versions
            .iter()
            .map(|v| VersionInfo {
                version: v.version,
                created: v.created,
                kek_id: v.sealed.kek_id.clone(),
                current: Some(v.version) == current,
            })
            .collect(),
    })
}

/// Every live resource's standing against its rotate-by date (`/metrics`, `resource list`).
pub async fn cryptoperiod_status(
    store: &dyn Store,
    now: i64,
    window_s: i64,
) -> Result<Vec<CryptoperiodStatus>, CustodyError> {
    Ok(store
        .resource_lifecycles()
        .await?
        .into_iter()
        .filter(|l| l.state != ResourceState::Destroyed)
        .map(|l| CryptoperiodStatus {
            due: due(l.rotate_by, now, window_s),
            seconds_left: l.rotate_by.map(|t| t.saturating_sub(now)),
            rotate_by: l.rotate_by,
            path: l.path,
        })
        .collect())
}

/// (overdue, due soon) among `statuses`.
#[must_use]
pub fn cryptoperiod_counts(statuses: &[CryptoperiodStatus]) -> (u64, u64) {
    let count =
        |d: Due| u64::try_from(statuses.iter().filter(|s| s.due == d).count()).unwrap_or(u64::MAX);
    (count(Due::Overdue), count(Due::DueSoon))
}
