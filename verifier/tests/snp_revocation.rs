//! AMD revocation (every test name carries `amd_crl`): CRLs issued by the simulation ARK
//! as KDS issues them, applied by `verify_with_revocation` - a revoked VCEK, ASK, VLEK or ASVK
//! is refused at the chain step naming the CRL, a CRL past nextUpdate + grace or not yet valid
//! is a collateral failure, a CRL with a flipped byte or signed by another ARK of the same name
//! fails, a missing CRL fails when required, and a current CRL revoking nothing of the chain
//! passes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod snp_common;

use std::sync::Arc;

use rand_core::OsRng;
use snp_common::{sim_now, sim_pki};
use verifier::claims::{SnpProduct, SnpSigningKey};
use verifier::sim::snp::{SimAmdPki, SimSnpReport};
use verifier::snp::{check_crl, SnpEndorsements, SnpRevocation, SnpVerifier};
use verifier::x509::Certificate;
use verifier::{Reason, Step, VerifyError};

const DAY: i64 = 86_400;

fn now() -> i64 {
    sim_now().unix_timestamp()
}

/// A report of `kind` minted by the shared sim PKI, and its endorsements.
fn minted(kind: SnpSigningKey) -> (Vec<u8>, SnpEndorsements) {
    let mut spec = SimSnpReport::for_product(SnpProduct::Milan);
    spec.signing_key = kind;
    spec.mask_chip_id = kind == SnpSigningKey::Vlek;
    let (report, signer) = sim_pki().mint(&spec, &mut OsRng).unwrap();
    (report, SnpEndorsements::new(signer))
}

/// A CRL of the shared sim ARK, current at `now()` (issued a day ago, next update in a week).
fn current_crl(revoked: &[&[u8]]) -> Arc<[u8]> {
    sim_pki().crl(revoked, (now() - DAY, now() + 7 * DAY), &mut OsRng).unwrap().into()
}

fn verify(kind: SnpSigningKey, revocation: &SnpRevocation) -> Result<(), VerifyError> {
    let (report, e) = minted(kind);
    let v = SnpVerifier::new(sim_pki().anchors().unwrap());
    v.verify_with_revocation(&report, &e, None, sim_now(), revocation).map(|_| ())
}

fn serial_of(der: &[u8]) -> Vec<u8> {
    Certificate::from_der("test certificate", der).unwrap().serial().to_vec()
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn amd_crl_current_and_revoking_nothing_of_the_chain_passes() {
    let unrelated: &[u8] = &[0x7E, 0x57];
    for kind in [SnpSigningKey::Vcek, SnpSigningKey::Vlek] {
        for crls in [vec![current_crl(&[])], vec![current_crl(&[unrelated])]] {
            verify(kind, &SnpRevocation::required(crls, 0)).unwrap();
        }
    }
    // The plain `verify` does not consult CRLs at all.
    let (report, e) = minted(SnpSigningKey::Vcek);
    let v = SnpVerifier::new(sim_pki().anchors().unwrap());
    assert!(v.verify(&report, &e, None, sim_now()).is_ok());
}

#[test]
fn amd_crl_revoked_ask_and_asvk_are_refused_at_the_chain_step() {
    let pki = sim_pki();
    for (kind, intermediate, what) in [
        (SnpSigningKey::Vcek, pki.ask_der(), "ASK certificate"),
        (SnpSigningKey::Vlek, pki.asvk_der(), "ASVK certificate"),
    ] {
        let serial = serial_of(intermediate);
        let crl = current_crl(&[&serial]);
        let err = verify(kind, &SnpRevocation::required(vec![crl], 0)).unwrap_err();
        assert_eq!(
            err,
            VerifyError::new(
                Step::Chain,
                Reason::RevokedBy {
                    what,
                    serial: hex::encode(&serial),
                    crl: "AMD Milan CRL",
                    this_update: now() - DAY,
                }
            )
        );
        assert_eq!(
            err.to_string(),
            format!(
                "chain: {what} serial {} is revoked by the AMD Milan CRL of {}",
                hex::encode(&serial),
                date(now() - DAY)
            )
        );
    }
}

#[test]
fn amd_crl_revoked_vcek_and_vlek_are_refused_at_the_chain_step() {
    for (kind, what) in
        [(SnpSigningKey::Vcek, "VCEK certificate"), (SnpSigningKey::Vlek, "VLEK certificate")]
    {
        let (_, e) = minted(kind);
        let serial = serial_of(&e.signer);
        assert_eq!(serial, [0], "AMD's signer certificates carry serial number 0");
        let err =
            verify(kind, &SnpRevocation::required(vec![current_crl(&[&serial])], 0)).unwrap_err();
        assert_eq!(err.step, Step::Chain);
        assert!(
            matches!(err.reason, Reason::RevokedBy { what: w, .. } if w == what),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn amd_crl_past_next_update_plus_grace_is_a_collateral_failure_and_within_grace_passes() {
    let next_update = now() - 10;
    let crl: Arc<[u8]> =
        sim_pki().crl(&[], (now() - 7 * DAY, next_update), &mut OsRng).unwrap().into();
    let err =
        verify(SnpSigningKey::Vcek, &SnpRevocation::required(vec![crl.clone()], 9)).unwrap_err();
    assert_eq!(
        err,
        VerifyError::new(
            Step::Collateral,
            Reason::Expired { what: "AMD Milan CRL", not_after: next_update, now: now() }
        )
    );
    // Ten seconds past nextUpdate is inside a grace of ten.
    verify(SnpSigningKey::Vcek, &SnpRevocation::required(vec![crl.clone()], 10)).unwrap();
    // A stale CRL is never skipped, even where a CRL is not required.
    let err = verify(SnpSigningKey::Vcek, &SnpRevocation::when_given(vec![crl], 0)).unwrap_err();
    assert_eq!(err.step, Step::Collateral);
}

#[test]
fn amd_crl_not_yet_valid_is_a_collateral_failure() {
    let crl: Arc<[u8]> =
        sim_pki().crl(&[], (now() + 60, now() + 7 * DAY), &mut OsRng).unwrap().into();
    let err = verify(SnpSigningKey::Vcek, &SnpRevocation::required(vec![crl], 0)).unwrap_err();
    assert!(matches!(err.reason, Reason::NotYetValid { what: "AMD Milan CRL", .. }), "{err}");
    assert_eq!(err.step, Step::Collateral);
}

#[test]
fn amd_crl_with_a_flipped_byte_or_from_a_foreign_ark_fails_its_signature() {
    let good = current_crl(&[]);
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1; // inside the signature
                        // Another PKI with the same names: its CRL names our ARK but is signed by another key.
    let foreign = SimAmdPki::generate(&mut OsRng).unwrap();
    let foreign_crl = foreign.crl(&[], (now() - DAY, now() + 7 * DAY), &mut OsRng).unwrap();
    for bad in [flipped, foreign_crl] {
        let err =
            verify(SnpSigningKey::Vcek, &SnpRevocation::required(vec![bad.into()], 0)).unwrap_err();
        assert_eq!(
            err,
            VerifyError::new(Step::Collateral, Reason::BadSignature { what: "AMD CRL" })
        );
    }
}

#[test]
fn amd_crl_missing_when_required_fails_and_garbage_is_malformed() {
    let err = verify(SnpSigningKey::Vcek, &SnpRevocation::required(Vec::new(), 0)).unwrap_err();
    assert_eq!(err, VerifyError::new(Step::Collateral, Reason::Missing { what: "AMD Milan CRL" }));
    verify(SnpSigningKey::Vcek, &SnpRevocation::when_given(Vec::new(), 0)).unwrap();
    let garbage: Arc<[u8]> = vec![0x30, 0x03, 0x02, 0x01].into();
    let err =
        verify(SnpSigningKey::Vcek, &SnpRevocation::when_given(vec![garbage], 0)).unwrap_err();
    assert_eq!(err, VerifyError::new(Step::Collateral, Reason::Malformed { what: "AMD CRL" }));
}

#[test]
fn amd_crl_check_crl_names_the_product_of_its_ark() {
    let anchors = sim_pki().anchors().unwrap();
    // The sim ARK stands for every product; the first is named.
    assert_eq!(check_crl(&anchors, &current_crl(&[])).unwrap(), Some(SnpProduct::Milan));
    // Under AMD's anchors the sim CRL is issued by no trusted ARK: it applies to nothing.
    let production = verifier::snp::SnpTrustAnchors::production().unwrap();
    assert_eq!(check_crl(&production, &current_crl(&[])).unwrap(), None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The fuzz target's entry point (`fuzz/fuzz_targets/amd_crl.rs`) and `check_crl` on
    /// mutated and truncated sim CRLs: no panic, whatever the bytes.
    #[test]
    fn amd_crl_parser_never_panics_on_mutated_crls(
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
        cut in proptest::prelude::any::<usize>(),
    ) {
        static CRL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let good = CRL.get_or_init(|| current_crl(&[&[2], &[0x7E]]).to_vec());
        let mut bytes = good.clone();
        for (at, value) in edits {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        verifier::fuzzing::amd_crl(&bytes);
        let _ = check_crl(&sim_pki().anchors().unwrap(), &bytes);
    }
}
