//! The TDX event-log measurement a policy author runs on a known-good CCEL: the table it prints is
//! a valid `[tdx.event_log]` bundle table that the claims of a TD booted with that log satisfy, and
//! a TD that booted another kernel does not; on the real Container-Optimized OS log (read from
//! `KEYLATCH_VECTORS`) it names that TD's kernel and command line and replays to its quote's RTMRs.
//! Every test name carries `ccel` so `cargo nextest run -E 'test(ccel)'` selects them.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, clippy::expect_used)] // reason: tests fail loudly on purpose

mod common;

use rand_core::OsRng;
use reference_values::measure::tdx_event_log_reference;
use reference_values::{appraise, Bundle, EventLogReference};
use sha2::{Digest, Sha384};
use time::macros::datetime;
use verifier::sim::ccel::{event_log, rtmrs, SimEvent, SIM_CMDLINE, SIM_KERNEL};
use verifier::sim::tdx::{SimIntelPki, SimTdxQuote};
use verifier::tdx::TdxVerifier;
use verifier::{Claims, HexBytes};

fn sha384(bytes: &[u8]) -> HexBytes<48> {
    HexBytes(Sha384::digest(bytes).into())
}

/// The claims a broker derives from a simulated TD that booted `log`.
fn claims_of_td_booted_with(log: &[u8]) -> Claims {
    let pki = SimIntelPki::generate(&mut OsRng).unwrap();
    let collateral = pki
        .collateral(datetime!(2026-01-01 00:00:00 UTC), datetime!(2026-01-31 00:00:00 UTC))
        .unwrap();
    let quote = pki
        .mint(&SimTdxQuote { rtmr: rtmrs(log).unwrap(), ..SimTdxQuote::default() }, &mut OsRng)
        .unwrap();
    TdxVerifier::new(pki.anchors())
        .verify_with_event_log(
            &quote,
            Some(log),
            &collateral,
            None,
            datetime!(2026-01-15 12:00:00 UTC),
        )
        .unwrap()
}

fn bundle_with(fragment: &str) -> Bundle {
    let mr_td = hex::encode(SimTdxQuote::default().mr_td);
    Bundle::from_toml(&format!(
        "name = \"td\"\nversion = 1\nexpires = 2030-01-01T00:00:00Z\n[tdx]\nmr_td = [\"{mr_td}\"]\n{fragment}"
    ))
    .unwrap()
}

#[test]
fn ccel_sim_log_gives_the_table_its_own_td_satisfies() {
    let log = event_log(&SimEvent::direct_grub_boot(), 4096);
    let m = tdx_event_log_reference(&log).unwrap();
    assert_eq!(m.rtmr.map(|r| r.0), rtmrs(&log).unwrap());
    assert_eq!(m.events, 7);
    assert_eq!(
        m.reference,
        EventLogReference {
            kernel_sha384: Some(vec![sha384(SIM_KERNEL)]),
            kernel_authenticode_sha384: None,
            initrd_sha384: None,
            cmdline: Some(vec![SIM_CMDLINE.to_owned()]),
            cmdline_sha384: Some(vec![sha384(SIM_CMDLINE.as_bytes())]),
            secure_boot: Some(true),
        }
    );
    let toml = m.to_toml().unwrap();
    let bundle = bundle_with(&toml);
    assert_eq!(bundle.tdx.as_ref().unwrap().event_log.as_ref(), Some(&m.reference));
    // The RTMRs are comments: the table pins what was booted, not the registers.
    assert_eq!(bundle.tdx.as_ref().unwrap().rtmr0, None);

    let now = datetime!(2026-01-15 12:00:00 UTC);
    let accepted = appraise(&claims_of_td_booted_with(&log), &bundle, now);
    assert!(accepted.is_accepted(), "{:?}", accepted.mismatches);

    // The same boot with another kernel file: only the kernel differs.
    let mut events = SimEvent::direct_grub_boot();
    let kernel = events.iter_mut().find(|e| e.data == b"/vmlinuz\0").unwrap();
    *kernel = SimEvent::new(2, 0x0d, b"another kernel", b"/vmlinuz\0".to_vec());
    let other = event_log(&events, 4096);
    let refused = appraise(&claims_of_td_booted_with(&other), &bundle, now);
    let fields: Vec<&str> = refused.mismatches.iter().map(|m| m.field.as_str()).collect();
    assert_eq!(fields, ["tdx.event_log.kernel_sha384"]);
    assert_eq!(refused.mismatches[0].actual, sha384(b"another kernel").to_hex());
}

#[test]
fn ccel_table_text_is_exact() {
    let log = event_log(&SimEvent::direct_grub_boot(), 4096);
    let m = tdx_event_log_reference(&log).unwrap();
    let r = m.rtmr.map(|r| r.to_hex());
    let want = format!(
        "# 7 measured events; a quote with this log carries these RTMRs:\n\
         # rtmr0 = [\"{}\"]\n# rtmr1 = [\"{}\"]\n# rtmr2 = [\"{}\"]\n# rtmr3 = [\"{}\"]\n\
         [tdx.event_log]\n\
         kernel_sha384 = [\"{}\"]\n\
         cmdline = [\"{SIM_CMDLINE}\"]\n\
         cmdline_sha384 = [\"{}\"]\n\
         secure_boot = true\n",
        r[0],
        r[1],
        r[2],
        r[3],
        sha384(SIM_KERNEL).to_hex(),
        sha384(SIM_CMDLINE.as_bytes()).to_hex(),
    );
    assert_eq!(m.to_toml().unwrap(), want);
}

#[test]
fn ccel_log_that_names_nothing_still_gives_a_table_that_requires_a_log() {
    let log = event_log(&[SimEvent::new(0, 0x04, &[0; 4], vec![0; 4])], 0);
    let m = tdx_event_log_reference(&log).unwrap();
    assert_eq!(m.reference, EventLogReference::default());
    let toml = m.to_toml().unwrap();
    assert!(toml.ends_with(
        "[tdx.event_log]\n# the log names no kernel, initrd, command line or SecureBoot value: this table\n# only requires that evidence carries a log\n"
    ), "{toml}");
    assert_eq!(bundle_with(&toml).tdx.unwrap().event_log, Some(EventLogReference::default()));
}

#[test]
fn ccel_malformed_log_fails_with_the_verifiers_event_log_error() {
    let mut log = event_log(&SimEvent::direct_grub_boot(), 0);
    log.truncate(log.len() - 3);
    let err = tdx_event_log_reference(&log).unwrap_err();
    assert_eq!(err.step, verifier::Step::EventLog);
}

#[test]
fn ccel_real_cos_log_names_its_kernel_and_cmdline_and_replays_to_the_quote() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let case = dir.join("tdx/ccel-cos-113");
    if !case.join("expected.json").is_file() {
        println!("skipped: vector case tdx/ccel-cos-113 not found under {}", dir.display());
        return;
    }
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
    let log = std::fs::read(case.join(e["ccel"].as_str().unwrap())).unwrap();
    let quote = verifier::tdx::parse_quote(
        &std::fs::read(case.join(e["evidence"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let m = tdx_event_log_reference(&log).unwrap();
    assert_eq!(m.rtmr.map(|r| r.0), quote.report.rtmr);
    assert_eq!(m.events, 43);
    let want = &e["event_log"];
    let hex48 = |k: &str| HexBytes::<48>::from_hex(want[k].as_str().unwrap()).unwrap();
    assert_eq!(
        m.reference,
        EventLogReference {
            kernel_sha384: Some(vec![hex48("kernel_sha384")]),
            kernel_authenticode_sha384: None,
            initrd_sha384: None,
            cmdline: Some(vec![want["cmdline"].as_str().unwrap().to_owned()]),
            cmdline_sha384: Some(vec![hex48("cmdline_sha384")]),
            secure_boot: Some(false),
        }
    );
    // The command line holds double quotes: the TOML must carry it back unchanged.
    let bundle = bundle_with(&m.to_toml().unwrap());
    assert_eq!(bundle.tdx.unwrap().event_log, Some(m.reference));
}

#[test]
fn ccel_direct_kernel_boot_log_gives_the_authenticode_kernel_initrd_and_load_options() {
    use verifier::sim::ccel::{SIM_DIRECT_CMDLINE, SIM_INITRD};
    use verifier::tdx::eventlog::ovmf_direct_boot_load_options;
    let log = event_log(&SimEvent::direct_kernel_boot(), 4096);
    let m = tdx_event_log_reference(&log).unwrap();
    assert_eq!(
        m.reference,
        EventLogReference {
            kernel_sha384: None,
            kernel_authenticode_sha384: Some(vec![sha384(SIM_KERNEL)]),
            initrd_sha384: Some(vec![sha384(SIM_INITRD)]),
            cmdline: None,
            cmdline_sha384: Some(vec![sha384(&ovmf_direct_boot_load_options(
                SIM_DIRECT_CMDLINE,
                true
            ))]),
            secure_boot: Some(false),
        }
    );
    let bundle = bundle_with(&m.to_toml().unwrap());
    let now = datetime!(2026-01-15 12:00:00 UTC);
    let accepted = appraise(&claims_of_td_booted_with(&log), &bundle, now);
    assert!(accepted.is_accepted(), "{:?}", accepted.mismatches);
    // The grub-booted TD has a file-hash kernel but no direct-boot kernel: refused, named.
    let grub = event_log(&SimEvent::direct_grub_boot(), 4096);
    let refused = appraise(&claims_of_td_booted_with(&grub), &bundle, now);
    let fields: Vec<&str> = refused.mismatches.iter().map(|m| m.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "tdx.event_log.kernel_authenticode_sha384",
            "tdx.event_log.initrd_sha384",
            "tdx.event_log.cmdline_sha384",
            "tdx.event_log.secure_boot"
        ]
    );
}
