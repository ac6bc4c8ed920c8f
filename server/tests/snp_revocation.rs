//! SEV-SNP VLEK guests and AMD revocation against the real broker over HTTPS, with the agent
//! library as the guest: a simulated VLEK guest whose certificate table holds only its VLEK
//! gets its key; with a CRL of the simulation ARK in `amd_crl_dir` (tests named `amd_crl`), a
//! revoked VCEK, ASK or ASVK is refused at the chain step, a stale CRL or one with a flipped
//! byte is 503 `collateral-unavailable`, and a current CRL revoking nothing releases the key.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{agent_error, error_of, Broker, Raw, ALLOW_SIM, SECRET};
use keylatch_agent::evidence::EvidenceSource;
use keylatch_agent::AgentError;
use keylatch_wire::kbs_types::Tee;
use keylatch_wire::KeyKind;
use rand_core::OsRng;
use verifier::claims::{SnpProduct, SnpSigningKey};
use verifier::sim::snp::SimSnpReport;
use verifier::sim::SimPki;

/// A simulated SNP guest signing with its VCEK or VLEK; `cert_chain` carries that one
/// certificate, as a VLEK guest's extended report does.
struct SimSnpGuest {
    pki: SimPki,
    kind: SnpSigningKey,
}

impl EvidenceSource for SimSnpGuest {
    fn tee(&self) -> Tee {
        Tee::Snp
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<serde_json::Value, AgentError> {
        let spec = SimSnpReport {
            report_data: *report_data,
            signing_key: self.kind,
            mask_chip_id: self.kind == SnpSigningKey::Vlek,
            ..SimSnpReport::for_product(SnpProduct::Genoa)
        };
        let (report, signer) = self.pki.amd.mint(&spec, &mut OsRng).unwrap();
        let json = verifier::snp::coco_evidence_json(&report, Some((self.kind, &signer))).unwrap();
        Ok(serde_json::from_slice(&json).unwrap())
    }

    fn describe(&self) -> String {
        format!("simulated SNP guest ({:?})", self.kind)
    }
}

fn sim_pki(dir: &Path) -> SimPki {
    SimPki::from_files(|name| std::fs::read(dir.join("sim-pki").join(name)).ok()).unwrap()
}

fn guest(broker: &Broker, kind: SnpSigningKey) -> Arc<SimSnpGuest> {
    Arc::new(SimSnpGuest { pki: sim_pki(broker.dir.path()), kind })
}

fn with_crl_dir(mut config: String) -> String {
    config.push_str("\n[collateral]\nfetch = false\namd_crl_dir = \"amd-crls\"\n");
    config
}

const HOUR: i64 = 3600;

/// A broker whose `amd_crl_dir` holds, for Genoa VCEK and VLEK chains, a CRL made by `make`
/// from the broker's own simulation PKI.
fn broker_with_crl(make: impl FnOnce(&SimPki, i64) -> Vec<u8>) -> Broker {
    Broker::start_with(with_crl_dir, ALLOW_SIM, |dir| {
        let pki = sim_pki(dir);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let der = make(&pki, now);
        let crls = dir.join("amd-crls");
        std::fs::create_dir_all(&crls).unwrap();
        for kind in ["vcek", "vlek"] {
            std::fs::write(crls.join(format!("{kind}-Genoa.crl")), &der).unwrap();
        }
    })
}

#[test]
fn vlek_guest_whose_cert_table_holds_only_its_vlek_gets_its_key() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let got = broker.fetch(guest(&broker, SnpSigningKey::Vlek), KeyKind::P256).unwrap();
    assert_eq!(got, SECRET);
}

#[test]
fn amd_crl_current_and_revoking_nothing_releases_to_vcek_and_vlek_guests() {
    let broker = broker_with_crl(|pki, now| {
        pki.amd.crl(&[&[0x7E, 0x57]], (now - HOUR, now + 24 * HOUR), &mut OsRng).unwrap()
    });
    for kind in [SnpSigningKey::Vcek, SnpSigningKey::Vlek] {
        assert_eq!(broker.fetch(guest(&broker, kind), KeyKind::P256).unwrap(), SECRET, "{kind:?}");
    }
}

/// The one reply to an attestation (the agent would retry a 503 until its deadline).
fn attest_reply(broker: &Broker, kind: SnpSigningKey) -> keylatch_wire::ErrorBody {
    let raw = Raw::auth(broker, "snp");
    let source = guest(broker, kind);
    error_of(&raw.attest(&raw.body(source.as_ref(), &raw.nonce, &raw.nonce, |_| {})), 503)
}

fn refusal(broker: &Broker, kind: SnpSigningKey) -> (u16, keylatch_wire::ErrorBody) {
    let err = broker.fetch(guest(broker, kind), KeyKind::P256).unwrap_err();
    agent_error(&err)
}

#[test]
fn amd_crl_revoked_vcek_is_refused_at_the_chain_step() {
    let broker = broker_with_crl(|pki, now| {
        pki.amd.crl(&[&[0]], (now - HOUR, now + 24 * HOUR), &mut OsRng).unwrap()
    });
    let (status, body) = refusal(&broker, SnpSigningKey::Vcek);
    assert_eq!((status, body.error_type.as_str()), (401, "evidence-invalid"), "{}", body.detail);
    assert!(
        body.detail
            .starts_with("chain: VCEK certificate serial 00 is revoked by the AMD Genoa CRL of "),
        "{}",
        body.detail
    );
}

#[test]
fn amd_crl_revoked_ask_and_asvk_are_refused_at_the_chain_step() {
    // The sim ASK has serial 02 and the ASVK 03 (see `SimAmdPki::crl`).
    let broker = broker_with_crl(|pki, now| {
        pki.amd.crl(&[&[2], &[3]], (now - HOUR, now + 24 * HOUR), &mut OsRng).unwrap()
    });
    for (kind, what) in [
        (SnpSigningKey::Vcek, "ASK certificate serial 02"),
        (SnpSigningKey::Vlek, "ASVK certificate serial 03"),
    ] {
        let (status, body) = refusal(&broker, kind);
        assert_eq!(
            (status, body.error_type.as_str()),
            (401, "evidence-invalid"),
            "{}",
            body.detail
        );
        assert!(
            body.detail.starts_with(&format!("chain: {what} is revoked by the AMD Genoa CRL of ")),
            "{}",
            body.detail
        );
    }
}

#[test]
fn amd_crl_past_next_update_plus_grace_is_collateral_unavailable() {
    // Default grace is a day: nextUpdate two days ago is past it.
    let broker = broker_with_crl(|pki, now| {
        pki.amd.crl(&[], (now - 72 * HOUR, now - 48 * HOUR), &mut OsRng).unwrap()
    });
    let body = attest_reply(&broker, SnpSigningKey::Vcek);
    assert_eq!(body.error_type, "collateral-unavailable");
    assert!(body.detail.starts_with("collateral: AMD Genoa CRL expired at "), "{}", body.detail);
}

#[test]
fn amd_crl_with_a_flipped_signature_byte_is_collateral_unavailable() {
    let broker = broker_with_crl(|pki, now| {
        let mut der = pki.amd.crl(&[], (now - HOUR, now + 24 * HOUR), &mut OsRng).unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        der
    });
    let body = attest_reply(&broker, SnpSigningKey::Vcek);
    assert_eq!(body.error_type, "collateral-unavailable");
    assert_eq!(body.detail, "collateral: AMD CRL signature does not verify");
}
