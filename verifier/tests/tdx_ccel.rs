//! The TDX event log (CCEL): a real log from a Container-Optimized OS TD (google/go-tdx-guest's
//! test data, read from `KEYLATCH_VECTORS`) replays to its quote's RTMRs and names its kernel and
//! command line; simulated logs verify end to end; tampered and malformed logs fail closed.
//! Every test name carries `ccel` so `cargo nextest run -E 'test(ccel)'` selects them.

// reason: test code; a panic here is a test failure with its location.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use proptest::prelude::*;
use rand_core::OsRng;
use time::macros::datetime;
use verifier::sim::ccel::{event_log, rtmrs, SimEvent, SIM_CMDLINE, SIM_KERNEL};
use verifier::sim::tdx::{SimIntelPki, SimTdxQuote};
use verifier::tdx::eventlog::{check_event_log, parse_event_log, replay};
use verifier::tdx::{parse_quote, TdxVerifier};
use verifier::{Reason, Step};

fn case(name: &str) -> Option<(PathBuf, serde_json::Value)> {
    let root = keylatch_test_vectors::dir()?;
    let dir = root.join("tdx").join(name);
    if !dir.join("expected.json").is_file() {
        println!("skipped: vector case tdx/{name} not found under {}", root.display());
        return None;
    }
    let expected =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    Some((dir, expected))
}

#[test]
fn ccel_real_cos_log_replays_to_the_quote_rtmrs_and_names_kernel_and_cmdline() {
    let Some((dir, e)) = case("ccel-cos-113") else { return };
    let log = std::fs::read(dir.join(e["ccel"].as_str().unwrap())).unwrap();
    let quote =
        parse_quote(&std::fs::read(dir.join(e["evidence"].as_str().unwrap())).unwrap()).unwrap();
    for (i, want) in e["rtmr"].as_array().unwrap().iter().enumerate() {
        assert_eq!(hex::encode(quote.report.rtmr[i]), want.as_str().unwrap());
    }
    let claims = check_event_log(&log, &quote.report.rtmr).unwrap();
    let want = &e["event_log"];
    assert_eq!(claims.events.len(), e["measured_events"].as_u64().unwrap() as usize);
    assert_eq!(claims.kernel_sha384.unwrap().to_hex(), want["kernel_sha384"].as_str().unwrap());
    assert_eq!(claims.cmdline.as_deref(), want["cmdline"].as_str());
    assert_eq!(claims.cmdline_sha384.unwrap().to_hex(), want["cmdline_sha384"].as_str().unwrap());
    assert_eq!(claims.secure_boot, want["secure_boot"].as_bool());
    assert_eq!(
        claims.efi_variables["SecureBoot"].to_hex(),
        want["efi_variables"]["SecureBoot"].as_str().unwrap()
    );
    assert_eq!(claims.initrd_sha384, None);
    assert_eq!(claims.events[0].event_type, "EV_EFI_HANDOFF_TABLES2");
    assert_eq!(claims.events[0].description, "TdxTable");
    assert_eq!(claims.events[0].rtmr, 0);
}

#[test]
fn ccel_real_log_with_one_digest_changed_names_the_rtmr() {
    let Some((dir, e)) = case("ccel-cos-113") else { return };
    let mut log = std::fs::read(dir.join(e["ccel"].as_str().unwrap())).unwrap();
    let quote =
        parse_quote(&std::fs::read(dir.join(e["evidence"].as_str().unwrap())).unwrap()).unwrap();
    // The kernel_cmdline event's digest sits in RTMR2: flip one byte of it.
    let at = log.windows(16).position(|w| w == b"kernel_cmdline: ").unwrap();
    log[at - 4 - 48] ^= 1;
    let err = check_event_log(&log, &quote.report.rtmr).unwrap_err();
    assert_eq!(err.step, Step::EventLog);
    assert!(
        matches!(err.reason, Reason::Mismatch { what: "RTMR2 (event log replay)", .. }),
        "{err}"
    );
}

#[test]
fn ccel_real_log_truncated_prefix_fails_or_replays_differently() {
    let Some((dir, e)) = case("ccel-cos-113") else { return };
    let log = std::fs::read(dir.join(e["ccel"].as_str().unwrap())).unwrap();
    let end = log.iter().rposition(|b| *b != 0xff).unwrap() + 1;
    for n in 0..end {
        // A prefix that stops exactly on an event boundary is a shorter, valid log: it must then
        // replay to something else than the full log.
        if let Ok(short) = parse_event_log(&log[..n]) {
            assert_ne!(replay(&short), replay(&parse_event_log(&log).unwrap()), "prefix {n}");
        }
    }
}

fn sim_log() -> Vec<u8> {
    event_log(&SimEvent::direct_grub_boot(), 4096)
}

/// A simulated TD whose firmware measured `log`: its verifier, quote and collateral (valid at
/// [`SIM_NOW`]).
fn sim_td(log: &[u8]) -> (TdxVerifier, Vec<u8>, verifier::tdx::TdxCollateral) {
    let pki = SimIntelPki::generate(&mut OsRng).unwrap();
    let collateral = pki
        .collateral(datetime!(2026-01-01 00:00:00 UTC), datetime!(2026-01-31 00:00:00 UTC))
        .unwrap();
    let spec = SimTdxQuote { rtmr: rtmrs(log).unwrap(), ..SimTdxQuote::default() };
    let quote = pki.mint(&spec, &mut OsRng).unwrap();
    (TdxVerifier::new(pki.anchors()), quote, collateral)
}

const SIM_NOW: time::OffsetDateTime = datetime!(2026-01-15 12:00:00 UTC);

#[test]
fn ccel_sim_quote_with_its_log_verifies_and_claims_kernel_cmdline_secure_boot() {
    let log = sim_log();
    let (v, quote, collateral) = sim_td(&log);
    let now = SIM_NOW;
    let claims = v.verify_with_event_log(&quote, Some(&log), &collateral, None, now).unwrap();
    let el = claims.tdx.unwrap().event_log.unwrap();
    assert_eq!(el.cmdline.as_deref(), Some(SIM_CMDLINE));
    assert_eq!(
        el.kernel_sha384.unwrap().0,
        <[u8; 48]>::from(<sha2::Sha384 as sha2::Digest>::digest(SIM_KERNEL))
    );
    assert_eq!(el.secure_boot, Some(true));
    assert_eq!(el.events.len(), 7);

    // Without a log the RTMRs stay opaque, as before.
    let plain = v.verify(&quote, &collateral, None, now).unwrap();
    assert_eq!(plain.tdx.unwrap().event_log, None);

    // A log that measured another kernel does not give the quote's RTMR2.
    let mut events = SimEvent::direct_grub_boot();
    events[5] = SimEvent::new(2, 0x0d, b"another kernel", b"/vmlinuz\0".to_vec());
    let other = event_log(&events, 4096);
    let err = v.verify_with_event_log(&quote, Some(&other), &collateral, None, now).unwrap_err();
    assert_eq!(err.step, Step::EventLog);
    assert!(err.to_string().starts_with("event-log: RTMR2 (event log replay) mismatch"), "{err}");
}

#[test]
fn ccel_cmdline_text_is_claimed_only_when_its_digest_covers_it() {
    let mut events = SimEvent::direct_grub_boot();
    let honest = SimEvent::grub_string("kernel_cmdline: ", SIM_CMDLINE);
    let mut forged = SimEvent::grub_string("kernel_cmdline: ", "init=/bin/sh");
    forged.digest = honest.digest;
    events[6] = forged;
    let log = event_log(&events, 0);
    let claims = check_event_log(&log, &rtmrs(&log).unwrap()).unwrap();
    assert_eq!(claims.cmdline, None);
}

fn header_then(events: &[u8]) -> Vec<u8> {
    let mut log = event_log(&[], 0);
    log.extend_from_slice(events);
    log
}

#[test]
fn ccel_malformed_logs_fail_closed_with_a_reason() {
    let reason = |b: &[u8]| parse_event_log(b).unwrap_err().reason;
    // An absurd digest count.
    let mut ev = Vec::new();
    ev.extend_from_slice(&1u32.to_le_bytes());
    ev.extend_from_slice(&0x0du32.to_le_bytes());
    ev.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        reason(&header_then(&ev)),
        Reason::InvalidValue { what: "event log digest count", .. }
    ));
    // An algorithm the Spec ID event did not declare.
    let mut ev = Vec::new();
    ev.extend_from_slice(&1u32.to_le_bytes());
    ev.extend_from_slice(&0x0du32.to_le_bytes());
    ev.extend_from_slice(&1u32.to_le_bytes());
    ev.extend_from_slice(&0x000bu16.to_le_bytes());
    ev.extend_from_slice(&[0; 64]);
    assert!(matches!(reason(&header_then(&ev)), Reason::UnsupportedAlgorithm { .. }));
    // An event size past the end.
    let mut log = event_log(&SimEvent::direct_grub_boot()[..1], 0);
    let n = log.len();
    log.truncate(n - 1);
    assert!(matches!(reason(&log), Reason::Truncated { .. }));
    // A measured event aimed at MRTD (index 0).
    let mut log = event_log(&SimEvent::direct_grub_boot()[..1], 0);
    let first = 32 + 16 + 4 + 4 + 4 + 4 + 1;
    log[first..first + 4].copy_from_slice(&5u32.to_le_bytes());
    assert!(matches!(reason(&log), Reason::InvalidValue { what: "event log MR index", .. }));
    // Non-padding bytes after the end marker.
    let mut log = sim_log();
    let last = log.len() - 1;
    log[last] = 0x00;
    assert!(matches!(reason(&log), Reason::InvalidValue { what: "event log padding", .. }));
    // No SHA-384 in the Spec ID event.
    let mut log = sim_log();
    let alg = 32 + 16 + 4 + 4 + 4;
    log[alg..alg + 2].copy_from_slice(&0x000bu16.to_le_bytes());
    assert!(matches!(reason(&log), Reason::InvalidValue { what: "Spec ID event digest size", .. }));
}

proptest! {
    #[test]
    fn ccel_truncated_sim_log_never_panics_and_fails_inside_an_event(cut in 0usize..400) {
        let log = event_log(&SimEvent::direct_grub_boot(), 0);
        let cut = cut.min(log.len() - 1);
        // Every prefix either fails, or is an earlier event boundary with fewer events.
        match parse_event_log(&log[..cut]) {
            Ok(short) => prop_assert!(short.events.len() < SimEvent::direct_grub_boot().len()),
            Err(e) => prop_assert_eq!(e.step, Step::EventLog),
        }
    }

    #[test]
    fn ccel_parser_never_panics_on_arbitrary_bytes(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_event_log(&header_then(&tail));
        let _ = parse_event_log(&tail);
    }
}

fn sha384(bytes: &[u8]) -> [u8; 48] {
    <[u8; 48]>::from(<sha2::Sha384 as sha2::Digest>::digest(bytes))
}

#[test]
fn ccel_direct_kernel_boot_names_the_kernel_image_initrd_and_load_options() {
    use verifier::sim::ccel::{SIM_DIRECT_CMDLINE, SIM_INITRD};
    use verifier::tdx::eventlog::ovmf_direct_boot_load_options;
    let log = event_log(&SimEvent::direct_kernel_boot(), 4096);
    let (v, quote, collateral) = sim_td(&log);
    let claims = v.verify_with_event_log(&quote, Some(&log), &collateral, None, SIM_NOW).unwrap();
    let el = claims.tdx.unwrap().event_log.unwrap();
    // No bootloader: no file-hash kernel and no command-line text, but the firmware's image
    // measurement of the kernel and the EFI stub's tagged initrd and load options.
    assert_eq!(el.kernel_sha384, None);
    assert_eq!(el.kernel_authenticode_sha384.unwrap().0, sha384(SIM_KERNEL));
    assert_eq!(el.initrd_sha384.unwrap().0, sha384(SIM_INITRD));
    assert_eq!(el.cmdline, None);
    assert_eq!(
        el.cmdline_sha384.unwrap().0,
        sha384(&ovmf_direct_boot_load_options(SIM_DIRECT_CMDLINE, true))
    );
    assert_eq!(el.secure_boot, Some(false));
    let kinds: Vec<(u8, &str, &str)> =
        el.events.iter().map(|e| (e.rtmr, e.event_type.as_str(), e.description.as_str())).collect();
    assert_eq!(
        kinds[5..],
        [
            (1, "EV_EFI_BOOT_SERVICES_APPLICATION", "direct-boot kernel (QEMU loader)"),
            (2, "EV_EVENT_TAG", "Linux initrd"),
            (2, "EV_EVENT_TAG", "Linux LOADED_IMAGE::LoadOptions"),
        ]
    );
}

#[test]
fn ccel_ovmf_load_options_are_utf16_with_the_initrd_prefix_and_a_nul() {
    use verifier::tdx::eventlog::ovmf_direct_boot_load_options;
    assert_eq!(
        ovmf_direct_boot_load_options("ro", true),
        b"i\0n\0i\0t\0r\0d\0=\0i\0n\0i\0t\0r\0d\0 \0r\0o\0\0\0"
    );
    assert_eq!(ovmf_direct_boot_load_options("ro", false), b"r\0o\0\0\0");
    assert_eq!(ovmf_direct_boot_load_options("", false), b"");
}

#[test]
fn ccel_linux_stub_tags_are_the_kernels_initrd_0x8f3b22ec_and_load_options_0x8f3b22ed() {
    // drivers/firmware/efi/libstub/efistub.h: INITRD_EVENT_TAG_ID 0x8F3B22EC,
    // LOAD_OPTIONS_EVENT_TAG_ID 0x8F3B22ED.
    let events = [
        SimEvent::linux_stub_tag(0x8F3B_22EC, "Linux initrd", b"initrd bytes"),
        SimEvent::linux_stub_tag(0x8F3B_22ED, "LOADED_IMAGE::LoadOptions", b"options"),
    ];
    let log = event_log(&events, 0);
    let el = check_event_log(&log, &rtmrs(&log).unwrap()).unwrap();
    assert_eq!(el.initrd_sha384.unwrap().0, sha384(b"initrd bytes"));
    assert_eq!(el.cmdline_sha384.unwrap().0, sha384(b"options"));
}

#[test]
fn ccel_direct_boot_labels_naming_two_digests_claim_neither() {
    let mut events = SimEvent::direct_kernel_boot();
    let kernel = events.iter().find(|e| e.event_type == 0x8000_0003).unwrap().clone();
    events.push(SimEvent { digest: sha384(b"a second kernel"), ..kernel });
    events.push(SimEvent::linux_stub_tag(0x8F3B_22EC, "Linux initrd", b"a second initrd"));
    let log = event_log(&events, 0);
    let el = check_event_log(&log, &rtmrs(&log).unwrap()).unwrap();
    assert_eq!(el.kernel_authenticode_sha384, None);
    assert_eq!(el.initrd_sha384, None);
    // The same digest labelled twice is still one kernel.
    let mut events = SimEvent::direct_kernel_boot();
    let kernel = events.iter().find(|e| e.event_type == 0x8000_0003).unwrap().clone();
    events.push(kernel);
    let log = event_log(&events, 0);
    let el = check_event_log(&log, &rtmrs(&log).unwrap()).unwrap();
    assert_eq!(el.kernel_authenticode_sha384.unwrap().0, sha384(SIM_KERNEL));
}

#[test]
fn ccel_boot_application_with_another_device_path_or_rtmr_is_not_the_kernel() {
    let mut events = SimEvent::direct_kernel_boot();
    let at = events.iter().position(|e| e.event_type == 0x8000_0003).unwrap();
    // OVMF's shim path (File("shim")) is a boot application but not the kernel.
    let mut shim_path = verifier::tdx::eventlog::qemu_direct_kernel_image_event();
    let k = shim_path.windows(12).position(|w| w == b"k\0e\0r\0n\0e\0l\0").unwrap();
    shim_path.splice(k..k + 12, *b"s\0h\0i\0m\0\0\0\0\0");
    events[at].data = shim_path;
    let log = event_log(&events, 0);
    let el = check_event_log(&log, &rtmrs(&log).unwrap()).unwrap();
    assert_eq!(el.kernel_authenticode_sha384, None);
    // The right path extended into RTMR2 instead of RTMR1 is not the firmware's kernel event.
    let mut events = SimEvent::direct_kernel_boot();
    events[at].rtmr = 2;
    let log = event_log(&events, 0);
    let el = check_event_log(&log, &rtmrs(&log).unwrap()).unwrap();
    assert_eq!(el.kernel_authenticode_sha384, None);
}
