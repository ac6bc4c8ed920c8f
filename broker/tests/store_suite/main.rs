//! One store test suite, run against both backends: every case in `cases.rs` becomes
//! `sqlite::<case>` (a fresh file in a temp dir) and `postgres::<case>` (a fresh database on
//! the throwaway server of `pg.rs`, reached through `[store] backend = "postgres"` with a
//! `password_file`, as an operator configures it). Plus what only PostgreSQL has: the
//! database going down and coming back.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod cases;
mod pg;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use keylatch_broker::config::{StoreBackend, StoreConfig};
use keylatch_broker::store::{self, SqliteStore, Store};
use sqlx::Connection as _;

use pg::PgServer;

/// A database of one backend, fresh for one test; [`Db::open`] makes independent store
/// instances (own pools) on it, as separate broker replicas would.
#[derive(Debug)]
pub struct Db {
    config: StoreConfig,
    _dir: tempfile::TempDir,
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keylatch.db");
        SqliteStore::open(&path, true).await.unwrap();
        Db {
            config: StoreConfig {
                backend: StoreBackend::Sqlite,
                path: Some(path),
                url: None,
                password_file: None,
                max_connections: None,
            },
            _dir: dir,
        }
    }

    /// `None` when PostgreSQL cannot run here (outside CI).
    pub async fn postgres() -> Option<Db> {
        let server = PgServer::shared()?;
        let database = server.fresh_database().await;
        Some(Db::postgres_on(server, &database))
    }

    #[must_use]
    pub fn postgres_on(server: &PgServer, database: &str) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("db-password");
        std::fs::write(&password_file, format!("{}\n", server.password())).unwrap();
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Db {
            config: StoreConfig {
                backend: StoreBackend::Postgres,
                path: None,
                url: Some(server.url(database)),
                password_file: Some(password_file),
                max_connections: Some(8),
            },
            _dir: dir,
        }
    }

    /// A new store instance on this database, through the broker's own `store::open`.
    pub async fn open(&self) -> Arc<dyn Store> {
        store::open(&self.config).await.unwrap()
    }

    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// One integer from `sql`, read around the store (to look at bookkeeping tables).
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.config.backend {
            StoreBackend::Sqlite => {
                let path: PathBuf = self.config.path.clone().unwrap();
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
            StoreBackend::Postgres => {
                let password = self.config.read_password().unwrap().unwrap();
                let options: sqlx::postgres::PgConnectOptions =
                    self.config.url.as_deref().unwrap().parse().unwrap();
                let mut c =
                    sqlx::PgConnection::connect_with(&options.password(&password)).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
        }
    }
}

/// Instantiates every listed case once per backend.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let db = super::Db::sqlite().await;
                    super::cases::$case(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(db) = super::Db::postgres().await else { return };
                    super::cases::$case(&db).await;
                }
            )*
        }
    };
}

suite!(
    session_round_trips_every_field,
    nonce_is_consumed_once_and_only_with_its_session_before_expiry,
    racing_store_instances_consume_a_nonce_exactly_once,
    token_is_recorded_only_after_consumption,
    purge_removes_only_expired_sessions,
    resource_versions_are_kept_and_the_newest_enabled_is_current,
    duplicate_resource_version_is_a_conflict,
    policy_versions_increase_and_the_newest_applies,
    release_inputs_match_the_lifecycle_resource_and_policy_reads,
    concurrent_opens_of_a_fresh_database_apply_each_migration_once,
    data_survives_reopening,
    health_succeeds,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_is_unavailable_loses_nothing_and_heals() {
    let Some(server) = PgServer::private() else { return };
    let database = server.fresh_database().await;
    let db = Db::postgres_on(&server, &database);
    let store = db.open().await;
    let session = cases::session("down-1", "nonce-down", 2_000);
    store.create_session(&session).await.unwrap();

    server.stop_server().unwrap();
    for result in [
        store.health().await.map(|()| true),
        store.consume_session("down-1", "nonce-down", 1_000).await,
        store.get_session("down-1").await.map(|s| s.is_some()),
    ] {
        assert!(
            matches!(result, Err(store::StoreError::Unavailable(_))),
            "expected Unavailable, got {result:?}"
        );
    }

    server.start_server().unwrap();
    store.health().await.unwrap();
    assert_eq!(store.get_session("down-1").await.unwrap(), Some(session));
    assert!(store.consume_session("down-1", "nonce-down", 1_000).await.unwrap());
}

#[tokio::test]
async fn postgres_store_refuses_a_group_readable_password_file() {
    let Some(server) = PgServer::shared() else { return };
    let db = Db::postgres_on(server, "postgres");
    let file = db.config().password_file.clone().unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = store::open(db.config()).await.unwrap_err().to_string();
    assert!(err.contains("readable by group or others"), "{err}");
    assert!(!err.contains(server.password()), "the error must not show the password: {err}");
}

#[tokio::test]
async fn postgres_wrong_password_is_unavailable_without_echoing_it() {
    let Some(server) = PgServer::shared() else { return };
    let db = Db::postgres_on(server, "postgres");
    let file = db.config().password_file.clone().unwrap();
    std::fs::write(&file, "not-the-password-4711\n").unwrap();
    let err = store::open(db.config()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, store::StoreError::Unavailable(_)), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("not-the-password-4711"), "{text}");
}

/// `keylatch init`'s file with its `[store]` table replaced by `store`, loaded as the broker
/// loads it.
async fn load_with_store(store: &str) -> anyhow::Result<keylatch_broker::Config> {
    let dir = tempfile::tempdir().unwrap();
    let path = keylatch_cli::init::init_dir(
        dir.path(),
        false,
        &[],
        "127.0.0.1:0",
        &keylatch_cli::init::KeystoreChoice::Soft,
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[store]").unwrap();
    let end = start + text[start..].find("[keystore]").unwrap();
    std::fs::write(&path, format!("{}{store}\n{}", &text[..start], &text[end..])).unwrap();
    keylatch_broker::Config::load(&path)
}

#[tokio::test]
async fn config_accepts_postgres_with_url_and_resolves_the_password_file() {
    let config = load_with_store(
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://keylatch@db:5432/keylatch\"\npassword_file = \"db-password\"\nmax_connections = 4\n",
    )
    .await
    .unwrap();
    assert_eq!(config.store.backend, StoreBackend::Postgres);
    assert_eq!(config.store.url.as_deref(), Some("postgres://keylatch@db:5432/keylatch"));
    let file = config.store.password_file.unwrap();
    assert!(file.is_absolute() && file.ends_with("db-password"), "{}", file.display());
    assert_eq!(config.store.max_connections, Some(4));
}

#[tokio::test]
async fn config_refuses_store_keys_of_the_other_backend() {
    for (store, expected) in [
        ("[store]\nbackend = \"postgres\"\n", "needs url"),
        ("[store]\nbackend = \"sqlite\"\n", "needs path"),
        (
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://h/d\"\npath = \"x.db\"\n",
            "path is for",
        ),
        (
            "[store]\nbackend = \"sqlite\"\npath = \"x.db\"\nurl = \"postgres://h/d\"\n",
            "are for backend",
        ),
        ("[store]\nbackend = \"mysql\"\n", "unknown variant"),
    ] {
        let err = format!("{:#}", load_with_store(store).await.unwrap_err());
        assert!(err.contains(expected), "{store}: {err}");
    }
}
