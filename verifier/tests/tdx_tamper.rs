//! Every malformed or tampered variant of the real quotes and collateral fails, at the step that
//! owns the fault; parsing never panics.

// reason: test code; a panic here is a test failure with its location.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use rand_core::OsRng;
use time::OffsetDateTime;
use verifier::sim::tdx::{SimIntelPki, SimTdxQuote};
use verifier::tdx::{parse_quote, TdxCollateral, TdxTrustAnchors, TdxVerifier};
use verifier::{Reason, Step};

struct Case {
    quote: Vec<u8>,
    collateral_json: Vec<u8>,
    collateral: TdxCollateral,
    at: OffsetDateTime,
}

fn case(name: &str) -> Option<Case> {
    let dir = keylatch_test_vectors::dir()?.join("tdx").join(name);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let at = OffsetDateTime::parse(
        expected["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let collateral_json = std::fs::read(dir.join("collateral.json")).unwrap();
    Some(Case {
        quote: std::fs::read(dir.join("quote.bin")).unwrap(),
        collateral: TdxCollateral::from_json(&collateral_json).unwrap(),
        collateral_json,
        at,
    })
}

const CASES: [&str; 2] = ["v4-dcap-qvl", "v5-dcap-qvl-no-tcb-level"];

fn production() -> TdxVerifier {
    TdxVerifier::new(TdxTrustAnchors::production())
}

#[test]
fn every_truncated_prefix_of_each_real_quote_fails_to_parse() {
    for name in CASES {
        let Some(c) = case(name) else { return };
        // The v4 quote ends in 70 bytes of zero padding; cutting into the padding still leaves
        // a complete quote, so the prefixes that must fail are those short of the signature data.
        let end = if name == "v4-dcap-qvl" { 5006 - 70 } else { c.quote.len() };
        for n in 0..end {
            let e = parse_quote(&c.quote[..n]).unwrap_err();
            assert_eq!(e.step, Step::Parse, "{name} prefix {n}");
        }
        assert!(parse_quote(&c.quote[..end]).is_ok(), "{name} full quote");
    }
}

#[test]
fn v4_quote_carries_zero_padding_after_its_signature_data() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    assert!(c.quote[5006 - 70..].iter().all(|b| *b == 0));
    assert_eq!(u32::from_le_bytes(c.quote[632..636].try_into().unwrap()), 4300);
    assert_eq!(636 + 4300, 5006 - 70);
}

#[test]
fn non_zero_trailing_byte_fails_to_parse_and_zero_padding_is_accepted() {
    for name in CASES {
        let Some(c) = case(name) else { return };
        let mut q = c.quote.clone();
        q.push(0x01);
        let e = parse_quote(&q).unwrap_err();
        assert_eq!(e.step, Step::Parse);
        assert!(matches!(e.reason, Reason::TrailingData { extra: 1, .. }), "{e}");
        let mut q = c.quote.clone();
        q.extend_from_slice(&[0; 16]);
        assert_eq!(parse_quote(&q).unwrap(), parse_quote(&c.quote).unwrap());
    }
    let Some(c) = case("v4-dcap-qvl") else { return };
    let mut q = c.quote.clone();
    q.push(0);
    production().verify(&q, &c.collateral, None, c.at).unwrap();
}

#[test]
fn single_bit_flips_in_header_and_body_fail() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let v = production();
    v.verify(&c.quote, &c.collateral, None, c.at).unwrap();
    for i in 0..48 + 584 {
        let mut q = c.quote.clone();
        q[i] ^= 1 << (i % 8);
        let e = v.verify(&q, &c.collateral, None, c.at).unwrap_err();
        assert!(
            matches!(e.step, Step::Parse | Step::Signature | Step::QeIdentity),
            "byte {i}: {e}"
        );
    }
}

#[test]
fn single_bit_flips_in_v5_header_and_body_fail() {
    let Some(c) = case("v5-dcap-qvl-no-tcb-level") else { return };
    let v = production();
    for i in 0..48 + 6 + 648 {
        let mut q = c.quote.clone();
        q[i] ^= 1 << (i % 8);
        let e = v.verify(&q, &c.collateral, None, c.at).unwrap_err();
        // The unmodified quote fails at TCB; every flip must fail earlier.
        assert!(
            matches!(e.step, Step::Parse | Step::Signature | Step::QeIdentity),
            "byte {i}: {e}"
        );
    }
}

fn tampered(json: &[u8], field: &str, edit: impl Fn(&str) -> String) -> TdxCollateral {
    let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let new = edit(v[field].as_str().unwrap());
    v[field] = new.into();
    TdxCollateral::from_json(v.to_string().as_bytes()).unwrap()
}

#[test]
fn one_changed_byte_of_tcb_info_fails_collateral() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let t = tampered(&c.collateral_json, "tcb_info", |s| {
        s.replacen("\"pcesvn\":11", "\"pcesvn\":10", 1)
    });
    let e = production().verify(&c.quote, &t, None, c.at).unwrap_err();
    assert_eq!(e.step, Step::Collateral);
    assert_eq!(e.reason, Reason::BadSignature { what: "TCB info" });
}

#[test]
fn tampered_signature_and_crl_fail_collateral() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let flip_hex = |s: &str| {
        let mut b = hex::decode(s).unwrap();
        let n = b.len() - 5;
        b[n] ^= 1;
        hex::encode(b)
    };
    for field in ["tcb_info_signature", "qe_identity_signature", "root_ca_crl", "pck_crl"] {
        let t = tampered(&c.collateral_json, field, flip_hex);
        let e = production().verify(&c.quote, &t, None, c.at).unwrap_err();
        assert_eq!(e.step, Step::Collateral, "{field}: {e}");
    }
}

#[test]
fn expired_and_not_yet_valid_collateral_fail_collateral() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let v = production();
    // TCB info nextUpdate is 2025-07-19T10:16:03Z.
    let late = time::macros::datetime!(2025-07-19 10:16:04 UTC);
    let e = v.verify(&c.quote, &c.collateral, None, late).unwrap_err();
    assert_eq!(e.step, Step::Collateral);
    assert!(matches!(e.reason, Reason::Expired { .. }), "{e}");
    let early = time::macros::datetime!(2025-06-19 10:00:00 UTC);
    let e = v.verify(&c.quote, &c.collateral, None, early).unwrap_err();
    assert_eq!(e.step, Step::Collateral);
    assert!(matches!(e.reason, Reason::NotYetValid { .. }), "{e}");
}

#[test]
fn real_quote_under_sim_anchors_and_sim_collateral_fails_at_chain() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let pki = SimIntelPki::generate(&mut OsRng).unwrap();
    let collateral =
        pki.collateral(c.at - time::Duration::days(1), c.at + time::Duration::days(1)).unwrap();
    let v = TdxVerifier::new(pki.anchors());
    let e = v.verify(&c.quote, &collateral, None, c.at).unwrap_err();
    assert_eq!(e.step, Step::Chain);
    assert!(matches!(e.reason, Reason::UntrustedRoot { .. }), "{e}");
    // And the real collateral is refused by sim anchors outright.
    let e = v.verify(&c.quote, &c.collateral, None, c.at).unwrap_err();
    assert_eq!(e.step, Step::Collateral);
    assert!(matches!(e.reason, Reason::UntrustedRoot { .. }), "{e}");
}

#[test]
fn sim_quote_with_real_collateral_under_production_anchors_fails_at_chain() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let pki = SimIntelPki::generate(&mut OsRng).unwrap();
    let quote = pki.mint(&SimTdxQuote::default(), &mut OsRng).unwrap();
    let e = production().verify(&quote, &c.collateral, None, c.at).unwrap_err();
    assert_eq!(e.step, Step::Chain);
    assert!(matches!(e.reason, Reason::UntrustedRoot { .. }), "{e}");
}

#[test]
fn report_data_mismatch_on_real_quote_fails_at_report_data() {
    let Some(c) = case("v4-dcap-qvl") else { return };
    let q = parse_quote(&c.quote).unwrap();
    let v = production();
    v.verify(&c.quote, &c.collateral, Some(&q.report.report_data), c.at).unwrap();
    let mut wrong = q.report.report_data;
    wrong[63] ^= 1;
    let e = v.verify(&c.quote, &c.collateral, Some(&wrong), c.at).unwrap_err();
    assert_eq!(e.step, Step::ReportData);
}

#[test]
fn garbage_collateral_json_fails_collateral() {
    for bad in [&b""[..], b"{}", b"[]", b"{\"tcb_info\": 1}", b"\xff\xfe"] {
        assert_eq!(TdxCollateral::from_json(bad).unwrap_err().step, Step::Collateral);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_quote_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let _ = parse_quote(&bytes);
    }

    #[test]
    fn parse_quote_never_panics_on_mutated_valid_quotes(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let pki = sim_quote();
        let mut q = pki.clone();
        for (i, b) in edits {
            let n = q.len();
            q[i % n] = b;
        }
        q.truncate(q.len() - cut % 64);
        let _ = parse_quote(&q);
    }

    #[test]
    fn collateral_from_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = TdxCollateral::from_json(&bytes);
    }

    #[test]
    fn collateral_from_json_never_panics_on_json_shaped_text(s in "\\{(\"[a-z_]{1,24}\": ?\"[0-9a-fA-F-]{0,40}\",? ?){0,12}\\}") {
        let _ = TdxCollateral::from_json(s.as_bytes());
    }
}

fn sim_quote() -> Vec<u8> {
    use std::sync::OnceLock;
    static QUOTE: OnceLock<Vec<u8>> = OnceLock::new();
    QUOTE
        .get_or_init(|| {
            let pki = SimIntelPki::generate(&mut OsRng).unwrap();
            pki.mint(
                &SimTdxQuote {
                    version: 5,
                    body: verifier::claims::TdxBody::Tdx15,
                    ..SimTdxQuote::default()
                },
                &mut OsRng,
            )
            .unwrap()
        })
        .clone()
}
