//! Several `keylatch serve` processes on one PostgreSQL database are one broker: a handshake
//! may hop between replicas (challenge from one, attestation to another, the key from a third)
//! because every session lives in the database, the nonce stays single use across them, and
//! when a replica is SIGKILLed during a load of releases the others carry on.
//!
//! The throwaway PostgreSQL server is `e2e::postgres` (started by this test process).

// reason: tests fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{AgentTarget, Tee};
use e2e::{Broker, BrokerDir, ALLOW_SIMULATED, DISK_KEY};
use keylatch_agent::evidence::sim::SimSource;
use keylatch_agent::evidence::{EvidenceSource as _, SimTee};
use keylatch_agent::http::Http;
use keylatch_wire::{decrypt, report_data_binding, Jwe, KeyKind, TeeKeyPair};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// A broker directory whose state is a fresh PostgreSQL database, with [`DISK_KEY`] = `key`
/// under the simulated-evidence policy. `None` when PostgreSQL cannot run (outside CI).
fn shared_broker(key: &[u8]) -> Option<BrokerDir> {
    let server = e2e::postgres::server().unwrap()?;
    let dir = BrokerDir::soft().unwrap();
    dir.use_postgres(&server.database().unwrap(), &server.password_file).unwrap();
    dir.resource_put(DISK_KEY, key).unwrap();
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap();
    Some(dir)
}

fn http(broker: &Broker, dir: &BrokerDir) -> Http {
    Http::new(&broker.url(), &std::fs::read(dir.ca()).unwrap()).unwrap()
}

#[test]
fn handshake_hops_between_three_replicas_and_the_nonce_stays_single_use() {
    let key = e2e::random_key().unwrap();
    let Some(dir) = shared_broker(&key) else { return };
    let (a, b, c) =
        (dir.start().unwrap(), dir.start_replica().unwrap(), dir.start_replica().unwrap());
    assert_eq!(
        [a.addr(), b.addr(), c.addr()].iter().collect::<std::collections::BTreeSet<_>>().len(),
        3,
        "three processes, three ports"
    );

    // Challenge from replica A.
    let auth = http(&a, &dir)
        .post_json(
            "auth",
            "/kbs/v0/auth",
            None,
            json!({"version":"0.4.0","tee":"snp","extra-params":{"supported-hash-algorithms":["sha384"]}})
                .to_string()
                .as_bytes(),
            T,
        )
        .unwrap();
    assert_eq!(auth.status, 200, "{}", String::from_utf8_lossy(&auth.body));
    let cookie = auth.set_cookie[0].split(';').next().unwrap().to_owned();
    let nonce =
        serde_json::from_slice::<Value>(&auth.body).unwrap()["nonce"].as_str().unwrap().to_owned();

    // Evidence bound to that nonce, answered to replica B.
    let tee_key = TeeKeyPair::generate(KeyKind::P256).unwrap();
    let jwk = tee_key.public_jwk();
    let source = SimSource::load(SimTee::Snp, &dir.sim_pki(), None).unwrap();
    let evidence = source.evidence(&report_data_binding(&nonce, &jwk, "")).unwrap();
    let body = json!({
        "init-data": null,
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk.to_json()},
        "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
    })
    .to_string();
    let attest = http(&b, &dir)
        .post_json("attest", "/kbs/v0/attest", Some(&cookie), body.as_bytes(), T)
        .unwrap();
    assert_eq!(attest.status, 200, "{}", String::from_utf8_lossy(&attest.body));
    let token = serde_json::from_slice::<Value>(&attest.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same answer replayed to replica C: the nonce was spent on B.
    let replay = http(&c, &dir)
        .post_json("attest", "/kbs/v0/attest", Some(&cookie), body.as_bytes(), T)
        .unwrap();
    assert_eq!(replay.status, 401, "{}", String::from_utf8_lossy(&replay.body));

    // The key from replica C, by cookie and by bearer token.
    let path = format!("/kbs/v0/resource/{DISK_KEY}");
    for (cookie, bearer) in [(Some(cookie.as_str()), None), (None, Some(token.as_str()))] {
        let got = http(&c, &dir).get("resource", &path, cookie, bearer, T).unwrap();
        assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
        let plain = decrypt(&tee_key, &Jwe::from_json(&got.body).unwrap()).unwrap();
        assert_eq!(plain.as_slice(), key.as_slice());
    }
}

/// One full release (fresh client: auth, attest, resource) against `url`.
fn release(url: &str, dir: &BrokerDir) -> Result<Vec<u8>, String> {
    let target =
        AgentTarget { url: url.to_owned(), ca: dir.ca(), sim_pki: dir.sim_pki(), deadline_s: 0 };
    target.release_in_process(Tee::Tdx, DISK_KEY)
}

/// What one release did: which replica, and whether it released the right key.
#[derive(Debug)]
struct Release {
    replica: usize,
    after_kill: bool,
    outcome: Result<Vec<u8>, String>,
}

#[test]
fn replicas_carry_on_when_one_is_killed_during_a_load_of_releases() {
    const WORKERS: usize = 4;
    const BEFORE_KILL: usize = 12;
    const AFTER_KILL: usize = 24;
    let key = e2e::random_key().unwrap();
    let Some(dir) = shared_broker(&key) else { return };
    let replicas =
        vec![dir.start().unwrap(), dir.start_replica().unwrap(), dir.start_replica().unwrap()];
    let urls: Vec<String> = replicas.iter().map(Broker::url).collect();
    let dir = Arc::new(dir);
    let killed = Arc::new(AtomicBool::new(false));
    let started_after = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::<Release>::new()));

    let mut victim = Some(replicas.into_iter());
    let mut survivors = Vec::new();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (urls, dir) = (urls.clone(), Arc::clone(&dir));
            let (killed, started_after, done, log) = (
                Arc::clone(&killed),
                Arc::clone(&started_after),
                Arc::clone(&done),
                Arc::clone(&log),
            );
            std::thread::spawn(move || {
                for i in 0.. {
                    let after_kill = killed.load(Ordering::SeqCst);
                    if after_kill && started_after.fetch_add(1, Ordering::SeqCst) >= AFTER_KILL {
                        break;
                    }
                    // Round robin over all three; after the kill, over the two survivors.
                    let replica = if after_kill { (w + i) % 2 } else { (w + i) % 3 };
                    let outcome = release(&urls[replica], &dir);
                    log.lock().unwrap().push(Release { replica, after_kill, outcome });
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // SIGKILL replica 2 once the load is well under way (polled, not timed).
    while done.load(Ordering::SeqCst) < BEFORE_KILL {
        std::thread::yield_now();
    }
    let mut all = victim.take().unwrap();
    survivors.push(all.next().unwrap());
    survivors.push(all.next().unwrap());
    all.next().unwrap().kill().unwrap();
    killed.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }

    let log = log.lock().unwrap();
    let mut released = 0;
    for r in log.iter() {
        match (&r.outcome, r.replica, r.after_kill) {
            (Ok(k), _, _) => {
                assert_eq!(
                    k.as_slice(),
                    key.as_slice(),
                    "replica {} released a wrong key",
                    r.replica
                );
                released += 1;
            }
            // In flight on the killed replica when it died: the guest retries elsewhere.
            (Err(_), 2, false) => {}
            (Err(e), replica, after_kill) => {
                panic!("release on live replica {replica} (after kill: {after_kill}) failed: {e}")
            }
        }
    }
    let after: Vec<_> = log.iter().filter(|r| r.after_kill).collect();
    assert!(after.len() >= AFTER_KILL, "{} releases after the kill", after.len());
    assert!(after.iter().all(|r| r.outcome.is_ok() && r.replica < 2));
    assert!(released >= BEFORE_KILL + AFTER_KILL - 3, "released {released}");
    // Survivors still serve a fresh guest each.
    for s in &survivors {
        assert_eq!(release(&s.url(), &dir).unwrap(), key.to_vec());
    }
    // The audit log in the shared database: it verifies offline, and every release a guest
    // received has its entry (an entry may exist without a received key only for a release
    // that was in flight on the killed replica: the entry is written before the key leaves).
    let received = released + survivors.len();
    let lost_in_flight = log.iter().filter(|r| r.outcome.is_err()).count();
    let entries = dir.verified_audit().unwrap();
    let release_entries = entries
        .iter()
        .filter(|l| l["entry"]["kind"] == "release" && l["entry"]["decision"] == "allow")
        .count();
    assert!(
        (received..=received + lost_in_flight).contains(&release_entries),
        "{release_entries} release entries for {received} received keys ({lost_in_flight} lost in flight)"
    );
}
