//! End to end against the real broker over HTTPS with the guest agent library as the client:
//! simulated SNP and TDX guests with P-256, P-384 and RSA-3072 tee-pubkeys receive exactly the
//! stored bytes; cookie-only and bearer-only resource requests work; a JWE from the broker
//! decrypts with Python's jwcrypto.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{Broker, Raw, ALLOW_SIM, RESOURCE, SECRET};
use keylatch_agent::evidence::SimTee;
use keylatch_test_vectors::jwcrypto;
use keylatch_wire::{decrypt, Jwe, KeyKind, TeeKeyPair};
use serde_json::Value;

#[test]
fn releases_stored_bytes_to_simulated_snp_and_tdx_guests_for_every_key_type() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    for tee in [SimTee::Snp, SimTee::Tdx] {
        for key in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa3072] {
            let got = broker
                .fetch(broker.source(tee), key)
                .unwrap_or_else(|e| panic!("{tee:?} {key:?}: {e}"));
            assert_eq!(got, SECRET, "{tee:?} {key:?}");
        }
    }
}

#[test]
fn token_carries_claims_appraisals_and_key_and_works_by_cookie_or_bearer() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let source = broker.source(SimTee::Tdx);
    let raw = Raw::auth(&broker, "tdx");
    let token = raw.attest_ok(source.as_ref());
    let payload: Value = serde_json::from_slice(
        &keylatch_wire::b64::decode("payload", token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(payload["iss"], "keylatch");
    assert_eq!(payload["evidence"]["tee"], "tdx");
    assert_eq!(payload["evidence"]["simulated"], true);
    assert_eq!(payload["tee-pubkey"], raw.key.public_jwk().to_json());
    assert_eq!(payload["appraisals"], serde_json::json!([]));
    assert_eq!(payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(), 300);

    for (cookie, bearer) in [(true, None), (false, Some(token.as_str()))] {
        let reply = raw.resource(RESOURCE, cookie, bearer);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let jwe = Jwe::from_json(&reply.body).unwrap();
        assert_eq!(decrypt(&raw.key, &jwe).unwrap().as_slice(), SECRET);
    }
}

#[test]
fn jwcrypto_decrypts_a_broker_jwe_for_an_rsa_tee_pubkey() {
    if !jwcrypto::available() {
        return;
    }
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let source = broker.source(SimTee::Snp);
    let mut raw = Raw::auth(&broker, "snp");
    raw.key = TeeKeyPair::generate(KeyKind::Rsa3072).unwrap();
    raw.attest_ok(source.as_ref());
    let reply = raw.resource(RESOURCE, true, None);
    assert_eq!(reply.status, 200);
    let jwe: Value = serde_json::from_slice(&reply.body).unwrap();
    let pem = raw.key.danger_to_pkcs8_pem().unwrap();
    let input = serde_json::json!({"pem": pem.as_str(), "jwe": jwe}).to_string();
    let out = jwcrypto::python(jwcrypto::DECRYPT, &input).unwrap();
    assert_eq!(out.trim(), hex::encode(SECRET));
}

/// A policy that names what the TD's event log measured: the sim kernel and command line.
fn event_log_policy() -> String {
    use sha2::Digest as _;
    let kernel = hex::encode(sha2::Sha384::digest(verifier::sim::ccel::SIM_KERNEL));
    format!(
        "[[rules]]\nname = \"booted\"\ntees = [\"tdx\"]\nallow_simulated = true\n\
         [[rules.claims]]\nclaim = \"tdx.event_log.kernel_sha384\"\nequals = \"{kernel}\"\n\
         [[rules.claims]]\nclaim = \"tdx.event_log.cmdline\"\nequals = \"{}\"\n\
         [[rules.claims]]\nclaim = \"tdx.event_log.secure_boot\"\nequals = true\n",
        verifier::sim::ccel::SIM_CMDLINE
    )
}

#[test]
fn ccel_simulated_tdx_guest_with_event_log_releases_and_a_tampered_log_is_refused_naming_the_rtmr()
{
    use keylatch_agent::evidence::sim::SimSource;
    use verifier::sim::ccel::{event_log, SimEvent};
    let broker = Broker::start(|c| c, &event_log_policy());
    let log = event_log(&SimEvent::direct_grub_boot(), 4096);
    let with_log = std::sync::Arc::new(
        SimSource::load(SimTee::Tdx, &broker.sim_dir(), None).unwrap().with_event_log(log.clone()),
    );
    assert_eq!(broker.fetch(with_log.clone(), KeyKind::P256).unwrap(), SECRET);

    // Without a log the claims the policy names are absent: denied.
    let err = broker.fetch(broker.source(SimTee::Tdx), KeyKind::P256).unwrap_err();
    let (status, body) = common::agent_error(&err);
    assert_eq!(status, 403, "{}", body.detail);
    assert!(body.detail.contains("claim tdx.event_log.kernel_sha384 absent"), "{}", body.detail);

    // A log whose kernel event was swapped after the quote was made: evidence invalid, RTMR2.
    let raw = Raw::auth(&broker, "tdx");
    let mut events = SimEvent::direct_grub_boot();
    events[5] = SimEvent::new(2, 0x0d, b"another kernel", b"/vmlinuz\0".to_vec());
    let forged = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(event_log(&events, 4096))
    };
    let body =
        raw.body(with_log.as_ref(), &raw.nonce, &raw.nonce, |e| e["cc_eventlog"] = forged.into());
    let reply = raw.attest(&body);
    let err = common::error_of(&reply, 401);
    assert_eq!(err.error_type, "evidence-invalid");
    assert!(
        err.detail.starts_with("event-log: RTMR2 (event log replay) mismatch"),
        "{}",
        err.detail
    );
}
