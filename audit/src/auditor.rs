//! The offline auditor: checks an export against the log's verifier key and reports the first
//! divergence. Steps, in order:
//!
//! 1. every checkpoint's signature (trusted key, origin = key name);
//! 2. no two checkpoints of one size with different roots (a fork);
//! 3. checkpoints older than the export's start chain to the export by consistency proofs;
//! 4. the entries are numbered contiguously from the start; replaying them onto the start frontier
//!    gives, at every checkpoint size inside the export, exactly that checkpoint's root;
//! 5. checkpoints beyond the last entry chain from the recomputed root by consistency proofs.
//!
//! Precision: a signed checkpoint commits to a root only, so a changed entry is located to the
//! interval between the last checkpoint that still matches and the first that does not
//! (`first_bad_index..before`). With a checkpoint per append batch that interval is one batch.
//! Deletions, reorderings and renumberings that show in the indices are located exactly.

use std::collections::BTreeMap;

use crate::checkpoint::{verify_checkpoint, Checkpoint, CheckpointError};
use crate::export::{ExportError, LogExport};
use crate::merkle::proof::verify_consistency;
use crate::merkle::Hash;
use crate::note::{NoteError, NoteVerifierKey};

/// The first place where an export departs from what the log signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    /// A checkpoint signature from the trusted key does not verify.
    #[error("checkpoint {file}: signature does not verify")]
    BadSignature {
        /// Checkpoint file.
        file: String,
    },
    /// A checkpoint carries no signature from the trusted key.
    #[error("checkpoint {file}: not signed by the trusted key (signed by {signers:?})")]
    WrongKey {
        /// Checkpoint file.
        file: String,
        /// Key names it is signed by.
        signers: Vec<String>,
    },
    /// A checkpoint is not well formed.
    #[error("checkpoint {file}: {reason}")]
    MalformedCheckpoint {
        /// Checkpoint file.
        file: String,
        /// Why.
        reason: String,
    },
    /// Two validly signed checkpoints of the same size disagree on the root: the log forked.
    #[error(
        "checkpoints {first_file} and {second_file} both sign size {size} with different roots"
    )]
    Fork {
        /// Tree size.
        size: u64,
        /// One checkpoint file.
        first_file: String,
        /// The other.
        second_file: String,
    },
    /// The entry with this index is absent: the next line holds `found`.
    #[error("entry {index} is missing (next entry present is {found})")]
    MissingEntry {
        /// Expected index.
        index: u64,
        /// Index found instead.
        found: u64,
    },
    /// Entries are out of order or duplicated: `found` appears where `index` belongs.
    #[error("entry {index} is out of order (found index {found} in its place)")]
    OutOfOrder {
        /// Expected index.
        index: u64,
        /// Index found instead.
        found: u64,
    },
    /// Replaying the entries does not give what checkpoint `file` signed: some entry in
    /// `first_bad_index..before` was changed, removed, inserted or reordered. `before` is the
    /// checkpoint's size, or the export's end when the checkpoint lies beyond the export and a
    /// consistency proof links them.
    #[error("entries {first_bad_index}..{before} differ from what checkpoint {file} signed")]
    RootMismatch {
        /// Checkpoint file.
        file: String,
        /// Lowest index that may differ (everything below matched a signed root).
        first_bad_index: u64,
        /// One past the highest index that may differ.
        before: u64,
    },
    /// The export ends at `first_missing_index` but a checkpoint covers `checkpoint_size` leaves
    /// and no consistency proof links the two: entries were removed from the end.
    #[error(
        "entries from {first_missing_index} are missing (a checkpoint covers {checkpoint_size})"
    )]
    EntriesMissing {
        /// One past the last exported entry.
        first_missing_index: u64,
        /// Size of the checkpoint that needs them.
        checkpoint_size: u64,
    },
    /// A consistency proof needed between two sizes is not in the export.
    #[error("no consistency proof from size {first} to {second}")]
    ProofMissing {
        /// Older size.
        first: u64,
        /// Newer size.
        second: u64,
    },
    /// The roots at two sizes are not consistent: the tree at `first` is not a prefix of the tree
    /// at `second` (truncated and regrown, or rewritten).
    #[error("tree at size {first} is not a prefix of the tree at size {second}")]
    Inconsistent {
        /// Older size.
        first: u64,
        /// Newer size.
        second: u64,
    },
}

impl Divergence {
    /// The lowest leaf index this divergence implicates, when it implicates one.
    #[must_use]
    pub fn first_bad_index(&self) -> Option<u64> {
        match self {
            Self::MissingEntry { index, .. } | Self::OutOfOrder { index, .. } => Some(*index),
            Self::RootMismatch { first_bad_index, .. } => Some(*first_bad_index),
            Self::EntriesMissing { first_missing_index, .. } => Some(*first_missing_index),
            Self::Inconsistent { first, .. } => Some(*first),
            _ => None,
        }
    }
}

/// Why an audit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The export could not be read.
    #[error("export: {0}")]
    Export(#[from] ExportError),
    /// The export departs from the signed log.
    #[error("divergence: {0}")]
    Diverged(#[from] Divergence),
}

/// What a successful audit established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Log origin (= verifier key name).
    pub origin: String,
    /// First exported index.
    pub start: u64,
    /// One past the last exported index.
    pub end: u64,
    /// The recomputed tree head at `end`.
    pub root: Hash,
    /// Checkpoints whose signatures verified (all of them).
    pub checkpoints: usize,
    /// Largest checkpointed size.
    pub latest_checkpoint: Option<u64>,
    /// When set, entries from this index to `end` are not yet covered by any checkpoint (normal
    /// for the newest entries of a live log; they become auditable with the next checkpoint).
    pub unanchored_from: Option<u64>,
}

/// The consistency proofs a verifier needs for an export starting at `start`, ending at `end`, with
/// checkpoints of the given sizes: one per consecutive pair of the sizes outside `[start, end]`
/// together with `end`. Exporters (`keylatch audit fetch`, `retention::archive_range`) fetch or
/// compute exactly these.
#[must_use]
pub fn required_links(start: u64, end: u64, checkpoint_sizes: &[u64]) -> Vec<(u64, u64)> {
    let mut sizes: Vec<u64> =
        checkpoint_sizes.iter().copied().filter(|&s| s < start || s > end).chain([end]).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => Some((*a, *b)),
            _ => None,
        })
        .collect()
}

/// Audits an export with the log's verifier key (see the module doc for the steps).
pub fn verify_log_dir(export: &LogExport, key: &NoteVerifierKey) -> Result<Report, AuditError> {
    // 1. Signatures.
    let mut checkpoints: Vec<(&str, Checkpoint)> = Vec::with_capacity(export.checkpoints.len());
    for file in &export.checkpoints {
        let cp =
            verify_checkpoint(&file.text, key).map_err(|e| signature_divergence(&file.name, e))?;
        checkpoints.push((&file.name, cp));
    }
    checkpoints.sort_by_key(|(_, cp)| cp.size);

    // 2. One root per size.
    let mut by_size: BTreeMap<u64, (&str, Hash)> = BTreeMap::new();
    for (file, cp) in &checkpoints {
        if let Some((first_file, root)) = by_size.get(&cp.size) {
            if *root != cp.root {
                return Err(Divergence::Fork {
                    size: cp.size,
                    first_file: (*first_file).to_owned(),
                    second_file: (*file).to_owned(),
                }
                .into());
            }
        } else {
            by_size.insert(cp.size, (file, cp.root));
        }
    }

    let start = export.start.size();
    let end = export.end();
    let sizes: Vec<u64> = by_size.keys().copied().collect();
    let links = required_links(start, end, &sizes);

    // 4. Replay (done before 3 and 5 because the links need the recomputed root at `end`).
    let mut frontier = export.start.clone();
    let mut last_good = start;
    let mut covered = by_size.range(start..=end).peekable();
    let mut check_here = |frontier: &crate::merkle::compact::Frontier,
                          last_good: &mut u64|
     -> Result<(), Divergence> {
        while let Some((&size, (file, root))) = covered.peek() {
            if size > frontier.size() {
                break;
            }
            if frontier.root() != *root {
                return Err(Divergence::RootMismatch {
                    file: (*file).to_owned(),
                    first_bad_index: *last_good,
                    before: size,
                });
            }
            *last_good = size;
            covered.next();
        }
        Ok(())
    };
    // 3. Links among checkpoints older than the start come first in index order. (Every other link
    // ends at `end` or beyond and needs the replayed root.)
    check_links(&links, &by_size, (end, &frontier.root()), start, export, |_, b| b < start)?;
    check_here(&frontier, &mut last_good)?;
    for e in &export.entries {
        let expected = frontier.size();
        if e.index != expected {
            let later = export.entries.iter().any(|later| later.index == expected);
            return Err(if e.index > expected && !later {
                Divergence::MissingEntry { index: expected, found: e.index }
            } else {
                Divergence::OutOfOrder { index: expected, found: e.index }
            }
            .into());
        }
        frontier.append(e.leaf, |_, _, _| {});
        check_here(&frontier, &mut last_good)?;
    }
    let root = frontier.root();

    // 5, then 3's last link (from the newest older checkpoint to `end`): when both fail, the
    // replayed entries are the likelier culprit, and step 5 names them.
    check_links(&links, &by_size, (end, &root), last_good, export, |a, _| a >= end)?;
    check_links(&links, &by_size, (end, &root), last_good, export, |a, b| a < start && b == end)?;

    let latest_checkpoint = sizes.last().copied();
    let anchored = latest_checkpoint.is_some_and(|l| l >= end) || end == start;
    Ok(Report {
        origin: key.name().to_owned(),
        start,
        end,
        root,
        checkpoints: checkpoints.len(),
        latest_checkpoint,
        unanchored_from: (!anchored).then_some(last_good),
    })
}

/// Verifies the consistency proofs for the `links` selected by `which`. A failing link from the
/// replayed root at `end` means the entries after `last_good` are not what the later checkpoint
/// signed, and is reported as such.
fn check_links(
    links: &[(u64, u64)],
    by_size: &BTreeMap<u64, (&str, Hash)>,
    (end, end_root): (u64, &Hash),
    last_good: u64,
    export: &LogExport,
    which: impl Fn(u64, u64) -> bool,
) -> Result<(), Divergence> {
    let root_at = |size: u64| {
        if size == end {
            Some(*end_root)
        } else {
            by_size.get(&size).map(|(_, root)| *root)
        }
    };
    for &(a, b) in links.iter().filter(|(a, b)| which(*a, *b)) {
        let (Some(ra), Some(rb)) = (root_at(a), root_at(b)) else {
            continue;
        };
        let Some(proof) = export.proofs.iter().find(|p| p.first == a && p.second == b) else {
            return Err(if a == end {
                Divergence::EntriesMissing { first_missing_index: end, checkpoint_size: b }
            } else {
                Divergence::ProofMissing { first: a, second: b }
            });
        };
        verify_consistency(a, b, &ra, &rb, &proof.hashes).map_err(|_| match by_size.get(&b) {
            Some((file, _)) if a == end && end > last_good => Divergence::RootMismatch {
                file: (*file).to_owned(),
                first_bad_index: last_good,
                before: end,
            },
            _ => Divergence::Inconsistent { first: a, second: b },
        })?;
    }
    Ok(())
}

fn signature_divergence(file: &str, e: CheckpointError) -> Divergence {
    let file = file.to_owned();
    match e {
        CheckpointError::Note(NoteError::BadSignature { .. }) => Divergence::BadSignature { file },
        CheckpointError::Note(NoteError::UnknownKey { names }) => {
            Divergence::WrongKey { file, signers: names }
        }
        other => Divergence::MalformedCheckpoint { file, reason: other.to_string() },
    }
}
