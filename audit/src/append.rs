//! The broker's append step, computed before anything is written: canonical bytes and leaf hash
//! of each new entry, the complete-subtree hashes the batch closes (to store for fast proofs), and
//! the new frontier and root. The store then writes all of it in ONE transaction, and only after
//! that commit may a resource be released (the write-ahead rule lives in the broker).

use crate::entry::AuditEntry;
use crate::jcs::JcsError;
use crate::merkle::compact::Frontier;
use crate::merkle::{leaf_hash, Hash};

/// One entry ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedEntry {
    /// Its leaf index.
    pub index: u64,
    /// RFC 8785 bytes: store exactly these; they are what the leaf hash covers.
    pub canonical: Vec<u8>,
    /// `SHA-256(0x00 || canonical)`.
    pub leaf: Hash,
}

/// A complete subtree closed by the batch: `2^level` leaves starting at `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedNode {
    /// Height (0 = leaf).
    pub level: u32,
    /// Position within the level.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

/// Everything a batch append writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedAppend {
    /// New entries, in index order.
    pub entries: Vec<PreparedEntry>,
    /// Complete subtrees of height >= 1 closed by the batch (leaves are in `entries`).
    pub nodes: Vec<ClosedNode>,
    /// The frontier after the batch (persist with `Frontier::to_bytes`).
    pub frontier: Frontier,
    /// The tree head after the batch.
    pub root: Hash,
}

/// Prepares appending `entries` to the tree whose current frontier is `frontier`.
pub fn prepare_append(
    frontier: &Frontier,
    entries: &[AuditEntry],
) -> Result<PreparedAppend, JcsError> {
    let mut next = frontier.clone();
    let mut prepared = Vec::with_capacity(entries.len());
    let mut nodes = Vec::new();
    for entry in entries {
        let canonical = entry.canonical_bytes()?;
        let leaf = leaf_hash(&canonical);
        let index = next.size();
        next.append(leaf, |level, index, hash| {
            if level > 0 {
                nodes.push(ClosedNode { level, index, hash });
            }
        });
        prepared.push(PreparedEntry { index, canonical, leaf });
    }
    let root = next.root();
    Ok(PreparedAppend { entries: prepared, nodes, frontier: next, root })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::tests::sample_vm_entry;
    use crate::merkle::{LeafSource, MemoryTree};

    #[test]
    fn batches_give_the_same_tree_and_nodes_as_single_appends() {
        let entries: Vec<AuditEntry> = (0..11)
            .map(|i| AuditEntry { request_id: format!("r{i}"), ..sample_vm_entry() })
            .collect();
        let mut reference = MemoryTree::new();
        for e in &entries {
            reference.push_entry(&e.canonical_bytes().unwrap());
        }
        let first = prepare_append(&Frontier::new(), &entries[..6]).unwrap();
        let second = prepare_append(&first.frontier, &entries[6..]).unwrap();
        assert_eq!(second.root, reference.root());
        assert_eq!(second.entries.first().map(|e| e.index), Some(6));
        for n in first.nodes.iter().chain(&second.nodes) {
            assert_eq!(reference.node_hash(n.level, n.index).unwrap(), Some(n.hash), "{n:?}");
        }
        // 11 leaves close 5 + 2 + 1 = 8 interior subtrees in total.
        assert_eq!(first.nodes.len() + second.nodes.len(), 8);
        assert_eq!(
            Frontier::from_bytes(&second.frontier.to_bytes()).unwrap().root(),
            reference.root()
        );
    }
}
