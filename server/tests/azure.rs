//! A simulated Azure SEV-SNP confidential VM against a running broker: its HCL report is minted
//! by the simulation PKI around an RSA attestation key generated here, and each TPM quote is a
//! TPMS_ATTEST built and signed with that key the way a vTPM's `TPM2_Quote` does (nonce in
//! extraData, SHA-256 PCRs 0-23). The guest gets its resource through the unchanged agent
//! library; a quote over another nonce, a PCR that is not what was quoted, and a policy naming
//! a PCR value the guest does not have are refused, the last naming the PCR. Real upstream
//! evidence (vectors `azure/`, skipped when absent) goes through the broker's own parsing and
//! verification byte for byte.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use common::{agent_error, Broker, Raw, RESOURCE, SECRET};
use keylatch_agent::evidence::EvidenceSource;
use keylatch_agent::AgentError;
use keylatch_wire::kbs_types::Tee;
use keylatch_wire::KeyKind;
use rand_core::OsRng;
use serde_json::Value;
use verifier::azure::{AkPublicKey, AzureEvidence, AzureHardware, TpmQuote, TpmsAttest};
use verifier::sim::azure::{mint_snp_hcl_report, SimHcl};
use verifier::sim::snp::SimSnpReport;

const ALLOW_AZURE_SIM: &str =
    "[[rules]]\nname = \"azure\"\ntees = [\"az-snp-vtpm\"]\nallow_simulated = true\n";

/// What the simulated guest does wrong, if anything.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Quotes over a nonce that is not the KBS binding.
    OtherNonce,
    /// Sends PCR 7 with a value other than the one quoted.
    EditedPcr,
}

/// An Azure SEV-SNP guest: sim HCL report (minted once) and an AK that signs quotes.
struct AzureGuest {
    ak: KeyPair,
    hcl_report: Vec<u8>,
    vcek: Vec<u8>,
    pcrs: [[u8; 32]; 24],
    fault: Mutex<Fault>,
}

impl AzureGuest {
    fn new(broker: &Broker) -> Self {
        let pki = keylatch_cli::load_sim_pki(&broker.sim_dir()).unwrap();
        let ak = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = ak.public_key();
        let ak_pub = AkPublicKey {
            modulus: public.modulus().big_endian_without_leading_zero().to_vec(),
            exponent: public.exponent().big_endian_without_leading_zero().to_vec(),
        };
        let (hcl_report, vcek) = mint_snp_hcl_report(
            &pki.amd,
            &SimSnpReport::default(),
            &SimHcl::new(ak_pub),
            &mut OsRng,
        )
        .unwrap();
        let mut pcrs = [[0u8; 32]; 24];
        for (i, p) in pcrs.iter_mut().enumerate() {
            p[0] = i as u8;
            p[31] = 0xA7;
        }
        Self { ak, hcl_report, vcek, pcrs, fault: Mutex::new(Fault::None) }
    }

    fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }
}

impl EvidenceSource for AzureGuest {
    fn tee(&self) -> Tee {
        Tee::AzSnpVtpm
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Value, AgentError> {
        let fault = *self.fault.lock().unwrap();
        // guest-components' Azure attester passes the 48-byte binding to TPM2_Quote.
        let mut nonce = report_data[..48].to_vec();
        if fault == Fault::OtherNonce {
            nonce[0] ^= 1;
        }
        let message = TpmsAttest::quote_sha256(&nonce, &self.pcrs).unwrap().to_bytes();
        let mut signature = vec![0u8; self.ak.public_modulus_len()];
        self.ak.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), &message, &mut signature).unwrap();
        let mut pcrs: Vec<Vec<u8>> = self.pcrs.iter().map(|p| p.to_vec()).collect();
        if fault == Fault::EditedPcr {
            pcrs[7][5] ^= 1;
        }
        let evidence = AzureEvidence {
            version: 1,
            tpm_quote: TpmQuote { signature, message, pcrs },
            hcl_report: self.hcl_report.clone(),
            hardware: AzureHardware::Snp { vcek: self.vcek.clone() },
        };
        Ok(serde_json::from_slice(&evidence.to_json().unwrap()).unwrap())
    }

    fn describe(&self) -> String {
        "Azure SEV-SNP guest (simulated vTPM)".into()
    }
}

#[test]
fn azure_simulated_snp_vtpm_guest_gets_its_resource_and_a_wrong_nonce_is_refused() {
    let broker = Broker::start(|c| c, ALLOW_AZURE_SIM);
    let guest = Arc::new(AzureGuest::new(&broker));
    let source: Arc<dyn EvidenceSource> = Arc::clone(&guest) as _;
    assert_eq!(broker.fetch(Arc::clone(&source), KeyKind::P256).unwrap(), SECRET);

    guest.set_fault(Fault::OtherNonce);
    let (status, body) =
        agent_error(&broker.fetch(Arc::clone(&source), KeyKind::P256).unwrap_err());
    assert_eq!(
        (status, body.error_type.as_str()),
        (401, "report-data-mismatch"),
        "{}",
        body.detail
    );
    assert!(body.detail.starts_with("report-data: TPM quote extraData"), "{}", body.detail);

    guest.set_fault(Fault::EditedPcr);
    let (status, body) =
        agent_error(&broker.fetch(Arc::clone(&source), KeyKind::P256).unwrap_err());
    assert_eq!((status, body.error_type.as_str()), (401, "evidence-invalid"), "{}", body.detail);
    assert!(body.detail.starts_with("pcrs: PCR digest mismatch"), "{}", body.detail);
}

#[test]
fn azure_policy_on_a_pcr_value_allows_the_guest_that_has_it_and_names_it_when_denying() {
    let broker = Broker::start(|c| c, ALLOW_AZURE_SIM);
    let guest = Arc::new(AzureGuest::new(&broker));
    let source: Arc<dyn EvidenceSource> = Arc::clone(&guest) as _;
    let pcr7 = hex::encode(guest.pcrs[7]);
    let rule = |value: &str| {
        format!(
            "{ALLOW_AZURE_SIM}[[rules.claims]]\nclaim = \"azure.pcrs.7\"\nequals = \"{value}\"\n\
             [[rules.claims]]\nclaim = \"azure.vm_configuration.secure_boot\"\nequals = true\n"
        )
    };
    broker.put_policy(RESOURCE, &rule(&pcr7));
    assert_eq!(broker.fetch(Arc::clone(&source), KeyKind::P256).unwrap(), SECRET);
    broker.put_policy(RESOURCE, &rule(&"00".repeat(32)));
    let (status, body) = agent_error(&broker.fetch(source, KeyKind::P256).unwrap_err());
    assert_eq!((status, body.error_type.as_str()), (403, "policy-denied"));
    assert!(body.detail.contains("azure.pcrs.7"), "{}", body.detail);
}

#[test]
fn azure_snp_vtpm_evidence_is_refused_as_simulated_unless_allowed() {
    let broker = Broker::start(
        |c| c.replace("allow_simulated = true", "allow_simulated = false"),
        ALLOW_AZURE_SIM,
    );
    let source: Arc<dyn EvidenceSource> = Arc::new(AzureGuest::new(&broker));
    let (status, body) = agent_error(&broker.fetch(source, KeyKind::P256).unwrap_err());
    assert_eq!((status, body.error_type.as_str()), (401, "simulated-not-allowed"));
}

#[test]
fn azure_upstream_evidence_json_is_accepted_byte_for_byte_by_the_broker() {
    let Some(dir) = keylatch_test_vectors::azure_dir() else { return };
    // Offline: no AMD CRL from KDS (revocation is tested with SNP evidence elsewhere).
    let broker =
        Broker::start(|c| format!("{c}\n[collateral]\namd_crl_check = false\n"), ALLOW_AZURE_SIM);
    // The cases whose quote nonce is a 48-byte KBS binding, as a KBS session produces it.
    for name in ["snp-milan-v2", "snp-genoa-v0"] {
        let case = dir.join(name);
        let expected: Value =
            serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
        let text = std::fs::read(case.join("evidence.json")).unwrap();
        // Parsed exactly as `tee-evidence.primary_evidence` of an attestation body is.
        let mut binding = [0u8; 64];
        binding[..48].copy_from_slice(&hex::decode(expected["nonce"].as_str().unwrap()).unwrap());
        let at = time::OffsetDateTime::parse(
            expected["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let verify = |binding: [u8; 64]| {
            let primary: Value = serde_json::from_slice(&text).unwrap();
            broker.rt.block_on(keylatch_broker::evidence::verify_at(
                &broker.state.broker.collateral,
                &broker.state.broker.verifiers,
                verifier::Tee::AzSnpVtpm,
                primary,
                binding,
                at,
            ))
        };
        let claims = verify(binding).unwrap_or_else(|e| panic!("{name}: {}", e.detail));
        assert_eq!(claims.tee, verifier::Tee::AzSnpVtpm);
        assert!(!claims.simulated);
        let az = claims.azure.unwrap();
        assert_eq!(serde_json::to_value(&az.pcrs).unwrap(), expected["claims"]["pcrs"]);
        // And the session's binding is what it is checked against: another one is refused.
        binding[0] ^= 1;
        let e = verify(binding).unwrap_err();
        assert_eq!(e.kind.type_id(), "report-data-mismatch", "{name}: {}", e.detail);
    }
    let _ = Raw::auth(&broker, "az-snp-vtpm");
}
