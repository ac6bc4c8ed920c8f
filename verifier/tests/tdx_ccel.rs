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
    let root = std::env::var_os("KEYLATCH_VECTORS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        PathBuf::from,
    );
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

#[test]
fn ccel_sim_quote_with_its_log_verifies_and_claims_kernel_cmdline_secure_boot() {
    let pki = SimIntelPki::generate(&mut OsRng).unwrap();
    let collateral = pki
        .collateral(datetime!(2026-01-01 00:00:00 UTC), datetime!(2026-01-31 00:00:00 UTC))
        .unwrap();
    let log = sim_log();
    let spec = SimTdxQuote { rtmr: rtmrs(&log).unwrap(), ..SimTdxQuote::default() };
    let quote = pki.mint(&spec, &mut OsRng).unwrap();
    let v = TdxVerifier::new(pki.anchors());
    let now = datetime!(2026-01-15 12:00:00 UTC);
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
