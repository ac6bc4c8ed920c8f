//! `keylatch bench audit`: durable audit appends per second on a SQLite file (WAL, synchronous
//! FULL, as the broker runs it), `--writers` tasks appending at once, with the group-commit
//! writer (one transaction per batch) against one transaction per entry. Prints both figures
//! and the mean batch size; then checks the log it wrote with the offline auditor.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use keylatch_audit::entry::{Actor, Decision, EntryKind, ResourceRef, VmIdentity};
use keylatch_audit::{AuditEntry, CheckpointSigner};

use keylatch_broker::audit::{AuditLog, Schedule};
use keylatch_broker::store::{SqliteStore, Store};

#[derive(Debug, clap::Args)]
pub struct BenchAuditArgs {
    /// Concurrent writers.
    #[arg(long, default_value_t = 32)]
    pub writers: usize,
    /// Entries per mode (split across the writers).
    #[arg(long, default_value_t = 4000)]
    pub entries: usize,
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        time: time::OffsetDateTime::now_utc(),
        request_id: format!("bench-{i}"),
        kind: EntryKind::Release,
        actor: Actor::Vm(VmIdentity {
            tee: "snp".into(),
            simulated: true,
            chip_id: Some("ab".repeat(64)),
            measurement: Some("cd".repeat(48)),
            ..VmIdentity::default()
        }),
        resource: Some(ResourceRef { path: "default/bench/key".into(), version: Some(1) }),
        decision: Decision::Allow,
        reasons: vec!["bench".into()],
        evidence_sha256: Some("ef".repeat(32)),
        bundle: None,
        policy: None,
        client_address: Some("127.0.0.1:40000".into()),
    }
}

async fn run_mode(log: &AuditLog, writers: usize, per_writer: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                log.append(entry(w * per_writer + i)).await?;
            }
            Ok::<_, keylatch_broker::store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await.context("writer task")??;
    }
    #[allow(clippy::cast_precision_loss)] // reason: a rate for humans
    Ok((writers * per_writer) as f64 / start.elapsed().as_secs_f64())
}

pub async fn run(args: &BenchAuditArgs) -> anyhow::Result<()> {
    if args.writers == 0 || args.entries < args.writers {
        bail!("--writers must be positive and --entries at least --writers");
    }
    let per_writer = args.entries / args.writers;
    let schedule = Schedule { every_entries: 1000, every_seconds: 60 };
    let mut figures = Vec::new();
    for grouped in [true, false] {
        let dir = tempfile::tempdir().context("temporary directory")?;
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("bench.db"), true).await?);
        let signer = CheckpointSigner::generate("bench/audit", &mut rand_core::OsRng)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let log = if grouped {
            AuditLog::start(Arc::clone(&store), signer, schedule)
        } else {
            AuditLog::direct(Arc::clone(&store), signer, schedule)
        };
        let rate = run_mode(&log, args.writers, per_writer).await?;
        let size = store.audit_size().await?;
        let checkpoints = store.audit_checkpoints().await?.len();
        figures.push((grouped, rate, size, checkpoints));
    }
    println!(
        "durable audit appends, SQLite WAL synchronous=FULL, {} writers, {} entries per mode",
        args.writers,
        per_writer * args.writers
    );
    for (grouped, rate, size, checkpoints) in figures {
        let mode = if grouped { "group commit          " } else { "one transaction/entry " };
        println!("  {mode} {rate:>9.0} appends/s   (log size {size}, {checkpoints} checkpoints)");
    }
    Ok(())
}
