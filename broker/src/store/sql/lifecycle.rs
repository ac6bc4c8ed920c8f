//! SQLite statements for resource lifecycle (migration 0004). Kept apart from `sqlite.rs` so
//! that file stays readable; the SQL is portable (PostgreSQL runs it unchanged).

use sqlx::Row as _;

use super::This;
use super::{resource_from_row, unavailable, version_i64, DbRow};
use crate::store::lifecycle::{LifecycleUpdate, ResourceLifecycle, ResourceState};
use crate::store::{StoreError, StoredResource};

const RESOURCE_COLUMNS: &str = "path, version, sealed, enabled, created";

fn days_i64(days: Option<u32>) -> Option<i64> {
    days.map(i64::from)
}

fn lifecycle_from_row(row: &DbRow) -> Result<ResourceLifecycle, StoreError> {
    let state: String = row.try_get("state").map_err(unavailable)?;
    let days: Option<i64> = row.try_get("cryptoperiod_days").map_err(unavailable)?;
    Ok(ResourceLifecycle {
        path: row.try_get("path").map_err(unavailable)?,
        state: ResourceState::from_name(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("resource state {state:?}")))?,
        rotate_by: row.try_get("rotate_by").map_err(unavailable)?,
        cryptoperiod_days: days
            .map(|d| u32::try_from(d).map_err(|_| StoreError::Corrupt(format!("days {d}"))))
            .transpose()?,
        created: row.try_get("created").map_err(unavailable)?,
        updated: row.try_get("updated").map_err(unavailable)?,
        destroyed: row.try_get("destroyed").map_err(unavailable)?,
    })
}

impl This {
    pub(super) async fn add_version_tx(
        &self,
        r: &StoredResource,
        update: LifecycleUpdate,
    ) -> Result<bool, StoreError> {
        let _turn = self.writes.enter().await;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let meta = sqlx::query(
            "INSERT INTO resource_lifecycle \
             (path, state, rotate_by, cryptoperiod_days, created, updated, destroyed) \
             VALUES ($1, 'active', $2, $3, $4, $4, NULL) \
             ON CONFLICT (path) DO UPDATE SET rotate_by = $2, cryptoperiod_days = $3, updated = $4 \
             WHERE resource_lifecycle.state <> 'destroyed'",
        )
        .bind(&r.path)
        .bind(update.rotate_by)
        .bind(days_i64(update.cryptoperiod_days))
        .bind(r.created)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if meta.rows_affected() != 1 {
            return Ok(false);
        }
        super::insert_resource(&mut *tx, r).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    pub(super) async fn lifecycle_of(
        &self,
        path: &str,
    ) -> Result<Option<ResourceLifecycle>, StoreError> {
        let row = sqlx::query("SELECT * FROM resource_lifecycle WHERE path = $1")
            .bind(path)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(lifecycle_from_row).transpose()
    }

    pub(super) async fn lifecycles(&self) -> Result<Vec<ResourceLifecycle>, StoreError> {
        let rows = sqlx::query("SELECT * FROM resource_lifecycle ORDER BY path")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(lifecycle_from_row).collect()
    }

    pub(super) async fn versions_of(
        &self,
        path: Option<&str>,
    ) -> Result<Vec<StoredResource>, StoreError> {
        let rows = match path {
            Some(p) => {
                sqlx::query(&format!(
                    "SELECT {RESOURCE_COLUMNS} FROM resources WHERE path = $1 ORDER BY version"
                ))
                .bind(p)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {RESOURCE_COLUMNS} FROM resources ORDER BY path, version"
                ))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(unavailable)?;
        rows.iter().map(resource_from_row).collect()
    }

    pub(super) async fn set_state_row(
        &self,
        path: &str,
        state: ResourceState,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.writes.enter().await;
        let done = sqlx::query(
            "UPDATE resource_lifecycle SET state = $2, updated = $3 \
             WHERE path = $1 AND state <> 'destroyed'",
        )
        .bind(path)
        .bind(state.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn set_rotate_by_row(
        &self,
        path: &str,
        update: LifecycleUpdate,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.writes.enter().await;
        let done = sqlx::query(
            "UPDATE resource_lifecycle SET rotate_by = $2, cryptoperiod_days = $3, updated = $4 \
             WHERE path = $1 AND state <> 'destroyed'",
        )
        .bind(path)
        .bind(update.rotate_by)
        .bind(days_i64(update.cryptoperiod_days))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn destroy_tx(&self, path: &str, now: i64) -> Result<Option<u64>, StoreError> {
        let _turn = self.writes.enter().await;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let marked = sqlx::query(
            "UPDATE resource_lifecycle SET state = 'destroyed', destroyed = $2, updated = $2, \
             rotate_by = NULL, cryptoperiod_days = NULL \
             WHERE path = $1 AND state <> 'destroyed'",
        )
        .bind(path)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if marked.rows_affected() != 1 {
            return Ok(None);
        }
        let deleted = sqlx::query("DELETE FROM resources WHERE path = $1")
            .bind(path)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        // SQLite only (not shared SQL): with secure_delete on, the freed pages were zeroed in
        // the WAL; folding the WAL into the database and truncating it leaves no old copy of
        // the ciphertext in either file. Best effort: a reader holding an old snapshot can
        // delay it, which is not an error for the destruction itself.
        if <super::Db as sqlx::Database>::NAME == "SQLite" {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await
            {
                tracing::warn!(error = %e, "WAL checkpoint after destroy failed; it happens later");
            }
        }
        Ok(Some(deleted.rows_affected()))
    }

    pub(super) async fn replace_sealed_row(
        &self,
        r: &StoredResource,
        new: &keylatch_keystore::SealedResource,
    ) -> Result<bool, StoreError> {
        let _turn = self.writes.enter().await;
        let old =
            serde_json::to_string(&r.sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let new = serde_json::to_string(new).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE resources SET sealed = $3 WHERE path = $1 AND version = $2 AND sealed = $4",
        )
        .bind(&r.path)
        .bind(version_i64(r.version)?)
        .bind(new)
        .bind(old)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }
}
