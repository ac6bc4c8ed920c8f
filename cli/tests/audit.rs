//! The audit log wired into the broker, against real SQLite files and the real server:
//! concurrent releases each get exactly one distinct, verifiable release entry; a failed audit
//! write (a real SQLite trigger aborting the insert) blocks the release with 503 and no JWE;
//! a log edited in the database — an entry changed, deleted, entries reordered, the tree
//! truncated and regrown — is caught by `keylatch audit verify` with the first bad index.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

// The broker harness the HTTP tests use (a broker from `keylatch init` served on 127.0.0.1).
#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{error_of, Broker, Raw, ALLOW_SIM, RESOURCE, SECRET};
use keylatch_agent::evidence::SimTee;
use keylatch_audit::entry::{Actor, Decision, EntryKind, VmIdentity};
use keylatch_audit::{AuditEntry, AuditError, CheckpointSigner, Divergence, LogExport};
use keylatch_broker::audit::{AuditLog, Schedule};
use keylatch_broker::store::{SqliteStore, Store};
use keylatch_wire::KeyKind;

const BIN: &str = env!("CARGO_BIN_EXE_keylatch");

fn every_entry(c: &str) -> String {
    c.replace("checkpoint_every_entries = 1000", "checkpoint_every_entries = 1")
}

fn sqlite(path: &Path) -> sqlx::SqlitePool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))).unwrap()
}

fn exec(rt: &tokio::runtime::Runtime, db: &Path, sql: &str) {
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        pool.close().await;
    });
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn concurrent_releases_each_get_one_distinct_verifiable_release_entry() {
    let broker = Broker::start(|c| every_entry(&c), ALLOW_SIM);
    let guests = 32;
    let sources: Vec<_> = (0..guests)
        .map(|i| broker.source(if i % 2 == 0 { SimTee::Snp } else { SimTee::Tdx }))
        .collect();
    let got: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let broker = &broker;
                s.spawn(move || broker.fetch(src.clone(), KeyKind::P256).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(got.iter().all(|g| g == SECRET));

    // Export with the real binary, verify with it, and read the export.
    let out = broker.dir.path().join("export");
    let config = broker.dir.path().join("keylatch.toml");
    let key = broker.dir.path().join("audit.pub");
    let (code, stdout, stderr) = run(&[
        "audit",
        "export",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("exported "), "{stdout}");
    let (code, stdout, stderr) =
        run(&["audit", "verify", out.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");

    let export = LogExport::read_dir(&out).unwrap();
    let entries: Vec<&AuditEntry> = export.entries.iter().map(|e| &e.entry).collect();
    // 4 admin entries from the fixture (resource put and policy set, each an intent and its
    // outcome), then one attestation and one release per guest.
    let admin = entries.iter().filter(|e| e.kind == EntryKind::Admin).count();
    let attest: Vec<_> = entries.iter().filter(|e| e.kind == EntryKind::Attestation).collect();
    let release: Vec<_> = entries.iter().filter(|e| e.kind == EntryKind::Release).collect();
    assert_eq!(
        (admin, attest.len(), release.len(), entries.len()),
        (4, guests, guests, 4 + 2 * guests)
    );
    let indices: BTreeSet<u64> = export.entries.iter().map(|e| e.index).collect();
    assert_eq!(indices, (0..(4 + 2 * guests) as u64).collect());
    // Each release: allowed, the resource at version 1, a distinct VM (evidence digest) that
    // attested successfully, a simulated identity with its chip id or FMSPC, the policy.
    let attested: BTreeSet<&str> =
        attest.iter().filter_map(|e| e.evidence_sha256.as_deref()).collect();
    let released: BTreeSet<&str> =
        release.iter().filter_map(|e| e.evidence_sha256.as_deref()).collect();
    assert_eq!(released.len(), guests);
    assert_eq!(released, attested);
    let request_ids: BTreeSet<&str> = entries.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(request_ids.len(), entries.len());
    for e in &release {
        assert_eq!(e.decision, Decision::Allow);
        let r = e.resource.as_ref().unwrap();
        assert_eq!((r.path.as_str(), r.version), (RESOURCE, Some(1)));
        assert_eq!(e.policy.as_ref().map(|p| p.version), Some(1));
        assert!(e.client_address.as_deref().unwrap().starts_with("127.0.0.1:"));
        let Actor::Vm(vm) = &e.actor else { panic!("release by a non-VM actor") };
        assert!(vm.simulated);
        match vm.tee.as_str() {
            "snp" => assert_eq!(
                (vm.chip_id.as_ref().map(String::len), vm.measurement.as_ref().map(String::len)),
                (Some(128), Some(96))
            ),
            "tdx" => assert_eq!(
                (vm.fmspc.as_ref().map(String::len), vm.mr_td.as_ref().map(String::len)),
                (Some(12), Some(96))
            ),
            other => panic!("tee {other}"),
        }
    }
    // No entry carries the resource bytes, a token or a nonce.
    let text = std::fs::read_to_string(out.join("entries.jsonl")).unwrap();
    assert!(!text.contains(std::str::from_utf8(SECRET).unwrap()));
    assert!(!text.contains("eyJ"), "a JWT in the audit log");

    // Query by chip id with the real binary.
    let Actor::Vm(VmIdentity { chip_id: Some(chip), .. }) =
        &release.iter().find(|e| matches!(&e.actor, Actor::Vm(v) if v.tee == "snp")).unwrap().actor
    else {
        panic!("no SNP release")
    };
    let (code, stdout, _) =
        run(&["audit", "query", out.to_str().unwrap(), "--chip-id", chip, "--json"]);
    assert_eq!(code, 0);
    let hits: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // Every simulated SNP guest runs on the one simulated chip: its 16 attestations and releases.
    let count =
        |kind: &str| hits.as_array().unwrap().iter().filter(|h| h["entry"]["kind"] == kind).count();
    assert_eq!(
        (count("attestation"), count("release"), hits.as_array().unwrap().len()),
        (16, 16, 32)
    );
}

#[test]
fn failed_audit_write_blocks_the_release_with_503_and_no_jwe() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let source = broker.source(SimTee::Snp);
    let raw = Raw::auth(&broker, "snp");
    raw.attest_ok(source.as_ref());
    let db = broker.dir.path().join("keylatch.db");
    let pool = sqlite(&db);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(
        sqlx::raw_sql(
            "CREATE TRIGGER audit_disk_full BEFORE INSERT ON audit_entries \
             WHEN NEW.kind = 'release' BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .execute(&pool),
    )
    .unwrap();
    let before = rt.block_on(broker.state.store.audit_size()).unwrap();

    let reply = raw.resource(RESOURCE, true, None);
    let e = error_of(&reply, 503);
    assert_eq!(e.error_type, "unavailable");
    assert!(e.detail.contains("audit log could not be written"), "{}", e.detail);
    let body = String::from_utf8_lossy(&reply.body);
    assert!(!body.contains("ciphertext") && !body.contains("protected"), "{body}");
    assert!(!reply.body.windows(SECRET.len()).any(|w| w == SECRET));
    assert_eq!(rt.block_on(broker.state.store.audit_size()).unwrap(), before);

    // A denial is still a denial (403) when its entry cannot be written either, and once the
    // log is writable again the same guest gets its key with exactly one release entry.
    rt.block_on(sqlx::raw_sql("DROP TRIGGER audit_disk_full").execute(&pool)).unwrap();
    let reply = raw.resource(RESOURCE, true, None);
    assert_eq!(reply.status, 200);
    let export = rt
        .block_on(keylatch_broker::audit::export::export_all(broker.state.store.as_ref()))
        .unwrap()
        .0;
    let releases = export.entries.iter().filter(|e| e.entry.kind == EntryKind::Release).count();
    assert_eq!(releases, 1);
}

/// A log of 10 entries with a checkpoint after each, in a SQLite file in `dir` (with the
/// verifier key `audit.pub`), appended through the store-direct path.
struct TestLog {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    log: AuditLog,
}

fn admin_entry(i: u64) -> AuditEntry {
    AuditEntry {
        time: time::OffsetDateTime::now_utc(),
        request_id: format!("req-{i}"),
        kind: EntryKind::Admin,
        actor: Actor::Admin(keylatch_audit::entry::AdminIdentity {
            principal: "alice".into(),
            role: "key-custodian".into(),
        }),
        resource: None,
        decision: Decision::Allow,
        reasons: vec![format!("action {i}")],
        evidence_sha256: None,
        bundle: None,
        policy: None,
        client_address: None,
    }
}

impl TestLog {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let db = dir.path().join("log.db");
        let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(&db, true)).unwrap());
        let signer = CheckpointSigner::generate("test/audit", &mut rand_core::OsRng).unwrap();
        std::fs::write(dir.path().join("audit.pub"), signer.verifier_key().to_text()).unwrap();
        let log = AuditLog::direct(
            Arc::clone(&store),
            signer,
            Schedule { every_entries: 1, every_seconds: 3600 },
        );
        let this = Self { dir, rt, store, log };
        for i in 0..10 {
            assert_eq!(this.rt.block_on(this.log.append(admin_entry(i))).unwrap(), i);
        }
        this
    }

    fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("log.db")
    }

    fn tamper(&self, sql: &str) {
        exec(&self.rt, &self.db(), sql);
    }

    /// Exports into `name` and verifies with the real binary; returns (exit code, stderr) and
    /// the library's verdict.
    fn verify(&self, name: &str) -> (i32, String, Result<keylatch_audit::Report, AuditError>) {
        let out = self.dir.path().join(name);
        self.rt.block_on(keylatch_cli::audit::export_store(self.store.as_ref(), &out)).unwrap();
        let key = self.dir.path().join("audit.pub");
        let (code, _, stderr) =
            run(&["audit", "verify", out.to_str().unwrap(), "--key", key.to_str().unwrap()]);
        let verdict = keylatch_cli::audit::verify_dir(&out, &key).unwrap();
        (code, stderr, verdict)
    }
}

fn diverged(v: Result<keylatch_audit::Report, AuditError>) -> Divergence {
    match v {
        Err(AuditError::Diverged(d)) => d,
        other => panic!("expected a divergence, got {other:?}"),
    }
}

#[test]
fn untouched_log_verifies() {
    let log = TestLog::new();
    let (code, stderr, verdict) = log.verify("export");
    assert_eq!(code, 0, "{stderr}");
    let report = verdict.unwrap();
    assert_eq!((report.start, report.end, report.checkpoints), (0, 10, 10));
    assert_eq!(report.unanchored_from, None);
}

#[test]
fn detects_an_entry_changed_in_the_database_at_its_index() {
    let log = TestLog::new();
    log.tamper("UPDATE audit_entries SET canonical = replace(canonical, 'action 4', 'action X') WHERE idx = 4");
    let (code, stderr, verdict) = log.verify("export");
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: first bad index 4: "), "{stderr}");
    let d = diverged(verdict);
    assert!(matches!(d, Divergence::RootMismatch { first_bad_index: 4, before: 5, .. }), "{d:?}");
}

#[test]
fn detects_an_entry_deleted_from_the_database_at_its_index() {
    let log = TestLog::new();
    log.tamper("DELETE FROM audit_entries WHERE idx = 6");
    let (code, stderr, verdict) = log.verify("export");
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: first bad index 6: "), "{stderr}");
    assert_eq!(diverged(verdict), Divergence::MissingEntry { index: 6, found: 7 });
}

#[test]
fn detects_entries_reordered_in_the_database_at_the_first_moved_index() {
    let log = TestLog::new();
    log.tamper(
        "UPDATE audit_entries SET idx = -1 WHERE idx = 2; \
         UPDATE audit_entries SET idx = 2 WHERE idx = 3; \
         UPDATE audit_entries SET idx = 3 WHERE idx = -1;",
    );
    let (code, stderr, verdict) = log.verify("export");
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: first bad index 2: "), "{stderr}");
    let d = diverged(verdict);
    assert!(matches!(d, Divergence::RootMismatch { first_bad_index: 2, before: 3, .. }), "{d:?}");
}

#[test]
fn truncated_and_regrown_tree_is_refused_by_the_log_and_detected_by_the_auditor() {
    let log = TestLog::new();
    // Roll the tree back to 7 entries (entries, subtrees, state) but leave the checkpoints.
    log.tamper(
        "DELETE FROM audit_entries WHERE idx >= 7; \
         DELETE FROM audit_nodes WHERE ((idx + 1) << level) > 7; \
         UPDATE audit_state SET size = 7, \
           frontier = (SELECT frontier FROM audit_checkpoints WHERE size = 7) WHERE id = 1;",
    );
    // The broker will not sign a tree that does not extend its last checkpoint: appends fail.
    let refused = log.rt.block_on(log.log.append(admin_entry(100)));
    assert!(refused.unwrap_err().to_string().contains("does not extend its last checkpoint"));
    // Regrown behind the broker's back: three forged entries at 7, 8, 9.
    for i in 7..10u64 {
        let canonical = String::from_utf8(admin_entry(i + 100).canonical_bytes().unwrap()).unwrap();
        let leaf = keylatch_audit::merkle::leaf_hash(canonical.as_bytes()).to_hex();
        log.tamper(&format!(
            "INSERT INTO audit_entries (idx, canonical, leaf, time_s, kind) \
             VALUES ({i}, '{canonical}', '{leaf}', 0, 'admin')"
        ));
    }
    log.tamper("UPDATE audit_state SET size = 10 WHERE id = 1");
    let (code, stderr, verdict) = log.verify("export");
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: first bad index 7: "), "{stderr}");
    let d = diverged(verdict);
    assert!(matches!(d, Divergence::RootMismatch { first_bad_index: 7, before: 8, .. }), "{d:?}");
}

#[test]
fn regrown_tree_with_its_checkpoints_rewritten_is_a_fork_against_kept_checkpoints() {
    let log = TestLog::new();
    // An auditor fetched the log once and keeps its checkpoints.
    let (code, _, _) = log.verify("auditor");
    assert_eq!(code, 0);
    // Truncate to 7 including the checkpoints above it; the broker then regrows the log and
    // signs new checkpoints 8..10 over different entries.
    log.tamper(
        "DELETE FROM audit_entries WHERE idx >= 7; \
         DELETE FROM audit_nodes WHERE ((idx + 1) << level) > 7; \
         DELETE FROM audit_checkpoints WHERE size > 7; \
         UPDATE audit_state SET size = 7, \
           frontier = (SELECT frontier FROM audit_checkpoints WHERE size = 7) WHERE id = 1;",
    );
    for i in 7..10 {
        assert_eq!(log.rt.block_on(log.log.append(admin_entry(i + 100))).unwrap(), i);
    }
    // Alone, the rewritten log is self-consistent; against the kept checkpoints it forks at 8.
    let (code, _, _) = log.verify("fresh");
    assert_eq!(code, 0);
    let (code, stderr, verdict) = log.verify("auditor");
    assert_eq!(code, 1, "{stderr}");
    assert!(matches!(diverged(verdict), Divergence::Fork { size: 8, .. }));
}

#[test]
fn auditor_reads_serve_proofs_that_verify_against_signed_checkpoints() {
    use keylatch_audit::merkle::proof::{verify_consistency, verify_inclusion};
    use keylatch_audit::{verify_checkpoint, Hash, NoteVerifierKey};
    use keylatch_broker::audit::export::{
        consistency, entries_jsonl, inclusion, latest_checkpoint, query_json,
    };

    let log = TestLog::new();
    let key = std::fs::read_to_string(log.dir.path().join("audit.pub")).unwrap();
    let vkey = NoteVerifierKey::parse(key.trim()).unwrap();
    let cps = log.rt.block_on(log.store.audit_checkpoints()).unwrap();
    let root_at = |size: u64| {
        let cp = cps.iter().find(|c| c.size == size).unwrap();
        verify_checkpoint(cp.note.as_bytes(), &vkey).unwrap().root
    };
    let latest = log.rt.block_on(latest_checkpoint(log.store.as_ref())).unwrap().unwrap();
    assert_eq!(verify_checkpoint(latest.as_bytes(), &vkey).unwrap().size, 10);

    let lines = log.rt.block_on(entries_jsonl(log.store.as_ref(), 3, 5)).unwrap();
    let parsed = keylatch_audit::export::parse_entries(&lines).unwrap();
    assert_eq!(parsed.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(parsed[1].entry.request_id, "req-4");

    for (index, size) in [(0, 1), (4, 10), (9, 10), (5, 7)] {
        let p = log.rt.block_on(inclusion(&log.store, index, size)).unwrap();
        let hashes: Vec<Hash> = p.hashes.iter().map(|h| Hash::from_hex(h).unwrap()).collect();
        let leaf = parsed_leaf(&log, index);
        verify_inclusion(index, size, &leaf, &hashes, &root_at(size)).unwrap();
    }
    for (first, second) in [(1, 10), (3, 7), (8, 9), (10, 10)] {
        let p = log.rt.block_on(consistency(&log.store, first, second)).unwrap();
        verify_consistency(first, second, &root_at(first), &root_at(second), &p.hashes).unwrap();
    }
    assert!(log.rt.block_on(inclusion(&log.store, 10, 10)).is_err());
    assert!(log.rt.block_on(consistency(&log.store, 3, 11)).is_err());

    let q = keylatch_broker::store::EntryQuery { limit: 100, ..Default::default() };
    let all: serde_json::Value =
        serde_json::from_str(&log.rt.block_on(query_json(log.store.as_ref(), &q)).unwrap())
            .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 10);
}

fn parsed_leaf(log: &TestLog, index: u64) -> keylatch_audit::Hash {
    let lines = log
        .rt
        .block_on(keylatch_broker::audit::export::entries_jsonl(
            log.store.as_ref(),
            index,
            index + 1,
        ))
        .unwrap();
    keylatch_audit::export::parse_entries(&lines).unwrap()[0].leaf
}
