//! The broker under hostile load, over the network: slow clients (a TCP connection that never
//! starts TLS, a TLS connection that never sends a request, a request head or body trickled or
//! stalled) are cut off after `client_timeout_s` while other guests are served; thousands of
//! concurrent handshakes get either their challenge or the documented 429, and hundreds of
//! concurrent full releases each get exactly the key, one audit entry apiece. After each, the
//! broker is healthy and releases to a genuine guest.

// reason: tests fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Read as _;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use e2e::https::{request, Client, Conn};
use e2e::{BrokerDir, Tee, ALLOW_SIMULATED, DISK_KEY};

/// `client_timeout_s` of the slow-client broker.
const CLIENT_TIMEOUT_S: i64 = 2;
/// How long a test waits for the broker to cut a slow client off before calling it a failure
/// (a hang guard, far above `CLIENT_TIMEOUT_S`).
const CUT_OFF_GUARD: Duration = Duration::from_secs(30);
/// Threads with small stacks: a thousand blocking clients at once.
const CLIENT_STACK: usize = 256 * 1024;
const AUTH_BODY: &[u8] = br#"{"version":"0.4.0","tee":"snp","extra-params":""}"#;

/// A broker with [`DISK_KEY`] = a random key under the simulated policy, configured by `edit`.
fn broker_with(edit: impl FnOnce(&mut toml::Table)) -> (BrokerDir, e2e::Broker, [u8; 32]) {
    let dir = BrokerDir::soft().unwrap();
    dir.edit_config(edit).unwrap();
    let key = e2e::random_key().unwrap();
    dir.resource_put(DISK_KEY, &key).unwrap();
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap();
    let broker = dir.start().unwrap();
    (dir, broker, key)
}

fn release_entries(dir: &BrokerDir) -> usize {
    dir.verified_audit()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["kind"] == "release" && e["entry"]["decision"] == "allow")
        .count()
}

/// The broker is healthy and a genuine guest still gets exactly `key`.
fn still_serves(broker: &e2e::Broker, key: &[u8]) {
    broker.client().unwrap().healthy().unwrap();
    let got = broker.target().release_in_process(Tee::Snp, DISK_KEY);
    assert_eq!(got.as_deref(), Ok(key), "broker log:\n{}", broker.log());
}

/// Whether the server ended a raw TCP connection (EOF or reset) within the guard.
fn tcp_closed_by_peer(sock: &mut TcpStream) -> bool {
    sock.set_read_timeout(Some(CUT_OFF_GUARD)).unwrap();
    let mut buf = [0u8; 64];
    match sock.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => {
            !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        }
    }
}

#[test]
fn slow_and_stalled_clients_are_cut_off_while_guests_are_served() {
    let (_dir, broker, key) = broker_with(|t| {
        t.insert("client_timeout_s".into(), toml::Value::Integer(CLIENT_TIMEOUT_S));
    });
    let client = broker.client().unwrap();

    // 1. TCP connected, TLS never started.
    let mut silent_tcp = TcpStream::connect(broker.addr()).unwrap();
    // 2. TLS done, no request ever sent (and after one request, an idle keep-alive).
    let mut silent_tls = client.connect().unwrap();
    // 3. A request head trickled a byte at a time: never completes within the timeout.
    let head = request("POST", "/kbs/v0/auth", &[("content-type", "application/json")], None);
    let trickle_head = std::thread::spawn({
        let client = client.clone();
        move || {
            let mut conn = client.connect().unwrap();
            for byte in &head {
                if conn.send(std::slice::from_ref(byte)).is_err() {
                    return "closed";
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            "sent whole head"
        }
    });
    // 4. A complete head announcing 100 body bytes, of which 10 arrive.
    let mut stalled_body = client.connect().unwrap();
    let mut partial = request(
        "POST",
        "/kbs/v0/auth",
        &[("content-type", "application/json")],
        Some(&[b' '; 100]),
    );
    partial.truncate(partial.len() - 90);
    stalled_body.send(&partial).unwrap();
    // 5. A body trickled a byte every 300 ms: each byte comes before the timeout, the whole
    // body does not.
    let trickle_body = std::thread::spawn({
        let client = client.clone();
        move || {
            let mut conn = client.connect().unwrap();
            let whole = request(
                "POST",
                "/kbs/v0/auth",
                &[("content-type", "application/json")],
                Some(&[b' '; 100]),
            );
            let head_len = whole.len() - 100;
            conn.send(&whole[..head_len]).unwrap();
            for byte in &whole[head_len..] {
                if conn.send(std::slice::from_ref(byte)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            conn.read_reply()
        }
    });
    // 6. A hundred more stalled bodies held open at once.
    let mut stalled_many: Vec<Conn> = (0..100)
        .map(|_| {
            let mut c = client.connect().unwrap();
            c.send(&partial).unwrap();
            c
        })
        .collect();

    // Meanwhile a genuine guest is served.
    still_serves(&broker, &key);

    assert!(tcp_closed_by_peer(&mut silent_tcp), "a connection that never started TLS stays open");
    assert!(silent_tls.closed_by_peer(CUT_OFF_GUARD), "a silent TLS connection stays open");
    assert_eq!(trickle_head.join().unwrap(), "closed", "a trickled request head was waited for");
    let reply = stalled_body.read_reply().unwrap();
    assert_eq!((reply.status, reply.error_type().as_deref()), (408, Some("request-timeout")));
    let reply = trickle_body.join().unwrap().unwrap();
    assert_eq!((reply.status, reply.error_type().as_deref()), (408, Some("request-timeout")));
    for conn in &mut stalled_many {
        let reply = conn.read_reply().unwrap();
        assert_eq!(reply.error_type().as_deref(), Some("request-timeout"), "{}", reply.text());
    }

    // An idle keep-alive connection after one served request is closed too.
    let mut keep_alive = client.connect().unwrap();
    let ping = b"GET /healthz HTTP/1.1\r\nhost: keylatch\r\n\r\n";
    assert_eq!(keep_alive.exchange(ping).unwrap().status, 200);
    assert!(keep_alive.closed_by_peer(CUT_OFF_GUARD), "an idle keep-alive connection stays open");

    still_serves(&broker, &key);
}

/// `n` clients that each connect, complete TLS and send `POST /kbs/v0/auth` at the same moment
/// (a barrier releases them together); returns each one's (status, error type).
fn concurrent_auths(client: &Client, n: usize) -> Vec<(u16, Option<String>, bool)> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (client, barrier) = (client.clone(), Arc::clone(&barrier));
            std::thread::Builder::new()
                .stack_size(CLIENT_STACK)
                .spawn(move || {
                    barrier.wait();
                    let reply = client.post_json("/kbs/v0/auth", &[], AUTH_BODY).unwrap();
                    let retry_after = reply.header("retry-after").is_some();
                    (reply.status, reply.error_type(), retry_after)
                })
                .unwrap()
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn thousands_of_concurrent_handshakes_get_a_challenge_or_a_documented_429() {
    const HANDSHAKES: usize = 2000;
    // The default configuration, rate limit included: one address, far beyond its burst.
    let (dir, broker, key) = broker_with(|_| {});
    let client = broker.client().unwrap();

    let replies = concurrent_auths(&client, HANDSHAKES);

    let challenged = replies.iter().filter(|(s, t, _)| *s == 200 && t.is_none()).count();
    let limited = replies
        .iter()
        .filter(|(s, t, retry)| *s == 429 && t.as_deref() == Some("rate-limited") && *retry)
        .count();
    println!("{HANDSHAKES} concurrent handshakes: {challenged} challenged, {limited} rate-limited");
    assert_eq!(challenged + limited, HANDSHAKES, "undocumented answers: {replies:?}");
    assert!(challenged >= 300, "the burst of 300 was not served: {challenged}");
    assert!(limited > 0, "2000 requests at once from one address were not limited");
    // The limit lifts (the agent waits out 429s within its deadline) and nothing was released.
    let got = broker.target().get_resource(Tee::Tdx, DISK_KEY).unwrap();
    assert_eq!((got.code, got.stdout.as_slice()), (Some(0), key.as_slice()), "{}", got.stderr);
    broker.client().unwrap().healthy().unwrap();
    assert_eq!(release_entries(&dir), 1);
}

#[test]
fn hundreds_of_concurrent_releases_each_get_the_key_with_one_audit_entry_apiece() {
    const AUTHS: usize = 1500;
    const RELEASES: usize = 300;
    // Rate limit off: every request is a guest to be served, all from 127.0.0.1.
    let (dir, broker, key) = broker_with(|t| {
        let mut limit = toml::Table::new();
        limit.insert("per_second".into(), toml::Value::Integer(0));
        t.insert("rate_limit".into(), toml::Value::Table(limit));
    });

    let replies = concurrent_auths(&broker.client().unwrap(), AUTHS);
    assert!(replies.iter().all(|(s, _, _)| *s == 200), "{replies:?}");

    let barrier = Arc::new(Barrier::new(RELEASES));
    let guests: Vec<_> = (0..RELEASES)
        .map(|i| {
            // Calls may wait their turn behind hundreds of others on two cores.
            let target = e2e::AgentTarget { deadline_s: 60, ..broker.target() };
            let barrier = Arc::clone(&barrier);
            std::thread::Builder::new()
                .stack_size(4 * CLIENT_STACK)
                .spawn(move || {
                    barrier.wait();
                    let tee = if i % 2 == 0 { Tee::Snp } else { Tee::Tdx };
                    target.release_in_process(tee, DISK_KEY)
                })
                .unwrap()
        })
        .collect();
    let results: Vec<_> = guests.into_iter().map(|g| g.join().unwrap()).collect();

    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "{} of {RELEASES} failed, e.g. {:?}", failures.len(), failures[0]);
    assert!(results.iter().all(|r| r.as_deref() == Ok(key.as_slice())));
    still_serves(&broker, &key);
    assert_eq!(release_entries(&dir), RELEASES + 1);
}
