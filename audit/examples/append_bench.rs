//! In-memory audit log benchmark: appends per second (canonical JSON + leaf hash + frontier, and
//! with every complete-subtree hash kept), proof generation at one million entries, checkpoint
//! signing and verification. Durable appends (store + group commit) are measured with the broker.
//!
//! Run: `cargo run --release -p keylatch-audit --example append_bench [entries]`

#![allow(clippy::cast_precision_loss, clippy::too_many_lines)] // reason: a benchmark printing rates; one linear script reads best

use std::hint::black_box;
use std::time::Instant;

use keylatch_audit::checkpoint::{verify_checkpoint, CheckpointSigner};
use keylatch_audit::entry::{
    Actor, AuditEntry, BundleRef, Decision, EntryKind, PolicyRef, ResourceRef, VmIdentity,
};
use keylatch_audit::merkle::compact::Frontier;
use keylatch_audit::merkle::proof::{consistency_proof, inclusion_proof, verify_inclusion};
use keylatch_audit::merkle::{leaf_hash, LeafSource, MemoryTree};

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        time: time::macros::datetime!(2025-03-01 12:00:00 UTC)
            + time::Duration::milliseconds(i64::try_from(i).unwrap_or(0)),
        request_id: format!("req-{i:016x}"),
        kind: EntryKind::Release,
        actor: Actor::Vm(VmIdentity {
            tee: "snp".into(),
            simulated: false,
            chip_id: Some("ab".repeat(64)),
            measurement: Some("cd".repeat(48)),
            ..VmIdentity::default()
        }),
        resource: Some(ResourceRef { path: "default/disk/root".into(), version: Some(3) }),
        decision: Decision::Allow,
        reasons: vec!["rule 0 matched".into()],
        evidence_sha256: Some("ef".repeat(32)),
        bundle: Some(BundleRef { name: "prod".into(), version: 7, digest: "01".repeat(32) }),
        policy: Some(PolicyRef { version: 2, digest: "02".repeat(32) }),
        client_address: Some("192.0.2.7:50412".into()),
    }
}

/// A fixed pseudo-random sequence (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A source that exposes leaf hashes only, like a store keeping no interior nodes.
struct Leaves<'a>(&'a MemoryTree);
impl LeafSource for Leaves<'_> {
    type Error = keylatch_audit::merkle::NotInTree;
    fn tree_size(&self) -> Result<u64, Self::Error> {
        self.0.tree_size()
    }
    fn leaf_hash(&self, index: u64) -> Result<keylatch_audit::merkle::Hash, Self::Error> {
        self.0.leaf_hash(index)
    }
}

fn per_sec(n: u64, secs: f64) -> String {
    format!("{:.0}/s", n as f64 / secs)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    println!("audit log, in memory, {n} entries");

    // 1. Canonical entry bytes (RFC 8785) — the per-entry serialization cost.
    let sample = 100_000.min(n);
    let t = Instant::now();
    let mut bytes_total = 0usize;
    for i in 0..sample {
        bytes_total += black_box(entry(i).canonical_bytes()?).len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "  build + canonicalize entry ({} B avg): {}",
        bytes_total as u64 / sample,
        per_sec(sample, s)
    );
    let one = entry(0).canonical_bytes()?;

    // 2. Leaf hash + frontier append (what a store's append path computes).
    let mut frontier = Frontier::new();
    let t = Instant::now();
    for _ in 0..n {
        frontier.append(leaf_hash(&one), |_, _, _| {});
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "  leaf hash + frontier append: {} ({:.0} ns each)",
        per_sec(n, s),
        s * 1e9 / n as f64
    );
    let t = Instant::now();
    let bytes = frontier.to_bytes();
    let root = frontier.root();
    let reloaded = Frontier::from_bytes(&bytes)?;
    println!(
        "  frontier persist + reload + root: {:.1} us ({} bytes)",
        t.elapsed().as_secs_f64() * 1e6,
        bytes.len()
    );
    assert_eq!(reloaded.root(), root);

    // 3. The same, keeping every complete-subtree hash (what makes proofs O(log^2 n)).
    let mut tree = MemoryTree::new();
    let t = Instant::now();
    for _ in 0..n {
        tree.push_leaf_hash(leaf_hash(&one));
    }
    let s = t.elapsed().as_secs_f64();
    println!("  leaf hash + append keeping subtree hashes: {}", per_sec(n, s));

    // 4. Proofs at size n.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let reps = 10_000u64;
    let t = Instant::now();
    for _ in 0..reps {
        let i = rng.next() % n;
        black_box(inclusion_proof(&tree, i, n)?);
    }
    println!(
        "  inclusion proof (stored subtrees): {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / reps as f64
    );
    let t = Instant::now();
    for _ in 0..reps {
        let m = 1 + rng.next() % n;
        black_box(consistency_proof(&tree, m, n)?);
    }
    println!(
        "  consistency proof (stored subtrees): {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / reps as f64
    );
    let proof = inclusion_proof(&tree, n / 3, n)?;
    let leaf = tree.leaf_hash(n / 3)?;
    let t = Instant::now();
    for _ in 0..reps {
        verify_inclusion(n / 3, n, &leaf, black_box(&proof), &tree.root())?;
    }
    println!("  inclusion proof verify: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / reps as f64);

    // Proofs from leaf hashes alone (a store that keeps no interior nodes).
    let t = Instant::now();
    for k in 0..5 {
        black_box(inclusion_proof(&Leaves(&tree), (k * n) / 5, n)?);
    }
    println!(
        "  inclusion proof (leaf hashes only): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3 / 5.0
    );

    // 5. Checkpoints.
    let signer =
        CheckpointSigner::from_seed("keylatch.example/audit", &zeroize::Zeroizing::new([1; 32]))?;
    let t = Instant::now();
    let mut text = String::new();
    for _ in 0..1000 {
        text = signer.sign_checkpoint(n, &tree.root())?;
    }
    println!("  checkpoint sign: {:.1} us", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    for _ in 0..1000 {
        black_box(verify_checkpoint(text.as_bytes(), signer.verifier_key())?);
    }
    println!("  checkpoint verify: {:.1} us", t.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
