//! The offline auditor against intact and tampered exports: each tampering is reported as the
//! exact divergence, with the first bad index.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod common;

use keylatch_audit::auditor::{verify_log_dir, AuditError, Divergence, Report};
use keylatch_audit::checkpoint::CheckpointSigner;
use keylatch_audit::entry::{Actor, AuditEntry, Decision, ResourceRef, VmIdentity};
use keylatch_audit::export::{checkpoint_file_name, entry_line, CheckpointFile, LogExport};
use keylatch_audit::merkle::MemoryTree;
use keylatch_audit::retention::build_export;
use time::macros::datetime;
use time::Duration;
use zeroize::Zeroizing;

const ORIGIN: &str = "keylatch.example/audit";

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed(ORIGIN, &Zeroizing::new([5; 32])).unwrap()
}

fn entry(i: u64, variant: &str) -> AuditEntry {
    common::allowed_release(
        datetime!(2025-03-01 12:00:00 UTC) + Duration::minutes(i64::try_from(i).unwrap()),
        format!("req-{i}{variant}"),
        Actor::Vm(VmIdentity {
            tee: "snp".into(),
            simulated: true,
            chip_id: Some(format!("{:0128x}", i % 3)),
            ..VmIdentity::default()
        }),
        ResourceRef { path: format!("default/disk/vm{}", i % 2), version: Some(1) },
    )
}

/// A log of `entries`, with checkpoints signed by `signer` at `sizes`.
struct Log {
    entries: Vec<AuditEntry>,
    tree: MemoryTree,
    checkpoints: Vec<CheckpointFile>,
}

fn log_with(entries: Vec<AuditEntry>, sizes: &[u64], signer: &CheckpointSigner) -> Log {
    let mut tree = MemoryTree::new();
    let mut roots = vec![tree.root()];
    for e in &entries {
        tree.push_entry(&e.canonical_bytes().unwrap());
        roots.push(tree.root());
    }
    let checkpoints = sizes
        .iter()
        .map(|&s| CheckpointFile {
            name: checkpoint_file_name(s),
            text: signer.sign_checkpoint(s, &roots[s as usize]).unwrap().into_bytes(),
        })
        .collect();
    Log { entries, tree, checkpoints }
}

fn log(n: u64, sizes: &[u64]) -> Log {
    log_with((0..n).map(|i| entry(i, "")).collect(), sizes, &signer())
}

fn jsonl(entries: &[AuditEntry]) -> Vec<u8> {
    entries.iter().enumerate().flat_map(|(i, e)| entry_line(i as u64, e).unwrap()).collect()
}

/// Reads an export from an entries.jsonl text and checkpoint files, as `read_dir` would.
fn export_of(jsonl: &[u8], checkpoints: &[CheckpointFile]) -> LogExport {
    LogExport::from_files(None, jsonl, checkpoints.to_vec(), &[]).unwrap()
}

fn audit(export: &LogExport) -> Result<Report, AuditError> {
    verify_log_dir(export, signer().verifier_key())
}

fn diverged(export: &LogExport) -> Divergence {
    match audit(export) {
        Err(AuditError::Diverged(d)) => d,
        other => panic!("expected a divergence, got {other:?}"),
    }
}

fn lines(log: &Log) -> Vec<Vec<u8>> {
    jsonl(&log.entries).split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn every(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[test]
fn intact_export_verifies_and_reports_its_extent() {
    let l = log(20, &[5, 10, 15, 20]);
    let report = audit(&export_of(&jsonl(&l.entries), &l.checkpoints)).unwrap();
    assert_eq!(
        report,
        Report {
            origin: ORIGIN.into(),
            start: 0,
            end: 20,
            root: l.tree.root(),
            checkpoints: 4,
            latest_checkpoint: Some(20),
            unanchored_from: None,
        }
    );
}

#[test]
fn entries_after_the_last_checkpoint_are_reported_unanchored() {
    let l = log(23, &[10, 20]);
    let report = audit(&export_of(&jsonl(&l.entries), &l.checkpoints)).unwrap();
    assert_eq!(report.unanchored_from, Some(20));
    assert_eq!(report.end, 23);
}

#[test]
fn changed_entry_is_located_to_its_index_with_a_checkpoint_per_entry() {
    let l = log(20, &every(20));
    let mut edited = l.entries.clone();
    edited[7].decision = Decision::Deny;
    assert_eq!(
        diverged(&export_of(&jsonl(&edited), &l.checkpoints)),
        Divergence::RootMismatch { file: checkpoint_file_name(8), first_bad_index: 7, before: 8 }
    );
}

#[test]
fn changed_entry_is_located_to_its_checkpoint_interval() {
    let l = log(20, &[5, 10, 15, 20]);
    let mut edited = l.entries.clone();
    edited[7].reasons.push("inserted later".into());
    let d = diverged(&export_of(&jsonl(&edited), &l.checkpoints));
    assert_eq!(
        d,
        Divergence::RootMismatch { file: checkpoint_file_name(10), first_bad_index: 5, before: 10 }
    );
    assert_eq!(d.first_bad_index(), Some(5));
}

#[test]
fn deleted_entry_line_is_reported_at_its_index() {
    let l = log(20, &[5, 10, 15, 20]);
    let mut ls = lines(&l);
    ls.remove(7);
    assert_eq!(
        diverged(&export_of(&ls.concat(), &l.checkpoints)),
        Divergence::MissingEntry { index: 7, found: 8 }
    );
}

#[test]
fn deleted_and_renumbered_entry_is_reported_at_its_index() {
    let l = log(20, &every(20));
    let mut kept = l.entries.clone();
    kept.remove(7);
    assert_eq!(
        diverged(&export_of(&jsonl(&kept), &l.checkpoints)),
        Divergence::RootMismatch { file: checkpoint_file_name(8), first_bad_index: 7, before: 8 }
    );
}

#[test]
fn reordered_entry_lines_are_reported_at_the_first_displaced_index() {
    let l = log(20, &[5, 10, 15, 20]);
    let mut ls = lines(&l);
    ls.swap(7, 9);
    assert_eq!(
        diverged(&export_of(&ls.concat(), &l.checkpoints)),
        Divergence::OutOfOrder { index: 7, found: 9 }
    );
}

#[test]
fn reordered_and_renumbered_entries_are_reported_at_the_first_displaced_index() {
    let l = log(20, &every(20));
    let mut swapped = l.entries.clone();
    swapped.swap(7, 9);
    assert_eq!(
        diverged(&export_of(&jsonl(&swapped), &l.checkpoints)),
        Divergence::RootMismatch { file: checkpoint_file_name(8), first_bad_index: 7, before: 8 }
    );
}

#[test]
fn duplicated_entry_line_is_out_of_order() {
    let l = log(10, &[10]);
    let mut ls = lines(&l);
    let dup = ls[4].clone();
    ls.insert(5, dup);
    assert_eq!(
        diverged(&export_of(&ls.concat(), &l.checkpoints)),
        Divergence::OutOfOrder { index: 5, found: 4 }
    );
}

#[test]
fn truncated_tail_is_reported_as_missing_entries() {
    let l = log(20, &[10, 20]);
    assert_eq!(
        diverged(&export_of(&jsonl(&l.entries[..15]), &l.checkpoints)),
        Divergence::EntriesMissing { first_missing_index: 15, checkpoint_size: 20 }
    );
}

#[test]
fn truncated_and_regrown_tree_is_reported_at_the_truncation_point() {
    // The log signed checkpoints at every size up to 20; then the tree was cut back to 15 and 10
    // new entries appended, and the (compromised) broker signed a checkpoint of the regrown tree.
    let original = log(20, &every(20));
    let mut regrown: Vec<AuditEntry> = original.entries[..15].to_vec();
    regrown.extend((15..25).map(|i| entry(i, "-regrown")));
    let after = log_with(regrown.clone(), &[25], &signer());
    let mut checkpoints = original.checkpoints.clone();
    checkpoints.extend(after.checkpoints);
    assert_eq!(
        diverged(&export_of(&jsonl(&regrown), &checkpoints)),
        Divergence::RootMismatch {
            file: checkpoint_file_name(16),
            first_bad_index: 15,
            before: 16
        }
    );
}

#[test]
fn altered_checkpoint_signature_is_reported() {
    let l = log(20, &[10, 20]);
    let mut cps = l.checkpoints.clone();
    let text = String::from_utf8(cps[0].text.clone()).unwrap();
    // Change one base64 character in the signature part (after the 4-byte key id).
    let at = text.len() - 10;
    let c = if &text[at..=at] == "A" { "B" } else { "A" };
    cps[0].text = format!("{}{c}{}", &text[..at], &text[at + 1..]).into_bytes();
    assert_eq!(
        diverged(&export_of(&jsonl(&l.entries), &cps)),
        Divergence::BadSignature { file: checkpoint_file_name(10) }
    );
}

#[test]
fn checkpoint_with_edited_root_fails_its_signature() {
    let l = log(20, &[10, 20]);
    let mut cps = l.checkpoints.clone();
    let text = String::from_utf8(cps[1].text.clone()).unwrap();
    let mut lines: Vec<&str> = text.split('\n').collect();
    let other = l.checkpoints[0].text.clone();
    let other = String::from_utf8(other).unwrap();
    let other_root = other.split('\n').nth(2).unwrap().to_owned();
    lines[2] = &other_root;
    cps[1].text = lines.join("\n").into_bytes();
    assert_eq!(
        diverged(&export_of(&jsonl(&l.entries), &cps)),
        Divergence::BadSignature { file: checkpoint_file_name(20) }
    );
}

#[test]
fn checkpoint_from_another_key_is_reported() {
    let l = log(20, &[10, 20]);
    let impostor = CheckpointSigner::from_seed(ORIGIN, &Zeroizing::new([6; 32])).unwrap();
    let forged = log_with(l.entries.clone(), &[20], &impostor);
    let mut cps = l.checkpoints[..1].to_vec();
    cps.push(CheckpointFile {
        name: "forged.txt".into(),
        text: forged.checkpoints[0].text.clone(),
    });
    assert_eq!(
        diverged(&export_of(&jsonl(&l.entries), &cps)),
        Divergence::WrongKey { file: "forged.txt".into(), signers: vec![ORIGIN.into()] }
    );
}

#[test]
fn two_signed_roots_for_one_size_are_a_fork() {
    let l = log(20, &[10, 20]);
    let mut other = l.entries.clone();
    other[3].request_id = "req-rewritten".into();
    let fork = log_with(other, &[10], &signer());
    let mut cps = l.checkpoints.clone();
    cps.push(CheckpointFile { name: "zz-fork.txt".into(), text: fork.checkpoints[0].text.clone() });
    assert_eq!(
        diverged(&export_of(&jsonl(&l.entries), &cps)),
        Divergence::Fork {
            size: 10,
            first_file: checkpoint_file_name(10),
            second_file: "zz-fork.txt".into()
        }
    );
}

#[test]
fn older_checkpoint_of_a_different_tree_is_reported_in_a_full_export() {
    let l = log(20, &[20]);
    let mut other = l.entries.clone();
    other[3].request_id = "req-rewritten".into();
    let old = log_with(other, &[5], &signer());
    let mut cps = old.checkpoints.clone();
    cps.extend(l.checkpoints.clone());
    assert_eq!(
        diverged(&export_of(&jsonl(&l.entries), &cps)),
        Divergence::RootMismatch { file: checkpoint_file_name(5), first_bad_index: 0, before: 5 }
    );
}

#[test]
fn archived_range_verifies_on_its_own() {
    let l = log(20, &[5, 10, 20]);
    let range: Vec<_> =
        LogExport::from_files(None, &jsonl(&l.entries), vec![], &[]).unwrap().entries[8..13]
            .to_vec();
    let archive =
        build_export(&l.tree, 8, range, l.checkpoints.clone(), signer().verifier_key()).unwrap();
    assert_eq!(
        archive.proofs.iter().map(|p| (p.first, p.second)).collect::<Vec<_>>(),
        vec![(5, 13), (13, 20)]
    );
    let report = audit(&archive).unwrap();
    assert_eq!((report.start, report.end, report.checkpoints), (8, 13, 3));
    assert_eq!(report.unanchored_from, None);

    // The same archive through a directory.
    let dir = tempfile::tempdir().unwrap();
    archive.write_dir(dir.path()).unwrap();
    let read = LogExport::read_dir(dir.path()).unwrap();
    assert_eq!(read, archive);
    assert_eq!(audit(&read).unwrap(), report);
}

#[test]
fn tampered_archived_range_is_located() {
    let l = log(20, &[5, 10, 20]);
    let all = LogExport::from_files(None, &jsonl(&l.entries), vec![], &[]).unwrap();
    let archive = build_export(
        &l.tree,
        8,
        all.entries[8..13].to_vec(),
        l.checkpoints.clone(),
        signer().verifier_key(),
    )
    .unwrap();

    // An entry before the in-range checkpoint at 10.
    let mut bad = archive.clone();
    bad.entries[1].leaf = all.entries[0].leaf;
    assert_eq!(
        diverged(&bad),
        Divergence::RootMismatch { file: checkpoint_file_name(10), first_bad_index: 8, before: 10 }
    );

    // An entry after it: only the proof to checkpoint 20 can tell.
    let mut bad = archive.clone();
    bad.entries[3].leaf = all.entries[0].leaf;
    assert_eq!(
        diverged(&bad),
        Divergence::RootMismatch {
            file: checkpoint_file_name(20),
            first_bad_index: 10,
            before: 13
        }
    );

    // The proof that ties the older checkpoint to the range removed.
    let mut bad = archive.clone();
    bad.proofs.retain(|p| p.first != 5);
    assert_eq!(diverged(&bad), Divergence::ProofMissing { first: 5, second: 13 });
}

#[test]
fn older_checkpoint_of_a_different_tree_is_inconsistent_with_an_archive() {
    let l = log(20, &[20]);
    let mut other = l.entries.clone();
    other[3].request_id = "req-rewritten".into();
    let old = log_with(other, &[10], &signer());
    let mut cps = old.checkpoints.clone();
    cps.extend(l.checkpoints.clone());
    let all = LogExport::from_files(None, &jsonl(&l.entries), vec![], &[]).unwrap();
    let archive =
        build_export(&l.tree, 12, all.entries[12..16].to_vec(), cps, signer().verifier_key())
            .unwrap();
    assert_eq!(diverged(&archive), Divergence::Inconsistent { first: 10, second: 16 });
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    #[test]
    fn any_edited_entry_is_found_at_its_index_with_a_checkpoint_per_entry(n in 2u64..30, pick in 0u64..1000) {
        let l = log(n, &every(n));
        let k = (pick % n) as usize;
        let mut edited = l.entries.clone();
        edited[k].client_address = Some("198.51.100.1:1".into());
        let d = diverged(&export_of(&jsonl(&edited), &l.checkpoints));
        proptest::prop_assert_eq!(d.first_bad_index(), Some(k as u64));
        proptest::prop_assert_eq!(
            d,
            Divergence::RootMismatch { file: checkpoint_file_name(k as u64 + 1), first_bad_index: k as u64, before: k as u64 + 1 }
        );
    }
}
