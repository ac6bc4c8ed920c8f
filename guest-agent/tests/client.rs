//! The KBS client against a local HTTPS broker: the whole flow with simulated evidence checked
//! by `verifier`, token reuse, one re-handshake per 401, no retry on 403/404, retries through
//! 503s and a broker that is down at first, and the deadline turning into exit code 3.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{error, tls, write_pki, MiniKbs, Server};
use keylatch_agent::evidence::sim::SimSource;
use keylatch_agent::evidence::{EvidenceSource, SimTee};
use keylatch_agent::{fetch_resource, AgentConfig, AgentError, Client, ExitCode, ResourcePath};
use keylatch_wire::KeyKind;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn resource() -> ResourcePath {
    ResourcePath::parse("kbs:///default/disk/vm1").unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    source: Arc<dyn EvidenceSource>,
    pki: verifier::sim::SimPki,
}

fn fixture(tee: SimTee) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let source = Arc::new(SimSource::load(tee, dir.path(), None).unwrap());
    Fixture { _dir: dir, source, pki }
}

fn config(
    url: String,
    ca_pem: &str,
    source: &Arc<dyn EvidenceSource>,
    deadline_s: u64,
) -> AgentConfig {
    AgentConfig {
        url,
        ca_pem: ca_pem.as_bytes().to_vec(),
        key_kind: KeyKind::P256,
        init_data: None,
        deadline: Duration::from_secs(deadline_s),
        evidence: Arc::clone(source),
    }
}

#[test]
fn fetches_resource_with_verified_simulated_snp_and_tdx_evidence() {
    for tee in [SimTee::Snp, SimTee::Tdx] {
        let fx = fixture(tee);
        let (snp_anchors, tdx_anchors) = fx.pki.anchors().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let collateral = fx
            .pki
            .intel
            .collateral(now - time::Duration::days(1), now + time::Duration::days(30))
            .unwrap();
        let mut kbs = MiniKbs::new(SECRET);
        kbs.check_evidence = Box::new(move |a, rd| {
            let ev = serde_json::to_vec(&a.tee_evidence.primary_evidence).unwrap();
            let claims = if a.tee_evidence.primary_evidence.get("quote").is_some() {
                let q = a.tee_evidence.primary_evidence["quote"].as_str().unwrap();
                let quote =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, q).unwrap();
                verifier::tdx::TdxVerifier::new(tdx_anchors.clone()).verify(
                    &quote,
                    &collateral,
                    Some(rd),
                    now,
                )
            } else {
                let coco =
                    verifier::snp::report_from_coco_evidence(&ev).map_err(|e| e.to_string())?;
                let endorsements = coco.endorsements().ok_or("no VCEK in the evidence")?;
                verifier::snp::SnpVerifier::new(snp_anchors.clone()).verify(
                    &coco.report,
                    &endorsements,
                    Some(rd),
                    now,
                )
            };
            let claims = claims.map_err(|e| e.to_string())?;
            assert!(claims.simulated);
            Ok(())
        });
        let kbs = Arc::new(kbs);
        let t = tls();
        let server = Server::start(&t, Arc::new(move |r| kbs.handle(r)));
        for kind in [KeyKind::P256, KeyKind::P384] {
            let mut cfg = config(server.url(), &t.ca_pem, &fx.source, 10);
            cfg.key_kind = kind;
            let key = fetch_resource(&cfg, &resource()).unwrap();
            assert_eq!(key.as_slice(), SECRET, "{tee:?} {kind:?}");
        }
        assert_eq!(
            server.requests(),
            [
                "POST /kbs/v0/auth 200",
                "POST /kbs/v0/attest 200",
                "GET /kbs/v0/resource/default/disk/vm1 200"
            ]
            .repeat(2)
        );
    }
}

#[test]
fn reuses_token_for_several_resources_within_its_lifetime() {
    let fx = fixture(SimTee::Snp);
    let kbs = Arc::new(MiniKbs::new(SECRET));
    let t = tls();
    let server = Server::start(&t, Arc::new(move |r| kbs.handle(r)));
    let mut client = Client::new(config(server.url(), &t.ca_pem, &fx.source, 10)).unwrap();
    for tag in ["a", "b", "c"] {
        let r = ResourcePath::parse(&format!("kbs:///default/disk/{tag}")).unwrap();
        assert_eq!(client.get_resource(&r).unwrap().as_slice(), SECRET);
    }
    assert_eq!(client.handshakes(), 1);
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn rehandshakes_when_token_is_too_close_to_expiry() {
    let fx = fixture(SimTee::Snp);
    let mut kbs = MiniKbs::new(SECRET);
    kbs.token_lifetime_s = 5; // inside the client's reuse margin
    let kbs = Arc::new(kbs);
    let t = tls();
    let server = Server::start(&t, Arc::new(move |r| kbs.handle(r)));
    let mut client = Client::new(config(server.url(), &t.ca_pem, &fx.source, 10)).unwrap();
    client.get_resource(&resource()).unwrap();
    client.get_resource(&resource()).unwrap();
    assert_eq!(client.handshakes(), 2);
}

#[test]
fn retries_through_503_then_succeeds() {
    let fx = fixture(SimTee::Snp);
    let kbs = Arc::new(MiniKbs::new(SECRET));
    let t = tls();
    let failures = Arc::new(AtomicU32::new(0));
    let f2 = Arc::clone(&failures);
    let server = Server::start(
        &t,
        Arc::new(move |r| {
            if f2.fetch_add(1, Ordering::SeqCst) < 2 {
                return error(503, "unavailable", "starting up");
            }
            kbs.handle(r)
        }),
    );
    let key =
        fetch_resource(&config(server.url(), &t.ca_pem, &fx.source, 20), &resource()).unwrap();
    assert_eq!(key.as_slice(), SECRET);
    assert_eq!(
        server.requests(),
        [
            "POST /kbs/v0/auth 503",
            "POST /kbs/v0/auth 503",
            "POST /kbs/v0/auth 200",
            "POST /kbs/v0/attest 200",
            "GET /kbs/v0/resource/default/disk/vm1 200"
        ]
    );
}

#[test]
fn backs_off_on_rate_limiting_then_succeeds() {
    let fx = fixture(SimTee::Snp);
    let kbs = Arc::new(MiniKbs::new(SECRET));
    let t = tls();
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = Arc::clone(&calls);
    let server = Server::start(
        &t,
        Arc::new(move |r| {
            // The first auth and the first resource request hit the broker's rate limit.
            let n = c2.fetch_add(1, Ordering::SeqCst);
            if n == 0 || n == 3 {
                return error(429, "rate-limited", "too many requests from this address");
            }
            kbs.handle(r)
        }),
    );
    let key =
        fetch_resource(&config(server.url(), &t.ca_pem, &fx.source, 20), &resource()).unwrap();
    assert_eq!(key.as_slice(), SECRET);
    assert_eq!(
        server.requests(),
        [
            "POST /kbs/v0/auth 429",
            "POST /kbs/v0/auth 200",
            "POST /kbs/v0/attest 200",
            "GET /kbs/v0/resource/default/disk/vm1 429",
            "GET /kbs/v0/resource/default/disk/vm1 200"
        ]
    );
}

#[test]
fn waits_for_a_broker_that_is_down_at_first() {
    let fx = fixture(SimTee::Snp);
    let t = tls();
    // Reserve a port, close it, and open it for real a little later.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let server_config = t.server.clone();
    let ca = t.ca_pem.clone();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let kbs = Arc::new(MiniKbs::new(SECRET));
        let tls = common::TestTls { ca_pem: ca, server: server_config };
        Server::serve(
            TcpListener::bind(("127.0.0.1", port)).unwrap(),
            &tls,
            Arc::new(move |r| kbs.handle(r)),
        )
    });
    let key = fetch_resource(&config(url, &t.ca_pem, &fx.source, 30), &resource()).unwrap();
    assert_eq!(key.as_slice(), SECRET);
    let server = starter.join().unwrap();
    assert_eq!(server.requests().first().map(String::as_str), Some("POST /kbs/v0/auth 200"));
}

#[test]
fn does_not_retry_policy_denial_or_missing_resource() {
    let fx = fixture(SimTee::Snp);
    for (status, code) in [(403, ExitCode::Denied), (404, ExitCode::Denied)] {
        let kbs = Arc::new(MiniKbs::new(SECRET));
        let t = tls();
        let server = Server::start(
            &t,
            Arc::new(move |r| {
                if r.path.starts_with("/kbs/v0/resource/") {
                    return error(
                        status,
                        "https://keylatch.invalid/policy",
                        "rule 1: snp.policy.debug must be false",
                    );
                }
                kbs.handle(r)
            }),
        );
        let err = fetch_resource(&config(server.url(), &t.ca_pem, &fx.source, 20), &resource())
            .unwrap_err();
        assert_eq!(err.exit_code(), code);
        assert_eq!(
            err.to_string(),
            "resource: https://keylatch.invalid/policy: rule 1: snp.policy.debug must be false"
        );
        assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    }
}

#[test]
fn rehandshakes_once_per_401_then_gives_up() {
    let fx = fixture(SimTee::Snp);
    // First resource GET answers 401 (e.g. the broker restarted and lost the token): one new
    // handshake, then success.
    let kbs = Arc::new(MiniKbs::new(SECRET));
    let t = tls();
    let first = Arc::new(AtomicU32::new(0));
    let f2 = Arc::clone(&first);
    let server = Server::start(
        &t,
        Arc::new(move |r| {
            if r.path.starts_with("/kbs/v0/resource/") && f2.fetch_add(1, Ordering::SeqCst) == 0 {
                return error(401, "token", "unknown token");
            }
            kbs.handle(r)
        }),
    );
    let mut client = Client::new(config(server.url(), &t.ca_pem, &fx.source, 10)).unwrap();
    assert_eq!(client.get_resource(&resource()).unwrap().as_slice(), SECRET);
    assert_eq!(client.handshakes(), 2);

    // Always 401: exactly one re-handshake, then "attestation refused".
    let kbs = Arc::new(MiniKbs::new(SECRET));
    let server = Server::start(
        &t,
        Arc::new(move |r| {
            if r.path.starts_with("/kbs/v0/resource/") {
                return error(401, "token", "token rejected");
            }
            kbs.handle(r)
        }),
    );
    let mut client = Client::new(config(server.url(), &t.ca_pem, &fx.source, 10)).unwrap();
    let err = client.get_resource(&resource()).unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::AttestationRefused);
    assert_eq!(err.to_string(), "resource: token: token rejected");
    assert_eq!(client.handshakes(), 2);
}

#[test]
fn refused_attestation_is_exit_code_2_with_broker_reason() {
    let fx = fixture(SimTee::Tdx);
    let mut kbs = MiniKbs::new(SECRET);
    kbs.check_evidence = Box::new(|_, _| Err("tcb_status OutOfDate not accepted".into()));
    let kbs = Arc::new(kbs);
    let t = tls();
    let server = Server::start(&t, Arc::new(move |r| kbs.handle(r)));
    let err =
        fetch_resource(&config(server.url(), &t.ca_pem, &fx.source, 10), &resource()).unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::AttestationRefused);
    assert_eq!(err.to_string(), "attest: attestation: tcb_status OutOfDate not accepted");
}

#[test]
fn deadline_exceeded_is_exit_code_3() {
    let fx = fixture(SimTee::Snp);
    let t = tls();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = fetch_resource(
        &config(format!("https://127.0.0.1:{port}"), &t.ca_pem, &fx.source, 1),
        &resource(),
    )
    .unwrap_err();
    assert!(matches!(err, AgentError::Unreachable { seconds: 1, .. }), "{err}");
    assert_eq!(err.exit_code(), ExitCode::Unreachable);
}

#[test]
fn trusts_only_the_given_ca() {
    let fx = fixture(SimTee::Snp);
    let kbs = Arc::new(MiniKbs::new(SECRET));
    let t = tls();
    let other = tls();
    let server = Server::start(&t, Arc::new(move |r| kbs.handle(r)));
    // A server certificate from another CA is a connection failure: retried, then unreachable.
    let err = fetch_resource(&config(server.url(), &other.ca_pem, &fx.source, 1), &resource())
        .unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::Unreachable);
    assert!(err.to_string().contains("invalid peer certificate"), "{err}");
    assert!(server.requests().is_empty());
    let err =
        Client::new(config("http://127.0.0.1:1".into(), &t.ca_pem, &fx.source, 1)).unwrap_err();
    assert_eq!(err.to_string(), "--url \"http://127.0.0.1:1\" must start with https://");
}

#[test]
fn hanging_broker_times_out_within_the_deadline() {
    let fx = fixture(SimTee::Snp);
    let t = tls();
    // Accepts TCP connections and never speaks TLS.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let err = fetch_resource(
        &config(format!("https://127.0.0.1:{port}"), &t.ca_pem, &fx.source, 2),
        &resource(),
    )
    .unwrap_err();
    assert!(matches!(err, AgentError::Unreachable { seconds: 2, .. }), "{err}");
    // The read timed out (EAGAIN on the socket) at the auth step, not a refused connection.
    assert!(err.to_string().contains(": auth: "), "{err}");
    assert!(!err.to_string().contains("Connection refused"), "{err}");
}
