//! The cache every collateral source shares: this module owns the order "memory, then the
//! store's `collateral` table, then upstream, with one fetch at a time" and keeping what was
//! fetched in both. Each source keeps what comes before it (its offline directory or file),
//! how a stored body is read back, when an item is usable, and what a fetch is.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use super::{on_hit, Kind, Source};
use crate::store::collateral::{CachedCollateral, CollateralStore};

/// A collateral item as the store's `collateral` table keeps it.
pub(super) trait Stored: Clone {
    /// The row's body.
    fn body(&self) -> String;
    /// The instant (Unix seconds) after which the item must not be used, if it has one.
    fn next_update(&self) -> Option<i64>;
}

/// One kind of collateral in memory (by the store's cache key) in front of the store.
#[derive(Debug)]
pub(super) struct Cache<V> {
    kind: Kind,
    /// How many items memory keeps before it is cleared.
    limit: usize,
    memory: RwLock<HashMap<String, V>>,
    store: Arc<dyn CollateralStore>,
    /// One fetch at a time: concurrent misses for the same item wait and find it cached.
    fetching: tokio::sync::Mutex<()>,
}

impl<V: Stored> Cache<V> {
    pub(super) fn new(kind: Kind, limit: usize, store: Arc<dyn CollateralStore>) -> Self {
        Self {
            kind,
            limit,
            memory: RwLock::new(HashMap::new()),
            store,
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The item under `key`: from memory; else, one caller at a time, from memory again, the
    /// store, then `fetch`. `usable` passes over a held item that may no longer be handed on
    /// (past its nextUpdate); `from_store` reads a stored body as the item for this key, or
    /// says why it is not. A fetched item is written to the store (a failed write is logged,
    /// the item is then kept in memory only) and to memory.
    pub(super) async fn get<E, Fut>(
        &self,
        key: String,
        usable: impl Fn(&V) -> bool,
        from_store: impl FnOnce(&str) -> Result<V, String>,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        let kind = self.kind.as_str();
        if let Some(v) = self.held(&key, &usable) {
            on_hit(self.kind, Source::Memory);
            return Ok(v);
        }
        let _one = self.fetching.lock().await;
        if let Some(v) = self.held(&key, &usable) {
            on_hit(self.kind, Source::Memory);
            return Ok(v);
        }
        match self.store.get_collateral(kind, &key).await {
            Ok(Some(item)) => match from_store(&item.body) {
                Ok(v) if usable(&v) => {
                    on_hit(self.kind, Source::Store);
                    return Ok(self.remember(key, v));
                }
                Ok(_) => {
                    tracing::info!(kind, key, "stored collateral is past nextUpdate; fetching");
                }
                Err(why) => {
                    tracing::warn!(kind, key, %why, "stored collateral is not usable; fetching again");
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(kind, error = %e, "collateral store read failed; fetching"),
        }
        let v = fetch().await?;
        let item = CachedCollateral {
            kind: kind.to_owned(),
            key: key.clone(),
            body: v.body(),
            fetched_at: time::OffsetDateTime::now_utc().unix_timestamp(),
            next_update: v.next_update(),
        };
        if let Err(e) = self.store.put_collateral(&item).await {
            tracing::warn!(kind, error = %e, "collateral store write failed; kept in memory only");
        }
        Ok(self.remember(key, v))
    }

    fn held(&self, key: &str, usable: impl Fn(&V) -> bool) -> Option<V> {
        let memory = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        memory.get(key).filter(|v| usable(v)).cloned()
    }

    fn remember(&self, key: String, v: V) -> V {
        let mut memory = self.memory.write().unwrap_or_else(PoisonError::into_inner);
        if memory.len() >= self.limit {
            memory.clear();
        }
        memory.insert(key, v.clone());
        v
    }
}
