//! Every refusal the broker must make, each with its status, its stable error type and no
//! resource bytes: nonce and session misuse, REPORT_DATA not bound to the session, tampered
//! evidence, simulated and sample evidence when not enabled, debug guests, policy denials with
//! the mismatch named, unknown resources, path traversal, bad tokens, the wrong protocol
//! version, oversized bodies and unknown routes.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{agent_error, error_of, post_auth, Broker, Raw, ALLOW_SIM, RESOURCE, SECRET};
use keylatch_agent::evidence::sim::SimSource;
use keylatch_agent::evidence::{EvidenceSource, SimTee};
use keylatch_agent::AgentError;
use keylatch_wire::kbs_types::Tee;
use keylatch_wire::{report_data_binding_48, KeyKind};
use rand_core::OsRng;
use serde_json::{json, Value};

const T: std::time::Duration = std::time::Duration::from_secs(20);

fn assert_no_secret(body: &[u8]) {
    assert!(!body.windows(SECRET.len()).any(|w| w == SECRET), "reply carries the resource");
}

#[test]
fn rejects_wrong_nonce_in_runtime_data() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let source = broker.source(SimTee::Snp);
    let raw = Raw::auth(&broker, "snp");
    let other = STANDARD.encode([7u8; 32]);
    let reply = raw.attest(&raw.body(source.as_ref(), &other, &other, |_| {}));
    let e = error_of(&reply, 401);
    assert_eq!(e.error_type, "nonce-mismatch");
    let r = raw.resource(RESOURCE, true, None);
    assert_eq!(error_of(&r, 401).error_type, "token-missing");
    assert_no_secret(&r.body);
}

#[test]
fn rejects_reused_nonce() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let source = broker.source(SimTee::Snp);
    let raw = Raw::auth(&broker, "snp");
    let body = raw.body(source.as_ref(), &raw.nonce, &raw.nonce, |_| {});
    assert_eq!(raw.attest(&body).status, 200);
    let e = error_of(&raw.attest(&body), 401);
    assert_eq!(e.error_type, "session-used");
}

#[test]
fn rejects_expired_session() {
    let broker = Broker::start(
        |c| c.replace("session_lifetime_s = 300", "session_lifetime_s = 1"),
        ALLOW_SIM,
    );
    let source = broker.source(SimTee::Tdx);
    let raw = Raw::auth(&broker, "tdx");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let e = error_of(&raw.attest(&raw.body(source.as_ref(), &raw.nonce, &raw.nonce, |_| {})), 401);
    assert_eq!(e.error_type, "session-expired");
}

#[test]
fn sessions_are_swept_only_once_neither_their_nonce_nor_their_token_can_be_used() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let source = broker.source(SimTee::Snp);
    let attested = Raw::auth(&broker, "snp");
    attested.attest_ok(source.as_ref());
    let unanswered = Raw::auth(&broker, "snp");
    let now = keylatch_broker::clock::now_s();
    let sweep =
        |at: i64| broker.rt.block_on(keylatch_broker::protocol::sweep_once(&broker.state, at));

    // Challenges expire after 300 s and tokens live 300 s: until both could have run out,
    // nothing is removed and the attested cookie still releases.
    assert_eq!(sweep(now + 300 + 299).unwrap(), 0);
    assert_eq!(attested.resource(RESOURCE, true, None).status, 200);

    assert_eq!(sweep(now + 300 + 300 + 2).unwrap(), 2);
    let r = attested.resource(RESOURCE, true, None);
    assert_eq!(error_of(&r, 401).error_type, "token-missing");
    let body = unanswered.body(source.as_ref(), &unanswered.nonce, &unanswered.nonce, |_| {});
    assert_eq!(error_of(&unanswered.attest(&body), 401).error_type, "session-unknown");
}

#[test]
fn rejects_report_data_not_bound_to_the_sessions_nonce() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    for (tee, name) in [(SimTee::Snp, "snp"), (SimTee::Tdx, "tdx")] {
        let source = broker.source(tee);
        let raw = Raw::auth(&broker, name);
        let elsewhere = Raw::auth(&broker, name);
        // The body names this session's nonce; the report binds another session's.
        let e = error_of(
            &raw.attest(&raw.body(source.as_ref(), &elsewhere.nonce, &raw.nonce, |_| {})),
            401,
        );
        assert_eq!(e.error_type, "report-data-mismatch", "{name}");
        assert!(e.detail.starts_with("report-data:"), "{name}: {}", e.detail);
    }
}

#[test]
fn rejects_tampered_snp_report_and_tdx_quote() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let snp = broker.source(SimTee::Snp);
    let raw = Raw::auth(&broker, "snp");
    let body = raw.body(snp.as_ref(), &raw.nonce, &raw.nonce, |ev| {
        let m = &mut ev["attestation_report"]["measurement"][0];
        *m = json!(m.as_u64().unwrap() ^ 1);
    });
    let e = error_of(&raw.attest(&body), 401);
    assert_eq!(e.error_type, "evidence-invalid");
    assert!(e.detail.starts_with("signature:"), "{}", e.detail);

    let tdx = broker.source(SimTee::Tdx);
    let raw = Raw::auth(&broker, "tdx");
    let body = raw.body(tdx.as_ref(), &raw.nonce, &raw.nonce, |ev| {
        let mut q = STANDARD.decode(ev["quote"].as_str().unwrap()).unwrap();
        q[48 + 136] ^= 1; // inside MRTD
        ev["quote"] = json!(STANDARD.encode(q));
    });
    let e = error_of(&raw.attest(&body), 401);
    assert_eq!(e.error_type, "evidence-invalid");
    assert!(e.detail.starts_with("signature:"), "{}", e.detail);
}

#[test]
fn refuses_simulated_evidence_when_allow_simulated_is_false() {
    let broker = Broker::start(
        |c| c.replace("allow_simulated = true", "allow_simulated = false"),
        ALLOW_SIM,
    );
    for tee in [SimTee::Snp, SimTee::Tdx] {
        let err = broker.fetch(broker.source(tee), KeyKind::P256).unwrap_err();
        let (status, body) = agent_error(&err);
        assert_eq!((status, body.error_type.as_str()), (401, "simulated-not-allowed"), "{tee:?}");
    }
}

#[test]
fn simulated_evidence_without_sim_pki_fails_the_chain() {
    let broker = Broker::start(
        |c| c.replace("allow_simulated = true\nsim_pki = \"sim-pki\"", "allow_simulated = false"),
        ALLOW_SIM,
    );
    let err = broker.fetch(broker.source(SimTee::Snp), KeyKind::P256).unwrap_err();
    let (status, body) = agent_error(&err);
    assert_eq!((status, body.error_type.as_str()), (401, "evidence-invalid"));
    assert!(body.detail.starts_with("chain:"), "{}", body.detail);
}

fn sample_body(raw: &Raw) -> Vec<u8> {
    let jwk = raw.key.public_jwk();
    let rd = report_data_binding_48(&raw.nonce, &jwk, "");
    json!({
        "init-data": null,
        "runtime-data": {"nonce": raw.nonce, "tee-pubkey": jwk.to_json()},
        "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": STANDARD.encode(rd)}, "additional_evidence": ""},
    })
    .to_string()
    .into_bytes()
}

#[test]
fn refuses_sample_tee_unless_enabled_and_named_by_the_policy() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let reply =
        post_auth(&broker.http(), br#"{"version":"0.4.0","tee":"sample","extra-params":""}"#);
    assert_eq!(error_of(&reply, 401).error_type, "sample-not-allowed");

    let broker =
        Broker::start(|c| c.replace("allow_sample = false", "allow_sample = true"), ALLOW_SIM);
    let raw = Raw::auth(&broker, "sample");
    let reply = raw.attest(&sample_body(&raw));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    // Enabled, but the policy does not name `sample`.
    let r = raw.resource(RESOURCE, true, None);
    let e = error_of(&r, 403);
    assert_eq!(e.error_type, "policy-denied");
    assert!(e.detail.contains("tee sample not in [\"snp\", \"tdx\"]"), "{}", e.detail);
    assert_no_secret(&r.body);
    broker.put_policy(RESOURCE, "[[rules]]\ntees = [\"sample\"]\nallow_simulated = true\n");
    let r = raw.resource(RESOURCE, true, None);
    assert_eq!(r.status, 200);
}

/// `/kbs/v0/auth` for `tee` on `broker`: the 401 `unsupported-tee` detail.
fn unsupported_tee_detail(broker: &Broker, tee: &str) -> String {
    let body = json!({"version": "0.4.0", "tee": tee, "extra-params": ""}).to_string();
    let reply = broker.http().post_json("auth", "/kbs/v0/auth", None, body.as_bytes(), T).unwrap();
    let e = error_of(&reply, 401);
    assert_eq!(e.error_type, "unsupported-tee", "{}", e.detail);
    e.detail
}

#[test]
fn unsupported_tee_refusal_lists_exactly_the_tees_served() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    assert_eq!(
        unsupported_tee_detail(&broker, "sgx"),
        "tee \"sgx\" is not served (snp, tdx, az-snp-vtpm, az-tdx-vtpm)"
    );

    let broker =
        Broker::start(|c| c.replace("allow_sample = false", "allow_sample = true"), ALLOW_SIM);
    assert_eq!(
        unsupported_tee_detail(&broker, "sgx"),
        "tee \"sgx\" is not served (snp, tdx, az-snp-vtpm, az-tdx-vtpm, sample)"
    );
    // Each TEE it lists is served: auth answers a challenge.
    for tee in ["snp", "tdx", "az-snp-vtpm", "az-tdx-vtpm", "sample"] {
        Raw::auth(&broker, tee);
    }
}

/// A simulated SNP guest launched with the DEBUG policy bit.
struct DebugSnp(verifier::sim::SimPki);

impl EvidenceSource for DebugSnp {
    fn tee(&self) -> Tee {
        Tee::Snp
    }
    fn evidence(&self, report_data: &[u8; 64]) -> Result<Value, AgentError> {
        let spec = verifier::sim::snp::SimSnpReport {
            report_data: *report_data,
            policy: 0x3_0000 | (1 << 19),
            ..Default::default()
        };
        let (report, vcek) = self.0.amd.mint(&spec, &mut OsRng).unwrap();
        let json = verifier::snp::coco_evidence_json(
            &report,
            Some((verifier::claims::SnpSigningKey::Vcek, &vcek)),
        )
        .unwrap();
        Ok(serde_json::from_slice(&json).unwrap())
    }
    fn describe(&self) -> String {
        "debug SNP guest (simulated)".into()
    }
}

#[test]
fn denies_debug_guest_under_a_policy_without_allow_debug() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let pki = keylatch_cli::load_sim_pki(&broker.sim_dir()).unwrap();
    let debug: Arc<dyn EvidenceSource> = Arc::new(DebugSnp(pki));
    let err = broker.fetch(Arc::clone(&debug), KeyKind::P256).unwrap_err();
    let (status, body) = agent_error(&err);
    assert_eq!((status, body.error_type.as_str()), (403, "policy-denied"));
    assert!(body.detail.contains("guest runs in debug mode"), "{}", body.detail);
    broker.put_policy(RESOURCE, &format!("{ALLOW_SIM}allow_debug = true\n"));
    assert_eq!(broker.fetch(debug, KeyKind::P256).unwrap(), SECRET);
}

#[test]
fn policy_denial_names_the_reference_value_mismatch() {
    let prepare = |dir: &std::path::Path| {
        let author = reference_values::AuthorSigningKey::generate().unwrap();
        let bundle = reference_values::Bundle::from_toml(&format!(
            "name = \"web\"\nversion = 1\nexpires = 2100-01-01T00:00:00Z\n[snp]\nmeasurements = [\"{}\"]\n",
            "00".repeat(48)
        ))
        .unwrap();
        let signed = reference_values::SignedBundle::sign(&bundle, &[&author]).unwrap();
        std::fs::write(dir.join("web.cose"), signed.to_bytes().unwrap()).unwrap();
        std::fs::write(dir.join("alice.pub.pem"), author.public().to_pem().unwrap()).unwrap();
    };
    let config = |c: String| {
        format!("{c}\n[[reference_values]]\nname = \"web\"\nbundle = \"web.cose\"\nauthor_keys = [\"alice.pub.pem\"]\nthreshold = 1\n")
    };
    let policy = "[[rules]]\nname = \"web\"\ntees = [\"snp\"]\nallow_simulated = true\nbundles = [\"web\"]\n";
    let broker = Broker::start_with(config, policy, prepare);
    let err = broker.fetch(broker.source(SimTee::Snp), KeyKind::P256).unwrap_err();
    let (status, body) = agent_error(&err);
    assert_eq!((status, body.error_type.as_str()), (403, "policy-denied"));
    assert!(
        body.detail.ends_with(&format!(
            "web: bundle \"web\" mismatches: snp.measurement expected {} got {}",
            "00".repeat(48),
            "4d".repeat(48)
        )),
        "{}",
        body.detail
    );
}

#[test]
fn init_data_must_match_host_data_and_mr_config_id() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let init = "algorithm = \"sha256\"\nversion = \"0.1.0\"\n";
    for tee in [SimTee::Snp, SimTee::Tdx] {
        let measured: Arc<dyn EvidenceSource> =
            Arc::new(SimSource::load(tee, &broker.sim_dir(), Some(init)).unwrap());
        let mut agent = broker.agent(Arc::clone(&measured), KeyKind::P256);
        agent.init_data = Some(init.to_owned());
        let path = keylatch_agent::ResourcePath::parse(&format!("kbs:///{RESOURCE}")).unwrap();
        assert_eq!(keylatch_agent::fetch_resource(&agent, &path).unwrap().as_slice(), SECRET);
        agent.init_data = Some(format!("{init}# edited\n"));
        let err = keylatch_agent::fetch_resource(&agent, &path).unwrap_err();
        let (status, body) = agent_error(&err);
        assert_eq!((status, body.error_type.as_str()), (401, "init-data-mismatch"), "{tee:?}");
    }
}

#[test]
fn unknown_resource_is_404() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let err = broker
        .fetch_path(broker.source(SimTee::Snp), KeyKind::P256, "default/disk-key/nope")
        .unwrap_err();
    let (status, body) = agent_error(&err);
    assert_eq!((status, body.error_type.as_str()), (404, "not-found"));
}

/// One raw HTTPS request (no URL normalization on the way); returns (status, body).
fn raw_request(broker: &Broker, request: &str) -> (u16, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&broker.ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(broker.url.trim_start_matches("https://")).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body_at = text.find("\r\n\r\n").unwrap() + 4;
    (status, out[body_at..].to_vec())
}

#[test]
fn rejects_path_traversal_and_malformed_resource_paths() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let raw = Raw::auth(&broker, "snp");
    let token = raw.attest_ok(broker.source(SimTee::Snp).as_ref());
    for path in [
        "default/../../etc/passwd",
        "default/disk-key/..",
        "default/%2e%2e/vm-1",
        "default/disk-key/vm-1%2f..%2fx",
        "default/disk-key",
        "default/disk-key/.hidden",
    ] {
        let req = format!(
            "GET /kbs/v0/resource/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw_request(&broker, &req);
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&body));
        let e = keylatch_wire::ErrorBody::parse(&body).unwrap();
        assert_eq!(e.error_type, "bad-request", "{path}");
        assert_no_secret(&body);
    }
}

fn token_payload(token: &str) -> serde_json::Map<String, Value> {
    let p = keylatch_wire::b64::decode("payload", token.split('.').nth(1).unwrap()).unwrap();
    serde_json::from_slice(&p).unwrap()
}

#[test]
fn refuses_forged_expired_and_alg_none_tokens() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let raw = Raw::auth(&broker, "snp");
    let token = raw.attest_ok(broker.source(SimTee::Snp).as_ref());
    let claims = token_payload(&token);

    let forged =
        keylatch_broker::token::TokenKey::generate().unwrap().sign(claims.clone()).unwrap();
    let own =
        keylatch_broker::token::TokenKey::load(&broker.dir.path().join("token-signing-key.pem"))
            .unwrap();
    let mut old = claims.clone();
    old.insert("nbf".into(), json!(1_000));
    old.insert("exp".into(), json!(2_000));
    let expired = own.sign(old).unwrap();
    let header = keylatch_wire::b64::encode(br#"{"alg":"none","typ":"JWT"}"#);
    let none = format!("{header}.{}.", token.split('.').nth(1).unwrap());
    for (t, want) in [
        (forged, "token signature does not verify"),
        (expired, "token expired at 2000"),
        (none, "token header algorithm \"none\" is not ES256"),
    ] {
        let r = raw.resource(RESOURCE, false, Some(&t));
        let e = error_of(&r, 401);
        assert_eq!(e.error_type, "token-invalid");
        assert!(e.detail.starts_with(want), "{}", e.detail);
        assert_no_secret(&r.body);
    }
    assert_eq!(raw.resource(RESOURCE, false, Some(&token)).status, 200);
}

#[test]
fn rejects_protocol_version_0_3_0() {
    let broker = Broker::start(|c| c, ALLOW_SIM);
    let reply = post_auth(&broker.http(), br#"{"version":"0.3.0","tee":"snp","extra-params":""}"#);
    let e = error_of(&reply, 401);
    assert_eq!(e.error_type, "version-mismatch");
    assert!(e.detail.starts_with("protocol version mismatch"), "{}", e.detail);
    assert!(reply.set_cookie.is_empty());
}

#[test]
fn every_refusal_has_a_json_body_even_oversized_and_unknown_routes() {
    let broker = Broker::start(
        |c| c.replace("max_body_bytes = 2097152", "max_body_bytes = 4096"),
        ALLOW_SIM,
    );
    let http = broker.http();
    let big = vec![b' '; 8192];
    assert_eq!(error_of(&post_auth(&http, &big), 413).error_type, "too-large");
    assert_eq!(
        error_of(&http.get("x", "/kbs/v0/nothing", None, None, T).unwrap(), 404).error_type,
        "not-found"
    );
    assert_eq!(
        error_of(&http.get("x", "/kbs/v0/auth", None, None, T).unwrap(), 405).error_type,
        "method-not-allowed"
    );
    assert_eq!(error_of(&post_auth(&http, b"{"), 400).error_type, "bad-request");
    let r = http.post_json("attest", "/kbs/v0/attest", None, b"{}", T).unwrap();
    assert_eq!(error_of(&r, 401).error_type, "session-missing");
    let r =
        http.post_json("attest", "/kbs/v0/attest", Some("kbs-session-id=nope"), b"{}", T).unwrap();
    assert_eq!(error_of(&r, 401).error_type, "session-unknown");
    let r = http.get("r", &format!("/kbs/v0/resource/{RESOURCE}"), None, None, T).unwrap();
    assert_eq!(error_of(&r, 401).error_type, "token-missing");
}
