//! RFC 9162 inclusion proofs (§2.1.3) and consistency proofs (§2.1.4): generation over any
//! `LeafSource`, and verification that needs nothing but hashes.

use super::{node_hash, range_hash, split_point, Hash, LeafSource, TreeError};

/// Why a proof did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The first tree is larger than the second.
    #[error("first size {first} is larger than second size {second}")]
    SizesReversed {
        /// First (older) size.
        first: u64,
        /// Second (newer) size.
        second: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    /// The recomputed root (or first-tree root) differs from the one given.
    #[error("recomputed root does not match")]
    RootMismatch,
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1).
pub fn inclusion_proof<S: LeafSource + ?Sized>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    check_size(source, size)?;
    if index >= size {
        return Err(TreeError::OutOfRange { what: "leaf index", value: index, size });
    }
    // Walk down from the root; each level contributes the sibling subtree's hash. Collected
    // top-down, returned bottom-up as the RFC orders them.
    let mut path = Vec::new();
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            path.push(range_hash(source, start + k, end)?);
            end = start + k;
        } else {
            path.push(range_hash(source, start, start + k)?);
            start += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the trees of the first `first` and `second` leaves (RFC 9162
/// §2.1.4.1). Empty when `first == 0` or `first == second`.
pub fn consistency_proof<S: LeafSource + ?Sized>(
    source: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    check_size(source, second)?;
    if first > second {
        return Err(TreeError::OutOfRange { what: "first size", value: first, size: second });
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:end], complete), unrolled: at each step either descend left (the right
    // subtree's hash joins the proof) or right (the left subtree's hash joins it).
    let mut path = Vec::new();
    let (mut start, mut end) = (0u64, second);
    let mut m = first;
    let mut complete = true;
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                path.push(range_hash(source, start, end)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            path.push(range_hash(source, start + k, end)?);
            end = start + k;
        } else {
            path.push(range_hash(source, start, start + k)?);
            m -= k;
            start += k;
            complete = false;
        }
    }
    path.reverse();
    Ok(path)
}

fn check_size<S: LeafSource + ?Sized>(source: &S, size: u64) -> Result<(), TreeError<S::Error>> {
    let have = source.tree_size().map_err(TreeError::Source)?;
    if size > have {
        return Err(TreeError::OutOfRange { what: "tree size", value: size, size: have });
    }
    Ok(())
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose head is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `first` leaves with head `first_root` is a prefix of the tree of
/// `second` leaves with head `second_root` (RFC 9162 §2.1.4.2). A size-0 first tree is a prefix of
/// every tree; equal sizes need equal roots; both take an empty proof.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesReversed { first, second });
    }
    if first == 0 || first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        if first == second && first_root != second_root {
            return Err(ProofError::RootMismatch);
        }
        if first == 0 && *first_root != Hash::empty() {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    let Some((head, tail)) = proof.split_first() else {
        return Err(ProofError::WrongLength);
    };
    // When the first tree is a complete subtree, its own head is the proof's implied first node.
    let (seed, rest) = if first.is_power_of_two() { (first_root, proof) } else { (head, tail) };
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
