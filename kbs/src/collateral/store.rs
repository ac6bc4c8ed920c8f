//! The collateral cache table (`kbs/migrations/0005_collateral.sql`) behind [`CollateralStore`],
//! and its SQLite implementation. The SQL is portable (`$n` placeholders, `ON CONFLICT ... DO
//! UPDATE`), shared as constants so the PostgreSQL store can implement the trait with the same
//! statements.

use sqlx::Row as _;

use crate::store::{SqliteStore, StoreError, StoreFuture};

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

#[allow(clippy::needless_pass_by_value)] // reason: used as `map_err(unavailable)`
fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl CollateralStore for SqliteStore {
    fn get_collateral<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
    ) -> StoreFuture<'a, Option<CachedCollateral>> {
        Box::pin(async move {
            let row = sqlx::query(SELECT_SQL)
                .bind(kind)
                .bind(key)
                .fetch_optional(self.pool())
                .await
                .map_err(unavailable)?;
            row.map(|r| {
                Ok(CachedCollateral {
                    kind: kind.to_owned(),
                    key: key.to_owned(),
                    body: r.try_get("body").map_err(unavailable)?,
                    fetched_at: r.try_get("fetched_at").map_err(unavailable)?,
                    next_update: r.try_get("next_update").map_err(unavailable)?,
                })
            })
            .transpose()
        })
    }

    fn put_collateral<'a>(&'a self, item: &'a CachedCollateral) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(UPSERT_SQL)
                .bind(&item.kind)
                .bind(&item.key)
                .bind(&item.body)
                .bind(item.fetched_at)
                .bind(item.next_update)
                .execute(self.pool())
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }
}
