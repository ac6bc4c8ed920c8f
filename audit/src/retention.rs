//! Building exports from a log the caller stores: a full export for auditors, or an archive of an
//! old range `[start, end)` that stays verifiable on its own (starting frontier, entries, signed
//! checkpoints and the consistency proofs that tie them together) so that the range's entry
//! bodies can then be pruned from the live store. See the crate README for the retention rule.

use crate::auditor::required_links;
use crate::checkpoint::{verify_checkpoint, CheckpointError};
use crate::export::{CheckpointFile, ConsistencyProof, ExportedEntry, LogExport};
use crate::merkle::compact::Frontier;
use crate::merkle::proof::consistency_proof;
use crate::merkle::{range_hash, LeafSource, TreeError};
use crate::note::NoteVerifierKey;

/// Why an export could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError<E> {
    /// Reading the tree failed or a size is out of range.
    #[error("tree: {0}")]
    Tree(TreeError<E>),
    /// A checkpoint given does not verify.
    #[error("checkpoint {file}: {error}")]
    Checkpoint {
        /// Checkpoint file.
        file: String,
        /// Why.
        error: CheckpointError,
    },
    /// The entries given are not numbered `start, start+1, ...`.
    #[error("entry {found} given where {expected} belongs")]
    NotContiguous {
        /// Expected index.
        expected: u64,
        /// Index given.
        found: u64,
    },
}

/// The frontier of the first `size` leaves of `source`: the roots of the complete subtrees that
/// cover `[0, size)`, largest first.
pub fn frontier_at<S: LeafSource + ?Sized>(
    source: &S,
    size: u64,
) -> Result<Frontier, TreeError<S::Error>> {
    let have = source.tree_size().map_err(TreeError::Source)?;
    if size > have {
        return Err(TreeError::OutOfRange { what: "tree size", value: size, size: have });
    }
    let mut hashes = Vec::with_capacity(size.count_ones() as usize);
    let mut offset = 0u64;
    for bit in (0..64).rev() {
        let width = 1u64 << bit;
        if size & width != 0 {
            hashes.push(range_hash(source, offset, offset + width)?);
            offset += width;
        }
    }
    // reason: `hashes` has exactly one entry per set bit of `size` by construction.
    Frontier::from_parts(size, hashes).map_err(|_| TreeError::OutOfRange {
        what: "tree size",
        value: size,
        size: have,
    })
}

/// Builds a self-verifying export of entries `[start, start + entries.len())` of the log in
/// `source`, with the given signed checkpoints (each must verify with `key` and lie within the
/// tree) and every consistency proof `auditor::required_links` asks for.
pub fn build_export<S: LeafSource + ?Sized>(
    source: &S,
    start: u64,
    entries: Vec<ExportedEntry>,
    checkpoints: Vec<CheckpointFile>,
    key: &NoteVerifierKey,
) -> Result<LogExport, BuildError<S::Error>> {
    for (expected, e) in (start..).zip(&entries) {
        if e.index != expected {
            return Err(BuildError::NotContiguous { expected, found: e.index });
        }
    }
    let mut sizes = Vec::with_capacity(checkpoints.len());
    for file in &checkpoints {
        let cp = verify_checkpoint(&file.text, key)
            .map_err(|error| BuildError::Checkpoint { file: file.name.clone(), error })?;
        sizes.push(cp.size);
    }
    let export = LogExport {
        start: frontier_at(source, start).map_err(BuildError::Tree)?,
        entries,
        checkpoints,
        proofs: Vec::new(),
    };
    let proofs = required_links(start, export.end(), &sizes)
        .into_iter()
        .map(|(first, second)| {
            consistency_proof(source, first, second).map(|hashes| ConsistencyProof {
                first,
                second,
                hashes,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(BuildError::Tree)?;
    Ok(LogExport { proofs, ..export })
}
