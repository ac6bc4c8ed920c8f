//! What one append transaction writes ([`Sealer`], the store's `AuditSealer`): the prepared
//! entries and subtrees, and — when the schedule says so — a checkpoint signed only after
//! checking that the new tree extends the last checkpointed one. A log never signs a fork: if
//! the stored state was rolled back, truncated or edited since the last checkpoint, the append
//! fails (and with it any release waiting on it).

use keylatch_audit::append::prepare_append;
use keylatch_audit::merkle::compact::Frontier;
use keylatch_audit::schedule::LastCheckpoint;
use keylatch_audit::{
    verify_checkpoint, AuditEntry, CheckpointSchedule, CheckpointSigner, Hash, NoteVerifierKey,
};

use crate::store::{AuditSealer, SealPlan, StoreError, StoredCheckpoint};

/// The broker's sealer: its checkpoint key and schedule.
#[derive(Debug)]
pub struct Sealer {
    signer: CheckpointSigner,
    schedule: CheckpointSchedule,
}

impl Sealer {
    #[must_use]
    pub fn new(signer: CheckpointSigner, schedule: CheckpointSchedule) -> Self {
        Self { signer, schedule }
    }

    #[must_use]
    pub fn verifier_key(&self) -> &NoteVerifierKey {
        self.signer.verifier_key()
    }
}

fn fork(reason: &str) -> StoreError {
    tracing::error!(%reason, "audit log: refusing to sign a checkpoint");
    StoreError::Corrupt(format!("audit log does not extend its last checkpoint: {reason}"))
}

impl AuditSealer for Sealer {
    fn plan(
        &self,
        frontier: &Frontier,
        last: Option<&StoredCheckpoint>,
        entries: &[AuditEntry],
        now: i64,
    ) -> Result<SealPlan, StoreError> {
        if let Some(cp) = last.filter(|cp| frontier.size() < cp.size) {
            return Err(fork(&format!(
                "the tree has {} entries, its last checkpoint signed {}",
                frontier.size(),
                cp.size
            )));
        }
        let prepared = prepare_append(frontier, entries)
            .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))?;
        let to_time = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .map_err(|e| StoreError::Corrupt(format!("time {t}: {e}")))
        };
        let last = last
            .map(|c| {
                Ok::<_, StoreError>(LastCheckpoint { size: c.size, time: to_time(c.signed_at)? })
            })
            .transpose()?;
        let checkpoint_due = self.schedule.is_due(last, prepared.frontier.size(), to_time(now)?);
        Ok(SealPlan { prepared, checkpoint_due })
    }

    fn sign(
        &self,
        last: Option<&StoredCheckpoint>,
        since_last: &[Hash],
        plan: &SealPlan,
    ) -> Result<String, StoreError> {
        let mut replay = match last {
            None => Frontier::new(),
            Some(cp) => {
                let signed = verify_checkpoint(cp.note.as_bytes(), self.signer.verifier_key())
                    .map_err(|e| fork(&format!("stored checkpoint {}: {e}", cp.size)))?;
                if signed.size != cp.size
                    || cp.frontier.size() != cp.size
                    || signed.root != cp.frontier.root()
                {
                    return Err(fork(&format!(
                        "stored checkpoint {} and its frontier differ",
                        cp.size
                    )));
                }
                cp.frontier.clone()
            }
        };
        for leaf in since_last.iter().copied().chain(plan.prepared.entries.iter().map(|e| e.leaf)) {
            replay.append(leaf, |_, _, _| {});
        }
        if replay.size() != plan.prepared.frontier.size() || replay.root() != plan.prepared.root {
            return Err(fork(&format!(
                "replaying the entries since size {} does not give the stored tree",
                last.map_or(0, |c| c.size)
            )));
        }
        self.signer
            .sign_checkpoint(plan.prepared.frontier.size(), &plan.prepared.root)
            .map_err(|e| StoreError::Corrupt(format!("signing a checkpoint: {e}")))
    }
}
