//! The embedded [`Store`](super::Store): one SQLite file in WAL mode (5 s busy timeout) through
//! sqlx's native SQLite driver, with two pools on it: `pool` (`synchronous = FULL`: every commit
//! is on disk when it returns) for everything but sessions, and `relaxed` (`synchronous =
//! NORMAL`) for the session statements, whose durability comes from the next audit commit (see
//! [`crate::store`], "Durability"). This file owns only what is
//! SQLite's own — opening the file with its pragmas and the migration transaction
//! (`BEGIN IMMEDIATE`, so two processes opening one file at once apply each migration once);
//! every statement lives in [`sql`](super::sql), shared with PostgreSQL.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// The database the shared statements are compiled for in this module.
type Db = sqlx::Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;
type This = SqliteStore;

#[allow(clippy::duplicate_mod)]
// reason: on purpose — the one SQL text, compiled for SQLite here and for PostgreSQL in postgres.rs
#[path = "sql/mod.rs"]
mod sql;

use sql::unavailable;

/// SQLite-backed store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    relaxed: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if `create`) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path, create: bool) -> Result<Self, super::StoreError> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(unavailable)?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Freed pages (a destroyed resource's ciphertext) are zeroed, not left behind.
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        sql::migrate(&pool).await?;
        let relaxed = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(unavailable)?;
        Ok(Self { pool, relaxed })
    }
}

/// A write transaction from its first statement, so concurrent openers queue (busy timeout)
/// instead of both reading "not applied" and then failing to upgrade their read lock.
async fn begin_migration(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Db>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}
