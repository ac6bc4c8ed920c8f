//! Keylatch's tamper-evident audit log, independent of storage and transport: what an entry holds
//! and its canonical bytes (`entry`, `jcs`), the RFC 9162 Merkle tree with its proofs and
//! append-only frontier (`merkle`, `append`), C2SP signed checkpoints (`note`, `checkpoint`) and
//! when to issue them (`schedule`), and the offline side: the export format (`export`), the
//! auditor (`auditor`), queries (`query`) and self-verifying exports of old ranges (`retention`).
//!
//! The broker owns storage (`merkle::LeafSource` over its tables), HTTP and the write-ahead rule;
//! see README.md for how the pieces fit.

pub mod append;
pub mod auditor;
pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod jcs;
pub mod merkle;
pub mod note;
pub mod query;
pub mod retention;
pub mod schedule;

pub use append::{prepare_append, PreparedAppend};
pub use auditor::{verify_log_dir, AuditError, Divergence, Report};
pub use checkpoint::{verify_checkpoint, Checkpoint, CheckpointSigner};
pub use entry::AuditEntry;
pub use export::LogExport;
pub use merkle::{Hash, LeafSource};
pub use note::NoteVerifierKey;
pub use schedule::CheckpointSchedule;
