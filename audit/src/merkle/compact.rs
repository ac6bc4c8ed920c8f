//! The right-edge frontier of an append-only RFC 9162 tree: the roots of the complete subtrees
//! that together cover leaves `[0, size)`, one per set bit of `size`, largest first. It is all a
//! writer needs to append and to compute the tree head, and it persists as a few hundred bytes.

use super::{node_hash, Hash};

/// Magic and version of the persisted frontier encoding.
const MAGIC: &[u8; 4] = b"KLF1";

/// The compact right edge of a tree of `size` leaves.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Complete-subtree roots, largest (leftmost) first; `hashes.len() == size.count_ones()`.
    hashes: Vec<Hash>,
}

impl std::fmt::Debug for Frontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontier")
            .field("size", &self.size)
            .field("root", &self.root())
            .finish_non_exhaustive()
    }
}

/// Why persisted frontier bytes were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    /// The bytes do not start with the `KLF1` magic.
    #[error("not a persisted frontier (bad magic)")]
    BadMagic,
    /// The length does not match `12 + 32 * popcount(size)`.
    #[error("frontier of size {size} needs {expected} bytes, got {actual}")]
    BadLength {
        /// Tree size read from the header.
        size: u64,
        /// Expected total length.
        expected: usize,
        /// Actual total length.
        actual: usize,
    },
    /// The hash list does not match the number of set bits of the size.
    #[error("frontier of size {size} needs {expected} hashes, got {actual}")]
    BadHashCount {
        /// Tree size.
        size: u64,
        /// Expected number of hashes.
        expected: usize,
        /// Given number of hashes.
        actual: usize,
    },
}

impl Frontier {
    /// The frontier of the empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a frontier from its parts (e.g. a partial export's starting point).
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError::BadHashCount { size, expected, actual: hashes.len() });
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves covered.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The complete-subtree roots, largest first.
    #[must_use]
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf hash. `on_node(level, index, hash)` is called for the leaf (level 0) and
    /// for every complete subtree the append closes, so a store can keep them for fast proofs.
    /// O(log n) hashing, amortized O(1).
    pub fn append(&mut self, leaf: Hash, mut on_node: impl FnMut(u32, u64, Hash)) {
        let mut hash = leaf;
        let mut level = 0u32;
        on_node(0, self.size, hash);
        while level < 64 && (self.size >> level) & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            on_node(level, self.size >> level, hash);
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    /// The tree head (RFC 9162 MTH) of the covered leaves.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return Hash::empty();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Persisted form: `"KLF1" || size (u64 big-endian) || hashes (32 bytes each, largest first)`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 32 * self.hashes.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_be_bytes());
        for h in &self.hashes {
            out.extend_from_slice(&h.0);
        }
        out
    }

    /// Parses the persisted form; any other length or magic is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FrontierError> {
        let (magic, rest) = bytes.split_at_checked(4).ok_or(FrontierError::BadMagic)?;
        if magic != MAGIC {
            return Err(FrontierError::BadMagic);
        }
        let (size_bytes, rest) = rest.split_first_chunk::<8>().ok_or(FrontierError::BadLength {
            size: 0,
            expected: 12,
            actual: bytes.len(),
        })?;
        let size = u64::from_be_bytes(*size_bytes);
        let count = size.count_ones() as usize;
        if rest.len() != 32 * count {
            return Err(FrontierError::BadLength {
                size,
                expected: 12 + 32 * count,
                actual: bytes.len(),
            });
        }
        let hashes =
            rest.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok().map(Hash)).collect();
        Self::from_parts(size, hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn frontier_reports_every_closed_subtree() {
        let mut f = Frontier::new();
        let mut seen = Vec::new();
        for i in 0..4u8 {
            f.append(leaf_hash(&[i]), |level, index, _| seen.push((level, index)));
        }
        assert_eq!(seen, vec![(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)]);
        assert_eq!(f.hashes().len(), 1);
    }

    #[test]
    fn frontier_bytes_round_trip_and_reject_bad_lengths() {
        let mut f = Frontier::new();
        for i in 0..11u8 {
            f.append(leaf_hash(&[i]), |_, _, _| {});
        }
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), 12 + 3 * 32);
        assert_eq!(Frontier::from_bytes(&bytes), Ok(f));
        assert_eq!(
            Frontier::from_bytes(&bytes[..bytes.len() - 1]),
            Err(FrontierError::BadLength { size: 11, expected: 108, actual: 107 })
        );
        assert_eq!(Frontier::from_bytes(b"KLF2"), Err(FrontierError::BadMagic));
        assert_eq!(Frontier::from_bytes(b""), Err(FrontierError::BadMagic));
    }
}
