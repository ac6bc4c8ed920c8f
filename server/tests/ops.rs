//! The operations surface against the real broker: `/healthz`, `/readyz` (ready on the soft
//! keystore with its warning, 503 naming the keystore when the SoftHSM2 token directory is
//! moved away, 503 naming the store when the SQLite file is removed, replaced or made
//! unwritable), `/metrics` after a release and a denial, the rate limit (429 with
//! `Retry-After`, then recovery), the body limit, request ids, JSON log lines, and graceful
//! shutdown (an in-flight request completes; new connections are refused). Raw HTTP/1.1 over
//! TCP (plain-HTTP brokers) where headers matter; the agent library over HTTPS for releases.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "../../keystore/tests/common/mod.rs"]
#[allow(unused_macros, clippy::all, clippy::pedantic)] // reason: shared fixture from keystore
mod hsm;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::{Broker, LogWriter, ALLOW_SIM, LOGS, RESOURCE, SECRET};
use keylatch_agent::evidence::SimTee;
use keylatch_broker::custody::{self, Actor, Cryptoperiod};
use keylatch_keystore::pkcs11::PinSource;
use keylatch_wire::KeyKind;
use serde_json::Value;

// ---------------------------------------------------------------- raw HTTP/1.1

/// One parsed reply.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A plain-HTTP broker (`insecure_http = true`) with `edit` applied to its config.
fn plain(edit: impl FnOnce(String) -> String) -> (Broker, SocketAddr) {
    let broker = Broker::start(
        |c| edit(c.replace("insecure_http = false", "insecure_http = true")),
        ALLOW_SIM,
    );
    let port: u16 = broker.url.rsplit(':').next().unwrap().parse().unwrap();
    (broker, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn parse(raw: &[u8]) -> Raw {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Raw { status, headers, body: raw[split + 4..].to_vec() }
}

/// Sends one request (`Connection: close`) and reads the whole reply.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Raw {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
    // The broker answers a declared length over the limit before reading the body and closes,
    // so the body's write may fail and the read end in a reset: the reply read so far counts.
    let _ = tcp.write_all(body);
    let mut out = Vec::new();
    if let Err(e) = tcp.read_to_end(&mut out) {
        assert!(!out.is_empty(), "no reply: {e}");
    }
    parse(&out)
}

fn get(addr: SocketAddr, path: &str) -> Raw {
    request(addr, "GET", path, &[], b"")
}

const AUTH: &[u8] =
    br#"{"version":"0.4.0","tee":"snp","extra-params":{"supported-hash-algorithms":["sha384"]}}"#;

fn auth(addr: SocketAddr) -> Raw {
    request(addr, "POST", "/kbs/v0/auth", &[("Content-Type", "application/json")], AUTH)
}

// ---------------------------------------------------------------- health and readiness

#[test]
fn healthz_answers_ok() {
    let (_b, addr) = plain(|c| c);
    let r = get(addr, "/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"status": "ok"}));
}

#[test]
fn readyz_is_ready_on_the_soft_keystore_and_warns_the_kek_is_a_local_file() {
    let (_b, addr) = plain(|c| c);
    let r = get(addr, "/readyz");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["unavailable"], serde_json::json!([]));
    assert_eq!(v["store"]["status"], "ok");
    assert_eq!(v["keystore"], serde_json::json!({"status": "ok", "backend": "soft"}));
    assert_eq!(
        v["warnings"],
        serde_json::json!([
            "keystore backend \"soft\": the KEK is in a local file, not an HSM (development only)"
        ])
    );
}

#[test]
fn readyz_is_503_naming_the_keystore_while_the_hsm_token_is_gone() {
    let Some(hsm) = hsm::SoftHsm::new() else { return };
    let PinSource::File(pin) = &hsm.config.pin else { panic!("pin file") };
    let keystore = format!(
        "backend = \"pkcs11\"\npkcs11 = {{ module = \"{}\", token_label = \"{}\", pin = {{ file = \"{}\" }} }}",
        hsm.config.module.display(),
        hsm.config.token_label,
        pin.display()
    );
    let (b, addr) = plain(|c| c.replace("backend = \"soft\"\nkek_file = \"kek.json\"", &keystore));
    let ready = get(addr, "/readyz");
    assert_eq!(ready.status, 200, "{}", String::from_utf8_lossy(&ready.body));
    assert_eq!(ready.json()["keystore"]["backend"], "pkcs11");
    assert_eq!(ready.json()["warnings"], serde_json::json!([]));

    std::fs::rename(&hsm.token_dir, hsm.unplugged_dir()).unwrap();
    assert_only_unavailable(addr, "keystore");

    std::fs::rename(hsm.unplugged_dir(), &hsm.token_dir).unwrap();
    assert_eq!(get(addr, "/readyz").status, 200);
    drop(b);
}

/// `/readyz` is 503 naming `part` (`store` or `keystore`) and only it, the other part is ok,
/// and `/healthz` stays 200 (liveness is not readiness).
fn assert_only_unavailable(addr: SocketAddr, part: &str) {
    let other = if part == "store" { "keystore" } else { "store" };
    let r = get(addr, "/readyz");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["unavailable"], serde_json::json!([part]));
    assert_eq!(v[part]["status"], "unavailable");
    assert_eq!(v[other]["status"], "ok");
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn readyz_is_503_naming_the_store_when_the_sqlite_file_is_removed() {
    let (b, addr) = plain(|c| c);
    let db = b.dir.path().join("keylatch.db");
    assert_eq!(get(addr, "/readyz").status, 200);
    // The open connections would go on writing to the unlinked file: not ready.
    let kept = b.dir.path().join("kept.db");
    std::fs::hard_link(&db, &kept).unwrap();
    std::fs::remove_file(&db).unwrap();
    assert_only_unavailable(addr, "store");
    // Another file at the path is not the database the broker opened either.
    std::fs::write(&db, b"").unwrap();
    assert_only_unavailable(addr, "store");
    // The same file back at its path: ready again.
    std::fs::rename(&kept, &db).unwrap();
    assert_eq!(get(addr, "/readyz").status, 200);
}

/// Makes a file unwritable for this process, root included (mode 0444, and the immutable
/// attribute when the mode alone does not stop us); undone on drop.
struct Unwritable(std::path::PathBuf);

impl Unwritable {
    fn make(path: &std::path::Path) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let guard = Self(path.to_path_buf());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        if std::fs::OpenOptions::new().write(true).open(path).is_ok() {
            let out = std::process::Command::new("chattr").arg("+i").arg(path).output();
            assert!(
                out.as_ref().is_ok_and(|o| o.status.success()),
                "as root, making {} unwritable needs `chattr +i` (e2fsprogs, CAP_LINUX_IMMUTABLE): {out:?}",
                path.display()
            );
        }
        assert!(std::fs::OpenOptions::new().write(true).open(path).is_err());
        guard
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).output();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o600));
    }
}

#[test]
fn readyz_is_503_naming_the_store_when_the_sqlite_file_becomes_unwritable() {
    let (b, addr) = plain(|c| c);
    let db = b.dir.path().join("keylatch.db");
    assert_eq!(get(addr, "/readyz").status, 200);
    let unwritable = Unwritable::make(&db);
    assert_only_unavailable(addr, "store");
    drop(unwritable);
    assert_eq!(get(addr, "/readyz").status, 200);
}

// ---------------------------------------------------------------- metrics

/// The value of the sample line `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn metrics_count_a_release_and_a_denial_by_tee_outcome_type_and_route() {
    let b = Broker::start(|c| c, ALLOW_SIM);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let st = &b.state;
    b.rt.block_on(async {
        custody::set_cryptoperiod(
            st.store.as_ref(),
            Actor::cli(&st.audit),
            now,
            RESOURCE,
            Cryptoperiod::Until(now - 60),
        )
        .await
        .unwrap();
        keylatch_cli::admin::put_resource(
            &st.audit,
            st.store.as_ref(),
            Arc::clone(&st.keystore),
            "default/other/soon",
            keylatch_cli::admin::Source::Bytes(b"x".to_vec().into()),
        )
        .await
        .unwrap();
        custody::set_cryptoperiod(
            st.store.as_ref(),
            Actor::cli(&st.audit),
            now,
            "default/other/soon",
            Cryptoperiod::Until(now + 86_400),
        )
        .await
        .unwrap();
    });

    assert_eq!(b.fetch(b.source(SimTee::Snp), KeyKind::P256).unwrap(), SECRET);
    b.put_policy(
        RESOURCE,
        "[[rules]]\nname = \"tdx-only\"\ntees = [\"tdx\"]\nallow_simulated = true\n",
    );
    assert!(b.fetch(b.source(SimTee::Snp), KeyKind::P256).is_err());

    let reply = b.http().get("metrics", "/metrics", None, None, Duration::from_secs(20)).unwrap();
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body).unwrap();
    let want = [
        (r#"keylatch_decisions_total{action="auth",tee="snp",outcome="allowed"}"#, 2.0),
        (r#"keylatch_decisions_total{action="attest",tee="snp",outcome="allowed"}"#, 2.0),
        (r#"keylatch_decisions_total{action="release",tee="snp",outcome="allowed"}"#, 1.0),
        (r#"keylatch_decisions_total{action="release",tee="snp",outcome="denied"}"#, 1.0),
        (r#"keylatch_denials_total{action="release",type="policy-denied"}"#, 1.0),
        // Admin actions: the fixture's put and policy set; here set-rotate-by, put,
        // set-rotate-by, and the denying policy set.
        (r#"keylatch_admin_actions_total{outcome="allowed"}"#, 6.0),
        (
            r#"keylatch_http_request_duration_seconds_count{route="/kbs/v0/resource/{*path}",method="GET",status="200"}"#,
            1.0,
        ),
        (
            r#"keylatch_http_request_duration_seconds_count{route="/kbs/v0/resource/{*path}",method="GET",status="403"}"#,
            1.0,
        ),
        ("keylatch_resources_rotation_overdue", 1.0),
        ("keylatch_resources_rotation_due_soon", 1.0),
        ("keylatch_rotation_scan_errors_total", 0.0),
    ];
    for (series, value) in want {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    // No denial of another type, and no raw resource path as a route label.
    assert_eq!(text.matches("keylatch_denials_total{").count(), 1, "{text}");
    assert!(!text.contains("disk-key"), "{text}");
}

#[test]
fn metrics_can_be_turned_off() {
    let (_b, addr) = plain(|c| c.replace("\nenabled = true\n", "\nenabled = false\n"));
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["type"], "not-found");
}

// ---------------------------------------------------------------- limits

#[test]
fn rate_limit_answers_429_with_retry_after_then_recovers() {
    let (_b, addr) =
        plain(|c| c.replace("per_second = 50\nburst = 300", "per_second = 1\nburst = 2"));
    assert_eq!(auth(addr).status, 200);
    assert_eq!(auth(addr).status, 200);
    let limited = auth(addr);
    assert_eq!(limited.status, 429, "{}", String::from_utf8_lossy(&limited.body));
    assert_eq!(limited.json()["type"], "rate-limited");
    assert_eq!(limited.header("retry-after"), Some("1"));
    // Operations routes are not limited.
    assert_eq!(get(addr, "/healthz").status, 200);
    // After the advertised delay a request is served again (polled: the delay is a minimum).
    let mut recovered = None;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(1));
        let r = auth(addr);
        if r.status == 200 {
            recovered = Some(r);
            break;
        }
        assert_eq!(r.status, 429);
    }
    assert!(recovered.expect("served again after Retry-After").json()["nonce"].is_string());
}

#[test]
fn rate_limit_zero_disables_it() {
    let (_b, addr) =
        plain(|c| c.replace("per_second = 50\nburst = 300", "per_second = 0\nburst = 1"));
    for _ in 0..5 {
        assert_eq!(auth(addr).status, 200);
    }
}

#[test]
fn default_body_limit_is_2_mib() {
    assert_eq!(keylatch_broker::config::DEFAULT_MAX_BODY_BYTES, 2 * 1024 * 1024);
    let (_b, addr) = plain(|c| c.replace("max_body_bytes = 2097152\n", ""));
    let big = vec![b' '; 2 * 1024 * 1024 + 1];
    let r = request(addr, "POST", "/kbs/v0/auth", &[("Content-Type", "application/json")], &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["type"], "too-large");
    // Just under the limit is read (and then refused as malformed JSON, not as too large).
    let fits = vec![b' '; 2 * 1024 * 1024];
    let r = request(addr, "POST", "/kbs/v0/auth", &[("Content-Type", "application/json")], &fits);
    assert_eq!(r.status, 400);
}

// ---------------------------------------------------------------- request ids and logs

#[test]
fn request_id_is_echoed_when_sane_and_generated_otherwise() {
    let (_b, addr) = plain(|c| c);
    let r = request(addr, "GET", "/healthz", &[("x-request-id", "boot-7f3a.vm-12")], b"");
    assert_eq!(r.header("x-request-id"), Some("boot-7f3a.vm-12"));
    let long = "a".repeat(65);
    for bad in ["has space", long.as_str(), ""] {
        let r = request(addr, "GET", "/nothing", &[("x-request-id", bad)], b"");
        assert_eq!(r.status, 404);
        let id = r.header("x-request-id").unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    let a = get(addr, "/healthz");
    let b = get(addr, "/healthz");
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[test]
fn json_logs_carry_the_request_id_and_never_the_cookie() {
    let config: keylatch_broker::config::LogConfig =
        toml::from_str("format = \"json\"\nlevel = \"info\"").unwrap();
    keylatch_server::ops::log::init_with_writer(&config, || LogWriter).unwrap();
    let (_b, addr) = plain(|c| c);
    let r = request(
        addr,
        "POST",
        "/kbs/v0/auth",
        &[("Content-Type", "application/json"), ("x-request-id", "log-test-1")],
        AUTH,
    );
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let session = cookie.split_once('=').unwrap().1.to_owned();
    // Present the cookie on a second request: it must not be logged either.
    let r2 = request(
        addr,
        "POST",
        "/kbs/v0/attest",
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &cookie),
            ("x-request-id", "log-test-2"),
        ],
        b"{}",
    );
    assert_eq!(r2.status, 400);

    let logs = String::from_utf8(LOGS.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of = |id: &str| -> Vec<&Value> {
        lines.iter().filter(|l| l["span"]["request_id"] == id).collect()
    };
    let first = of("log-test-1");
    let done =
        first.iter().find(|l| l["fields"]["message"] == "request done").expect("access line");
    assert_eq!(done["level"], "INFO");
    assert_eq!(done["fields"]["status"], 200);
    assert_eq!(done["span"]["method"], "POST");
    assert_eq!(done["span"]["route"], "/kbs/v0/auth");
    assert_eq!(done["span"]["name"], "request");
    assert!(done["timestamp"].is_string());
    assert!(done["fields"]["duration_ms"].is_number());
    // The decision line runs in the same request span.
    assert!(first.iter().any(|l| l["target"] == "keylatch::decision"), "{logs}");
    assert!(of("log-test-2").iter().any(|l| l["fields"]["status"] == 400), "{logs}");
    // The session id is the cookie value, a credential: no line carries it (the decision
    // record writes only a digest of it).
    assert!(logs.lines().count() >= 4, "{logs}");
    assert!(!logs.contains(&session), "session id leaked into logs: {logs}");
    assert!(!logs.contains("kbs-session-id="), "cookie header leaked into logs");
}

// ---------------------------------------------------------------- graceful shutdown

#[test]
fn shutdown_finishes_an_in_flight_request_and_refuses_new_connections() {
    let (b, _) = plain(|c| c);
    let listener = b.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = b.rt.spawn(keylatch_server::serve(listener, b.state.clone(), async move {
        let _ = stopped.await;
    }));

    // A request whose body is only half sent. `Expect: 100-continue` makes the server say when
    // the handler starts reading the body: after that, the request is in flight.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (first, rest) = AUTH.split_at(AUTH.len() / 2);
    write!(
        slow,
        "POST /kbs/v0/auth HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        AUTH.len()
    )
    .unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        slow.read_exact(&mut byte).unwrap();
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&interim));
    slow.write_all(first).unwrap();

    stop.send(()).unwrap();
    // New connections are refused once the accept loop has stopped (polled).
    let mut refused = false;
    for _ in 0..500 {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert!(refused, "new connections still accepted after shutdown");
    assert!(!served.is_finished(), "serve returned with a request in flight");

    // The in-flight request completes normally, and then the server is done.
    slow.write_all(rest).unwrap();
    let mut out = Vec::new();
    slow.read_to_end(&mut out).unwrap();
    let reply = parse(&out);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert!(reply.json()["nonce"].is_string());
    b.rt.block_on(served).unwrap().unwrap();
}
