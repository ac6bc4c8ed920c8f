//! SQLite statements for the audit log (migration 0003), kept apart from `sqlite.rs`. The SQL is
//! portable: the append transaction takes its lock with a no-op `UPDATE audit_state` as its
//! first statement (SQLite's write lock, PostgreSQL's row lock), then reads the state.

use keylatch_audit::entry::Actor;
use keylatch_audit::{AuditEntry, Hash};
use sqlx::Row as _;

use super::This;
use super::{unavailable, version_i64, Db, DbRow};
use crate::store::audit::{
    frontier_from_hex, hash_from_hex, AuditSealer, AuditStore, EntryQuery, StoredCheckpoint,
    StoredEntry, MAX_READ,
};
use crate::store::{StoreError, StoreFuture};

fn u64_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative index {v}")))
}

/// The identity a VM entry is queried by: SNP chip id, else TDX PCK id, else FMSPC.
fn vm_id(entry: &AuditEntry) -> Option<String> {
    match &entry.actor {
        Actor::Vm(vm) => vm
            .chip_id
            .as_ref()
            .or(vm.pck_id.as_ref())
            .or(vm.fmspc.as_ref())
            .map(|s| s.to_ascii_lowercase()),
        Actor::Admin(_) => None,
    }
}

fn kind_name(entry: &AuditEntry) -> String {
    match serde_json::to_value(entry.kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("?"),
    }
}

fn checkpoint_from_row(row: &DbRow) -> Result<StoredCheckpoint, StoreError> {
    let frontier: String = row.try_get("frontier").map_err(unavailable)?;
    Ok(StoredCheckpoint {
        size: u64_of(row.try_get("size").map_err(unavailable)?)?,
        signed_at: row.try_get("signed_at").map_err(unavailable)?,
        note: row.try_get("note").map_err(unavailable)?,
        frontier: frontier_from_hex(&frontier)?,
    })
}

fn entry_from_row(row: &DbRow) -> Result<StoredEntry, StoreError> {
    Ok(StoredEntry {
        index: u64_of(row.try_get("idx").map_err(unavailable)?)?,
        canonical: row.try_get("canonical").map_err(unavailable)?,
    })
}

/// Rows per multi-row INSERT: at 7 bound values a row, far under SQLite's 32,766 and
/// PostgreSQL's 65,535 bound values per statement, and above any batch the writer makes.
const ROWS_PER_INSERT: usize = 1024;

/// Writes a batch's entries and closed tree nodes: one multi-row INSERT per table, not one
/// statement per row (each statement is a round trip to the connection's worker thread).
async fn insert_prepared(
    tx: &mut sqlx::Transaction<'_, Db>,
    prepared: &keylatch_audit::PreparedAppend,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    let mut rows = Vec::with_capacity(entries.len());
    for (new, entry) in prepared.entries.iter().zip(entries) {
        let canonical = std::str::from_utf8(&new.canonical)
            .map_err(|e| StoreError::Corrupt(format!("canonical entry: {e}")))?;
        rows.push((version_i64(new.index)?, canonical, new.leaf.to_hex(), entry));
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO audit_entries (idx, canonical, leaf, time_s, kind, resource, vm_id) ",
        );
        insert.push_values(chunk, |mut row, (idx, canonical, leaf, entry)| {
            row.push_bind(*idx)
                .push_bind(*canonical)
                .push_bind(leaf.as_str())
                .push_bind(entry.time.unix_timestamp())
                .push_bind(kind_name(entry))
                .push_bind(entry.resource.as_ref().map(|r| r.path.clone()))
                .push_bind(vm_id(entry));
        });
        insert.build().execute(&mut **tx).await.map_err(unavailable)?;
    }
    let mut nodes = Vec::with_capacity(prepared.nodes.len());
    for node in &prepared.nodes {
        nodes.push((i64::from(node.level), version_i64(node.index)?, node.hash.to_hex()));
    }
    for chunk in nodes.chunks(ROWS_PER_INSERT) {
        let mut insert =
            sqlx::QueryBuilder::<Db>::new("INSERT INTO audit_nodes (level, idx, hash) ");
        insert.push_values(chunk, |mut row, (level, idx, hash)| {
            row.push_bind(*level).push_bind(*idx).push_bind(hash.as_str());
        });
        insert.build().execute(&mut **tx).await.map_err(unavailable)?;
    }
    Ok(())
}

const LAST_CHECKPOINT: &str =
    "SELECT size, signed_at, note, frontier FROM audit_checkpoints ORDER BY size DESC LIMIT 1";

impl AuditStore for This {
    fn audit_append<'a>(
        &'a self,
        entries: &'a [AuditEntry],
        sealer: &'a dyn AuditSealer,
        now: i64,
    ) -> StoreFuture<'a, (u64, u64)> {
        Box::pin(async move {
            let _turn = self.writes.enter().await;
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            // Lock first (a write), read after: no lock upgrade, so no SQLITE_BUSY snapshot race.
            sqlx::query("UPDATE audit_state SET size = size WHERE id = 1")
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            let row = sqlx::query("SELECT size, frontier FROM audit_state WHERE id = 1")
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
            let frontier_hex: String = row.try_get("frontier").map_err(unavailable)?;
            let frontier = frontier_from_hex(&frontier_hex)?;
            let size = u64_of(row.try_get("size").map_err(unavailable)?)?;
            if size != frontier.size() {
                return Err(StoreError::Corrupt(format!(
                    "audit_state says {size} entries, its frontier {}",
                    frontier.size()
                )));
            }
            let last = sqlx::query(LAST_CHECKPOINT)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?
                .as_ref()
                .map(checkpoint_from_row)
                .transpose()?;
            let plan = sealer.plan(&frontier, last.as_ref(), entries, now)?;
            insert_prepared(&mut tx, &plan.prepared, entries).await?;
            let new_size = plan.prepared.frontier.size();
            sqlx::query("UPDATE audit_state SET size = $1, frontier = $2 WHERE id = 1")
                .bind(version_i64(new_size)?)
                .bind(hex::encode(plan.prepared.frontier.to_bytes()))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            if plan.checkpoint_due {
                let from = last.as_ref().map_or(0, |c| c.size);
                let rows = sqlx::query(
                    "SELECT idx, leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                )
                .bind(version_i64(from)?)
                .bind(version_i64(size)?)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
                let mut since_last = Vec::with_capacity(rows.len());
                for (expected, row) in (from..).zip(&rows) {
                    let idx = u64_of(row.try_get("idx").map_err(unavailable)?)?;
                    if idx != expected {
                        return Err(StoreError::Corrupt(format!("audit entry {expected} missing")));
                    }
                    let leaf: String = row.try_get("leaf").map_err(unavailable)?;
                    since_last.push(hash_from_hex(&leaf)?);
                }
                let note = sealer.sign(last.as_ref(), &since_last, &plan)?;
                sqlx::query(
                    "INSERT INTO audit_checkpoints (size, signed_at, note, frontier) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(version_i64(new_size)?)
                .bind(now)
                .bind(note)
                .bind(hex::encode(plan.prepared.frontier.to_bytes()))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)?;
            Ok((size, new_size))
        })
    }

    fn audit_size(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let row = sqlx::query("SELECT size FROM audit_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
            u64_of(row.try_get("size").map_err(unavailable)?)
        })
    }

    fn audit_entries(&self, start: u64, end: u64) -> StoreFuture<'_, Vec<StoredEntry>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT idx, canonical FROM audit_entries WHERE idx >= $1 AND idx < $2 \
                 ORDER BY idx",
            )
            .bind(version_i64(start)?)
            .bind(version_i64(end)?)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(entry_from_row).collect()
        })
    }

    fn audit_leaf(&self, index: u64) -> StoreFuture<'_, Option<Hash>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT leaf FROM audit_entries WHERE idx = $1")
                .bind(version_i64(index)?)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            let Some(row) = row else { return Ok(None) };
            let leaf: String = row.try_get("leaf").map_err(unavailable)?;
            hash_from_hex(&leaf).map(Some)
        })
    }

    fn audit_node(&self, level: u32, index: u64) -> StoreFuture<'_, Option<Hash>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT hash FROM audit_nodes WHERE level = $1 AND idx = $2")
                .bind(i64::from(level))
                .bind(version_i64(index)?)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            let Some(row) = row else { return Ok(None) };
            let hash: String = row.try_get("hash").map_err(unavailable)?;
            hash_from_hex(&hash).map(Some)
        })
    }

    fn audit_checkpoints(&self) -> StoreFuture<'_, Vec<StoredCheckpoint>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT size, signed_at, note, frontier FROM audit_checkpoints ORDER BY size",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(checkpoint_from_row).collect()
        })
    }

    fn audit_query<'a>(&'a self, q: &'a EntryQuery) -> StoreFuture<'a, Vec<StoredEntry>> {
        Box::pin(async move {
            // Unset filters bind NULL and drop out: one statement for every combination.
            let rows = sqlx::query(
                "SELECT idx, canonical FROM audit_entries \
                 WHERE ($1 IS NULL OR resource = $1) \
                   AND ($2 IS NULL OR time_s >= $2) \
                   AND ($3 IS NULL OR time_s < $3) \
                   AND ($4 IS NULL OR vm_id = $4) \
                 ORDER BY idx LIMIT $5",
            )
            .bind(q.resource.as_deref())
            .bind(q.since)
            .bind(q.until)
            .bind(q.vm_id.as_ref().map(|v| v.to_ascii_lowercase()))
            .bind(version_i64(q.limit.min(MAX_READ))?)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(entry_from_row).collect()
        })
    }
}
