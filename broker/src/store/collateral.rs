//! The collateral cache table (`broker/migrations/0005_collateral.sql`) behind [`CollateralStore`].
//! Every [`crate::store::Store`] is one (the statements are in `broker/src/store/sql/collateral.rs`,
//! shared by SQLite and PostgreSQL).

use super::StoreFuture;

/// Reads one cached item.
pub const SELECT_SQL: &str = "SELECT body, fetched_at, next_update FROM collateral \
     WHERE kind = $1 AND cache_key = $2";
/// Inserts or replaces one cached item.
pub const UPSERT_SQL: &str =
    "INSERT INTO collateral (kind, cache_key, body, fetched_at, next_update) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (kind, cache_key) DO UPDATE SET body = excluded.body, \
     fetched_at = excluded.fetched_at, next_update = excluded.next_update";

/// One cached collateral item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedCollateral {
    /// `snp-vcek` or `tdx`.
    pub kind: String,
    pub key: String,
    /// base64 DER (`snp-vcek`) or `TdxCollateral` JSON (`tdx`).
    pub body: String,
    /// Unix seconds.
    pub fetched_at: i64,
    /// Unix seconds after which the item must not be used; `None`: no expiry.
    pub next_update: Option<i64>,
}

/// Where fetched collateral is kept across restarts and shared between replicas.
pub trait CollateralStore: Send + Sync + std::fmt::Debug {
    fn get_collateral<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
    ) -> StoreFuture<'a, Option<CachedCollateral>>;

    fn put_collateral<'a>(&'a self, item: &'a CachedCollateral) -> StoreFuture<'a, ()>;
}
