//! The group-commit writer: one task owns appends. It takes the first waiting entry plus every
//! entry queued behind it (up to [`MAX_BATCH`]) and writes them in ONE store transaction, then
//! answers each caller with its index. While a commit is in flight, new entries queue, so the
//! batch grows with load and a lone entry is written at once (no added latency). A timer asks
//! for a due checkpoint so quiet logs are still checkpointed.

use std::sync::Arc;
use std::time::Duration;

use keylatch_audit::AuditEntry;
use tokio::sync::{mpsc, oneshot};

use super::Sealer;
use crate::store::{Store, StoreError};

/// Largest batch written in one transaction.
pub const MAX_BATCH: usize = 256;
/// Entries that may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

/// One caller waiting for its entry to be durable.
#[derive(Debug)]
pub struct Pending {
    entry: AuditEntry,
    done: oneshot::Sender<Result<u64, StoreError>>,
}

pub fn spawn(store: Arc<dyn Store>, sealer: Arc<Sealer>, tick: Duration) -> mpsc::Sender<Pending> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(rx, store, sealer, tick));
    tx
}

pub async fn submit(tx: &mpsc::Sender<Pending>, entry: AuditEntry) -> Result<u64, StoreError> {
    let (done, wait) = oneshot::channel();
    tx.send(Pending { entry, done })
        .await
        .map_err(|_| StoreError::Unavailable("audit writer stopped".into()))?;
    wait.await.map_err(|_| StoreError::Unavailable("audit writer stopped".into()))?
}

async fn run(
    mut rx: mpsc::Receiver<Pending>,
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    tick: Duration,
) {
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some(first) = first else { break };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                commit(store.as_ref(), &sealer, batch).await;
            }
            _ = timer.tick() => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                if let Err(e) = store.audit_append(&[], &*sealer, now).await {
                    tracing::error!(error = %e, "audit log: timed checkpoint failed");
                }
            }
        }
    }
}

async fn commit(store: &dyn Store, sealer: &Sealer, batch: Vec<Pending>) {
    let (entries, waiters): (Vec<AuditEntry>, Vec<_>) =
        batch.into_iter().map(|p| (p.entry, p.done)).unzip();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match store.audit_append(&entries, sealer, now).await {
        Ok((first, _)) => {
            for (index, done) in (first..).zip(waiters) {
                let _ = done.send(Ok(index));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, entries = entries.len(), "audit log: append failed");
            let text = e.to_string();
            for done in waiters {
                let _ = done.send(Err(StoreError::Unavailable(text.clone())));
            }
        }
    }
}
