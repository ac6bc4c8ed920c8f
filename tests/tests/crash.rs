//! Crash safety of the real `keylatch serve` on its SQLite store: the broker is SIGKILLed at a
//! random point during a load of releases (full KBS handshakes) and admin-API writes, round
//! after round on one directory, and after every kill
//!
//! - the audit log of the crashed store exports and verifies offline (`keylatch audit verify`);
//! - every key a guest received has its `release` entry (write-ahead: entry durable, then key
//!   sent), and the only entries beyond those are for releases in flight at a kill;
//! - every acknowledged admin write (a 2xx reply received whole) has its allowed audit entry;
//! - the broker starts again on the directory (the store opens) and serves `/readyz`;
//! - every acknowledged write is still there with at least its acknowledged version, a sampled
//!   resource releases exactly the value that was acknowledged, and a resource acknowledged as
//!   disabled is refused.
//!
//! - no resource or policy version is in the store without an entry: its outcome entry, or for
//!   a write in flight at the kill, the intent entry the broker writes before every change.
//!
//! The kill points come from a seed printed at the start (`/dev/urandom`, or
//! `KEYLATCH_CRASH_SEED=N` to replay one run's choices).

// reason: tests fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::https::Client as Https;
use e2e::{AgentTarget, Broker, BrokerDir, Tee, ALLOW_SIMULATED};
use serde_json::{json, Value};

/// Kills (one per round), each followed by a restart on the same directory.
const ROUNDS: u64 = 6;
const RELEASE_WORKERS: usize = 3;
const ADMIN_WRITERS: usize = 2;
/// The resource the release workers fetch over and over.
const LOAD_PATH: &str = "crash/disk/load";
/// [`ALLOW_SIMULATED`] as the admin API takes a policy: JSON.
const POLICY_JSON: &str =
    r#"{"rules":[{"name":"sim","tees":["snp","tdx"],"allow_simulated":true}]}"#;
/// Whatever the drawn kill point, the broker dies by this time into a round's load.
const KILL_GUARD: Duration = Duration::from_secs(5);

/// An admin write whose 2xx reply was received whole.
#[derive(Debug, Clone)]
enum Acked {
    /// `PUT /admin/v1/resources/<path>` with `value`.
    Put { path: String, version: u64, value: [u8; 32] },
    /// `PUT /admin/v1/policies/<path>`.
    Policy { path: String, version: u64 },
    /// `PATCH /admin/v1/resources/<path>` with `{"state": "disabled"}`.
    Disable { path: String },
}

impl Acked {
    fn path(&self) -> &str {
        match self {
            Self::Put { path, .. } | Self::Policy { path, .. } | Self::Disable { path } => path,
        }
    }
}

/// What one round's load did, over all its workers.
#[derive(Debug, Default)]
struct Load {
    /// Keys guests received (each checked against the load key).
    received: usize,
    /// Releases that failed after the kill flag was raised: in flight at the kill.
    in_flight: usize,
    acked: Vec<Acked>,
    /// Paths with a write in flight at the kill (it may or may not have taken effect).
    unsettled: BTreeSet<String>,
    /// Failures while the broker was alive: each one a product bug.
    failures: Vec<String>,
    ops: usize,
}

/// Everything acknowledged and received so far, across rounds.
#[derive(Debug, Default)]
struct Ledger {
    received: usize,
    in_flight: usize,
    acked: Vec<Acked>,
    unsettled: BTreeSet<String>,
    kills: usize,
}

#[test]
fn sigkill_during_releases_and_admin_writes_loses_nothing_acknowledged() {
    let started = Instant::now();
    let dir = match BrokerDir::pkcs11().unwrap() {
        Some(dir) => dir,
        None => BrokerDir::soft().unwrap(),
    };
    let mut rng = Rng::new(seed());
    let load_key = e2e::random_key().unwrap();
    dir.resource_put(LOAD_PATH, &load_key).unwrap();
    dir.policy_set(LOAD_PATH, ALLOW_SIMULATED).unwrap();
    let token = dir.admin_token("key-custodian", &["crash/"]).unwrap();
    let mut ledger = Ledger::default();
    let mut entries = Vec::new();

    for round in 0..=ROUNDS {
        let broker = dir.start().unwrap_or_else(|e| panic!("round {round}: restart: {e:#}"));
        let https = broker.client().unwrap();
        https.healthy().unwrap_or_else(|e| panic!("round {round}: after restart: {e:#}"));
        let stored = check_acknowledged(&https, &token, &ledger, round);
        let unaudited = stored.without_entry(&entries);
        assert!(unaudited.is_empty(), "round {round}: stored but never audited: {unaudited:?}");
        sample_releases(&broker, &mut ledger, &mut rng, round);
        if round == ROUNDS {
            broker.kill().unwrap();
            check_audit(&dir, &ledger, round);
            break;
        }

        let kill_after = KillPoint::draw(&mut rng);
        let load = run_load(broker, &https, &token, round, kill_after, load_key);
        assert!(
            load.failures.is_empty(),
            "round {round}: failures before the kill: {:#?}",
            load.failures
        );
        println!(
            "round {round}: killed {kill_after:?} after {} ops: {} keys received, {} releases in \
             flight, {} writes acknowledged, {} in flight",
            load.ops,
            load.received,
            load.in_flight,
            load.acked.len(),
            load.unsettled.len()
        );
        ledger.received += load.received;
        ledger.in_flight += load.in_flight;
        ledger.acked.extend(load.acked);
        ledger.unsettled.extend(load.unsettled);
        ledger.kills += 1;
        // The store exactly as the crash left it.
        entries = check_audit(&dir, &ledger, round);
    }
    println!(
        "{} kills, {} keys received, {} releases in flight at kills, {} writes acknowledged, \
         {:.1} s",
        ledger.kills,
        ledger.received,
        ledger.in_flight,
        ledger.acked.len(),
        started.elapsed().as_secs_f64()
    );
}

/// When a round's broker dies.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// This long after the load started.
    Delay(Duration),
    /// Once the workers completed this many operations.
    Ops(usize),
}

impl KillPoint {
    fn draw(rng: &mut Rng) -> Self {
        if rng.below(2) == 0 {
            Self::Delay(Duration::from_millis(100 + rng.below(1400)))
        } else {
            Self::Ops(1 + usize::try_from(rng.below(60)).unwrap())
        }
    }
}

/// Starts the workers on `broker`, SIGKILLs it ([`Broker::kill`]) at `kill`, and collects what
/// the workers saw.
fn run_load(
    broker: Broker,
    https: &Https,
    token: &str,
    round: u64,
    kill: KillPoint,
    load_key: [u8; 32],
) -> Load {
    let killed = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let load = Arc::new(Mutex::new(Load::default()));
    let mut threads = Vec::new();
    for _ in 0..RELEASE_WORKERS {
        let (killed, ops, load) = (Arc::clone(&killed), Arc::clone(&ops), Arc::clone(&load));
        let guest = guest(&broker);
        threads.push(std::thread::spawn(move || {
            while !killed.load(Ordering::SeqCst) {
                let got = guest.release_in_process(Tee::Tdx, LOAD_PATH);
                let after_kill = killed.load(Ordering::SeqCst);
                let mut load = load.lock().unwrap();
                match got {
                    Ok(key) if key == load_key => load.received += 1,
                    Ok(_) => load.failures.push("a guest received a wrong key".into()),
                    Err(_) if after_kill => {
                        load.in_flight += 1;
                        break;
                    }
                    Err(e) => {
                        load.failures.push(format!("release: {e}"));
                        break;
                    }
                }
                load.ops += 1;
                ops.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for w in 0..ADMIN_WRITERS {
        let (killed, ops, load) = (Arc::clone(&killed), Arc::clone(&ops), Arc::clone(&load));
        let (https, token) = (https.clone(), token.to_owned());
        threads.push(std::thread::spawn(move || {
            let writer = Writer { https, token };
            for n in 0.. {
                if killed.load(Ordering::SeqCst) {
                    break;
                }
                let path = format!("crash/key/r{round}-w{w}-{n}");
                if !writer.cycle(&path, n, &killed, &ops, &load) {
                    break;
                }
            }
        }));
    }

    let begun = Instant::now();
    loop {
        let due = match kill {
            KillPoint::Delay(d) => begun.elapsed() >= d,
            KillPoint::Ops(n) => ops.load(Ordering::SeqCst) >= n,
        };
        let stopped = threads.iter().all(std::thread::JoinHandle::is_finished);
        if due || stopped || begun.elapsed() >= KILL_GUARD {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Raised before the signal, so every failure the kill causes is seen as one.
    killed.store(true, Ordering::SeqCst);
    broker.kill().unwrap_or_else(|e| panic!("round {round}: SIGKILL: {e:#}"));
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(load).unwrap().into_inner().unwrap()
}

/// One admin writer on the admin API.
struct Writer {
    https: Https,
    token: String,
}

impl Writer {
    /// One path's writes: put a value, set its policy, sometimes rotate it, sometimes disable
    /// it. `false` once a write failed (the broker is gone, or a bug was recorded).
    fn cycle(
        &self,
        path: &str,
        n: u64,
        killed: &AtomicBool,
        ops: &AtomicUsize,
        load: &Mutex<Load>,
    ) -> bool {
        let steps: &[&str] = match n % 4 {
            1 => &["put", "policy", "put"],
            3 => &["put", "policy", "disable"],
            _ => &["put", "policy"],
        };
        for step in steps {
            let value = e2e::random_key().unwrap();
            let reply = match *step {
                "put" => self.send(
                    "PUT",
                    &format!("/admin/v1/resources/{path}"),
                    &json!({"value": standard_base64(&value)}),
                ),
                "policy" => self.send(
                    "PUT",
                    &format!("/admin/v1/policies/{path}"),
                    &serde_json::from_str(POLICY_JSON).unwrap(),
                ),
                _ => self.send(
                    "PATCH",
                    &format!("/admin/v1/resources/{path}"),
                    &json!({"state": "disabled"}),
                ),
            };
            let after_kill = killed.load(Ordering::SeqCst);
            let mut load = load.lock().unwrap();
            let reply = match reply {
                Ok(r) if (200..300).contains(&r.status) => r,
                Ok(r) if !after_kill => {
                    load.failures.push(format!("{step} {path}: {} {}", r.status, r.text()));
                    return false;
                }
                Err(e) if !after_kill => {
                    load.failures.push(format!("{step} {path}: {e:#}"));
                    return false;
                }
                _ => {
                    load.unsettled.insert(path.to_owned());
                    return false;
                }
            };
            let version = || reply.json()["version"].as_u64().expect("a version in the reply");
            let acked = match *step {
                "put" => Acked::Put { path: path.to_owned(), version: version(), value },
                "policy" => Acked::Policy { path: path.to_owned(), version: version() },
                _ => Acked::Disable { path: path.to_owned() },
            };
            load.acked.push(acked);
            load.ops += 1;
            ops.fetch_add(1, Ordering::SeqCst);
        }
        true
    }

    fn send(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<e2e::https::Reply> {
        let bearer = format!("Bearer {}", self.token);
        let body = body.to_string();
        self.https.send(
            method,
            path,
            &[("authorization", &bearer), ("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    }
}

/// After a restart: every acknowledged write is in the store, with at least its version.
fn check_acknowledged(https: &Https, token: &str, ledger: &Ledger, round: u64) -> Stored {
    let bearer = format!("Bearer {token}");
    let listing = |what: &str| {
        let reply = https.get(&format!("/admin/v1/{what}"), &[("authorization", &bearer)]).unwrap();
        assert_eq!(reply.status, 200, "round {round}: list {what}: {}", reply.text());
        let items = reply.json()[what].as_array().cloned().unwrap();
        items
            .into_iter()
            .map(|i| (i["path"].as_str().unwrap().to_owned(), i))
            .collect::<BTreeMap<String, Value>>()
    };
    let (resources, policies) = (listing("resources"), listing("policies"));
    for acked in &ledger.acked {
        let lost = || format!("round {round}: acknowledged {acked:?} lost after the kill");
        match acked {
            Acked::Put { path, version, .. } => {
                let r = resources.get(path).unwrap_or_else(|| panic!("{}", lost()));
                let versions: Vec<u64> = r["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["version"].as_u64().unwrap())
                    .collect();
                assert!(versions.contains(version), "{}: versions {versions:?}", lost());
                assert!(r["current_version"].as_u64() >= Some(*version), "{}: {r}", lost());
            }
            Acked::Policy { path, version } => {
                let p = policies.get(path).unwrap_or_else(|| panic!("{}", lost()));
                assert!(p["current_version"].as_u64() >= Some(*version), "{}: {p}", lost());
            }
            // Checked by a release in `sample_releases`.
            Acked::Disable { path } => {
                assert!(resources.contains_key(path), "{}", lost());
            }
        }
    }
    Stored { resources, policies }
}

/// The admin API's resource and policy lists, by path.
struct Stored {
    resources: BTreeMap<String, Value>,
    policies: BTreeMap<String, Value>,
}

impl Stored {
    /// Written versions (under `crash/key/`) the audit log does not account for. A version is
    /// accounted for by its outcome entry (`allow`, same operation, path and version) or, when
    /// the process died between the store commit and that entry, by the intent entry written
    /// before the change: per operation and path, versions without an outcome entry may not
    /// outnumber intents without one.
    fn without_entry(&self, entries: &[Value]) -> Vec<String> {
        let admin = |decision: &'static str| {
            entries.iter().filter(move |e| e["kind"] == "admin" && e["decision"] == decision)
        };
        let audited: BTreeSet<(&str, &str, u64)> = admin("allow")
            .filter_map(|e| {
                let r = &e["resource"];
                Some((e["reasons"][0].as_str()?, r["path"].as_str()?, r["version"].as_u64()?))
            })
            .collect();
        let mut spare_intents: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for e in admin("intent") {
            if let (Some(op), Some(path)) =
                (e["reasons"][0].as_str(), e["resource"]["path"].as_str())
            {
                *spare_intents.entry((op, path)).or_default() += 1;
            }
        }
        for (op, path, _) in &audited {
            *spare_intents.entry((op, path)).or_default() -= 1;
        }
        let mut missing = Vec::new();
        for (operation, list) in [("resource.put", &self.resources), ("policy.set", &self.policies)]
        {
            for (path, item) in list.iter().filter(|(p, _)| p.starts_with("crash/key/")) {
                for v in item["versions"].as_array().unwrap() {
                    let version = v["version"].as_u64().unwrap();
                    if audited.contains(&(operation, path.as_str(), version)) {
                        continue;
                    }
                    let spare = spare_intents.entry((operation, path.as_str())).or_default();
                    if *spare > 0 {
                        *spare -= 1;
                    } else {
                        missing.push(format!("{operation} {path} v{version}"));
                    }
                }
            }
        }
        missing
    }
}

/// After a restart: a guest gets exactly the acknowledged value of a sampled resource, and is
/// refused a resource acknowledged as disabled.
fn sample_releases(broker: &Broker, ledger: &mut Ledger, rng: &mut Rng, round: u64) {
    // Paths whose writes all settled: their newest acknowledged value, with a policy, active.
    let mut latest: BTreeMap<&str, [u8; 32]> = BTreeMap::new();
    let mut with_policy = BTreeSet::new();
    let mut disabled = BTreeSet::new();
    for acked in ledger.acked.iter().filter(|a| !ledger.unsettled.contains(a.path())) {
        match acked {
            Acked::Put { path, value, .. } => {
                latest.insert(path, *value);
            }
            Acked::Policy { path, .. } => {
                with_policy.insert(path.as_str());
            }
            Acked::Disable { path } => {
                disabled.insert(path.as_str());
            }
        }
    }
    let active: Vec<(&str, [u8; 32])> = latest
        .iter()
        .filter(|(p, _)| with_policy.contains(*p) && !disabled.contains(*p))
        .map(|(p, v)| (*p, *v))
        .collect();
    let disabled: Vec<&str> = disabled.into_iter().filter(|p| with_policy.contains(p)).collect();
    let mut received = 0;
    for _ in 0..2 {
        if active.is_empty() {
            break;
        }
        let (path, value) = active[usize::try_from(rng.below(active.len() as u64)).unwrap()];
        let got = guest(broker)
            .release_in_process(Tee::Snp, path)
            .unwrap_or_else(|e| panic!("round {round}: release of acknowledged {path}: {e}"));
        assert_eq!(got, value, "round {round}: {path} released other than its acknowledged value");
        received += 1;
    }
    if !disabled.is_empty() {
        let path = disabled[usize::try_from(rng.below(disabled.len() as u64)).unwrap()];
        let refused = guest(broker).release_in_process(Tee::Snp, path);
        let e = refused.expect_err(&format!("round {round}: {path} was acknowledged as disabled"));
        assert!(e.contains("resource-disabled"), "round {round}: {path}: {e}");
    }
    ledger.received += received;
}

/// The audit log verifies offline; it has a `release` entry for every key received (and at most
/// one more per release in flight at a kill) and an allowed entry for every acknowledged write.
fn check_audit(dir: &BrokerDir, ledger: &Ledger, round: u64) -> Vec<Value> {
    let lines = dir
        .verified_audit()
        .unwrap_or_else(|e| panic!("round {round}: audit after the kill: {e:#}"));
    let entries: Vec<&Value> = lines.iter().map(|l| &l["entry"]).collect();
    let releases =
        entries.iter().filter(|e| e["kind"] == "release" && e["decision"] == "allow").count();
    assert!(
        (ledger.received..=ledger.received + ledger.in_flight).contains(&releases),
        "round {round}: {releases} release entries for {} keys received ({} in flight at kills)",
        ledger.received,
        ledger.in_flight
    );
    let admin: BTreeSet<(&str, &str, Option<u64>)> = entries
        .iter()
        .filter(|e| e["kind"] == "admin" && e["decision"] == "allow")
        .filter_map(|e| {
            Some((
                e["reasons"][0].as_str()?,
                e["resource"]["path"].as_str()?,
                e["resource"]["version"].as_u64(),
            ))
        })
        .collect();
    for acked in &ledger.acked {
        let wanted: &[(&str, Option<u64>)] = match acked {
            Acked::Put { version, .. } => &[("resource.put", Some(*version))],
            Acked::Policy { version, .. } => &[("policy.set", Some(*version))],
            // One change, one record: the custody operation, with the caller as principal.
            Acked::Disable { .. } => &[("resource.disable", None)],
        };
        for (operation, version) in wanted {
            assert!(
                admin.contains(&(operation, acked.path(), *version)),
                "round {round}: acknowledged {acked:?} has no allowed {operation} entry"
            );
        }
    }
    println!(
        "round {round}: audit verifies: {} entries, {releases} release entries",
        entries.len()
    );
    lines.into_iter().map(|mut l| l["entry"].take()).collect()
}

/// Guests of `broker` that do not retry: a broker that is gone shows as an error at once.
fn guest(broker: &Broker) -> AgentTarget {
    AgentTarget { deadline_s: 0, ..broker.target() }
}

/// Standard padded base64 (what the admin API takes) from the wire's base64url.
fn standard_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The seed of this run's choices: `KEYLATCH_CRASH_SEED`, else fresh from the kernel. Printed.
fn seed() -> u64 {
    let seed = std::env::var("KEYLATCH_CRASH_SEED").map_or_else(
        |_| u64::from_le_bytes(e2e::random_key().unwrap()[..8].try_into().unwrap()),
        |s| s.parse().expect("KEYLATCH_CRASH_SEED is a u64"),
    );
    println!("crash seed {seed} (replay the kill points with KEYLATCH_CRASH_SEED={seed})");
    seed
}

/// SplitMix64: small, seedable, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
