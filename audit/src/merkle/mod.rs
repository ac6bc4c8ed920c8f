//! RFC 9162 Merkle tree hashing: the `Hash` type, leaf and node hashes, the tree head (MTH) of any
//! range, and the `LeafSource` trait through which proofs read a log that lives elsewhere (memory,
//! a database). Proofs are in `proof`, the append-only frontier in `compact`.

pub mod compact;
pub mod proof;

use sha2::{Digest, Sha256};

/// Domain-separation prefix of a leaf hash (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash (RFC 9162 §2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// A SHA-256 tree hash. Debug and Display print lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The tree head of the empty tree: SHA-256 of the empty string.
    #[must_use]
    pub fn empty() -> Self {
        Self(Sha256::digest([]).into())
    }

    /// Parses 64 hex digits.
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// Lowercase hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// `SHA-256(0x00 || entry)`: the hash of one leaf over its canonical entry bytes.
#[must_use]
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The largest power of two strictly smaller than `n` (RFC 9162's split point `k`). `n >= 2`.
#[must_use]
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (n - 1).ilog2()
}

/// Read access to a log's leaves, so that proofs can be computed over storage the caller owns.
///
/// `leaf_hash` is required; `node_hash` is an optional shortcut: a store that keeps the hashes of
/// complete subtrees (the ones `Frontier::append` reports) answers it and turns proof generation
/// from O(n) leaf reads into O(log² n) reads. Returning `Ok(None)` is always correct.
pub trait LeafSource {
    /// The storage's error type.
    type Error;

    /// Number of leaves currently in the log.
    fn tree_size(&self) -> Result<u64, Self::Error>;

    /// The leaf hash at `index` (`index < tree_size`).
    fn leaf_hash(&self, index: u64) -> Result<Hash, Self::Error>;

    /// The hash of the complete subtree of `2^level` leaves that starts at leaf `index << level`,
    /// if stored.
    fn node_hash(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error> {
        let _ = (level, index);
        Ok(None)
    }
}

/// Errors from computing tree heads or proofs over a `LeafSource`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError<E> {
    /// A size or index argument is outside the tree (`what` names the argument).
    #[error("{what} {value} is out of range for a tree of size {size}")]
    OutOfRange {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The tree size it was checked against.
        size: u64,
    },
    /// The leaf source failed.
    #[error("leaf source: {0}")]
    Source(E),
}

/// MTH of the leaves `[start, end)`, `start < end`, read from `source`.
pub(crate) fn range_hash<S: LeafSource + ?Sized>(
    source: &S,
    start: u64,
    end: u64,
) -> Result<Hash, TreeError<S::Error>> {
    let n = end - start;
    if n == 1 {
        return source.leaf_hash(start).map_err(TreeError::Source);
    }
    if n.is_power_of_two() && start % n == 0 {
        let level = n.trailing_zeros();
        if let Some(h) = source.node_hash(level, start >> level).map_err(TreeError::Source)? {
            return Ok(h);
        }
    }
    let k = split_point(n);
    let left = range_hash(source, start, start + k)?;
    let right = range_hash(source, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The Merkle tree head of the first `size` leaves of `source` (RFC 9162 §2.1.1).
pub fn tree_head<S: LeafSource + ?Sized>(
    source: &S,
    size: u64,
) -> Result<Hash, TreeError<S::Error>> {
    let have = source.tree_size().map_err(TreeError::Source)?;
    if size > have {
        return Err(TreeError::OutOfRange { what: "tree size", value: size, size: have });
    }
    if size == 0 {
        return Ok(Hash::empty());
    }
    range_hash(source, 0, size)
}

/// A `LeafSource` over leaf hashes held in memory, keeping every complete subtree hash as it
/// grows (so proofs are O(log² n)). Used by tests, the auditor and the benchmark; a broker keeps
/// the same data in its store.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[k][i]` is the hash of the complete subtree of `2^k` leaves starting at `i << k`.
    levels: Vec<Vec<Hash>>,
    frontier: compact::Frontier,
}

impl MemoryTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash, returning the new tree size.
    pub fn push_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let levels = &mut self.levels;
        self.frontier.append(leaf, |level, _index, hash| {
            let level = level as usize;
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            if let Some(row) = levels.get_mut(level) {
                row.push(hash);
            }
        });
        self.frontier.size()
    }

    /// Appends an entry's canonical bytes, returning the new tree size.
    pub fn push_entry(&mut self, entry: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(entry))
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current tree head.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The right-edge frontier (what a store persists to keep appending).
    #[must_use]
    pub fn frontier(&self) -> &compact::Frontier {
        &self.frontier
    }
}

/// A leaf or node index beyond a `MemoryTree`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("leaf {0} is not in the tree")]
pub struct NotInTree(pub u64);

impl LeafSource for MemoryTree {
    type Error = NotInTree;

    fn tree_size(&self) -> Result<u64, Self::Error> {
        Ok(self.size())
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, Self::Error> {
        self.levels
            .first()
            .and_then(|row| row.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(NotInTree(index))
    }

    fn node_hash(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error> {
        Ok(self
            .levels
            .get(level as usize)
            .and_then(|row| row.get(usize::try_from(index).ok()?))
            .copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below_n() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn empty_tree_head_is_sha256_of_nothing() {
        assert_eq!(
            Hash::empty().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
