//! Attacks on the admin API (`/admin/v1/...`) and on the release endpoint's lifecycle and
//! operational refusals, against the real `keylatch serve` over HTTPS. This suite owns:
//!
//! - authentication and authorization of every admin route: no, malformed, unknown, revoked and
//!   expired tokens (401 `admin-unauthenticated`), every wrong role and every path outside a
//!   token's prefixes (403 `forbidden`), filtered lists; each refusal changes nothing and is in
//!   the verified audit log as a denial;
//! - malformed admin bodies, queries, paths and methods (400, 404, 405, 413), storing nothing;
//! - reference-value publication over HTTP: every documented refusal (400, 404, 409, 422), the
//!   stored bundle unchanged;
//! - release refusals an operator causes or suffers: disabled (403) and destroyed (404)
//!   resources, the rate limit (429 with `Retry-After`), missing collateral for real evidence
//!   (503), a vanished HSM token (503, `/readyz` not ready, then recovery), and `keylatch kek
//!   retire` of a key-encryption key in use.
//!
//! Every reply is searched for the test's secrets (raw, base64, base64url, hex); every test ends
//! with a healthy broker that still releases the genuine key, and a log without the secrets.

// reason: tests fail loudly at the line that broke.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::https::{Client, Reply};
use e2e::{bins, Broker, BrokerDir, Outcome, Tee, ALLOW_SIMULATED, DISK_KEY};
use keylatch_agent::evidence::sim::SimSource;
use keylatch_agent::evidence::{EvidenceSource as _, SimTee};
use keylatch_wire::{decrypt, report_data_binding, Jwe, KeyKind, TeeKeyPair};
use serde_json::{json, Value};

/// The release policy of [`ALLOW_SIMULATED`] as the admin API takes it (JSON).
fn allow_simulated_json() -> Value {
    json!({"rules": [{"name": "sim", "tees": ["snp", "tdx"], "allow_simulated": true}]})
}

// ---------------------------------------------------------------- secrets and replies

/// Standard base64 with padding (the admin API's `value` encoding).
fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A distinctive random secret and every form it could leak in.
struct Secret {
    bytes: [u8; 32],
}

impl Secret {
    fn new() -> Self {
        Self { bytes: e2e::random_key().unwrap() }
    }

    fn forms(&self) -> Vec<Vec<u8>> {
        let b64 = b64(&self.bytes);
        vec![
            self.bytes.to_vec(),
            // Without the padding, which depends on alignment inside a larger encoding.
            b64.trim_end_matches('=').as_bytes().to_vec(),
            keylatch_wire::b64::encode(&self.bytes).into_bytes(),
            hex::encode(self.bytes).into_bytes(),
            hex::encode(self.bytes).to_uppercase().into_bytes(),
        ]
    }
}

/// A client that searches every reply (status line aside) for forbidden byte strings: the
/// secrets of the test and the admin tokens it holds.
struct Api {
    client: Client,
    forbidden: Vec<Vec<u8>>,
}

impl Api {
    fn new(broker: &Broker, secrets: &[&Secret]) -> Self {
        Self {
            client: broker.client().unwrap(),
            forbidden: secrets.iter().flat_map(|s| s.forms()).collect(),
        }
    }

    /// A string that must never appear in a reply (an admin token, say).
    fn forbid(&mut self, text: &str) {
        self.forbidden.push(text.as_bytes().to_vec());
    }

    fn assert_clean(&self, what: &str, reply: &Reply) {
        let mut all = reply.body.clone();
        for (name, value) in &reply.headers {
            all.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
        for needle in &self.forbidden {
            assert!(!contains(&all, needle), "{what}: a secret is in the reply: {}", reply.text());
        }
    }

    /// `method path` with an optional raw `Authorization` value and body.
    fn send(&self, method: &str, path: &str, auth: Option<&str>, body: Option<&[u8]>) -> Reply {
        let mut headers = Vec::new();
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let reply = self.client.send(method, path, &headers, body).unwrap();
        self.assert_clean(&format!("{method} {path}"), &reply);
        reply
    }

    /// `method path` as `token`, with a JSON body.
    fn call(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        self.send(method, path, Some(&format!("Bearer {token}")), body.as_deref())
    }

    /// `method path` as `token` with raw body bytes.
    fn call_raw(&self, token: &str, method: &str, path: &str, body: &[u8]) -> Reply {
        self.send(method, path, Some(&format!("Bearer {token}")), Some(body))
    }

    /// A call that must succeed with `status`; returns the JSON answer.
    fn ok(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> Value {
        let reply = self.call(token, method, path, body);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text());
        reply.json()
    }

    /// `/readyz` and `/healthz` both 200; every reply clean.
    fn healthy(&self) {
        self.client.healthy().unwrap();
        for path in ["/healthz", "/readyz"] {
            let reply = self.send("GET", path, None, None);
            self.assert_clean(path, &reply);
        }
    }
}

/// Asserts a refusal's exact status and error `type`, and that it has a `detail`; prints the
/// case for the run's record.
fn refused(reply: &Reply, status: u16, kind: &str, case: &str) {
    assert_eq!(
        (reply.status, reply.error_type().as_deref()),
        (status, Some(kind)),
        "{case}: {}",
        reply.text()
    );
    println!("{case}: {status} {kind}");
}

// ---------------------------------------------------------------- brokers and tokens

/// A soft-keystore broker directory with [`DISK_KEY`] = `secret` releasable to simulated guests.
fn soft_dir(secret: &Secret) -> BrokerDir {
    let dir = BrokerDir::soft().unwrap();
    dir.resource_put(DISK_KEY, &secret.bytes).unwrap();
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap();
    dir
}

/// Sets a top-level key of `keylatch.toml`.
fn set_config(dir: &BrokerDir, key: &str, value: toml::Value) {
    dir.edit_config(|t| {
        t.insert(key.into(), value);
    })
    .unwrap();
}

/// A `[table]` from `key = value` pairs.
fn table(pairs: &[(&str, toml::Value)]) -> toml::Value {
    toml::Value::Table(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
}

/// The four roles' unscoped tokens, made with `keylatch token create` on the broker host.
struct Tokens {
    admin: String,
    custodian: String,
    author: String,
    auditor: String,
}

impl Tokens {
    fn create(dir: &BrokerDir) -> Self {
        Self {
            admin: dir.admin_token("admin", &[]).unwrap(),
            custodian: dir.admin_token("key-custodian", &[]).unwrap(),
            author: dir.admin_token("policy-author", &[]).unwrap(),
            auditor: dir.admin_token("auditor", &[]).unwrap(),
        }
    }

    fn of(&self, role: &str) -> &str {
        match role {
            "admin" => &self.admin,
            "key-custodian" => &self.custodian,
            "policy-author" => &self.author,
            "auditor" => &self.auditor,
            other => panic!("no role {other}"),
        }
    }

    fn all(&self) -> [&str; 4] {
        [&self.admin, &self.custodian, &self.author, &self.auditor]
    }
}

const ROLES: [&str; 4] = ["admin", "key-custodian", "policy-author", "auditor"];

/// The tokens listed by an admin: name → row.
fn token_rows(api: &Api, admin: &str) -> BTreeMap<String, Value> {
    let list = api.ok(admin, "GET", "/admin/v1/tokens", None, 200);
    for row in list["tokens"].as_array().unwrap() {
        assert!(row.get("hash").is_none() && row.get("token").is_none(), "{row}");
    }
    list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

// ---------------------------------------------------------------- reference-value authors

/// Author keys made with `refval keygen`: alice and bob are trusted for `web` (threshold 2),
/// mallory is not.
struct Authors {
    alice: PathBuf,
    bob: PathBuf,
    mallory: PathBuf,
    dir: PathBuf,
}

fn refval() -> Command {
    Command::new(bins::path(bins::REFVAL).unwrap())
}

impl Authors {
    fn create(dir: &BrokerDir) -> Self {
        let base = dir.path().join("authors");
        std::fs::create_dir_all(&base).unwrap();
        let key = |name: &str| {
            let path = base.join(format!("{name}.key"));
            let out = refval().arg("keygen").arg("--out").arg(&path).output().unwrap();
            Outcome::from(out).success("refval keygen").unwrap();
            path
        };
        Self { alice: key("alice"), bob: key("bob"), mallory: key("mallory"), dir: base }
    }

    /// `[[reference_values]] name = "web"`, alice and bob, threshold 2.
    fn trust_web(&self, dir: &BrokerDir) {
        let public = |k: &Path| toml::Value::String(format!("{}.pub", k.display()));
        let web = table(&[
            ("name", "web".into()),
            ("author_keys", toml::Value::Array(vec![public(&self.alice), public(&self.bob)])),
            ("threshold", 2.into()),
        ]);
        set_config(dir, "reference_values", toml::Value::Array(vec![web]));
    }

    /// `refval sign` of a bundle named `name`, version `version`, expiring `expires`.
    fn sign(&self, name: &str, version: u64, expires: &str, keys: &[&PathBuf]) -> Vec<u8> {
        let stem = self.dir.join(format!("{name}-{version}-{expires}-{}", keys.len()));
        let source = stem.with_extension("toml");
        let out = stem.with_extension("cose");
        std::fs::write(
            &source,
            format!(
                "name = \"{name}\"\nversion = {version}\nexpires = {expires}\n[snp]\nmeasurements = [\"{}\"]\n",
                "00".repeat(48)
            ),
        )
        .unwrap();
        let mut cmd = refval();
        cmd.arg("sign").arg(&source).arg("--out").arg(&out);
        for k in keys {
            cmd.arg("--key").arg(k);
        }
        Outcome::from(cmd.output().unwrap()).success("refval sign").unwrap();
        let bytes = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        bytes
    }
}

const FAR: &str = "2100-01-01T00:00:00Z";

fn publish_body(bundle: &[u8]) -> Value {
    json!({"bundle": b64(bundle)})
}

// ---------------------------------------------------------------- the release protocol

/// An attested KBS session: its cookie and the tee key the resource is encrypted to.
struct Session {
    cookie: String,
    key: TeeKeyPair,
}

/// `/kbs/v0/auth` for `tee`: the `kbs-session-id=...` cookie and the nonce.
fn challenge(api: &Api, tee: &str) -> (String, String) {
    let body = json!({"version": "0.4.0", "tee": tee, "extra-params": {"supported-hash-algorithms": ["sha384"]}});
    let reply = api.send("POST", "/kbs/v0/auth", None, Some(body.to_string().as_bytes()));
    assert_eq!(reply.status, 200, "auth: {}", reply.text());
    let cookie =
        reply.cookies().into_iter().find(|c| c.starts_with("kbs-session-id=")).expect("cookie");
    (cookie, reply.json()["nonce"].as_str().unwrap().to_owned())
}

/// auth + attest with simulated SNP evidence from the broker's own simulation PKI.
fn attest(api: &Api, dir: &BrokerDir) -> Session {
    let (cookie, nonce) = challenge(api, "snp");
    let key = TeeKeyPair::generate(KeyKind::P256).unwrap();
    let jwk = key.public_jwk();
    let source = SimSource::load(SimTee::Snp, &dir.sim_pki(), None).unwrap();
    let evidence = source.evidence(&report_data_binding(&nonce, &jwk, "")).unwrap();
    let body = json!({
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk.to_json()},
        "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
    });
    let reply = attest_with(api, &cookie, &body);
    assert_eq!(reply.status, 200, "attest: {}", reply.text());
    Session { cookie, key }
}

fn attest_with(api: &Api, cookie: &str, body: &Value) -> Reply {
    let headers = [("content-type", "application/json"), ("cookie", cookie)];
    let bytes = body.to_string().into_bytes();
    let reply = api.client.send("POST", "/kbs/v0/attest", &headers, Some(&bytes)).unwrap();
    api.assert_clean("attest", &reply);
    reply
}

/// `GET /kbs/v0/resource/PATH` on an attested session.
fn resource(api: &Api, session: &Session, path: &str) -> Reply {
    let reply = api
        .client
        .get(&format!("/kbs/v0/resource/{path}"), &[("cookie", session.cookie.as_str())])
        .unwrap();
    api.assert_clean(&format!("resource {path}"), &reply);
    reply
}

/// The key in a 200 resource reply.
fn released(session: &Session, reply: &Reply) -> Vec<u8> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    decrypt(&session.key, &Jwe::from_json(&reply.body).unwrap()).unwrap().to_vec()
}

/// `keylatch-agent get-resource` receives exactly `secret`: the broker still does its job.
fn genuine_release(broker: &Broker, path: &str, secret: &Secret) {
    let out = broker.target().get_resource(Tee::Snp, path).unwrap();
    assert_eq!(out.code, Some(0), "{}\nbroker:\n{}", out.stderr, broker.log());
    assert_eq!(out.stdout, secret.bytes, "the genuine release returned other bytes");
}

/// The broker's log holds none of the secrets.
fn log_is_clean(broker: &Broker, secrets: &[&Secret]) {
    let log = broker.log();
    for form in secrets.iter().flat_map(|s| s.forms()) {
        assert!(!contains(log.as_bytes(), &form), "a secret is in the broker log");
    }
}

// ---------------------------------------------------------------- the audit log

/// One admin entry of the verified audit log, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AdminEntry {
    operation: String,
    outcome: String,
    decision: String,
    principal: String,
    target: Option<String>,
    client: Option<String>,
}

/// Exports and verifies the log offline (`keylatch audit export` + `audit verify`), asserts no
/// entry holds a forbidden string, and returns the admin entries.
fn admin_entries(dir: &BrokerDir, forbidden: &[Vec<u8>]) -> Vec<AdminEntry> {
    let entries = dir.verified_audit().unwrap();
    let text = serde_json::to_vec(&entries).unwrap();
    for needle in forbidden {
        assert!(!contains(&text, needle), "a secret is in the audit log");
    }
    let admin: Vec<&Value> =
        entries.iter().map(|line| &line["entry"]).filter(|e| e["kind"] == "admin").collect();
    println!("an exported admin entry: {}", admin.last().expect("admin entries"));
    admin
        .into_iter()
        .map(|e| {
            let reasons: Vec<String> = e["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            let s = |v: &Value| v.as_str().map(str::to_owned);
            AdminEntry {
                operation: reasons[0].clone(),
                outcome: reasons.get(1).cloned().unwrap_or_default(),
                decision: s(&e["decision"]).unwrap(),
                principal: s(&e["actor"]["principal"]).unwrap_or_default(),
                target: s(&e["resource"]["path"]),
                client: s(&e["client_address"]),
            }
        })
        .collect()
}

/// How many denials with `outcome` the log holds.
fn denials(entries: &[AdminEntry], outcome: &str) -> usize {
    entries.iter().filter(|e| e.decision == "deny" && e.outcome == outcome).count()
}

// ================================================================ 1. authentication and roles

/// One admin route: method, path, body, the roles that may call it.
struct Route {
    method: &'static str,
    path: String,
    body: Option<Value>,
    allowed: &'static [&'static str],
}

fn route(
    method: &'static str,
    path: &str,
    body: Option<Value>,
    allowed: &'static [&'static str],
) -> Route {
    Route { method, path: path.to_owned(), body, allowed }
}

const CUST: &[&str] = &["key-custodian"];
const CUST_AUD: &[&str] = &["key-custodian", "auditor"];
const AUTHOR: &[&str] = &["policy-author"];
const AUTHOR_AUD: &[&str] = &["policy-author", "auditor"];
const ADMIN: &[&str] = &["admin"];
const AUD: &[&str] = &["auditor"];

/// Every route of `server/src/admin/handlers.rs`, with bodies that WOULD change something if a refused
/// call got through: a new version of the disk key, disabling or destroying it, a new policy,
/// a valid bundle, a new admin token, revoking `victim`.
fn every_route(victim: &str, bundle: &[u8], intruder: &Secret) -> Vec<Route> {
    let res = format!("/admin/v1/resources/{DISK_KEY}");
    let pol = format!("/admin/v1/policies/{DISK_KEY}");
    let deny_all = json!({"rules": []});
    vec![
        route("GET", "/admin/v1/resources", None, CUST_AUD),
        route("GET", &res, None, CUST_AUD),
        route("PUT", &res, Some(json!({"value": b64(&intruder.bytes)})), CUST),
        route("PUT", &res, Some(json!({"generate": 32})), CUST),
        route("PATCH", &res, Some(json!({"state": "disabled"})), CUST),
        route("DELETE", &res, None, CUST),
        route("GET", "/admin/v1/keystore/import-key", None, CUST),
        route("GET", "/admin/v1/policies", None, CUST_AUD),
        route("GET", &pol, None, CUST_AUD),
        route("PUT", &pol, Some(deny_all), CUST),
        route("GET", "/admin/v1/reference-values", None, AUTHOR_AUD),
        route("GET", "/admin/v1/reference-values/web", None, AUTHOR_AUD),
        route("PUT", "/admin/v1/reference-values/web", Some(publish_body(bundle)), AUTHOR),
        route("GET", "/admin/v1/tokens", None, ADMIN),
        route(
            "POST",
            "/admin/v1/tokens",
            Some(json!({"name": "intruder", "role": "admin"})),
            ADMIN,
        ),
        route("DELETE", &format!("/admin/v1/tokens/{victim}"), None, ADMIN),
        route("GET", "/admin/v1/audit", None, AUD),
        route("GET", "/admin/v1/audit/checkpoints", None, AUD),
        route("GET", "/admin/v1/audit/entries?start=0&end=1", None, AUD),
        route("GET", "/admin/v1/audit/proof/inclusion?index=0&size=1", None, AUD),
        route("GET", "/admin/v1/audit/proof/consistency?first=1&second=2", None, AUD),
        route("GET", &format!("/admin/v1/audit/query?resource={DISK_KEY}"), None, AUD),
    ]
}

/// The disk key, its policy, the bundle history and the token table are as `before`.
fn assert_nothing_changed(api: &Api, t: &Tokens, tokens_before: &BTreeMap<String, Value>) {
    let shown = api.ok(&t.custodian, "GET", &format!("/admin/v1/resources/{DISK_KEY}"), None, 200);
    assert_eq!(shown["current_version"], 1, "{shown}");
    assert_eq!(shown["versions"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["versions"][0]["enabled"], true, "{shown}");
    assert_eq!(shown["policy"]["version"], 1, "{shown}");
    let listed = api.ok(&t.custodian, "GET", "/admin/v1/policies", None, 200);
    assert_eq!(listed["policies"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["policies"][0]["versions"].as_array().unwrap().len(), 1, "{listed}");
    let web = api.ok(&t.author, "GET", "/admin/v1/reference-values/web", None, 200);
    assert_eq!(web["versions"], json!([]), "{web}");
    assert_eq!(web["bundle"], Value::Null, "{web}");
    assert_eq!(&token_rows(api, &t.admin), tokens_before, "the token table changed");
}

/// The verified log holds exactly `n401` 401s and `n403` 403s (each with the caller's address
/// and the URL or operation refused), and no change over the API but the admin's own four.
fn assert_refusals_recorded(entries: &[AdminEntry], n401: usize, n403: usize) {
    assert_eq!(denials(entries, "admin-unauthenticated"), n401, "every 401 is recorded");
    assert_eq!(denials(entries, "forbidden"), n403, "every 403 is recorded");
    for e in entries.iter().filter(|e| e.outcome == "admin-unauthenticated") {
        assert_eq!(e.principal, "-", "{e:?}");
        assert!(e.operation.ends_with(" authenticate"), "{e:?}");
        assert!(e.target.as_deref().is_some_and(|p| p.starts_with("/admin/v1/")), "{e:?}");
        assert!(e.client.as_deref().is_some_and(|c| c.starts_with("127.0.0.1:")), "{e:?}");
    }
    for op in ["resource.put", "resource.update", "resource.delete", "policy.set", "token.create"] {
        assert!(
            entries.iter().any(|e| e.operation == op && e.outcome == "forbidden"),
            "no refused {op} in the log"
        );
    }
    // The only changes made over the API are the ones this test made as the admin (the
    // operator's own `keylatch` commands on the host have no client address; `intent` entries
    // announce a change before it is attempted, `ok` ones record it done).
    let reads = [".list", ".show", ".get", ".read"];
    let changes: Vec<&str> = entries
        .iter()
        .filter(|e| e.decision == "allow" && e.outcome == "ok" && e.client.is_some())
        .filter(|e| !reads.iter().any(|r| e.operation.ends_with(r)))
        .map(|e| e.operation.as_str())
        .collect();
    assert_eq!(changes, ["token.create", "token.create", "token.create", "token.revoke"]);
}

#[test]
fn admin_routes_refuse_bad_tokens_and_wrong_roles_and_change_nothing() {
    let secret = Secret::new();
    let intruder = Secret::new();
    let dir = soft_dir(&secret);
    let authors = Authors::create(&dir);
    authors.trust_web(&dir);
    let t = Tokens::create(&dir);
    let broker = dir.start().unwrap();
    let mut api = Api::new(&broker, &[&secret, &intruder]);
    for token in t.all() {
        api.forbid(token);
    }

    // Tokens made over the API by the admin: a victim others try to revoke, one revoked, one
    // that expires at once.
    let make = |name: &str, role: &str, extra: Value| {
        let mut body = json!({"name": name, "role": role});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let made = api.ok(&t.admin, "POST", "/admin/v1/tokens", Some(&body), 201);
        (made["token"].as_str().unwrap().to_owned(), made["id"].as_str().unwrap().to_owned())
    };
    let (victim_token, victim) = make("victim", "auditor", json!({}));
    let (revoked_token, revoked) = make("revoked", "key-custodian", json!({}));
    let (expired_token, _) = make("expired", "key-custodian", json!({"expires_in_days": 0}));
    let answer = api.ok(&t.admin, "DELETE", &format!("/admin/v1/tokens/{revoked}"), None, 200);
    assert_eq!(answer, json!({"id": revoked, "revoked": true}));
    let again = api.call(&t.admin, "DELETE", &format!("/admin/v1/tokens/{revoked}"), None);
    refused(&again, 404, "not-found", "DELETE of an already revoked token");
    for token in [&victim_token, &revoked_token, &expired_token] {
        api.forbid(token);
    }
    let tokens_before = token_rows(&api, &t.admin);
    assert_eq!(tokens_before.len(), 7, "{tokens_before:?}");

    let bundle = authors.sign("web", 1, FAR, &[&authors.alice, &authors.bob]);
    let routes = every_route(&victim, &bundle, &intruder);
    let mut flipped = t.admin.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let unauthenticated: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        ("`Bearer` alone", Some("Bearer".into())),
        ("`Bearer ` and nothing", Some("Bearer ".into())),
        ("Basic credentials", Some(format!("Basic {}", b64(b"admin:admin")))),
        ("garbage", Some("%%%not-a-scheme%%% ;;".into())),
        ("a valid admin token without `Bearer`", Some(t.admin.clone())),
        ("overlong klt_ token", Some(format!("Bearer klt_{}", "A".repeat(8192)))),
        ("unknown klt_ token", Some(format!("Bearer klt_{}", "Q".repeat(43)))),
        ("admin token with its last character changed", Some(format!("Bearer {flipped}"))),
        ("revoked key-custodian token", Some(format!("Bearer {revoked_token}"))),
        ("expired key-custodian token", Some(format!("Bearer {expired_token}"))),
    ];
    let mut n401 = 0;
    for r in &routes {
        let body = r.body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
        for (case, auth) in &unauthenticated {
            let reply = api.send(r.method, &r.path, auth.as_deref(), body.as_deref());
            refused(
                &reply,
                401,
                "admin-unauthenticated",
                &format!("{} {} {case}", r.method, r.path),
            );
            n401 += 1;
        }
    }
    let mut n403 = 0;
    for r in &routes {
        for role in ROLES.iter().filter(|role| !r.allowed.contains(role)) {
            let reply = api.call(t.of(role), r.method, &r.path, r.body.as_ref());
            let case = format!("{} {} as {role}", r.method, r.path);
            refused(&reply, 403, "forbidden", &case);
            let detail = reply.json()["detail"].as_str().unwrap().to_owned();
            assert!(detail.starts_with(&format!("role {role} may not")), "{case}: {detail}");
            n403 += 1;
        }
    }

    assert_nothing_changed(&api, &t, &tokens_before);
    // The victim still works: the refused revocations did not happen.
    assert_eq!(api.call(&victim_token, "GET", "/admin/v1/resources", None).status, 200);

    assert_refusals_recorded(&admin_entries(&dir, &api.forbidden), n401, n403);

    api.healthy();
    genuine_release(&broker, DISK_KEY, &secret);
    log_is_clean(&broker, &[&secret, &intruder]);
}

/// Every path-addressed call outside `tenant-a/` by a custodian scoped to it (`put` as the body
/// of a new version) and every read by an auditor scoped to `tenant-a`, plus the audit log for
/// that auditor: each 403 `forbidden`. Returns how many.
fn refuse_outside_tenant_a(api: &Api, scoped: &str, scoped_auditor: &str, put: &Value) -> usize {
    let gen = json!({"generate": 32});
    let disable = json!({"state": "disabled"});
    let deny_all = json!({"rules": []});
    // Another tenant, a sibling sharing the prefix's characters, the prefix in other case, and
    // the default repository.
    let outside = ["tenant-b/k/1", "tenant-ab/k/1", "TENANT-A/k/1", DISK_KEY];
    let mut n403 = 0;
    for path in outside {
        let res = format!("/admin/v1/resources/{path}");
        let pol = format!("/admin/v1/policies/{path}");
        let cases: [(&str, &str, Option<&Value>); 7] = [
            ("GET", &res, None),
            ("PUT", &res, Some(put)),
            ("PUT", &res, Some(&gen)),
            ("PATCH", &res, Some(&disable)),
            ("DELETE", &res, None),
            ("GET", &pol, None),
            ("PUT", &pol, Some(&deny_all)),
        ];
        for (method, url, body) in cases {
            let reply = api.call(scoped, method, url, body);
            refused(
                &reply,
                403,
                "forbidden",
                &format!("{method} {url} as key-custodian tenant-a/"),
            );
            assert_eq!(reply.json()["detail"], format!("{path} is outside this token's prefixes"));
            n403 += 1;
        }
        for url in [&res, &pol] {
            let reply = api.call(scoped_auditor, "GET", url, None);
            refused(&reply, 403, "forbidden", &format!("GET {url} as auditor tenant-a"));
            n403 += 1;
        }
    }
    // The log spans every tenant: a scoped auditor may not read it.
    for url in [
        "/admin/v1/audit",
        "/admin/v1/audit/checkpoints",
        "/admin/v1/audit/entries?start=0&end=1",
        "/admin/v1/audit/proof/inclusion?index=0&size=1",
        "/admin/v1/audit/proof/consistency?first=1&second=2",
        "/admin/v1/audit/query?resource=tenant-a/k/1",
    ] {
        let reply = api.call(scoped_auditor, "GET", url, None);
        refused(&reply, 403, "forbidden", &format!("GET {url} as auditor tenant-a"));
        let detail = reply.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("auditor token without --prefix"), "{detail}");
        n403 += 1;
    }
    n403
}

#[test]
fn scoped_tokens_are_refused_outside_their_prefixes_and_see_filtered_lists() {
    let secret = Secret::new();
    let (a_secret, b_secret) = (Secret::new(), Secret::new());
    let dir = soft_dir(&secret);
    let t = Tokens::create(&dir);
    let scoped = dir.admin_token("key-custodian", &["tenant-a/"]).unwrap();
    let scoped_auditor = dir.admin_token("auditor", &["tenant-a"]).unwrap();
    let broker = dir.start().unwrap();
    let mut api = Api::new(&broker, &[&secret, &a_secret, &b_secret]);
    for token in t.all().into_iter().chain([scoped.as_str(), scoped_auditor.as_str()]) {
        api.forbid(token);
    }
    let (a, b) = ("tenant-a/k/1", "tenant-b/k/1");
    for (path, s) in [(a, &a_secret), (b, &b_secret)] {
        let put = json!({"value": b64(&s.bytes)});
        let made =
            api.ok(&t.custodian, "PUT", &format!("/admin/v1/resources/{path}"), Some(&put), 201);
        assert_eq!(made, json!({"path": path, "version": 1}));
        let policy = allow_simulated_json();
        api.ok(&t.custodian, "PUT", &format!("/admin/v1/policies/{path}"), Some(&policy), 201);
    }

    let paths = |v: &Value, key: &str| -> Vec<String> {
        v[key].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap().to_owned()).collect()
    };
    for token in [&scoped, &scoped_auditor] {
        let listed = api.ok(token, "GET", "/admin/v1/resources", None, 200);
        assert_eq!(paths(&listed, "resources"), [a], "resources list is filtered");
        let listed = api.ok(token, "GET", "/admin/v1/policies", None, 200);
        assert_eq!(paths(&listed, "policies"), [a], "policies list is filtered");
        api.ok(token, "GET", &format!("/admin/v1/resources/{a}"), None, 200);
        api.ok(token, "GET", &format!("/admin/v1/policies/{a}"), None, 200);
    }

    let put = json!({"value": b64(&secret.bytes)});
    let n403 = refuse_outside_tenant_a(&api, &scoped, &scoped_auditor, &put);
    // Escapes from the prefix by path tricks are malformed paths, not other tenants' keys.
    for url in [
        "/admin/v1/resources/tenant-a/../tenant-b/k",
        "/admin/v1/resources/tenant-a/..%2Ftenant-b%2Fk%2F1",
        "/admin/v1/resources/tenant-a%2F..%2Ftenant-b/k/1",
        "/admin/v1/resources/tenant-a/k/1/../../../tenant-b/k/1",
    ] {
        let reply = api.call(&scoped, "PUT", url, Some(&put));
        refused(&reply, 400, "bad-request", &format!("PUT {url} as key-custodian tenant-a/"));
    }

    // Nothing outside tenant-a changed; tenant-ab and TENANT-A were never created.
    for path in [b, DISK_KEY] {
        let shown = api.ok(&t.custodian, "GET", &format!("/admin/v1/resources/{path}"), None, 200);
        assert_eq!(shown["current_version"], 1, "{shown}");
        assert_eq!(shown["versions"].as_array().unwrap().len(), 1, "{shown}");
        assert_eq!(shown["versions"][0]["enabled"], true, "{shown}");
        assert_eq!(shown["policy"]["version"], 1, "{shown}");
    }
    for path in ["tenant-ab/k/1", "TENANT-A/k/1"] {
        let reply = api.call(&t.custodian, "GET", &format!("/admin/v1/resources/{path}"), None);
        refused(&reply, 404, "not-found", &format!("GET {path} after the refused puts"));
    }
    let all = api.ok(&t.custodian, "GET", "/admin/v1/resources", None, 200);
    assert_eq!(paths(&all, "resources"), [DISK_KEY, a, b]);

    let entries = admin_entries(&dir, &api.forbidden);
    assert_eq!(denials(&entries, "forbidden"), n403, "every 403 is recorded");
    assert!(entries.iter().any(|e| e.outcome == "forbidden"
        && e.target.as_deref() == Some(b)
        && e.operation == "resource.delete"));

    api.healthy();
    genuine_release(&broker, b, &b_secret);
    genuine_release(&broker, DISK_KEY, &secret);
    log_is_clean(&broker, &[&secret, &a_secret, &b_secret]);
}

// ================================================================ 2. malformed requests

/// The largest body this suite's brokers accept (`max_body_bytes`), small so an oversized body
/// fits in the socket buffers and the 413 is read, not raced.
const BODY_LIMIT: i64 = 16 * 1024;

/// `keylatch resource show PATH` on the store.
fn resource_detail(dir: &BrokerDir, path: &str) -> Value {
    let out = dir.admin(&["resource", "show"], &[path.as_ref()]).unwrap();
    serde_json::from_str(&out.stdout_text()).unwrap()
}

const BAD: &str = "bad-request";
const C: &str = "key-custodian";
const AD: &str = "admin";
const AU: &str = "auditor";
const PA: &str = "policy-author";

/// Malformed admin requests: (role, method, url, body, status, type). In urls `RES` and `POL`
/// stand for the disk key's resource and policy and `TOK` for `/admin/v1/tokens`; in bodies `V` for a valid base64 value and
/// `HUGE` for a string longer than [`BODY_LIMIT`]; an empty body on GET or DELETE is none.
const MALFORMED: &[(&str, &str, &str, &str, u16, &str)] = &[
    // Resources: exactly one of value (base64, non-empty), generate (1..=4096), wrapped.
    (C, "PUT", "RES", r#"{"value": "not base64 at all!"}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"value": ""}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"generate": 0}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"generate": 5000}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"generate": -1}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"generate": 1e400}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"value": "V", "generate": 32}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"value": "V", "wrapped": "V"}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"value": "V", "owner": "mallory"}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"value": "V"#, 400, BAD),
    (C, "PUT", "RES", "{}", 400, BAD),
    (C, "PUT", "RES", "", 400, BAD),
    (C, "PUT", "RES", "[1, 2, 3]", 400, BAD),
    (C, "PUT", "RES", r#"{"wrapped": "%%%"}"#, 400, BAD),
    (C, "PUT", "RES", r#"{"value": "HUGE"}"#, 413, "too-large"),
    (C, "PUT", "/admin/v1/resources/only/two", r#"{"value": "V"}"#, 400, BAD),
    (C, "PUT", "/admin/v1/resources/a/b/c/d", r#"{"value": "V"}"#, 400, BAD),
    (C, "PUT", "/admin/v1/resources/a/../b", r#"{"value": "V"}"#, 400, BAD),
    (C, "PUT", "/admin/v1/resources/default/disk-key/.hidden", r#"{"value": "V"}"#, 400, BAD),
    // PATCH: nothing to do, unknown state, bad dates, contradictions, and a valid change next
    // to an invalid one, which must not be half applied.
    (C, "PATCH", "RES", "{}", 400, BAD),
    (C, "PATCH", "RES", r#"{"state": "frozen"}"#, 400, BAD),
    (C, "PATCH", "RES", r#"{"state": "disabled", "owner": "mallory"}"#, 400, BAD),
    (C, "PATCH", "RES", r#"{"rotate_by": "tomorrow"}"#, 400, BAD),
    (C, "PATCH", "RES", r#"{"rotate_by":"2030-01-01T00:00:00Z","clear_rotate_by":true}"#, 400, BAD),
    (C, "PATCH", "RES", r#"{"state": "disabled", "rotate_by": "not a date"}"#, 400, BAD),
    (C, "PATCH", "RES", r#"{"state": "active", "rotate_by": "2030-13-45T99:00:00Z"}"#, 400, BAD),
    (C, "PATCH", "RES", r#"{"state": "disabled""#, 400, BAD),
    // Policies: not JSON, not a policy, unknown fields, oversized.
    (C, "PUT", "POL", r#"{"rules": [{"name": "x""#, 400, BAD),
    (C, "PUT", "POL", r#"{"rules": "everyone"}"#, 400, BAD),
    (C, "PUT", "POL", r#"{"rulez": []}"#, 400, BAD),
    (C, "PUT", "POL", r#"{"rules": [{"name": "x", "tees": ["sgx"]}]}"#, 400, BAD),
    (C, "PUT", "POL", r#"{"rules": [{"name": "x", "tees": ["snp"], "all": true}]}"#, 400, BAD),
    (C, "PUT", "POL", "[]", 400, BAD),
    (C, "PUT", "POL", r#""allow""#, 400, BAD),
    (C, "PUT", "POL", "", 400, BAD),
    (C, "PUT", "POL", r#"{"rules": [], "pad": "HUGE"}"#, 413, "too-large"),
    // Tokens: unknown role, missing fields, blank or overlong name, prefixes where none may
    // be, bad prefixes, unknown fields, negative expiry, truncated, oversized, unknown id.
    (AD, "POST", "TOK", r#"{"name": "x", "role": "root"}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "x"}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"role": "admin"}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "  ", "role": "auditor"}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "a\nb", "role": "auditor"}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "HUGE", "role": "auditor"}"#, 413, "too-large"),
    (AD, "POST", "TOK", r#"{"name": "x", "role": "admin", "prefixes": ["a/"]}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "x", "role": "auditor", "prefixes": ["../"]}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "x", "role": "auditor", "prefixes": ["/etc"]}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "x", "role": "auditor", "prefixes": [""]}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "x", "role": "auditor", "hash": "00"}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "x", "role": "auditor", "expires_in_days": -1}"#, 400, BAD),
    (AD, "POST", "TOK", r#"{"name": "x", "role": "#, 400, BAD),
    (AD, "DELETE", "/admin/v1/tokens/tok_0000000000000000", "", 404, "not-found"),
    // Queries.
    (C, "GET", "POL?version=abc", "", 400, BAD),
    (C, "GET", "POL?version=-1", "", 400, BAD),
    (C, "GET", "POL?version=99", "", 404, "not-found"),
    (AU, "GET", "/admin/v1/audit/entries?start=x&end=1", "", 400, BAD),
    (AU, "GET", "/admin/v1/audit/entries?start=0", "", 400, BAD),
    (AU, "GET", "/admin/v1/audit/entries?start=0&end=1&evil=1", "", 400, BAD),
    (AU, "GET", "/admin/v1/audit/entries?start=5&end=1", "", 400, BAD),
    (AU, "GET", "/admin/v1/audit/proof/inclusion?index=99999&size=1", "", 400, BAD),
    (AU, "GET", "/admin/v1/audit/proof/consistency?first=9&second=1", "", 400, BAD),
    (AU, "GET", "/admin/v1/audit/query?since=yesterday", "", 400, BAD),
    // Wrong methods on existing endpoints, and endpoints that do not exist.
    (C, "POST", "RES", r#"{"value": "V"}"#, 405, "method-not-allowed"),
    (C, "POST", "/admin/v1/resources", r#"{"value": "V"}"#, 405, "method-not-allowed"),
    (C, "DELETE", "POL", "", 405, "method-not-allowed"),
    (C, "PATCH", "POL", "{}", 405, "method-not-allowed"),
    (C, "PUT", "/admin/v1/keystore/import-key", "{}", 405, "method-not-allowed"),
    (AD, "PUT", "/admin/v1/tokens", r#"{"name": "x", "role": "admin"}"#, 405, "method-not-allowed"),
    (AD, "GET", "/admin/v1/tokens/tok_0000000000000000", "", 405, "method-not-allowed"),
    (PA, "DELETE", "/admin/v1/reference-values", "", 405, "method-not-allowed"),
    (AU, "POST", "/admin/v1/audit", "{}", 405, "method-not-allowed"),
    (AU, "DELETE", "/admin/v1/audit/entries", "", 405, "method-not-allowed"),
    (AD, "GET", "/admin/v1/secrets", "", 404, "not-found"),
    (AD, "GET", "/admin/v2/resources", "", 404, "not-found"),
    (AD, "GET", "/admin/v1/", "", 404, "not-found"),
];

#[test]
fn malformed_admin_requests_are_refused_with_their_documented_types_and_store_nothing() {
    let secret = Secret::new();
    let other = Secret::new();
    let dir = soft_dir(&secret);
    set_config(&dir, "max_body_bytes", BODY_LIMIT.into());
    let t = Tokens::create(&dir);
    let detail_before = resource_detail(&dir, DISK_KEY);
    let broker = dir.start().unwrap();
    let mut api = Api::new(&broker, &[&secret, &other]);
    for token in t.all() {
        api.forbid(token);
    }
    let tokens_before = token_rows(&api, &t.admin);
    let res = format!("/admin/v1/resources/{DISK_KEY}");
    let pol = format!("/admin/v1/policies/{DISK_KEY}");
    let huge = "A".repeat(usize::try_from(BODY_LIMIT).unwrap());

    for (role, method, url, body, status, kind) in MALFORMED {
        let url = url.replacen("RES", &res, 1).replacen("POL", &pol, 1);
        let url = url.replacen("TOK", "/admin/v1/tokens", 1);
        let body = body.replace("\"V\"", &format!("\"{}\"", b64(&other.bytes)));
        let body = body.replace("\"HUGE\"", &format!("\"{huge}\""));
        let reply = if body.is_empty() && matches!(*method, "GET" | "DELETE") {
            api.call(t.of(role), method, &url, None)
        } else {
            api.call_raw(t.of(role), method, &url, body.as_bytes())
        };
        let shown: String = body.chars().take(70).collect();
        refused(&reply, *status, kind, &format!("{method} {url} {shown}"));
    }

    // Nothing was stored: one version, one policy, the same tokens, and the resource's
    // lifecycle (state, rotate-by, last update) as it was. The admin API shows no resource
    // state, so that is read on the host with `keylatch resource show`.
    let shown = api.ok(&t.custodian, "GET", &res, None, 200);
    assert_eq!(shown["versions"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["policy"]["version"], 1, "{shown}");
    assert_eq!(resource_detail(&dir, DISK_KEY), detail_before, "a refused PATCH changed the key");
    let listed = api.ok(&t.custodian, "GET", "/admin/v1/resources", None, 200);
    assert_eq!(listed["resources"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(token_rows(&api, &t.admin), tokens_before, "the token table changed");

    api.healthy();
    genuine_release(&broker, DISK_KEY, &secret);
    log_is_clean(&broker, &[&secret, &other]);
}

// ================================================================ 3. reference values

/// The stored history of `web`: (version, digest) newest first, and the newest bundle.
fn web_history(api: &Api, token: &str) -> (Vec<(u64, String)>, Value) {
    let shown = api.ok(token, "GET", "/admin/v1/reference-values/web", None, 200);
    let versions = shown["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["digest"].as_str().unwrap().to_owned()))
        .collect();
    (versions, shown["bundle"].clone())
}

/// Bundles the broker must refuse while `v2` is stored (`v3`: a valid newer one), with the
/// status and type of each refusal.
fn forged_bundles(
    a: &Authors,
    v2: &[u8],
    v3: &[u8],
) -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let both: &[&PathBuf] = &[&a.alice, &a.bob];
    let mut sig_flipped = v3.to_vec();
    *sig_flipped.last_mut().unwrap() ^= 0x01;
    // A byte of the signed payload: one hex digit of the measurement, still valid CBOR.
    let mut payload_flipped = v3.to_vec();
    let at = payload_flipped
        .windows(96)
        .position(|w| w.iter().all(|b| *b == b'0'))
        .expect("the measurement text in the payload");
    payload_flipped[at + 5] = b'1';
    let garbage: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37)).collect();

    vec![
        ("garbage bytes", garbage, 400, "bad-request"),
        ("empty bytes", Vec::new(), 400, "bad-request"),
        ("truncated CBOR", v3[..v3.len() / 2].to_vec(), 400, "bad-request"),
        ("one CBOR byte short", v3[..v3.len() - 1].to_vec(), 400, "bad-request"),
        ("signature byte flipped", sig_flipped, 422, "bad-signature"),
        ("payload byte flipped", payload_flipped, 422, "bad-signature"),
        ("signed by mallory", a.sign("web", 3, FAR, &[&a.mallory]), 422, "unknown-signer"),
        (
            "alice and mallory",
            a.sign("web", 3, FAR, &[&a.alice, &a.mallory]),
            422,
            "unknown-signer",
        ),
        ("alice alone", a.sign("web", 3, FAR, &[&a.alice]), 422, "below-threshold"),
        ("expired", a.sign("web", 3, "2001-01-01T00:00:00Z", both), 422, "bundle-expired"),
        ("named other", a.sign("other", 3, FAR, both), 400, "bad-request"),
        ("replay of the stored version", v2.to_vec(), 409, "stale-version"),
        ("older version", a.sign("web", 1, FAR, both), 409, "stale-version"),
    ]
}

/// `refval push --url ... --ca ... --token-file ... web BUNDLE`, whatever its exit code.
fn refval_push(broker: &Broker, dir: &BrokerDir, token: &str, bundle: &[u8]) -> Outcome {
    let token_file = dir.path().join("author.token");
    std::fs::write(&token_file, token).unwrap();
    let file = dir.path().join("authors/pushed.cose");
    std::fs::write(&file, bundle).unwrap();
    refval()
        .args(["push", "--url", &broker.url(), "--ca"])
        .arg(dir.ca())
        .arg("--token-file")
        .arg(&token_file)
        .arg("web")
        .arg(&file)
        .output()
        .unwrap()
        .into()
}

#[test]
fn reference_value_publication_refuses_forged_stale_and_expired_bundles_and_keeps_the_stored_one() {
    let secret = Secret::new();
    let dir = soft_dir(&secret);
    set_config(&dir, "max_body_bytes", BODY_LIMIT.into());
    let a = Authors::create(&dir);
    a.trust_web(&dir);
    let t = Tokens::create(&dir);
    let broker = dir.start().unwrap();
    let mut api = Api::new(&broker, &[&secret]);
    for token in t.all() {
        api.forbid(token);
    }
    let both: &[&PathBuf] = &[&a.alice, &a.bob];
    let url = "/admin/v1/reference-values/web";
    let publish = |bytes: &[u8]| api.call(&t.author, "PUT", url, Some(&publish_body(bytes)));

    // The stored version 2 every refusal below must leave in place.
    let v2 = a.sign("web", 2, FAR, both);
    let stored = publish(&v2);
    assert_eq!(stored.status, 201, "{}", stored.text());
    let answer = stored.json();
    assert_eq!(answer["version"], 2);
    assert_eq!(answer["signers"].as_array().unwrap().len(), 2, "{answer}");
    let before = web_history(&api, &t.author);
    assert_eq!(before.0, [(2, answer["digest"].as_str().unwrap().to_owned())]);

    let v3 = a.sign("web", 3, FAR, both);
    let body_cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("bundle not base64", br#"{"bundle": "%%% not base64 %%%"}"#.to_vec(), 400, "bad-request"),
        ("bundle a number", br#"{"bundle": 5}"#.to_vec(), 400, "bad-request"),
        ("no bundle", b"{}".to_vec(), 400, "bad-request"),
        ("truncated JSON", br#"{"bundle": "AAAA"#.to_vec(), 400, "bad-request"),
        (
            "unknown field",
            format!(r#"{{"bundle": "{}", "force": true}}"#, b64(&v3)).into_bytes(),
            400,
            "bad-request",
        ),
        (
            "oversized",
            format!(r#"{{"bundle": "{}"}}"#, "A".repeat(usize::try_from(BODY_LIMIT).unwrap()))
                .into_bytes(),
            413,
            "too-large",
        ),
    ];
    for (case, body, status, kind) in &body_cases {
        refused(
            &api.call_raw(&t.author, "PUT", url, body),
            *status,
            kind,
            &format!("publish: {case}"),
        );
    }
    for (case, bytes, status, kind) in &forged_bundles(&a, &v2, &v3) {
        refused(&publish(bytes), *status, kind, &format!("publish: {case}"));
        assert_eq!(web_history(&api, &t.author), before, "{case} changed the stored bundle");
    }
    let reply =
        api.call(&t.author, "PUT", "/admin/v1/reference-values/nope", Some(&publish_body(&v3)));
    refused(&reply, 404, "not-found", "publish: unconfigured name");

    // `refval push`, the authors' tool, reports the refusal as documented (exit 1).
    let out = refval_push(&broker, &dir, &t.author, &v2);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("HTTP 409 stale-version"), "{}", out.stderr);
    println!("refval push of a replay: exit 1, {}", out.stderr.trim());

    assert_eq!(web_history(&api, &t.author), before, "the stored bundle changed");
    assert_eq!(before.1["version"], 2);
    let entries = admin_entries(&dir, &api.forbidden);
    let published: Vec<&AdminEntry> =
        entries.iter().filter(|e| e.operation == "reference-values.publish").collect();
    // (An oversized body is refused before any handler runs, so it has no admin entry.)
    for kind in [
        "bad-request",
        "bad-signature",
        "unknown-signer",
        "below-threshold",
        "bundle-expired",
        "stale-version",
        "not-found",
    ] {
        assert!(
            published.iter().any(|e| e.outcome == kind && e.decision == "deny"),
            "no {kind} publication in the log"
        );
    }
    let done = published.iter().filter(|e| e.decision == "allow" && e.outcome == "ok").count();
    assert_eq!(done, 1, "{published:?}");

    // A genuine newer bundle is still accepted afterwards.
    let accepted = publish(&v3);
    assert_eq!(accepted.status, 201, "{}", accepted.text());
    assert_eq!(web_history(&api, &t.author).0.len(), 2);
    api.healthy();
    genuine_release(&broker, DISK_KEY, &secret);
    log_is_clean(&broker, &[&secret]);
}

// ================================================================ 4. release-side refusals

/// `keylatch kek SUBCOMMAND --config ... ARGS` whatever its exit code.
fn kek(dir: &BrokerDir, args: &[&str]) -> Outcome {
    let out = dir
        .keylatch()
        .unwrap()
        .arg("kek")
        .arg(args[0])
        .arg("--config")
        .arg(dir.config())
        .args(&args[1..])
        .output()
        .unwrap();
    out.into()
}

/// A custodian disables `path` over the API: releases answer 403 `resource-disabled` (to the raw
/// protocol and to the agent, with no key bytes); enabled again, the same session gets `secret`.
fn disabled_resource_is_refused(
    api: &Api,
    broker: &Broker,
    dir: &BrokerDir,
    custodian: &str,
    path: &str,
    secret: &Secret,
) {
    let url = format!("/admin/v1/resources/{path}");
    let patched = api.ok(custodian, "PATCH", &url, Some(&json!({"state": "disabled"})), 200);
    assert_eq!(patched, json!({"path": path, "changed": ["disabled"]}));
    let session = attest(api, dir);
    let reply = resource(api, &session, path);
    refused(&reply, 403, "resource-disabled", "release of a disabled resource");
    let agent = broker.target().get_resource(Tee::Snp, path).unwrap();
    assert_ne!(agent.code, Some(0), "{}", agent.stderr);
    assert!(agent.stdout.is_empty());
    assert!(agent.stderr.contains("resource-disabled"), "{}", agent.stderr);
    let patched = api.ok(custodian, "PATCH", &url, Some(&json!({"state": "active"})), 200);
    assert_eq!(patched, json!({"path": path, "changed": ["enabled"]}));
    // (The reply is a JWE: the key travels encrypted to the session's tee key, never in clear.)
    assert_eq!(released(&session, &resource(api, &session, path)), secret.bytes);
}

/// A custodian destroys `path` over the API: releases answer 404 `resource-destroyed`, and the
/// path can never be put, enabled or destroyed again.
fn destroyed_resource_is_refused(
    api: &Api,
    dir: &BrokerDir,
    custodian: &str,
    path: &str,
    secret: &Secret,
) {
    let session = attest(api, dir);
    let url = format!("/admin/v1/resources/{path}");
    let deleted = api.ok(custodian, "DELETE", &url, None, 200);
    assert_eq!(deleted, json!({"path": path, "deleted_versions": 1}));
    let reply = resource(api, &session, path);
    refused(&reply, 404, "resource-destroyed", "release of a destroyed resource");
    let again = [
        ("PUT", Some(json!({"value": b64(&secret.bytes)}))),
        ("PUT", Some(json!({"generate": 32}))),
        ("PATCH", Some(json!({"state": "active"}))),
        ("DELETE", None),
    ];
    for (method, body) in &again {
        let reply = api.call(custodian, method, &url, body.as_ref());
        let case = format!(
            "{method} {} on a destroyed path",
            body.as_ref().map_or(String::new(), Value::to_string)
        );
        refused(&reply, 404, "resource-destroyed", &case);
    }
    let fresh = attest(api, dir);
    let reply = resource(api, &fresh, path);
    refused(&reply, 404, "resource-destroyed", "release of a destroyed resource, new session");
}

/// Real SNP evidence (the shared vectors' guest-components evidence) without its VCEK, while
/// KDS is a closed port: 503 `collateral-unavailable` at once, the evidence not judged, and the
/// session spent.
fn missing_collateral_is_unavailable(api: &Api) {
    let Some(vectors) = keylatch_test_vectors::dir() else { return };
    let text = std::fs::read(vectors.join("coco/snp-genoa-v3/evidence.json")).unwrap();
    let mut evidence: Value = serde_json::from_slice(&text).unwrap();
    evidence.as_object_mut().unwrap().remove("cert_chain");
    let (cookie, nonce) = challenge(api, "snp");
    let key = TeeKeyPair::generate(KeyKind::P256).unwrap();
    let body = json!({
        "runtime-data": {"nonce": nonce, "tee-pubkey": key.public_jwk().to_json()},
        "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
    });
    let started = Instant::now();
    let reply = attest_with(api, &cookie, &body);
    refused(&reply, 503, "collateral-unavailable", "attest with real SNP evidence, KDS closed");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let reply = resource(api, &Session { cookie, key }, DISK_KEY);
    assert_eq!(reply.status, 401, "no token after a refused attestation: {}", reply.text());
}

/// `keylatch kek retire` of the current KEK, and after a rotation of the old one that still
/// seals versions: exit 2, `cannot be retired`, recorded as `kek-in-use`; both KEKs still held.
fn kek_in_use_is_not_retired(dir: &BrokerDir) {
    let current = |dir: &BrokerDir| -> Value {
        serde_json::from_str(&kek(dir, &["status", "--json"]).stdout_text()).unwrap()
    };
    let status = current(dir);
    let keks = status["keks"].as_array().unwrap();
    let id = keks.iter().find(|k| k["current"] == true).unwrap()["id"].as_str().unwrap().to_owned();
    let out = kek(dir, &["retire", "--id", &id]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let why = format!("key-encryption key {id} cannot be retired: it is current");
    assert!(out.stderr.contains(&why), "{}", out.stderr);
    println!("kek retire of the current KEK: exit 2, {}", out.stderr.lines().last().unwrap());
    kek(dir, &["rotate"]).success("kek rotate").unwrap();
    let out = kek(dir, &["retire", "--id", &id]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("resource versions are sealed under it"), "{}", out.stderr);
    println!("kek retire of a KEK in use: exit 2, {}", out.stderr.lines().last().unwrap());
    let status = current(dir);
    let held = status["keks"].as_array().unwrap().iter().filter(|k| k["held"] == true).count();
    assert_eq!(held, 2, "{status}");
}

#[test]
fn disabled_destroyed_missing_collateral_and_kek_in_use_are_refused_without_key_bytes() {
    let secret = Secret::new();
    let (off_secret, gone_secret) = (Secret::new(), Secret::new());
    let (off, gone) = ("default/disk-key/off", "default/disk-key/gone");
    let dir = soft_dir(&secret);
    for (path, s) in [(off, &off_secret), (gone, &gone_secret)] {
        dir.resource_put(path, &s.bytes).unwrap();
        dir.policy_set(path, ALLOW_SIMULATED).unwrap();
    }
    // KDS and PCS are a closed local port: fetching fails at once, without retries.
    let closed = format!("http://{}", e2e::broker::free_port().unwrap());
    let collateral = [
        ("kds_url", closed.clone().into()),
        ("pcs_url", closed.into()),
        ("max_retries", 0.into()),
        ("timeout_s", 2.into()),
    ];
    set_config(&dir, "collateral", table(&collateral));
    let t = Tokens::create(&dir);
    let broker = dir.start().unwrap();
    let mut api = Api::new(&broker, &[&secret, &off_secret, &gone_secret]);
    for token in t.all() {
        api.forbid(token);
    }

    disabled_resource_is_refused(&api, &broker, &dir, &t.custodian, off, &off_secret);
    destroyed_resource_is_refused(&api, &dir, &t.custodian, gone, &gone_secret);
    missing_collateral_is_unavailable(&api);
    kek_in_use_is_not_retired(&dir);

    let entries = admin_entries(&dir, &api.forbidden);
    // Two refusals, each `kek-in-use`, and no retirement done (`intent` entries may precede).
    let retired: Vec<&AdminEntry> =
        entries.iter().filter(|e| e.operation == "kek.retire" && e.outcome != "intent").collect();
    assert_eq!(retired.len(), 2, "{retired:?}");
    assert!(retired.iter().all(|e| e.decision == "deny" && e.outcome == "kek-in-use"));
    api.healthy();
    genuine_release(&broker, DISK_KEY, &secret);
    genuine_release(&broker, off, &off_secret);
    log_is_clean(&broker, &[&secret, &off_secret, &gone_secret]);
}

/// Sends every request at once, each on its own already-open TLS connection, and reads the
/// replies: a burst that no token bucket refills during.
fn burst(api: &Api, requests: &[Vec<u8>]) -> Vec<Reply> {
    let mut conns: Vec<_> = requests.iter().map(|_| api.client.connect().unwrap()).collect();
    for (conn, request) in conns.iter_mut().zip(requests) {
        conn.send(request).unwrap();
    }
    let replies: Vec<Reply> = conns.iter_mut().map(|c| c.read_reply().unwrap()).collect();
    for reply in &replies {
        api.assert_clean("burst", reply);
    }
    replies
}

#[test]
fn rate_limited_address_gets_429_with_retry_after_and_is_served_again_after_it() {
    let secret = Secret::new();
    let dir = soft_dir(&secret);
    set_config(&dir, "rate_limit", table(&[("per_second", 2.into()), ("burst", 4.into())]));
    let t = Tokens::create(&dir);
    let broker = dir.start().unwrap();
    let mut api = Api::new(&broker, &[&secret]);
    for token in t.all() {
        api.forbid(token);
    }
    let auth = json!({"version": "0.4.0", "tee": "snp", "extra-params": {"supported-hash-algorithms": ["sha384"]}})
        .to_string();
    let json = [("content-type", "application/json")];
    let auth = e2e::https::request("POST", "/kbs/v0/auth", &json, Some(auth.as_bytes()));
    let get = e2e::https::request("GET", &format!("/kbs/v0/resource/{DISK_KEY}"), &[], None);

    // The burst is served; two more requests a second are. Beyond: 429 on every protocol
    // endpoint, before anything else is looked at (a resource request without a token).
    for reply in burst(&api, &[auth.clone(), auth.clone(), auth.clone(), auth.clone()]) {
        assert_eq!(reply.status, 200, "within the burst: {}", reply.text());
    }
    let limited = burst(&api, &[auth.clone(), auth, get]);
    let mut retry_after = 0;
    for (reply, what) in
        limited.iter().zip(["POST /kbs/v0/auth", "POST /kbs/v0/auth", "GET /kbs/v0/resource"])
    {
        refused(reply, 429, "rate-limited", &format!("{what} beyond the burst"));
        let after: u64 = reply.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=2).contains(&after), "Retry-After {after}");
        retry_after = retry_after.max(after);
    }
    // Health, readiness and the admin API are not limited.
    api.healthy();
    api.ok(&t.auditor, "GET", "/admin/v1/resources", None, 200);

    // The deadline the broker named must pass, and the agent's three requests need three
    // tokens (1.5 s at 2/s; the agent would retry a 429 itself, with a slower backoff).
    std::thread::sleep(Duration::from_secs(retry_after).max(Duration::from_millis(1500)));
    genuine_release(&broker, DISK_KEY, &secret);
    api.healthy();
    log_is_clean(&broker, &[&secret]);
}

#[test]
fn vanished_hsm_token_is_503_unavailable_and_not_ready_and_recovers_when_back() {
    let secret = Secret::new();
    let other = Secret::new();
    let Some(dir) = BrokerDir::pkcs11().unwrap() else { return };
    dir.resource_put(DISK_KEY, &secret.bytes).unwrap();
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap();
    let t = Tokens::create(&dir);
    let broker = dir.start().unwrap();
    let mut api = Api::new(&broker, &[&secret, &other]);
    for token in t.all() {
        api.forbid(token);
    }
    api.healthy();
    let session = attest(&api, &dir);
    assert_eq!(released(&session, &resource(&api, &session, DISK_KEY)), secret.bytes);

    let hsm = dir.hsm.as_ref().unwrap();
    let away = hsm.token_dir.with_extension("away");
    std::fs::rename(&hsm.token_dir, &away).unwrap();

    let reply = resource(&api, &session, DISK_KEY);
    refused(&reply, 503, "unavailable", "release while the HSM token is gone");
    let detail = reply.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.starts_with("keystore pkcs11") && detail.ends_with("unavailable; retry later"),
        "{detail}"
    );
    let res = format!("/admin/v1/resources/{DISK_KEY}");
    for body in [json!({"generate": 32}), json!({"value": b64(&other.bytes)})] {
        let reply = api.call(&t.custodian, "PUT", &res, Some(&body));
        refused(&reply, 503, "unavailable", &format!("PUT {body} while the HSM token is gone"));
    }
    let reply = api.call(&t.custodian, "GET", "/admin/v1/keystore/import-key", None);
    refused(&reply, 503, "unavailable", "GET import-key while the HSM token is gone");
    let ready = api.send("GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["status"], "unavailable", "{}", ready.text());
    assert_eq!(ready.json()["unavailable"], json!(["keystore"]), "{}", ready.text());
    assert_eq!(ready.json()["store"]["status"], "ok", "{}", ready.text());
    println!("/readyz while the HSM token is gone: 503 {}", ready.text());
    assert_eq!(api.send("GET", "/healthz", None, None).status, 200, "alive, not ready");

    std::fs::rename(&away, &hsm.token_dir).unwrap();
    // The keystore reconnects on its next use (keystore/src/pkcs11/conn.rs); allow a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.send("GET", "/readyz", None, None).status != 200 {
        assert!(Instant::now() < deadline, "not ready 10 s after the token came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    api.healthy();
    // The same session gets the same key; the refused puts stored nothing.
    assert_eq!(released(&session, &resource(&api, &session, DISK_KEY)), secret.bytes);
    let shown = api.ok(&t.custodian, "GET", &res, None, 200);
    assert_eq!(shown["versions"].as_array().unwrap().len(), 1, "{shown}");
    genuine_release(&broker, DISK_KEY, &secret);
    log_is_clean(&broker, &[&secret, &other]);
}
