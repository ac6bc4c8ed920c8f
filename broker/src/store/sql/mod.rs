//! The SQL of every [`Store`] method, written once and compiled once per backend: `sqlite.rs`
//! and `postgres.rs` each include this directory as their child module `sql` (`#[path]`),
//! after defining `Db` (the sqlx database), `DbRow` and `This` (their store type, which has
//! `pool: sqlx::Pool<Db>` and `relaxed: sqlx::Pool<Db>` fields: session writes go to `relaxed`,
//! everything else to `pool`; see [`crate::store`], "Durability"; and `writes`, the
//! [`WriteGate`](crate::store::WriteGate) every write method enters first). The statements therefore run unchanged on SQLite and
//! PostgreSQL, and a query added here exists on both at once: `$n` placeholders, columns only
//! `TEXT`, `BIGINT`, `BOOLEAN`, `ON CONFLICT ... DO ...`, `RETURNING`.
//!
//! Also here: the migration runner (shared; each backend supplies `begin_migration`, the
//! transaction that serializes concurrent start-ups), `health` (each backend supplies
//! `file_probe`, the check of its own storage beyond `SELECT 1`) and the error mapping.
//!
//! To add statements: put them in an `impl This { ... }` block in a new file of this directory
//! (`mod <name>;` below), take rows as `&DbRow`, begin every write with
//! `let _turn = self.writes.enter().await;`, and route the new `Store` methods to them from
//! the `impl Store for This` block below.

use sqlx::Row as _;

mod admin;
mod audit;
mod collateral;
mod lifecycle;

use keylatch_keystore::SealedResource;

use super::{begin_migration, Db, DbRow, This};
use crate::store::lifecycle::{LifecycleUpdate, ResourceLifecycle, ResourceState};
use crate::store::{
    ReleaseInputs, Session, SessionState, Store, StoreError, StoreFuture, StoredPolicy,
    StoredResource, MIGRATIONS,
};

#[allow(clippy::needless_pass_by_value)] // reason: used as `map_err(unavailable)`
pub(super) fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub(super) fn version_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative version {v}")))
}

pub(super) fn version_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("version {v} out of range")))
}

/// Applies every migration in [`MIGRATIONS`] not yet recorded, each in its own transaction
/// opened by the backend's `begin_migration`, which holds off every other process doing the
/// same (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock). The
/// bookkeeping table is created inside that transaction too, so racing replicas never collide.
/// (Boxed: the future must be provably `Send` for callers that spawn `store::open`, which
/// rustc cannot see through the executor lifetimes of an `async fn`.)
pub(super) fn migrate(pool: &sqlx::Pool<Db>) -> StoreFuture<'_, ()> {
    Box::pin(async move {
        // (`Executor::execute` below rather than `RawSql::execute`, whose generic async fn
        // defeats rustc's `Send` proof for this boxed future.)
        for &(version, name, sql) in MIGRATIONS {
            let mut tx = begin_migration(pool).await.map_err(unavailable)?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS keylatch_migrations \
                 (version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL)",
            )
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            let done = sqlx::query("SELECT 1 FROM keylatch_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            if done.is_some() {
                continue;
            }
            sqlx::Executor::execute(&mut *tx, sqlx::raw_sql(sql)).await.map_err(unavailable)?;
            sqlx::query("INSERT INTO keylatch_migrations (version, name) VALUES ($1, $2)")
                .bind(version)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
        }
        Ok(())
    })
}

pub(super) fn resource_from_row(row: &DbRow) -> Result<StoredResource, StoreError> {
    let sealed: String = row.try_get("sealed").map_err(unavailable)?;
    Ok(StoredResource {
        path: row.try_get("path").map_err(unavailable)?,
        version: version_u64(row.try_get("version").map_err(unavailable)?)?,
        sealed: serde_json::from_str(&sealed)
            .map_err(|e| StoreError::Corrupt(format!("sealed resource: {e}")))?,
        enabled: row.try_get("enabled").map_err(unavailable)?,
        created: row.try_get("created").map_err(unavailable)?,
    })
}

/// Inserts one resource version (through the pool or inside the caller's transaction).
async fn insert_resource<'e>(
    executor: impl sqlx::Executor<'e, Database = Db>,
    r: &StoredResource,
) -> Result<(), StoreError> {
    let sealed =
        serde_json::to_string(&r.sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO resources (path, version, sealed, enabled, created) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&r.path)
    .bind(version_i64(r.version)?)
    .bind(sealed)
    .bind(r.enabled)
    .bind(r.created)
    .execute(executor)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// A policy row whose columns are named `<prefix>path`, `<prefix>version`, ...
fn policy_from_row(row: &DbRow, prefix: &str) -> Result<StoredPolicy, StoreError> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(StoredPolicy {
        path: row.try_get(column("path").as_str()).map_err(unavailable)?,
        version: version_u64(row.try_get(column("version").as_str()).map_err(unavailable)?)?,
        body: row.try_get(column("body").as_str()).map_err(unavailable)?,
        digest: row.try_get(column("digest").as_str()).map_err(unavailable)?,
        created: row.try_get(column("created").as_str()).map_err(unavailable)?,
    })
}

fn session_from_row(row: &DbRow) -> Result<Session, StoreError> {
    let state: String = row.try_get("state").map_err(unavailable)?;
    Ok(Session {
        id: row.try_get("id").map_err(unavailable)?,
        nonce: row.try_get("nonce").map_err(unavailable)?,
        tee: row.try_get("tee").map_err(unavailable)?,
        created: row.try_get("created").map_err(unavailable)?,
        expires: row.try_get("expires").map_err(unavailable)?,
        state: SessionState::from_name(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("session state {state:?}")))?,
        token_jti: row.try_get("token_jti").map_err(unavailable)?,
        token: row.try_get("token").map_err(unavailable)?,
    })
}

impl Store for This {
    fn create_session(&self, s: &Session) -> StoreFuture<'_, ()> {
        let s = s.clone();
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            sqlx::query(
                "INSERT INTO sessions (id, nonce, tee, created, expires, state, token_jti, token) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&s.id)
            .bind(&s.nonce)
            .bind(&s.tee)
            .bind(s.created)
            .bind(s.expires)
            .bind(s.state.as_str())
            .bind(&s.token_jti)
            .bind(&s.token)
            .execute(&self.relaxed)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn get_session<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT * FROM sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            row.as_ref().map(session_from_row).transpose()
        })
    }

    fn consume_session<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            let done = sqlx::query(
                "UPDATE sessions SET state = 'consumed' \
                 WHERE id = $1 AND nonce = $2 AND state = 'issued' AND expires > $3",
            )
            .bind(id)
            .bind(nonce)
            .bind(now)
            .execute(&self.relaxed)
            .await
            .map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn attest_session<'a>(
        &'a self,
        id: &'a str,
        jti: &'a str,
        token: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            let done = sqlx::query(
                "UPDATE sessions SET state = 'attested', token_jti = $2, token = $3 \
                 WHERE id = $1 AND state = 'consumed'",
            )
            .bind(id)
            .bind(jti)
            .bind(token)
            .execute(&self.relaxed)
            .await
            .map_err(unavailable)?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict(format!("session {id} is not awaiting a token")))
            }
        })
    }

    fn purge_sessions(&self, now: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            let done = sqlx::query("DELETE FROM sessions WHERE expires < $1")
                .bind(now)
                .execute(&self.relaxed)
                .await
                .map_err(unavailable)?;
            Ok(done.rows_affected())
        })
    }

    fn next_resource_version<'a>(&'a self, path: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM resources WHERE path = $1",
            )
            .bind(path)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
            version_u64(row.try_get("next").map_err(unavailable)?)
        })
    }

    fn put_resource<'a>(&'a self, r: &'a StoredResource) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            insert_resource(&self.pool, r).await?;
            Ok(())
        })
    }

    fn current_resource<'a>(&'a self, path: &'a str) -> StoreFuture<'a, Option<StoredResource>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT path, version, sealed, enabled, created FROM resources \
                 WHERE path = $1 AND enabled ORDER BY version DESC LIMIT 1",
            )
            .bind(path)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(resource_from_row).transpose()
        })
    }

    fn put_policy<'a>(
        &'a self,
        path: &'a str,
        body: &'a str,
        digest: &'a str,
        now: i64,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            let row = sqlx::query(
                "INSERT INTO policies (path, version, body, digest, created) \
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4 FROM policies WHERE path = $1 \
                 RETURNING version",
            )
            .bind(path)
            .bind(body)
            .bind(digest)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
            version_u64(row.try_get("version").map_err(unavailable)?)
        })
    }

    fn current_policy<'a>(&'a self, path: &'a str) -> StoreFuture<'a, Option<StoredPolicy>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT path, version, body, digest, created FROM policies \
                 WHERE path = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(path)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(|r| policy_from_row(r, "")).transpose()
        })
    }

    fn release_inputs<'a>(&'a self, path: &'a str) -> StoreFuture<'a, ReleaseInputs> {
        Box::pin(async move {
            // One row whatever exists: the path itself, joined to at most one row of each table.
            let row = sqlx::query(
                "SELECT l.state AS lifecycle_state, \
                 r.path AS path, r.version AS version, r.sealed AS sealed, \
                 r.enabled AS enabled, r.created AS created, \
                 p.path AS policy_path, p.version AS policy_version, p.body AS policy_body, \
                 p.digest AS policy_digest, p.created AS policy_created \
                 FROM (SELECT CAST($1 AS TEXT) AS path) AS q \
                 LEFT JOIN resource_lifecycle l ON l.path = q.path \
                 LEFT JOIN resources r ON r.path = q.path AND r.enabled AND r.version = \
                   (SELECT MAX(version) FROM resources WHERE path = q.path AND enabled) \
                 LEFT JOIN policies p ON p.path = q.path AND p.version = \
                   (SELECT MAX(version) FROM policies WHERE path = q.path)",
            )
            .bind(path)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
            let state: Option<String> = row.try_get("lifecycle_state").map_err(unavailable)?;
            let state = state
                .map(|s| {
                    ResourceState::from_name(&s)
                        .ok_or_else(|| StoreError::Corrupt(format!("resource state {s:?}")))
                })
                .transpose()?;
            let has_resource = row.try_get::<Option<i64>, _>("version").map_err(unavailable)?;
            let resource = has_resource.map(|_| resource_from_row(&row)).transpose()?;
            let has_policy =
                row.try_get::<Option<i64>, _>("policy_version").map_err(unavailable)?;
            let policy = has_policy.map(|_| policy_from_row(&row, "policy_")).transpose()?;
            Ok(ReleaseInputs { state, resource, policy })
        })
    }

    fn add_resource_version<'a>(
        &'a self,
        resource: &'a StoredResource,
        update: LifecycleUpdate,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.add_version_tx(resource, update))
    }

    fn resource_lifecycle<'a>(
        &'a self,
        path: &'a str,
    ) -> StoreFuture<'a, Option<ResourceLifecycle>> {
        Box::pin(self.lifecycle_of(path))
    }

    fn resource_lifecycles(&self) -> StoreFuture<'_, Vec<ResourceLifecycle>> {
        Box::pin(self.lifecycles())
    }

    fn resource_versions<'a>(
        &'a self,
        path: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<StoredResource>> {
        Box::pin(self.versions_of(path))
    }

    fn set_resource_state<'a>(
        &'a self,
        path: &'a str,
        state: ResourceState,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.set_state_row(path, state, now))
    }

    fn set_rotate_by<'a>(
        &'a self,
        path: &'a str,
        update: LifecycleUpdate,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.set_rotate_by_row(path, update, now))
    }

    fn destroy_resource<'a>(&'a self, path: &'a str, now: i64) -> StoreFuture<'a, Option<u64>> {
        Box::pin(self.destroy_tx(path, now))
    }

    fn replace_sealed<'a>(
        &'a self,
        resource: &'a StoredResource,
        new: &'a SealedResource,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.replace_sealed_row(resource, new))
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await.map_err(unavailable)?;
            super::file_probe(self)
        })
    }
}
