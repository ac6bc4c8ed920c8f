//! The audit log's share of the store (migration 0003): the [`AuditStore`] trait every store
//! implements, and the types crossing it. The store owns the ONE transaction of an append (lock
//! the tree state, read it, write entries, subtrees, the new state and maybe a checkpoint,
//! commit); what to write is decided by an [`AuditSealer`] that `crate::audit` supplies, so the
//! tree and signing logic exist once (in `keylatch-audit`) for every backend.

use keylatch_audit::append::PreparedAppend;
use keylatch_audit::merkle::compact::Frontier;
use keylatch_audit::{AuditEntry, Hash};

use super::{StoreError, StoreFuture};

/// Most entries one read returns.
pub const MAX_READ: u64 = 10_000;

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// Unix seconds.
    pub signed_at: i64,
    /// The signed note.
    pub note: String,
    /// The tree's right edge at `size`.
    pub frontier: Frontier,
}

/// One stored entry: its index and canonical bytes (what the leaf hash covers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    pub canonical: String,
}

/// Which entries a query wants; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryQuery {
    pub resource: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// SNP chip id, TDX PCK id or FMSPC (hex, any case).
    pub vm_id: Option<String>,
    /// At most this many entries, oldest first.
    pub limit: u64,
}

/// What the sealer decided for one batch.
#[derive(Debug)]
pub struct SealPlan {
    pub prepared: PreparedAppend,
    /// A checkpoint of the new tree is due; the store then reads the leaves since the last
    /// checkpoint and calls [`AuditSealer::sign`].
    pub checkpoint_due: bool,
}

/// The append logic the store runs inside its transaction (sync and fast: hashing, signing).
pub trait AuditSealer: Send + Sync {
    /// Prepares `entries` on top of `frontier` and says whether a checkpoint is due at `now`.
    fn plan(
        &self,
        frontier: &Frontier,
        last: Option<&StoredCheckpoint>,
        entries: &[AuditEntry],
        now: i64,
    ) -> Result<SealPlan, StoreError>;

    /// Signs a checkpoint of `plan`'s tree after checking that it extends `last`:
    /// `since_last` holds the stored leaf hashes `[last.size, old size)`. Returns the note.
    fn sign(
        &self,
        last: Option<&StoredCheckpoint>,
        since_last: &[Hash],
        plan: &SealPlan,
    ) -> Result<String, StoreError>;
}

/// The audit tables.
pub trait AuditStore {
    /// Appends `entries` (possibly none: then only a due checkpoint is written) in one
    /// transaction; returns the index of the first entry (the others follow in order) and
    /// the new tree size. Durable when it returns `Ok`.
    fn audit_append<'a>(
        &'a self,
        entries: &'a [AuditEntry],
        sealer: &'a dyn AuditSealer,
        now: i64,
    ) -> StoreFuture<'a, (u64, u64)>;

    /// Number of entries.
    fn audit_size(&self) -> StoreFuture<'_, u64>;

    /// Entries `[start, end)` (clipped to the tree), in order.
    fn audit_entries(&self, start: u64, end: u64) -> StoreFuture<'_, Vec<StoredEntry>>;

    /// Leaf hash of entry `index`.
    fn audit_leaf(&self, index: u64) -> StoreFuture<'_, Option<Hash>>;

    /// Stored complete-subtree hash (`level >= 1`).
    fn audit_node(&self, level: u32, index: u64) -> StoreFuture<'_, Option<Hash>>;

    /// Every checkpoint, by size.
    fn audit_checkpoints(&self) -> StoreFuture<'_, Vec<StoredCheckpoint>>;

    /// Entries matching `query`, oldest first.
    fn audit_query<'a>(&'a self, query: &'a EntryQuery) -> StoreFuture<'a, Vec<StoredEntry>>;
}

/// Decodes a stored hex hash.
pub fn hash_from_hex(text: &str) -> Result<Hash, StoreError> {
    Hash::from_hex(text).ok_or_else(|| StoreError::Corrupt(format!("hash {text:?}")))
}

/// Decodes a stored hex frontier.
pub fn frontier_from_hex(text: &str) -> Result<Frontier, StoreError> {
    let bytes = hex::decode(text).map_err(|e| StoreError::Corrupt(format!("frontier: {e}")))?;
    Frontier::from_bytes(&bytes).map_err(|e| StoreError::Corrupt(format!("frontier: {e}")))
}
