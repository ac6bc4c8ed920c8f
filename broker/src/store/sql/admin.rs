//! [`AdminStore`] on SQLite: admin tokens, published bundles, resource and policy metadata.
//! Portable SQL only (PostgreSQL runs it unchanged).

use base64::Engine as _;
use sqlx::Row as _;

use super::{unavailable, version_i64, version_u64, DbRow, This};
use crate::store::admin::{
    AdminStore, AdminToken, PolicyVersionMeta, ResourceVersionMeta, StoredBundle,
};
use crate::store::{StoreError, StoreFuture, StoredPolicy};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn token_from_row(row: &DbRow) -> Result<AdminToken, StoreError> {
    let prefixes: String = row.try_get("prefixes").map_err(unavailable)?;
    Ok(AdminToken {
        id: row.try_get("id").map_err(unavailable)?,
        hash: row.try_get("hash").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
        role: row.try_get("role").map_err(unavailable)?,
        prefixes: serde_json::from_str(&prefixes)
            .map_err(|e| StoreError::Corrupt(format!("token prefixes: {e}")))?,
        created: row.try_get("created").map_err(unavailable)?,
        expires: row.try_get("expires").map_err(unavailable)?,
        revoked: row.try_get("revoked").map_err(unavailable)?,
        created_by: row.try_get("created_by").map_err(unavailable)?,
    })
}

fn bundle_from_row(row: &DbRow) -> Result<StoredBundle, StoreError> {
    let signed: String = row.try_get("signed").map_err(unavailable)?;
    Ok(StoredBundle {
        name: row.try_get("name").map_err(unavailable)?,
        version: version_u64(row.try_get("version").map_err(unavailable)?)?,
        signed: B64
            .decode(signed)
            .map_err(|e| StoreError::Corrupt(format!("stored bundle: {e}")))?,
        digest: row.try_get("digest").map_err(unavailable)?,
        expires: row.try_get("expires").map_err(unavailable)?,
        publisher: row.try_get("publisher").map_err(unavailable)?,
        published: row.try_get("published").map_err(unavailable)?,
    })
}

const BUNDLE_COLUMNS: &str = "name, version, signed, digest, expires, publisher, published";

impl AdminStore for This {
    fn create_admin_token<'a>(&'a self, t: &'a AdminToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            let prefixes = serde_json::to_string(&t.prefixes)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO admin_tokens \
                 (id, hash, name, role, prefixes, created, expires, revoked, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&t.id)
            .bind(&t.hash)
            .bind(&t.name)
            .bind(&t.role)
            .bind(prefixes)
            .bind(t.created)
            .bind(t.expires)
            .bind(t.revoked)
            .bind(&t.created_by)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn admin_token_by_hash<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<AdminToken>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT * FROM admin_tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            row.as_ref().map(token_from_row).transpose()
        })
    }

    fn list_admin_tokens(&self) -> StoreFuture<'_, Vec<AdminToken>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT * FROM admin_tokens ORDER BY created, id")
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            rows.iter().map(token_from_row).collect()
        })
    }

    fn revoke_admin_token<'a>(&'a self, id: &'a str, now: i64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            let done = sqlx::query(
                "UPDATE admin_tokens SET revoked = $2 WHERE id = $1 AND revoked IS NULL",
            )
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn put_bundle<'a>(&'a self, b: &'a StoredBundle) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            sqlx::query(
                "INSERT INTO reference_value_bundles \
                 (name, version, signed, digest, expires, publisher, published) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&b.name)
            .bind(version_i64(b.version)?)
            .bind(B64.encode(&b.signed))
            .bind(&b.digest)
            .bind(b.expires)
            .bind(&b.publisher)
            .bind(b.published)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn bundle_versions<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<StoredBundle>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {BUNDLE_COLUMNS} FROM reference_value_bundles \
                 WHERE name = $1 ORDER BY version DESC"
            ))
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(bundle_from_row).collect()
        })
    }

    fn current_bundles(&self) -> StoreFuture<'_, Vec<StoredBundle>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {BUNDLE_COLUMNS} FROM reference_value_bundles b \
                 WHERE version = (SELECT MAX(version) FROM reference_value_bundles \
                                  WHERE name = b.name) \
                 ORDER BY name"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(bundle_from_row).collect()
        })
    }

    fn list_resource_versions(&self) -> StoreFuture<'_, Vec<ResourceVersionMeta>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT path, version, enabled, created FROM resources ORDER BY path, version",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter()
                .map(|row| {
                    Ok(ResourceVersionMeta {
                        path: row.try_get("path").map_err(unavailable)?,
                        version: version_u64(row.try_get("version").map_err(unavailable)?)?,
                        enabled: row.try_get("enabled").map_err(unavailable)?,
                        created: row.try_get("created").map_err(unavailable)?,
                    })
                })
                .collect()
        })
    }

    fn list_policy_versions(&self) -> StoreFuture<'_, Vec<PolicyVersionMeta>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT path, version, digest, created FROM policies ORDER BY path, version",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter()
                .map(|row| {
                    Ok(PolicyVersionMeta {
                        path: row.try_get("path").map_err(unavailable)?,
                        version: version_u64(row.try_get("version").map_err(unavailable)?)?,
                        digest: row.try_get("digest").map_err(unavailable)?,
                        created: row.try_get("created").map_err(unavailable)?,
                    })
                })
                .collect()
        })
    }

    fn get_policy_version<'a>(
        &'a self,
        path: &'a str,
        version: Option<u64>,
    ) -> StoreFuture<'a, Option<StoredPolicy>> {
        Box::pin(async move {
            let row = match version {
                None => sqlx::query(
                    "SELECT path, version, body, digest, created FROM policies \
                     WHERE path = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(path),
                Some(v) => sqlx::query(
                    "SELECT path, version, body, digest, created FROM policies \
                     WHERE path = $1 AND version = $2",
                )
                .bind(path)
                .bind(version_i64(v)?),
            }
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(StoredPolicy {
                path: row.try_get("path").map_err(unavailable)?,
                version: version_u64(row.try_get("version").map_err(unavailable)?)?,
                body: row.try_get("body").map_err(unavailable)?,
                digest: row.try_get("digest").map_err(unavailable)?,
                created: row.try_get("created").map_err(unavailable)?,
            }))
        })
    }
}
