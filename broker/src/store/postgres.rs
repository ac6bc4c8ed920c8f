//! The shared [`Store`](super::Store) for any number of broker replicas: PostgreSQL through
//! sqlx's native driver (TLS by rustls when the URL asks for it, e.g.
//! `sslmode=verify-full&sslrootcert=...`). This file owns only what is PostgreSQL's own —
//! connecting (the password from a file rather than the URL, never logged or printed) and the
//! migration transaction, serialized across replicas by `pg_advisory_xact_lock`; every
//! statement lives in [`sql`](super::sql), shared with SQLite.
//!
//! A statement fails with [`StoreError::Unavailable`] while the database is unreachable (the
//! broker answers 503 and releases nothing); the pool reconnects by itself once it is back.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::StoreError;

/// The database the shared statements are compiled for in this module.
type Db = sqlx::Postgres;
type DbRow = sqlx::postgres::PgRow;
type This = PgStore;

#[allow(clippy::duplicate_mod)]
// reason: on purpose — the one SQL text, compiled for PostgreSQL here and for SQLite in sqlite.rs
#[path = "sql/mod.rs"]
mod sql;

use sql::unavailable;

/// Key of the advisory lock held while migrating ("keylatch" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b65_796c_6174_6368;

/// How long a request waits for a pooled connection before the store reports `Unavailable`:
/// a broker whose database is down answers 503 promptly instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default pool size per broker process.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// PostgreSQL-backed store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The same database with `synchronous_commit = off`, for the session statements only
    /// (see [`crate::store`], "Durability").
    relaxed: PgPool,
    /// Lets writes through concurrently (see [`super::WriteGate`]).
    writes: std::sync::Arc<super::WriteGate>,
    /// `host:port/database`, for logs (no user, no password).
    target: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("target", &self.target).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db?...`; a Unix socket directory goes in
    /// `?host=/path`), with `password` overriding any password in the URL, and applies pending
    /// migrations under the migration lock.
    pub async fn connect(
        url: &str,
        password: Option<&str>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            // The URL may hold a password: say what is wrong without echoing it.
            .map_err(|_| {
                StoreError::Unavailable("[store] url is not a valid postgres:// URL".into())
            })?
            .application_name("keylatch");
        if let Some(password) = password {
            options = options.password(password);
        }
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        sql::migrate(&pool).await?;
        let relaxed = PgPoolOptions::new()
            .max_connections((max_connections / 2).max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.options([("synchronous_commit", "off")]))
            .await
            .map_err(unavailable)?;
        Ok(Self { pool, relaxed, writes: std::sync::Arc::new(super::WriteGate::open()), target })
    }

    /// `host:port/database` this store talks to.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// Nothing beyond `SELECT 1`: the server owns its files and answers for them.
#[allow(clippy::unnecessary_wraps)] // reason: the signature `health` calls on every backend
pub(super) fn file_probe(_store: &PgStore) -> Result<(), StoreError> {
    Ok(())
}

/// A transaction holding the migration advisory lock until it ends, so replicas starting
/// together apply each migration exactly once, one after the other.
async fn begin_migration(pool: &PgPool) -> Result<sqlx::Transaction<'static, Db>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    Ok(tx)
}
