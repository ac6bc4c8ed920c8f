//! RFC 9162 tree heads and proofs, checked against published vectors and against a brute-force
//! implementation written directly from the RFC's recursive definitions.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

use keylatch_audit::merkle::proof::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion, ProofError,
};
use keylatch_audit::merkle::{leaf_hash, node_hash, tree_head, Hash, MemoryTree};
use proptest::prelude::*;

// --- independent reference: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 written as recursion over slices.

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn ref_mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => Hash::empty(),
        1 => d[0],
        n => {
            let k = k_of(n);
            node_hash(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
        }
    }
}

fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return vec![];
    }
    let k = k_of(d.len());
    if m < k {
        let mut p = ref_path(m, &d[..k]);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &d[k..]);
        p.push(ref_mth(&d[..k]));
        p
    }
}

#[allow(clippy::many_single_char_names)] // reason: the names are the RFC's (m, n, k, D)
fn ref_subproof(m: usize, d: &[Hash], complete: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if complete { vec![] } else { vec![ref_mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = ref_subproof(m, &d[..k], complete);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &d[k..], false);
        p.push(ref_mth(&d[..k]));
        p
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect()
}

fn tree_of(d: &[Hash]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for h in d {
        t.push_leaf_hash(*h);
    }
    t
}

/// A source with no stored interior nodes, so proofs are computed from leaves alone.
struct LeavesOnly(Vec<Hash>);

impl keylatch_audit::merkle::LeafSource for LeavesOnly {
    type Error = ();
    fn tree_size(&self) -> Result<u64, ()> {
        Ok(self.0.len() as u64)
    }
    fn leaf_hash(&self, index: u64) -> Result<Hash, ()> {
        self.0.get(index as usize).copied().ok_or(())
    }
}

#[test]
fn tree_heads_match_brute_force_for_every_size_to_64() {
    let d = leaves(64);
    let mut t = MemoryTree::new();
    for n in 0..=64 {
        assert_eq!(t.root(), ref_mth(&d[..n]), "size {n}");
        assert_eq!(tree_head(&t, n as u64).unwrap(), ref_mth(&d[..n]));
        if n < 64 {
            t.push_leaf_hash(d[n]);
        }
    }
}

#[test]
fn inclusion_proofs_match_brute_force_for_all_leaves_and_sizes_to_64() {
    let d = leaves(64);
    let full = tree_of(&d);
    let bare = LeavesOnly(d.clone());
    for n in 1..=64usize {
        let root = ref_mth(&d[..n]);
        for m in 0..n {
            let want = ref_path(m, &d[..n]);
            let got = inclusion_proof(&full, m as u64, n as u64).unwrap();
            assert_eq!(got, want, "PATH({m}, D[{n}])");
            assert_eq!(inclusion_proof(&bare, m as u64, n as u64).unwrap(), want);
            verify_inclusion(m as u64, n as u64, &d[m], &got, &root).unwrap();
            // The same proof must not verify another leaf or position.
            let other = (m + 1) % n;
            if other != m {
                assert!(verify_inclusion(other as u64, n as u64, &d[m], &got, &root).is_err());
                assert!(verify_inclusion(m as u64, n as u64, &d[other], &got, &root).is_err());
            }
            if let Some(first) = got.first() {
                let mut bad = got.clone();
                bad[0] = node_hash(first, first);
                assert_eq!(
                    verify_inclusion(m as u64, n as u64, &d[m], &bad, &root),
                    Err(ProofError::RootMismatch)
                );
                assert_eq!(
                    verify_inclusion(m as u64, n as u64, &d[m], &got[1..], &root),
                    Err(ProofError::WrongLength)
                );
            }
        }
    }
}

#[test]
fn consistency_proofs_match_brute_force_for_all_size_pairs_to_64() {
    let d = leaves(64);
    let full = tree_of(&d);
    let bare = LeavesOnly(d.clone());
    for n in 1..=64usize {
        let rn = ref_mth(&d[..n]);
        for m in 1..=n {
            let rm = ref_mth(&d[..m]);
            let want = if m == n { vec![] } else { ref_subproof(m, &d[..n], true) };
            let got = consistency_proof(&full, m as u64, n as u64).unwrap();
            assert_eq!(got, want, "PROOF({m}, D[{n}])");
            assert_eq!(consistency_proof(&bare, m as u64, n as u64).unwrap(), want);
            verify_consistency(m as u64, n as u64, &rm, &rn, &got).unwrap();
            if m < n {
                // A different first tree of the same size is not a prefix.
                let forged =
                    ref_mth(&leaves(m).iter().map(|h| node_hash(h, h)).collect::<Vec<_>>());
                assert_eq!(
                    verify_consistency(m as u64, n as u64, &forged, &rn, &got),
                    Err(ProofError::RootMismatch)
                );
                let mut bad = got.clone();
                let last = bad.len() - 1;
                bad[last] = node_hash(&bad[last], &bad[last]);
                assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &bad).is_err());
                assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &got[..last]).is_err());
            }
        }
    }
}

#[test]
fn empty_and_equal_size_consistency_rules() {
    let d = leaves(5);
    let r5 = ref_mth(&d);
    verify_consistency(0, 5, &Hash::empty(), &r5, &[]).unwrap();
    verify_consistency(5, 5, &r5, &r5, &[]).unwrap();
    assert_eq!(verify_consistency(5, 5, &r5, &Hash::empty(), &[]), Err(ProofError::RootMismatch));
    assert_eq!(
        verify_consistency(6, 5, &r5, &r5, &[]),
        Err(ProofError::SizesReversed { first: 6, second: 5 })
    );
    assert_eq!(
        verify_inclusion(5, 5, &d[0], &[], &r5),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
}

// --- published vectors: transparency-dev/merkle, testonly/constants.go (LeafInputs, RootHashes,
// NodeHashes), the RFC 6962 test tree shared with certificate-transparency-go.

const VECTOR_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const VECTOR_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> Hash {
    Hash::from_hex(s).unwrap()
}

fn vector_tree() -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in VECTOR_LEAVES {
        t.push_entry(&hex::decode(l).unwrap());
    }
    t
}

#[test]
fn matches_published_rfc6962_root_vectors() {
    let mut t = MemoryTree::new();
    for (leaf, root) in VECTOR_LEAVES.iter().zip(VECTOR_ROOTS) {
        t.push_entry(&hex::decode(leaf).unwrap());
        assert_eq!(t.root(), h(root), "size {}", t.size());
    }
}

#[test]
fn matches_published_proof_vectors() {
    let t = vector_tree();
    // Inclusion of leaf 5 in the tree of 8: NodeHashes [0][4], [1][3], [2][0].
    let want = vec![
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ];
    assert_eq!(inclusion_proof(&t, 5, 8).unwrap(), want);
    // Consistency 6 -> 8: NodeHashes [1][2], [1][3], [2][0].
    let want = vec![
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ];
    assert_eq!(consistency_proof(&t, 6, 8).unwrap(), want);
    verify_consistency(6, 8, &h(VECTOR_ROOTS[5]), &h(VECTOR_ROOTS[7]), &want).unwrap();
    // Consistency 2 -> 5: NodeHashes [1][1], [0][4].
    let want = vec![
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ];
    assert_eq!(consistency_proof(&t, 2, 5).unwrap(), want);
    verify_consistency(2, 5, &h(VECTOR_ROOTS[1]), &h(VECTOR_ROOTS[4]), &want).unwrap();
}

proptest! {
    #[test]
    fn random_appends_then_random_proofs_verify(
        n in 1u64..600,
        picks in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..20),
    ) {
        let mut t = MemoryTree::new();
        let mut roots = vec![Hash::empty()];
        for i in 0..n {
            t.push_entry(&i.to_be_bytes());
            roots.push(t.root());
        }
        for (a, b) in picks {
            let size = 1 + b % n;
            let index = a % size;
            let leaf = leaf_hash(&index.to_be_bytes());
            let proof = inclusion_proof(&t, index, size).unwrap();
            prop_assert_eq!(verify_inclusion(index, size, &leaf, &proof, &roots[size as usize]), Ok(()));
            let first = a % (size + 1);
            let proof = consistency_proof(&t, first, size).unwrap();
            prop_assert_eq!(
                verify_consistency(first, size, &roots[first as usize], &roots[size as usize], &proof),
                Ok(())
            );
        }
    }

    #[test]
    fn verifiers_never_panic_on_arbitrary_proofs(
        index in any::<u64>(), size in any::<u64>(), first in any::<u64>(),
        proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
    ) {
        let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
        let r = Hash([1; 32]);
        let _ = verify_inclusion(index, size, &r, &proof, &r);
        let _ = verify_consistency(first, size, &r, &r, &proof);
    }
}
