//! The embedded [`Store`](super::Store): one SQLite file in WAL mode (5 s busy timeout) through
//! sqlx's native SQLite driver, with two pools on it: `pool` (`synchronous = FULL`: every commit
//! is on disk when it returns) for everything but sessions, and `relaxed` (`synchronous =
//! NORMAL`) for the session statements, whose durability comes from the next audit commit (see
//! [`crate::store`], "Durability"). This file owns only what is
//! SQLite's own — opening the file with its pragmas and the migration transaction
//! (`BEGIN IMMEDIATE`, so two processes opening one file at once apply each migration once);
//! every statement lives in [`sql`](super::sql), shared with PostgreSQL — and the readiness
//! probe of the file itself ([`file_probe`]): open connections keep working on a database file
//! that was removed (they write to an unlinked inode, lost at the next start) or made
//! unwritable (until the pool opens a new connection), so `SELECT 1` alone cannot see either.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
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
    /// Every write of this process, one at a time (see [`super::WriteGate`]).
    writes: std::sync::Arc<super::WriteGate>,
    /// The database file and its identity (device, inode) when it was opened.
    file: PathBuf,
    identity: (u64, u64),
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
        // No ping before each use: a local file connection does not go stale, and the ping is
        // a round trip to the connection's worker thread on every statement.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        sql::migrate(&pool).await?;
        let relaxed = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(unavailable)?;
        let meta = std::fs::metadata(path)
            .map_err(|e| super::StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        Ok(Self {
            pool,
            relaxed,
            writes: std::sync::Arc::new(super::WriteGate::one_at_a_time()),
            file: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        })
    }
}

/// The readiness probe of the database file (run by `health` after `SELECT 1`): the path still
/// names the file the pools opened (not removed, not replaced), and it can be opened for
/// writing as a new connection would. Fails closed with what is wrong.
pub(super) fn file_probe(store: &SqliteStore) -> Result<(), super::StoreError> {
    let file = store.file.display();
    let unavailable = |why: String| super::StoreError::Unavailable(format!("{file}: {why}"));
    let meta = std::fs::metadata(&store.file)
        .map_err(|e| unavailable(format!("database file gone: {e}")))?;
    if (meta.dev(), meta.ino()) != store.identity {
        return Err(unavailable("replaced since the broker opened it".into()));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&store.file)
        .map_err(|e| unavailable(format!("not writable: {e}")))?;
    Ok(())
}

/// A write transaction from its first statement, so concurrent openers queue (busy timeout)
/// instead of both reading "not applied" and then failing to upgrade their read lock.
async fn begin_migration(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Db>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}
