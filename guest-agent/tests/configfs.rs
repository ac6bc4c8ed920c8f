//! configfs-tsm against a fake tree in a temporary directory, where a thread plays the kernel:
//! it gives each new entry its `provider` and `generation`, and when a 64-byte `inblob` appears
//! it mints a simulated report or quote for it, writes `outblob` (and the SNP certificate table
//! as `auxblob`) and bumps `generation` — by two when it is told to fake a racing writer.
//! A TD's quote carries the RTMRs its firmware extended; when a test gives the fake kernel an
//! event log, the quote's RTMRs are that log's replay and the log sits in a fake sysfs tree at
//! `sys/firmware/acpi/tables/data/CCEL`, where Linux exports the ACPI CCEL area.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keylatch_agent::evidence::certtable::{self, ASK_GUID, VCEK_GUID};
use keylatch_agent::evidence::configfs::{ConfigfsTsm, Provider};
use keylatch_agent::evidence::tpm::TpmPath;
use keylatch_agent::evidence::{detect, DetectOptions};
use keylatch_agent::{AgentError, ExitCode};
use keylatch_wire::kbs_types::Tee;
use rand_core::OsRng;
use sha2::Digest as _;
use verifier::claims::SnpProduct;
use verifier::sim::snp::SimSnpReport;
use verifier::sim::tdx::SimTdxQuote;
use verifier::sim::SimPki;

struct FakeKernel {
    stop: Arc<AtomicBool>,
    /// Reports produced.
    reports: Arc<AtomicU32>,
}

impl Drop for FakeKernel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn put(dir: &Path, name: &str, data: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    if std::fs::write(&tmp, data).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(name));
    }
}

fn kernel(root: &Path, provider: &'static str, pki: Arc<SimPki>, races: u32) -> FakeKernel {
    td_kernel(root, provider, pki, races, None)
}

/// [`kernel`], for a TD whose firmware measured `event_log` into its RTMRs.
fn td_kernel(
    root: &Path,
    provider: &'static str,
    pki: Arc<SimPki>,
    races: u32,
    event_log: Option<&[u8]>,
) -> FakeKernel {
    let rtmr = event_log
        .map_or(SimTdxQuote::default().rtmr, |log| verifier::sim::ccel::rtmrs(log).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let reports = Arc::new(AtomicU32::new(0));
    let (root, stop2, reports2) = (root.to_owned(), Arc::clone(&stop), Arc::clone(&reports));
    std::thread::spawn(move || {
        let mut races_left = races;
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut done: HashSet<PathBuf> = HashSet::new();
        while !stop2.load(Ordering::SeqCst) {
            for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let dir = entry.path();
                if seen.insert(dir.clone()) {
                    put(&dir, "provider", format!("{provider}\n").as_bytes());
                    put(&dir, "generation", b"0\n");
                }
                let Ok(inblob) = std::fs::read(dir.join("inblob")) else { continue };
                if inblob.len() != 64 || done.contains(&dir) {
                    continue;
                }
                done.insert(dir.clone());
                let rd: [u8; 64] = inblob.try_into().unwrap();
                if provider == "tdx_guest" {
                    let quote = pki
                        .intel
                        .mint(
                            &SimTdxQuote { report_data: rd, rtmr, ..SimTdxQuote::default() },
                            &mut OsRng,
                        )
                        .unwrap();
                    put(&dir, "outblob", &quote);
                } else {
                    let spec = SimSnpReport {
                        report_data: rd,
                        ..SimSnpReport::for_product(SnpProduct::Genoa)
                    };
                    let (report, vcek) = pki.amd.mint(&spec, &mut OsRng).unwrap();
                    put(&dir, "outblob", &report);
                    put(
                        &dir,
                        "auxblob",
                        &certtable::build(&[(ASK_GUID, pki.amd.ask_der()), (VCEK_GUID, &vcek)]),
                    );
                }
                let generation: &[u8] = if races_left > 0 {
                    races_left -= 1;
                    b"2\n"
                } else {
                    b"1\n"
                };
                put(&dir, "generation", generation);
                reports2.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    FakeKernel { stop, reports }
}

/// The CCEL data file in the fake sysfs tree, relative to the test's directory.
const CCEL: &str = "sys/firmware/acpi/tables/data/CCEL";

/// Puts `bytes` where the fake sysfs exports the CCEL area.
fn put_ccel(dir: &Path, bytes: &[u8]) {
    let path = dir.join(CCEL);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn setup() -> (tempfile::TempDir, Arc<SimPki>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tsm/report")).unwrap();
    (dir, Arc::new(SimPki::generate(&mut OsRng).unwrap()))
}

fn opts(dir: &Path) -> DetectOptions {
    DetectOptions {
        configfs_root: dir.join("tsm/report"),
        sev_guest: dir.join("no-sev-guest"),
        ccel: dir.join(CCEL),
        tpm: TpmPath::Device(dir.join("no-tpm")),
        azure_imds: String::new(),
        simulate: None,
        init_data: None,
        sim_measurement: None,
    }
}

fn leftover_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tsm/report")).unwrap().count()
}

#[test]
fn snp_report_and_certificate_table_become_verifiable_evidence() {
    let (dir, pki) = setup();
    let k = kernel(&dir.path().join("tsm/report"), "sev_guest", Arc::clone(&pki), 0);
    let source = detect(&opts(dir.path())).unwrap();
    assert_eq!(source.tee(), Tee::Snp);
    assert_eq!(
        source.describe(),
        format!(
            "snp: configfs-tsm at {} (provider sev_guest)",
            dir.path().join("tsm/report").display()
        )
    );
    let rd = [0x5a; 64];
    let ev = source.evidence(&rd).unwrap();
    assert_eq!(ev["cert_chain"][0]["cert_type"], "VCEK");
    let coco = verifier::snp::report_from_coco_evidence(&serde_json::to_vec(&ev).unwrap()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let claims = verifier::snp::SnpVerifier::new(pki.anchors().unwrap().0)
        .verify(&coco.report, &coco.endorsements().unwrap(), Some(&rd), now)
        .unwrap();
    assert!(claims.simulated);
    assert_eq!(claims.report_data.0, rd);
    assert_eq!(k.reports.load(Ordering::SeqCst), 1);
    assert_eq!(leftover_entries(dir.path()), 0, "entries are removed");
}

#[test]
fn tdx_quote_becomes_guest_components_evidence_with_a_null_ccel_when_there_is_none() {
    let (dir, pki) = setup();
    let _k = kernel(&dir.path().join("tsm/report"), "tdx_guest", Arc::clone(&pki), 0);
    let source = detect(&opts(dir.path())).unwrap();
    assert_eq!(source.tee(), Tee::Tdx);
    let rd = [0xa5; 64];
    let ev = source.evidence(&rd).unwrap();
    assert_eq!(ev["cc_eventlog"], serde_json::Value::Null);
    assert_eq!(ev.as_object().unwrap().len(), 2);
    let quote = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        ev["quote"].as_str().unwrap(),
    )
    .unwrap();
    let claims = verify_tdx(&pki, &quote, None, &rd);
    assert_eq!(claims.report_data.0, rd);
}

/// What a broker concludes from a simulated TD's quote (and event log), now.
fn verify_tdx(
    pki: &SimPki,
    quote: &[u8],
    event_log: Option<&[u8]>,
    rd: &[u8; 64],
) -> verifier::Claims {
    let now = time::OffsetDateTime::now_utc();
    let collateral = pki
        .intel
        .collateral(now - time::Duration::days(1), now + time::Duration::days(30))
        .unwrap();
    verifier::tdx::TdxVerifier::new(pki.anchors().unwrap().1)
        .verify_with_event_log(quote, event_log, &collateral, Some(rd), now)
        .unwrap()
}

#[test]
fn tdx_evidence_carries_the_ccel_file_unchanged_and_its_replay_verifies() {
    let (dir, pki) = setup();
    // The CCEL area as firmware leaves it: the log, then 0xFF up to the area's size.
    let events = verifier::sim::ccel::SimEvent::direct_grub_boot();
    let ccel = verifier::sim::ccel::event_log(&events, 64 * 1024);
    put_ccel(dir.path(), &ccel);
    let _k =
        td_kernel(&dir.path().join("tsm/report"), "tdx_guest", Arc::clone(&pki), 0, Some(&ccel));
    let source = detect(&opts(dir.path())).unwrap();
    let rd = [0x3c; 64];
    let ev = source.evidence(&rd).unwrap();
    assert_eq!(ev.as_object().unwrap().len(), 2);
    assert_eq!(
        ev["cc_eventlog"].as_str().unwrap(),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ccel),
        "the whole file, padding included, standard base64 with padding"
    );
    let coco = verifier::tdx::tdx_from_coco_evidence(&serde_json::to_vec(&ev).unwrap()).unwrap();
    assert_eq!(coco.cc_eventlog.as_deref(), Some(ccel.as_slice()));
    let claims = verify_tdx(&pki, &coco.quote, coco.cc_eventlog.as_deref(), &rd);
    let log = claims.tdx.unwrap().event_log.unwrap();
    assert_eq!(log.cmdline.as_deref(), Some(verifier::sim::ccel::SIM_CMDLINE));
    assert_eq!(log.secure_boot, Some(true));
    assert_eq!(
        log.kernel_sha384.unwrap().0,
        <[u8; 48]>::from(sha2::Sha384::digest(verifier::sim::ccel::SIM_KERNEL))
    );
}

#[test]
fn tdx_evidence_fails_when_the_ccel_exists_but_cannot_be_read() {
    let (dir, pki) = setup();
    // A directory where the file should be: reading it fails with something other than
    // "not found" (permissions would not do: tests may run as root).
    std::fs::create_dir_all(dir.path().join(CCEL)).unwrap();
    let _k = kernel(&dir.path().join("tsm/report"), "tdx_guest", pki, 0);
    let source = detect(&opts(dir.path())).unwrap();
    let err = source.evidence(&[0x3c; 64]).unwrap_err();
    assert!(matches!(err, AgentError::Evidence(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("TDX event log: read ") && msg.contains(CCEL), "{msg}");
}

#[test]
fn retries_once_when_generation_shows_a_race() {
    let (dir, pki) = setup();
    let root = dir.path().join("tsm/report");
    let k = kernel(&root, "sev_guest", pki, 1);
    let tsm = ConfigfsTsm::probe(&root).unwrap();
    assert_eq!(tsm.provider(), Provider::SevGuest);
    let r = tsm.report(&[1; 64]).unwrap();
    assert_eq!(r.outblob.len(), verifier::snp::REPORT_LEN);
    assert_eq!(k.reports.load(Ordering::SeqCst), 2, "the raced report was discarded and redone");
}

#[test]
fn fails_when_generation_races_twice() {
    let (dir, pki) = setup();
    let root = dir.path().join("tsm/report");
    let k = kernel(&root, "sev_guest", pki, 2);
    let tsm = ConfigfsTsm::probe(&root).unwrap();
    let err = tsm.report(&[1; 64]).unwrap_err();
    assert!(matches!(err, AgentError::Evidence(_)), "{err}");
    assert_eq!(err.exit_code(), ExitCode::Local);
    assert_eq!(k.reports.load(Ordering::SeqCst), 2);
}

#[test]
fn rejects_unknown_provider() {
    let (dir, pki) = setup();
    let _k = kernel(&dir.path().join("tsm/report"), "arm_cca_guest", pki, 0);
    let err = detect(&opts(dir.path())).map(|s| s.describe()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no TEE: configfs-tsm provider \"arm_cca_guest\" is neither sev_guest nor tdx_guest"
    );
    assert_eq!(err.exit_code(), ExitCode::Local);
}

#[test]
fn detect_fails_without_any_tee_and_never_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let err = detect(&opts(dir.path())).map(|s| s.describe()).unwrap_err();
    assert!(matches!(err, AgentError::NoTee(_)));
    assert_eq!(err.exit_code(), ExitCode::Local);
    assert!(err.to_string().contains("no --simulate was given"), "{err}");
}
