//! The broker's tamper-evident audit log: the [`AuditLog`] handle every decision is written
//! through (`crate::decision`), backed by the store's audit tables and the `keylatch-audit`
//! crate (entries, RFC 9162 tree, signed checkpoints). It owns:
//!
//! - [`AuditLog`]: `append(entry) -> index`, durable when it returns; in a server a group-commit
//!   writer task batches concurrent appends into one transaction ([`AuditLog::start`]); CLI
//!   commands without a server append one transaction per entry ([`AuditLog::direct`]);
//! - `sealer`: what each append transaction writes, and the checkpoint signing with the
//!   no-fork check (the new tree must extend the last checkpointed one);
//! - [`record`]: turning decision and admin records into entries (never secrets);
//! - [`export`]: the store as a `LeafSource`, exports in the `keylatch-audit` format, proofs
//!   and queries (the auditor endpoints and `keylatch audit export` use it).

pub mod export;
pub mod record;
mod sealer;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use keylatch_audit::{AuditEntry, CheckpointSchedule, CheckpointSigner, NoteVerifierKey};

use crate::store::{Store, StoreError};
pub use sealer::Sealer;

pub use crate::config::Schedule;

/// The audit crate's form of a [`Schedule`].
fn to_crate(schedule: Schedule) -> CheckpointSchedule {
    CheckpointSchedule {
        every_entries: schedule.every_entries,
        every: time::Duration::seconds(i64::try_from(schedule.every_seconds).unwrap_or(i64::MAX)),
    }
}

/// Handle to the audit log; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// `Some`: appends go to the group-commit writer task; `None`: one transaction each.
    writer: Option<tokio::sync::mpsc::Sender<writer::Pending>>,
}

impl AuditLog {
    /// A log whose appends are batched by a writer task (spawned on the current runtime), which
    /// also signs a due checkpoint every `every_seconds` when the log is quiet.
    #[must_use]
    pub fn start(store: Arc<dyn Store>, signer: CheckpointSigner, schedule: Schedule) -> Self {
        let sealer = Arc::new(Sealer::new(signer, to_crate(schedule)));
        let tick = Duration::from_secs(schedule.every_seconds.max(1));
        let tx = writer::spawn(Arc::clone(&store), Arc::clone(&sealer), tick);
        Self(Arc::new(Inner { store, sealer, writer: Some(tx) }))
    }

    /// A log that appends each entry in its own transaction, without a task: for CLI commands
    /// working on the store while a server may run too (the store's lock orders them).
    #[must_use]
    pub fn direct(store: Arc<dyn Store>, signer: CheckpointSigner, schedule: Schedule) -> Self {
        let sealer = Arc::new(Sealer::new(signer, to_crate(schedule)));
        Self(Arc::new(Inner { store, sealer, writer: None }))
    }

    /// Appends `entry`; returns its index once it is durable.
    pub async fn append(&self, entry: AuditEntry) -> Result<u64, StoreError> {
        if let Some(tx) = &self.0.writer {
            return writer::submit(tx, entry).await;
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (first, _) =
            self.0.store.audit_append(std::slice::from_ref(&entry), &*self.0.sealer, now).await?;
        Ok(first)
    }

    /// Signs a checkpoint now if the schedule says one is due (nothing appended).
    pub async fn checkpoint_if_due(&self) -> Result<u64, StoreError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (_, size) = self.0.store.audit_append(&[], &*self.0.sealer, now).await?;
        Ok(size)
    }

    /// The key auditors verify checkpoints with.
    #[must_use]
    pub fn verifier_key(&self) -> &NoteVerifierKey {
        self.0.sealer.verifier_key()
    }

    /// The store the log lives in.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }
}

/// The one-shot log of a store-direct CLI command: the configured key and schedule, one
/// transaction per entry, no task (works whether or not a server runs on the same store).
pub fn for_cli(config: &crate::Config, store: Arc<dyn Store>) -> anyhow::Result<AuditLog> {
    let signer = load_signer(&config.audit.signing_key, &config.audit.origin)?;
    Ok(AuditLog::direct(store, signer, config.audit.schedule()))
}

/// Loads the checkpoint signing key (refusing one readable by group or others).
pub fn load_signer(path: &std::path::Path, origin: &str) -> anyhow::Result<CheckpointSigner> {
    crate::files::check_private(path)?;
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
    );
    CheckpointSigner::load(origin, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes a new checkpoint signing key (0600) and its verifier key (`<key>.pub`-style path
/// `pub_path`, 0644); never overwrites. Returns the verifier key text.
pub fn generate_key(
    key_path: &std::path::Path,
    pub_path: &std::path::Path,
    origin: &str,
) -> anyhow::Result<String> {
    let signer = CheckpointSigner::generate(origin, &mut rand_core::OsRng)
        .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    let pem = signer.to_pkcs8_pem().map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    crate::files::write_private(key_path, pem.as_bytes())?;
    let vkey = format!("{}\n", signer.verifier_key().to_text());
    crate::files::write_public(pub_path, vkey.as_bytes())?;
    Ok(vkey)
}
