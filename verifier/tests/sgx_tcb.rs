//! A real SGX quote (dcap-qvl's sample, version 3) with its Intel PCS collateral, verified at the
//! instant its expected.json names, under the production Intel root: the SGX TCB level matching
//! and the QE level's advisories give exactly what dcap-qvl reports. The case lives in the extra
//! vectors (`sgx/dcap-qvl-sample`); without it each test prints that it skipped. Every test
//! name carries `sgx` and `tcb`.

// reason: test code; a panic here is a test failure with its location.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use proptest::prelude::*;

use verifier::claims::TcbStatus;
use verifier::sgx::{parse_sgx_quote, SgxVerifier};
use verifier::tdx::{TdxCollateral, TdxTrustAnchors, TdxVerifier};
use verifier::{Reason, Step};

struct Case {
    quote: Vec<u8>,
    collateral_json: serde_json::Value,
    collateral: TdxCollateral,
    expected: serde_json::Value,
    at: time::OffsetDateTime,
}

fn case() -> Option<Case> {
    let root = keylatch_test_vectors::dir()?;
    let dir: PathBuf = root.join("sgx/dcap-qvl-sample");
    if !dir.join("expected.json").is_file() {
        println!("skipped: vector case sgx/dcap-qvl-sample not found under {}", root.display());
        return None;
    }
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let expected: serde_json::Value = serde_json::from_slice(&read("expected.json")).unwrap();
    let raw = read(expected["collateral"].as_str().unwrap());
    let at = time::OffsetDateTime::parse(
        expected["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    Some(Case {
        quote: read(expected["evidence"].as_str().unwrap()),
        collateral_json: serde_json::from_slice(&raw).unwrap(),
        collateral: TdxCollateral::from_json(&raw).unwrap(),
        expected,
        at,
    })
}

fn production() -> SgxVerifier {
    SgxVerifier::new(TdxTrustAnchors::production())
}

#[test]
fn sgx_tcb_real_sample_is_configuration_and_sw_hardening_needed_with_its_advisories() {
    let Some(c) = case() else { return };
    let claims = production().verify(&c.quote, &c.collateral, None, c.at).unwrap();
    let s = &claims.sgx;
    assert_eq!(s.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(serde_json::to_value(s.tcb_status).unwrap(), c.expected["tcb_status"]);
    assert_eq!(s.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(serde_json::to_value(&s.advisory_ids).unwrap(), c.expected["advisory_ids"]);
    assert_eq!(s.tcb_date, c.expected["tcb_date"].as_str().unwrap());
    assert_eq!(
        u64::from(s.tcb_evaluation_data_number),
        c.expected["tcb_evaluation_data_number"].as_u64().unwrap()
    );
    // What the collateral itself says: its evaluation number, and the tcbDate of the one level
    // with the verdict's status and advisories (the QE's level is UpToDate without advisories,
    // so the platform level gives both).
    let info: serde_json::Value =
        serde_json::from_str(c.collateral_json["tcb_info"].as_str().unwrap()).unwrap();
    assert_eq!(u64::from(s.tcb_evaluation_data_number), info["tcbEvaluationDataNumber"]);
    let levels: Vec<_> = info["tcbLevels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            let mut ids: Vec<&str> =
                l["advisoryIDs"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            ids.sort_unstable();
            l["tcbStatus"] == c.expected["tcb_status"] && ids == s.advisory_ids
        })
        .collect();
    assert_eq!(levels.len(), 1);
    assert_eq!(s.tcb_date, levels[0]["tcbDate"].as_str().unwrap());
    assert_eq!(s.fmspc.to_hex(), info["fmspc"].as_str().unwrap().to_lowercase());
    assert_eq!(s.quote_version, 3);
    assert!(!claims.simulated);
    // The signed report body, as the quote carries it (bytes 48..432).
    let parsed = parse_sgx_quote(&c.quote).unwrap();
    assert_eq!(claims.report_data.0, parsed.report.report_data);
    assert_eq!(s.mr_enclave.0, parsed.report.mr_enclave);
    assert_eq!(s.mr_enclave.0[..], c.quote[48 + 64..48 + 96]);
    assert_eq!(s.mr_signer.0[..], c.quote[48 + 128..48 + 160]);
    assert_eq!(claims.report_data.0[..], c.quote[48 + 320..48 + 384]);
}

#[test]
fn sgx_tcb_real_sample_verifies_again_from_the_warm_cache_and_checks_report_data() {
    let Some(c) = case() else { return };
    let v = production();
    let first = v.verify(&c.quote, &c.collateral, None, c.at).unwrap();
    let again = v.verify(&c.quote, &c.collateral, Some(&first.report_data.0), c.at).unwrap();
    assert_eq!(first, again);
    let e = v.verify(&c.quote, &c.collateral, Some(&[0; 64]), c.at).unwrap_err();
    assert_eq!(e.step, Step::ReportData);
}

#[test]
fn sgx_tcb_collateral_past_its_next_update_fails_at_the_collateral_step() {
    let Some(c) = case() else { return };
    let late = c.at + time::Duration::days(30);
    let e = production().verify(&c.quote, &c.collateral, None, late).unwrap_err();
    assert_eq!(e.step, Step::Collateral);
    assert!(matches!(e.reason, Reason::Expired { .. }), "{e}");
}

#[test]
fn sgx_tcb_sgx_collateral_is_refused_for_a_tdx_quote_and_the_sgx_quote_by_the_tdx_parser() {
    let Some(c) = case() else { return };
    let Some(tdx) = keylatch_test_vectors::dir().map(|d| d.join("tdx/v4-dcap-qvl/quote.bin"))
    else {
        return;
    };
    let tdx_quote = std::fs::read(tdx).unwrap();
    let e = TdxVerifier::new(TdxTrustAnchors::production())
        .verify(&tdx_quote, &c.collateral, None, c.at)
        .unwrap_err();
    assert_eq!(e.to_string(), "collateral: invalid TCB info id: not for TDX quotes");
    let e = verifier::tdx::parse_quote(&c.quote).unwrap_err();
    assert_eq!(e.to_string(), "parse: unsupported TDX quote version 3");
    // And the TDX quote is not an SGX one.
    let e = parse_sgx_quote(&tdx_quote).unwrap_err();
    assert_eq!(e.to_string(), "parse: unsupported SGX quote version 4");
}

#[test]
fn sgx_tcb_every_truncated_prefix_of_the_real_quote_fails_to_parse() {
    let Some(c) = case() else { return };
    let parsed = parse_sgx_quote(&c.quote).unwrap();
    let end = c.quote.len() - c.quote.iter().rev().take_while(|b| **b == 0).count();
    for n in 0..end {
        let e = parse_sgx_quote(&c.quote[..n]).unwrap_err();
        assert_eq!(e.step, Step::Parse, "prefix {n}");
    }
    // A flipped bit in the signed body fails the quote signature, never parses differently
    // into an accepted quote.
    let mut q = c.quote.clone();
    q[48 + 64] ^= 1;
    assert_eq!(parse_sgx_quote(&q).unwrap().signing, parsed.signing);
    let e = production().verify(&q, &c.collateral, None, c.at).unwrap_err();
    assert_eq!(e.to_string(), "signature: quote signature does not verify");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Parsing never panics on the real quote with bytes changed and its tail cut (the sample
    /// being absent, on arbitrary bytes with an SGX v3 header).
    #[test]
    fn sgx_tcb_quote_parser_never_panics_on_mutated_quotes(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        noise in proptest::collection::vec(any::<u8>(), 0..5000),
    ) {
        let mut q = case().map_or_else(|| [&[3, 0, 2, 0][..], &noise].concat(), |c| c.quote);
        for (i, b) in edits {
            let n = q.len();
            q[i % n] = b;
        }
        q.truncate(q.len() - cut % q.len().min(128));
        let _ = parse_sgx_quote(&q);
    }
}
