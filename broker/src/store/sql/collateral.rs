//! The collateral cache's statements (see `crate::store::collateral`), for both backends.

use sqlx::Row as _;

use super::{unavailable, This};
use crate::store::collateral::{CachedCollateral, CollateralStore, SELECT_SQL, UPSERT_SQL};
use crate::store::StoreFuture;

impl CollateralStore for This {
    fn get_collateral<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
    ) -> StoreFuture<'a, Option<CachedCollateral>> {
        Box::pin(async move {
            let row = sqlx::query(SELECT_SQL)
                .bind(kind)
                .bind(key)
                .fetch_optional(&self.pool)
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
            let _turn = self.writes.enter().await;
            sqlx::query(UPSERT_SQL)
                .bind(&item.kind)
                .bind(&item.key)
                .bind(&item.body)
                .bind(item.fetched_at)
                .bind(item.next_update)
                .execute(&self.relaxed)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }
}
