//! Persistent broker state behind one async interface, [`Store`]: challenge sessions (with the
//! single-use nonce), sealed resources and release policies. Everything a replica needs to
//! continue another replica's handshake lives here, never in process memory. [`sqlite`] is the
//! embedded implementation, [`postgres`] the one replicas share; [`open`] picks one from the
//! configuration. Both run the same statements (`sql/`, compiled once per backend) and the same
//! migrations ([`MIGRATIONS`]); `broker/STORE.md` is the operator's guide.
//!
//! Why one source compiled twice rather than the alternatives:
//! - sqlx's `Any` driver cannot decode SQLite `BOOLEAN` columns (sqlx 0.8 maps SQLite's `Bool`
//!   type to an error) and builds SQLite connections from the URL alone, losing WAL,
//!   `synchronous = FULL` and the busy timeout;
//! - a store generic over `sqlx::Database` needs a dozen higher-ranked bounds (executor,
//!   arguments, encode/decode per Rust type) repeated on every impl block, because Rust does not
//!   imply where-clauses; every helper adding a query would fight them;
//! - a `macro_rules!` body is invisible to rustfmt and hard to read.
//!
//! With `#[path]`, `sql/` is plain Rust checked by rustfmt and clippy, type-checked against both
//! native drivers, and a query added there exists on both backends at once.
//!
//! # Durability
//! Every write survives a crash of the broker process (SIGKILL) on both backends. Surviving a
//! crash of the machine (power loss) costs a flush per commit, paid only where it protects
//! something. Each backend therefore has two pools on one database: `pool` (SQLite
//! `synchronous = FULL`, PostgreSQL `synchronous_commit = on`) and `relaxed` (`NORMAL` /
//! `off`). Both backends write one sequential log (the WAL), so a flushing commit makes every
//! earlier commit durable too. Per write:
//!
//! | write | pool | why |
//! |---|---|---|
//! | audit append (every decision, group-committed) | `pool` | a token or key leaves only after its entry is durable; this is the flush the release path pays |
//! | session created (`auth`) | `relaxed` | losing it costs the guest one more handshake (401, then `auth` again) |
//! | session consumed, then attested (`attest`) | `relaxed` | a token is answered only after the attest decision's audit entry, which is committed later and flushes both: a nonce that produced a token is durably spent. A nonce lost with the machine before that answer produced nothing, and its replay stays bound to a key the replayer lacks |
//! | expired sessions purged | `relaxed` | the next sweep deletes again |
//! | collateral cache | `relaxed` | a cache: lost entries are fetched again |
//! | resources, policies, bundles, KEK inventory, admin tokens, lifecycle | `pool` | cold path; some precede an irreversible keystore operation (a retired KEK is destroyed in the HSM only after the rewrap is on disk) |

pub mod admin;
pub mod audit;
pub mod collateral;
pub mod lifecycle;
pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use keylatch_keystore::SealedResource;

pub use admin::{AdminStore, AdminToken, PolicyVersionMeta, ResourceVersionMeta, StoredBundle};
pub use audit::{AuditSealer, AuditStore, EntryQuery, SealPlan, StoredCheckpoint, StoredEntry};
pub use lifecycle::{LifecycleUpdate, ResourceLifecycle, ResourceState};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::{StoreBackend, StoreConfig};

/// The schema migrations, in order: (version, name, SQL). One SQL text for both backends.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/0001_initial.sql")),
    (2, "admin", include_str!("../../migrations/0002_admin.sql")),
    (3, "audit", include_str!("../../migrations/0003_audit.sql")),
    (4, "lifecycle", include_str!("../../migrations/0004_lifecycle.sql")),
    (5, "collateral", include_str!("../../migrations/0005_collateral.sql")),
];

/// Opens the configured store (an existing SQLite file, or the PostgreSQL database with the
/// password read from `password_file`) and applies pending migrations.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config.backend {
        StoreBackend::Sqlite => {
            let path = config
                .path
                .as_deref()
                .ok_or_else(|| StoreError::Unavailable("[store] path is required".into()))?;
            Ok(Arc::new(SqliteStore::open(path, false).await?))
        }
        StoreBackend::Postgres => {
            let url = config
                .url
                .as_deref()
                .ok_or_else(|| StoreError::Unavailable("[store] url is required".into()))?;
            let password = config.read_password().map_err(StoreError::Unavailable)?;
            let store = PgStore::connect(
                url,
                password.as_deref().map(String::as_str),
                config.max_connections.unwrap_or(postgres::DEFAULT_MAX_CONNECTIONS),
            )
            .await?;
            tracing::info!(target = %store.target(), "store: PostgreSQL");
            Ok(Arc::new(store))
        }
    }
}

/// Orders this process's writes when the database admits one writer at a time (SQLite): each
/// write waits here, first come first served, instead of in SQLite's busy handler, which
/// polls the lock with sleeps of up to 100 ms and lets a late writer overtake one that has
/// waited long (the tail latency of concurrent releases). Another process writing the same
/// file (a CLI command) still meets the busy timeout. PostgreSQL locks rows, not the
/// database, so its gate lets every write through at once.
#[derive(Debug)]
pub(crate) struct WriteGate(Option<tokio::sync::Mutex<()>>);

impl WriteGate {
    /// One write at a time, in arrival order (tokio's mutex is fair).
    pub(crate) fn one_at_a_time() -> Self {
        Self(Some(tokio::sync::Mutex::new(())))
    }

    /// No ordering: the database takes concurrent writers itself.
    pub(crate) fn open() -> Self {
        Self(None)
    }

    /// Waits for this write's turn; the turn lasts as long as the returned guard.
    pub(crate) async fn enter(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.0 {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }
}

/// A boxed future, so the trait stays object-safe (`Arc<dyn Store>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store failure. The broker answers 503 for `Unavailable` and logs the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A row with this key exists already (a concurrent writer took the version).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data that does not decode (a bug or tampering).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Challenge sent; the nonce has not been answered.
    Issued,
    /// The nonce was answered (successfully or not); it can never be answered again.
    Consumed,
    /// The answer was accepted and a token issued.
    Attested,
}

impl SessionState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Consumed => "consumed",
            Self::Attested => "attested",
        }
    }

    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Issued, Self::Consumed, Self::Attested].into_iter().find(|v| v.as_str() == s)
    }
}

/// One challenge session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    /// The challenge nonce exactly as sent (standard base64 of 32 bytes).
    pub nonce: String,
    pub tee: String,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
    pub state: SessionState,
    pub token_jti: Option<String>,
    /// The token issued to this session, for cookie-authenticated resource requests.
    pub token: Option<String>,
}

/// One stored resource version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub path: String,
    pub version: u64,
    pub sealed: SealedResource,
    pub enabled: bool,
    pub created: i64,
}

/// One stored policy version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub path: String,
    pub version: u64,
    /// Canonical JSON of the policy.
    pub body: String,
    /// Hex SHA-256 of `body`.
    pub digest: String,
    pub created: i64,
}

/// What a release decision reads about one resource path ([`Store::release_inputs`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReleaseInputs {
    /// `None`: the path has no lifecycle row (a resource stored before lifecycles existed).
    pub state: Option<ResourceState>,
    pub resource: Option<StoredResource>,
    pub policy: Option<StoredPolicy>,
}

/// The broker's persistent state.
pub trait Store:
    AdminStore + AuditStore + collateral::CollateralStore + Send + Sync + std::fmt::Debug
{
    fn create_session(&self, session: &Session) -> StoreFuture<'_, ()>;

    fn get_session<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>>;

    /// Atomically moves the session from `issued` to `consumed` if it is still `issued`, not
    /// expired at `now` and has `nonce`. `false` when another request got there first (or the
    /// conditions do not hold): the nonce is single use.
    fn consume_session<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
        now: i64,
    ) -> StoreFuture<'a, bool>;

    /// Records the token issued for a consumed session (`consumed` → `attested`).
    fn attest_session<'a>(
        &'a self,
        id: &'a str,
        jti: &'a str,
        token: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// Deletes sessions that expired before `now`; returns how many.
    fn purge_sessions(&self, now: i64) -> StoreFuture<'_, u64>;

    /// The version the next `put_resource` for `path` should use.
    fn next_resource_version<'a>(&'a self, path: &'a str) -> StoreFuture<'a, u64>;

    /// Inserts a resource version; `Conflict` if that version exists.
    fn put_resource<'a>(&'a self, resource: &'a StoredResource) -> StoreFuture<'a, ()>;

    /// The newest enabled version of `path`.
    fn current_resource<'a>(&'a self, path: &'a str) -> StoreFuture<'a, Option<StoredResource>>;

    /// Inserts a new policy version for `path` (one more than the newest) and returns it.
    fn put_policy<'a>(
        &'a self,
        path: &'a str,
        body: &'a str,
        digest: &'a str,
        now: i64,
    ) -> StoreFuture<'a, u64>;

    /// The newest policy for `path`.
    fn current_policy<'a>(&'a self, path: &'a str) -> StoreFuture<'a, Option<StoredPolicy>>;

    /// Everything a release decision reads about `path`, in one statement: its lifecycle
    /// state, its newest enabled version and its newest policy (what
    /// [`Store::resource_lifecycle`], [`Store::current_resource`] and
    /// [`Store::current_policy`] answer one by one).
    fn release_inputs<'a>(&'a self, path: &'a str) -> StoreFuture<'a, ReleaseInputs>;

    // Resource lifecycle (migration 0004; the rules are in `crate::custody`).

    /// In one transaction: creates or updates `resource.path`'s lifecycle row with `update`
    /// and inserts the version. `false` (nothing written) when the path was destroyed;
    /// `Conflict` when the version exists.
    fn add_resource_version<'a>(
        &'a self,
        resource: &'a StoredResource,
        update: LifecycleUpdate,
    ) -> StoreFuture<'a, bool>;

    fn resource_lifecycle<'a>(
        &'a self,
        path: &'a str,
    ) -> StoreFuture<'a, Option<ResourceLifecycle>>;

    /// Every resource's lifecycle row (destroyed ones included), by path.
    fn resource_lifecycles(&self) -> StoreFuture<'_, Vec<ResourceLifecycle>>;

    /// Every stored version of `path` (of all paths with `None`), by path then version.
    fn resource_versions<'a>(
        &'a self,
        path: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<StoredResource>>;

    /// Sets the state of a resource that is not destroyed; `false` when there is none.
    fn set_resource_state<'a>(
        &'a self,
        path: &'a str,
        state: ResourceState,
        now: i64,
    ) -> StoreFuture<'a, bool>;

    /// Sets the cryptoperiod of a resource that is not destroyed; `false` when there is none.
    fn set_rotate_by<'a>(
        &'a self,
        path: &'a str,
        update: LifecycleUpdate,
        now: i64,
    ) -> StoreFuture<'a, bool>;

    /// In one transaction: marks `path` destroyed and deletes every version. `None` when there
    /// is no such resource or it was destroyed already; else how many versions were removed.
    fn destroy_resource<'a>(&'a self, path: &'a str, now: i64) -> StoreFuture<'a, Option<u64>>;

    /// Replaces one version's sealed value if it still equals `resource.sealed` (one statement,
    /// its own transaction); `false` when it changed meanwhile or is gone.
    fn replace_sealed<'a>(
        &'a self,
        resource: &'a StoredResource,
        new: &'a SealedResource,
    ) -> StoreFuture<'a, bool>;

    /// Cheap liveness check.
    fn health(&self) -> StoreFuture<'_, ()>;
}
