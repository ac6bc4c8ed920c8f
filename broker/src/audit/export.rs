//! Reading the log back out of the store: the store as a `keylatch_audit::LeafSource` (proofs in
//! O(log² n) reads from the stored subtrees), full exports in the `keylatch-audit-export/1`
//! layout (`keylatch audit export`), and the answers of the auditor endpoints (latest
//! checkpoint, entries by index range, inclusion and consistency proofs, queries) as plain
//! functions over the store, so HTTP handlers are one-line wrappers.

use std::path::Path;
use std::sync::Arc;

use keylatch_audit::export::{
    checkpoint_file_name, entry_line_from_canonical, parse_entries, CheckpointFile,
    ConsistencyProof, ExportedEntry,
};
use keylatch_audit::merkle::proof::{consistency_proof, inclusion_proof};
use keylatch_audit::merkle::TreeError;
use keylatch_audit::query::render_json;
use keylatch_audit::{Hash, LeafSource, LogExport};
use serde::Serialize;

use crate::store::audit::MAX_READ;
use crate::store::{EntryQuery, Store, StoreError, StoredEntry};

/// The store's audit tables as a synchronous `LeafSource`, for use inside `spawn_blocking`
/// (each read blocks on the runtime handle).
pub struct StoreSource {
    store: Arc<dyn Store>,
    rt: tokio::runtime::Handle,
    size: u64,
}

impl std::fmt::Debug for StoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSource").field("size", &self.size).finish_non_exhaustive()
    }
}

impl LeafSource for StoreSource {
    type Error = StoreError;

    fn tree_size(&self) -> Result<u64, StoreError> {
        Ok(self.size)
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, StoreError> {
        self.rt
            .block_on(self.store.audit_leaf(index))?
            .ok_or_else(|| StoreError::Corrupt(format!("audit entry {index} missing")))
    }

    fn node_hash(&self, level: u32, index: u64) -> Result<Option<Hash>, StoreError> {
        if level == 0 {
            return self.leaf_hash(index).map(Some);
        }
        self.rt.block_on(self.store.audit_node(level, index))
    }
}

/// Why an audit read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A size or index outside the tree, or a malformed request.
    #[error("{0}")]
    Invalid(String),
}

impl From<TreeError<StoreError>> for ReadError {
    fn from(e: TreeError<StoreError>) -> Self {
        match e {
            TreeError::Source(s) => Self::Store(s),
            other @ TreeError::OutOfRange { .. } => Self::Invalid(other.to_string()),
        }
    }
}

/// Runs `f` over the store as a `LeafSource` of the current tree, off the async runtime.
async fn with_source<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&StoreSource) -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ReadError> {
    let size = store.audit_size().await?;
    let source =
        StoreSource { store: Arc::clone(store), rt: tokio::runtime::Handle::current(), size };
    tokio::task::spawn_blocking(move || f(&source))
        .await
        .map_err(|e| ReadError::Store(StoreError::Unavailable(format!("proof task: {e}"))))?
}

/// `{"index", "size", "hashes"}`: the audit path of entry `index` in the tree of `size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    pub hashes: Vec<String>,
}

/// Inclusion proof of `index` in the tree of `size` entries.
pub async fn inclusion(
    store: &Arc<dyn Store>,
    index: u64,
    size: u64,
) -> Result<InclusionProof, ReadError> {
    let hashes = with_source(store, move |s| Ok(inclusion_proof(s, index, size)?)).await?;
    Ok(InclusionProof { index, size, hashes: hashes.iter().map(Hash::to_hex).collect() })
}

/// Consistency proof between the trees of `first` and `second` entries.
pub async fn consistency(
    store: &Arc<dyn Store>,
    first: u64,
    second: u64,
) -> Result<ConsistencyProof, ReadError> {
    let hashes = with_source(store, move |s| Ok(consistency_proof(s, first, second)?)).await?;
    Ok(ConsistencyProof { first, second, hashes })
}

/// The newest checkpoint note, if any.
pub async fn latest_checkpoint(store: &dyn Store) -> Result<Option<String>, ReadError> {
    Ok(store.audit_checkpoints().await?.pop().map(|c| c.note))
}

/// `entries.jsonl` lines for `[start, end)`, at most `MAX_READ` entries.
pub async fn entries_jsonl(store: &dyn Store, start: u64, end: u64) -> Result<Vec<u8>, ReadError> {
    if end < start || end - start > MAX_READ {
        return Err(ReadError::Invalid(format!(
            "entry range must be start <= end with at most {MAX_READ} entries"
        )));
    }
    let mut out = Vec::new();
    for e in store.audit_entries(start, end).await? {
        out.extend_from_slice(&entry_line_from_canonical(e.index, e.canonical.as_bytes()));
    }
    Ok(out)
}

fn parse_stored(rows: &[StoredEntry]) -> Result<Vec<ExportedEntry>, ReadError> {
    let mut jsonl = Vec::new();
    for e in rows {
        jsonl.extend_from_slice(&entry_line_from_canonical(e.index, e.canonical.as_bytes()));
    }
    parse_entries(&jsonl).map_err(|e| ReadError::Store(StoreError::Corrupt(e.to_string())))
}

/// Entries matching `query`, rendered as `query::render_json` does.
pub async fn query_json(store: &dyn Store, query: &EntryQuery) -> Result<String, ReadError> {
    let rows = store.audit_query(query).await?;
    let entries = parse_stored(&rows)?;
    let refs: Vec<&ExportedEntry> = entries.iter().collect();
    render_json(&refs).map_err(|e| ReadError::Invalid(e.to_string()))
}

/// The whole log as an export: every stored entry (exactly as stored, gaps and all: the
/// auditor reports them) and every checkpoint, named `<size, 20 digits>.txt`.
pub async fn export_all(store: &dyn Store) -> Result<(LogExport, Vec<u8>), ReadError> {
    let size = store.audit_size().await?;
    let mut rows = Vec::new();
    let mut start = 0;
    while start < size {
        let end = size.min(start + MAX_READ);
        rows.extend(store.audit_entries(start, end).await?);
        start = end;
    }
    let mut jsonl = Vec::new();
    for e in &rows {
        jsonl.extend_from_slice(&entry_line_from_canonical(e.index, e.canonical.as_bytes()));
    }
    let checkpoints = store
        .audit_checkpoints()
        .await?
        .into_iter()
        .map(|c| CheckpointFile { name: checkpoint_file_name(c.size), text: c.note.into_bytes() })
        .collect();
    let export = LogExport {
        start: keylatch_audit::merkle::compact::Frontier::new(),
        entries: parse_stored(&rows)?,
        checkpoints,
        proofs: Vec::new(),
    };
    Ok((export, jsonl))
}

/// Writes `export` into `dir` with `entries.jsonl` exactly as stored (`jsonl`). Checkpoints
/// already in `dir` are kept (an auditor accumulates them across fetches, which is what exposes
/// a log that forked); one whose name is taken by a different note is written beside it as
/// `<size>-<n>.txt`.
pub fn write_export(dir: &Path, mut export: LogExport, jsonl: &[u8]) -> anyhow::Result<()> {
    let cps = dir.join("checkpoints");
    for cp in &mut export.checkpoints {
        let mut n = 0;
        loop {
            match std::fs::read(cps.join(&cp.name)) {
                Ok(existing) if existing != cp.text => {
                    n += 1;
                    cp.name = format!(
                        "{}-{n}.txt",
                        cp.name.trim_end_matches(".txt").split('-').next().unwrap_or_default()
                    );
                }
                _ => break,
            }
        }
    }
    export.write_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(dir.join("entries.jsonl"), jsonl)
        .map_err(|e| anyhow::anyhow!("writing entries.jsonl: {e}"))
}
