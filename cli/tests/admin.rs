//! The admin API over HTTPS against the in-process broker: every endpoint × role (allowed
//! exactly its operations), resource-path scopes (lists included), revoked and expired tokens,
//! token hashes (not tokens) in the SQLite file, reference-value publication (each refusal with
//! its type) and appraisal against the newest published bundle, and the real `keylatch` binary.

// reason: tests fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

// The broker harness the HTTP tests use (a broker from `keylatch init` served on 127.0.0.1).
#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::path::Path;

use common::{agent_error, Broker, ALLOW_SIM, RESOURCE, SECRET};
use keylatch_agent::evidence::SimTee;
use keylatch_broker::admin::auth::{mint, Role, TokenRequest};
use keylatch_cli::remote::AdminClient;
use keylatch_wire::KeyKind;
use reference_values::{AuthorSigningKey, Bundle, SignedBundle};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Authors: alice and bob are configured for `web` (threshold 2); mallory is not.
struct Authors {
    alice: AuthorSigningKey,
    bob: AuthorSigningKey,
    mallory: AuthorSigningKey,
}

fn authors() -> Authors {
    Authors {
        alice: AuthorSigningKey::generate().unwrap(),
        bob: AuthorSigningKey::generate().unwrap(),
        mallory: AuthorSigningKey::generate().unwrap(),
    }
}

/// A broker with `web` configured by keys and threshold only (no bundle file).
fn broker(a: &Authors) -> Broker {
    let alice = a.alice.public().to_pem().unwrap();
    let bob = a.bob.public().to_pem().unwrap();
    Broker::start_with(
        |c| {
            format!("{c}\n[[reference_values]]\nname = \"web\"\nauthor_keys = [\"alice.pem\", \"bob.pem\"]\nthreshold = 2\n")
        },
        ALLOW_SIM,
        |dir: &Path| {
            std::fs::write(dir.join("alice.pem"), alice).unwrap();
            std::fs::write(dir.join("bob.pem"), bob).unwrap();
        },
    )
}

fn bundle(version: u64, expires: &str, measurement: &str) -> Bundle {
    Bundle::from_toml(&format!(
        "name = \"web\"\nversion = {version}\nexpires = {expires}\n[snp]\nmeasurements = [\"{}\"]\n",
        measurement.repeat(48)
    ))
    .unwrap()
}

fn signed(b: &Bundle, keys: &[&AuthorSigningKey]) -> Vec<u8> {
    SignedBundle::sign(b, keys).unwrap().to_bytes().unwrap()
}

fn publish_body(bytes: &[u8]) -> Value {
    use base64::Engine as _;
    json!({"bundle": base64::engine::general_purpose::STANDARD.encode(bytes)})
}

/// Mints a token straight into the broker's store; `edit` may change the record first.
fn token_with(
    b: &Broker,
    name: &str,
    role: Role,
    prefixes: &[&str],
    edit: impl FnOnce(&mut keylatch_broker::store::AdminToken),
) -> (String, String) {
    let req = TokenRequest {
        name: name.into(),
        role,
        prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
        expires_in_days: None,
        created_by: "test".into(),
    };
    let mut t = mint(&req, keylatch_broker::clock::now_s()).unwrap();
    edit(&mut t.record);
    b.rt.block_on(b.state.store.create_admin_token(&t.record)).unwrap();
    (t.secret.as_str().to_owned(), t.record.id.clone())
}

fn token(b: &Broker, role: Role, prefixes: &[&str]) -> String {
    token_with(b, role.as_str(), role, prefixes, |_| {}).0
}

fn client(b: &Broker, token: &str) -> AdminClient {
    AdminClient::new(&b.url, &b.ca, Zeroizing::new(token.to_owned())).unwrap()
}

/// Asserts a refusal's status and type.
#[allow(clippy::needless_pass_by_value)] // reason: call sites pass the reply straight in
fn refused(reply: (u16, Value), status: u16, kind: &str) -> String {
    assert_eq!(
        (reply.0, reply.1["type"].as_str().unwrap_or_default()),
        (status, kind),
        "{}",
        reply.1
    );
    reply.1["detail"].as_str().unwrap().to_owned()
}

/// One row of the role table: method, path, body, roles allowed, status when allowed.
type Row<'a> = (&'a str, &'a str, Option<&'a Value>, &'a [Role], u16);

#[test]
fn each_role_is_allowed_exactly_its_operations() {
    use Role::{Admin, Auditor, KeyCustodian as Cust, PolicyAuthor as Author};
    let a = authors();
    let b = broker(&a);
    let v1 = publish_body(&signed(&bundle(1, "2100-01-01T00:00:00Z", "00"), &[&a.alice, &a.bob]));
    let custodian = client(&b, &token(&b, Role::KeyCustodian, &[]));
    custodian
        .call("PUT", "/admin/v1/resources/default/del/x", Some(&json!({"generate": 16})))
        .unwrap();
    let (_, victim) = token_with(&b, "victim", Role::Auditor, &[], |_| {});
    let put_key = json!({"value": "c2VjcmV0"});
    let policy: Value = serde_json::from_str(
        &keylatch_broker::policy::Policy::parse(ALLOW_SIM).unwrap().canonical_json().unwrap(),
    )
    .unwrap();
    let new_token = json!({"name": "n", "role": "auditor"});
    let show = format!("/admin/v1/resources/{RESOURCE}");
    let pol = format!("/admin/v1/policies/{RESOURCE}");
    let revoke = format!("/admin/v1/tokens/{victim}");
    // (method, path, body, roles allowed, status when allowed)
    let table: Vec<Row> = vec![
        ("GET", "/admin/v1/resources", None, &[Cust, Auditor], 200),
        ("GET", &show, None, &[Cust, Auditor], 200),
        ("PUT", "/admin/v1/resources/default/k/new", Some(&put_key), &[Cust], 201),
        ("DELETE", "/admin/v1/resources/default/del/x", None, &[Cust], 200),
        ("GET", "/admin/v1/policies", None, &[Cust, Auditor], 200),
        ("GET", &pol, None, &[Cust, Auditor], 200),
        ("PUT", &pol, Some(&policy), &[Cust], 201),
        ("GET", "/admin/v1/reference-values", None, &[Author, Auditor], 200),
        ("GET", "/admin/v1/reference-values/web", None, &[Author, Auditor], 200),
        ("PUT", "/admin/v1/reference-values/web", Some(&v1), &[Author], 201),
        ("GET", "/admin/v1/tokens", None, &[Admin], 200),
        ("POST", "/admin/v1/tokens", Some(&new_token), &[Admin], 201),
        ("DELETE", &revoke, None, &[Admin], 200),
        ("GET", "/admin/v1/audit", None, &[Auditor], 200),
        ("GET", "/admin/v1/audit/checkpoints", None, &[Auditor], 200),
        ("GET", "/admin/v1/audit/entries?start=0&end=2", None, &[Auditor], 200),
        ("GET", "/admin/v1/audit/proof/inclusion?index=0&size=2", None, &[Auditor], 200),
        ("GET", "/admin/v1/audit/proof/consistency?first=1&second=2", None, &[Auditor], 200),
        ("GET", "/admin/v1/audit/query?resource=default/k/new", None, &[Auditor], 200),
    ];
    let nobody = client(&b, "klt_not-a-token-anyone-was-given-0000000000000");
    for role in Role::ALL {
        let c = client(&b, &token(&b, role, &[]));
        for (method, path, body, allowed, status) in &table {
            let reply = c.request(method, path, *body).unwrap();
            if allowed.contains(&role) {
                assert_eq!(reply.0, *status, "{role} {method} {path}: {}", reply.1);
            } else {
                let detail = refused(reply, 403, "forbidden");
                assert!(detail.starts_with(&format!("role {role} may not")), "{detail}");
            }
        }
    }
    for (method, path, body, _, _) in &table {
        refused(nobody.request(method, path, *body).unwrap(), 401, "admin-unauthenticated");
    }
    // The custodian's put stored the bytes it was given, and only those.
    b.rt.block_on(async {
        let r = b.state.store.current_resource("default/k/new").await.unwrap().unwrap();
        let binding = keylatch_keystore::ResourceBinding::new(r.path.clone(), r.version);
        assert_eq!(b.state.keystore.unseal(&binding, &r.sealed).unwrap().as_slice(), b"secret");
    });
}

#[test]
fn scoped_tokens_see_and_change_only_their_prefixes() {
    let b = broker(&authors());
    let all = client(&b, &token(&b, Role::KeyCustodian, &[]));
    for p in ["tenant-a/k/1", "tenant-a/k/2", "tenant-b/k/1"] {
        all.call("PUT", &format!("/admin/v1/resources/{p}"), Some(&json!({"generate": 32})))
            .unwrap();
        all.call("PUT", &format!("/admin/v1/policies/{p}"), Some(&json!({"rules": []}))).unwrap();
    }
    let a = client(&b, &token(&b, Role::KeyCustodian, &["tenant-a/"]));
    let auditor = client(&b, &token(&b, Role::Auditor, &["tenant-a"]));
    let paths = |v: &Value, key: &str| -> Vec<String> {
        v[key].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap().to_owned()).collect()
    };
    for c in [&a, &auditor] {
        let listed = c.call("GET", "/admin/v1/resources", None).unwrap();
        assert_eq!(paths(&listed, "resources"), ["tenant-a/k/1", "tenant-a/k/2"]);
        let listed = c.call("GET", "/admin/v1/policies", None).unwrap();
        assert_eq!(paths(&listed, "policies"), ["tenant-a/k/1", "tenant-a/k/2"]);
        c.call("GET", "/admin/v1/resources/tenant-a/k/1", None).unwrap();
        for path in ["/admin/v1/resources/tenant-b/k/1", "/admin/v1/policies/tenant-b/k/1"] {
            let detail = refused(c.request("GET", path, None).unwrap(), 403, "forbidden");
            assert_eq!(detail, "tenant-b/k/1 is outside this token's prefixes");
        }
    }
    // The audit log is one tree over every tenant: a scoped auditor cannot read it.
    for path in ["/admin/v1/audit", "/admin/v1/audit/entries?start=0&end=1"] {
        let detail = refused(auditor.request("GET", path, None).unwrap(), 403, "forbidden");
        assert!(detail.contains("auditor token without --prefix"), "{detail}");
    }
    let gen = json!({"generate": 8});
    for (method, path, body) in [
        ("PUT", "/admin/v1/resources/tenant-b/k/1", Some(&gen)),
        ("DELETE", "/admin/v1/resources/tenant-b/k/1", None),
        ("PUT", "/admin/v1/policies/tenant-b/k/1", Some(&json!({"rules": []}))),
        // A sibling that merely shares the prefix's characters is outside it too.
        ("PUT", "/admin/v1/resources/tenant-ab/k/1", Some(&gen)),
    ] {
        refused(a.request(method, path, body).unwrap(), 403, "forbidden");
    }
    assert_eq!(
        a.call("PUT", "/admin/v1/resources/tenant-a/k/1", Some(&gen)).unwrap()["version"],
        2
    );
    // tenant-b is untouched: one version, still there.
    let shown = all.call("GET", "/admin/v1/resources/tenant-b/k/1", None).unwrap();
    assert_eq!(shown["current_version"], 1);
}

#[test]
fn revoked_and_expired_tokens_are_refused() {
    let b = broker(&authors());
    let admin = client(&b, &token(&b, Role::Admin, &[]));
    let (secret, id) = token_with(&b, "soon-revoked", Role::Auditor, &[], |_| {});
    let victim = client(&b, &secret);
    assert_eq!(victim.request("GET", "/admin/v1/resources", None).unwrap().0, 200);
    admin.call("DELETE", &format!("/admin/v1/tokens/{id}"), None).unwrap();
    let detail = refused(
        victim.request("GET", "/admin/v1/resources", None).unwrap(),
        401,
        "admin-unauthenticated",
    );
    assert_eq!(detail, "token revoked");
    // Revoking twice is not found; the list shows when it was revoked.
    refused(
        admin.request("DELETE", &format!("/admin/v1/tokens/{id}"), None).unwrap(),
        404,
        "not-found",
    );
    let list = admin.call("GET", "/admin/v1/tokens", None).unwrap();
    let row = list["tokens"].as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert!(row["revoked"].is_string(), "{row}");
    assert!(row.get("hash").is_none());

    let now = keylatch_broker::clock::now_s();
    let (expired, _) = token_with(&b, "old", Role::Auditor, &[], |r| r.expires = Some(now - 1));
    let detail = refused(
        client(&b, &expired).request("GET", "/admin/v1/resources", None).unwrap(),
        401,
        "admin-unauthenticated",
    );
    assert_eq!(detail, "token expired");
    // No Authorization at all, and a non-bearer scheme.
    let http = b.http();
    let r = http
        .get("admin", "/admin/v1/resources", None, None, std::time::Duration::from_secs(20))
        .unwrap();
    assert_eq!(common::error_of(&r, 401).detail, "no Authorization header");
}

#[test]
fn the_store_holds_token_hashes_not_tokens() {
    let b = broker(&authors());
    let admin = client(&b, &token(&b, Role::Admin, &[]));
    let made = admin
        .call("POST", "/admin/v1/tokens", Some(&json!({"name": "scan-me", "role": "key-custodian", "prefixes": ["x/"], "expires_in_days": 7})))
        .unwrap();
    let secret = made["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("klt_") && secret.len() == 47, "{secret}");
    // The new token works, and is never shown again.
    let c = client(&b, &secret);
    assert_eq!(c.request("GET", "/admin/v1/resources", None).unwrap().0, 200);
    let list = admin.call("GET", "/admin/v1/tokens", None).unwrap().to_string();
    assert!(!list.contains(&secret));
    let hash = keylatch_broker::admin::auth::token_hash(&secret);
    let config = keylatch_broker::Config::load(&b.dir.path().join("keylatch.toml")).unwrap();
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", config.store.path.as_ref().unwrap().display());
        if let Ok(bytes) = std::fs::read(&p) {
            files.push(bytes);
        }
    }
    let contains =
        |needle: &[u8]| files.iter().any(|f| f.windows(needle.len()).any(|w| w == needle));
    assert!(contains(hash.as_bytes()), "the hash is stored");
    assert!(!contains(secret.as_bytes()), "the token is not stored");
    assert!(!contains(&secret.as_bytes()[4..]), "nor its random part");
}

#[test]
fn publication_accepts_newer_valid_bundles_and_names_each_refusal() {
    let a = authors();
    let b = broker(&a);
    let author = client(&b, &token(&b, Role::PolicyAuthor, &[]));
    let put = |bytes: &[u8]| {
        author.request("PUT", "/admin/v1/reference-values/web", Some(&publish_body(bytes))).unwrap()
    };
    let far = "2100-01-01T00:00:00Z";
    let both: &[&AuthorSigningKey] = &[&a.alice, &a.bob];
    let ok = put(&signed(&bundle(1, far, "00"), both));
    assert_eq!(ok.0, 201, "{}", ok.1);
    assert_eq!(ok.1["version"], 1);
    assert_eq!(ok.1["signers"].as_array().unwrap().len(), 2);

    refused(put(&signed(&bundle(1, far, "00"), both)), 409, "stale-version");
    refused(put(&signed(&bundle(2, far, "00"), &[&a.alice])), 422, "below-threshold");
    refused(put(&signed(&bundle(2, far, "00"), &[&a.alice, &a.mallory])), 422, "unknown-signer");
    refused(put(&signed(&bundle(2, "2001-01-01T00:00:00Z", "00"), both)), 422, "bundle-expired");
    let mut tampered = signed(&bundle(2, far, "00"), both);
    *tampered.last_mut().unwrap() ^= 1;
    refused(put(&tampered), 422, "bad-signature");
    let other = Bundle { name: "other".into(), ..bundle(2, far, "00") };
    refused(put(&signed(&other, both)), 400, "bad-request");

    let ok = put(&signed(&bundle(3, far, "00"), both));
    assert_eq!(ok.0, 201, "{}", ok.1);
    refused(put(&signed(&bundle(2, far, "00"), both)), 409, "stale-version");
    // History keeps every accepted version, newest first, with its publisher.
    let shown = author.call("GET", "/admin/v1/reference-values/web", None).unwrap();
    let versions: Vec<(u64, String)> = shown["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["publisher"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(versions, [(3, "policy-author".to_owned()), (1, "policy-author".to_owned())]);
    assert_eq!(shown["bundle"]["version"], 3);
    // Unconfigured names are not publishable.
    let r = author
        .request("PUT", "/admin/v1/reference-values/nope", Some(&publish_body(&tampered)))
        .unwrap();
    refused(r, 404, "not-found");
}

#[test]
fn attestation_appraises_against_the_newest_published_bundle() {
    let a = authors();
    let b = broker(&a);
    let both: &[&AuthorSigningKey] = &[&a.alice, &a.bob];
    let author = client(&b, &token(&b, Role::PolicyAuthor, &[]));
    let custodian = client(&b, &token(&b, Role::KeyCustodian, &[]));
    let far = "2100-01-01T00:00:00Z";
    let policy = json!({"rules": [{"name": "web", "tees": ["snp"], "allow_simulated": true, "bundles": ["web"]}]});
    custodian.call("PUT", &format!("/admin/v1/policies/{RESOURCE}"), Some(&policy)).unwrap();
    author
        .call(
            "PUT",
            "/admin/v1/reference-values/web",
            Some(&publish_body(&signed(&bundle(1, far, "00"), both))),
        )
        .unwrap();
    let err = b.fetch(b.source(SimTee::Snp), KeyKind::P256).unwrap_err();
    let (status, body) = agent_error(&err);
    assert_eq!((status, body.error_type.as_str()), (403, "policy-denied"));
    assert!(body.detail.contains("bundle \"web\" mismatches: snp.measurement"), "{}", body.detail);
    // The simulated guest's measurement is 0x4d repeated.
    author
        .call(
            "PUT",
            "/admin/v1/reference-values/web",
            Some(&publish_body(&signed(&bundle(2, far, "4d"), both))),
        )
        .unwrap();
    assert_eq!(b.fetch(b.source(SimTee::Snp), KeyKind::P256).unwrap(), SECRET);
}

#[test]
#[allow(clippy::too_many_lines)] // reason: one scenario, step by step, through the real binary
fn keylatch_binary_bootstraps_a_token_and_drives_the_api() {
    let a = authors();
    let b = broker(&a);
    let config = b.dir.path().join("keylatch.toml");
    let run = |args: &[&str]| {
        let out = keylatch(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let cfg = config.to_str().unwrap();
    let custodian = run(&[
        "token",
        "create",
        "--config",
        cfg,
        "--role",
        "key-custodian",
        "--name",
        "cli-custodian",
    ]);
    let author = run(&[
        "token",
        "create",
        "--config",
        cfg,
        "--role",
        "policy-author",
        "--name",
        "cli-author",
    ]);
    let ca = b.dir.path().join("tls/ca.pem");
    let (ctok, atok) = (b.dir.path().join("c.token"), b.dir.path().join("a.token"));
    std::fs::write(&ctok, custodian).unwrap();
    std::fs::write(&atok, author).unwrap();
    let key = b.dir.path().join("key.bin");
    std::fs::write(&key, b"cli key bytes").unwrap();
    let conn = |tok: &Path| {
        vec![
            "admin".to_owned(),
            "--url".into(),
            b.url.clone(),
            "--ca".into(),
            ca.display().to_string(),
            "--token-file".into(),
            tok.display().to_string(),
        ]
    };
    let mut args = conn(&ctok);
    args.extend(["resource", "put", "cli/k/1", "--from", key.to_str().unwrap()].map(String::from));
    let put: Value =
        serde_json::from_str(&run(&args.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
    assert_eq!(put, json!({"path": "cli/k/1", "version": 1}));
    let mut args = conn(&ctok);
    args.extend(["resource", "list"].map(String::from));
    let list: Value =
        serde_json::from_str(&run(&args.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
    let paths: Vec<&str> =
        list["resources"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["cli/k/1", RESOURCE]);
    let bundle_file = b.dir.path().join("web.cose");
    std::fs::write(
        &bundle_file,
        signed(&bundle(5, "2100-01-01T00:00:00Z", "00"), &[&a.alice, &a.bob]),
    )
    .unwrap();
    let push = [
        "refval",
        "push",
        "--url",
        &b.url,
        "--ca",
        ca.to_str().unwrap(),
        "--token-file",
        atok.to_str().unwrap(),
        "web",
        bundle_file.to_str().unwrap(),
    ];
    let pushed: Value = serde_json::from_str(&run(&push)).unwrap();
    assert_eq!(pushed["version"], 5);
    // A refusal exits non-zero and names the type.
    let out = keylatch(&push);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 409 stale-version"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn key_lifecycle_over_the_admin_api_byok_rotate_disable_enable_destroy() {
    use base64::Engine as _;
    let a = authors();
    let b = broker(&a);
    let custodian = client(&b, &token(&b, Role::KeyCustodian, &[]));
    let auditor = client(&b, &token(&b, Role::Auditor, &[]));
    let path = format!("/admin/v1/resources/{RESOURCE}");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    // BYOK: the customer wraps to the keystore's import key; the keystore unwraps.
    let import = custodian.call("GET", "/admin/v1/keystore/import-key", None).unwrap();
    refused(
        auditor.request("GET", "/admin/v1/keystore/import-key", None).unwrap(),
        403,
        "forbidden",
    );
    let pem = import["public_key_pem"].as_str().unwrap();
    let (label, spki) = der::pem::decode_vec(pem.as_bytes()).unwrap();
    assert_eq!(label, "PUBLIC KEY");
    let customer_key = [0x5au8; 32];
    let blob = keylatch_keystore::byok::wrap_for_import(&spki, &customer_key).unwrap();
    let put = custodian.call("PUT", &path, Some(&json!({"wrapped": b64(&blob)}))).unwrap();
    assert_eq!(put["version"], 2);
    assert_eq!(b.fetch(b.source(SimTee::Snp), KeyKind::P256).unwrap(), customer_key);
    let mut tampered = blob.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let (status, _) =
        custodian.request("PUT", &path, Some(&json!({"wrapped": b64(&tampered)}))).unwrap();
    assert!(status >= 400, "a tampered blob was accepted");

    // Rotation: a new version becomes current; the old one is kept.
    let rotated = custodian.call("PUT", &path, Some(&json!({"generate": 48}))).unwrap();
    assert_eq!(rotated["version"], 3);
    let key3 = b.fetch(b.source(SimTee::Snp), KeyKind::P256).unwrap();
    assert_eq!(key3.len(), 48);
    let shown = custodian.call("GET", &path, None).unwrap();
    assert_eq!(shown["versions"].as_array().unwrap().len(), 3);
    assert_eq!(shown["state"], "active");

    // Disable: never released (and shown so); enable: released again.
    custodian.call("PATCH", &path, Some(&json!({"state": "disabled"}))).unwrap();
    let (status, body) = agent_error(&b.fetch(b.source(SimTee::Snp), KeyKind::P256).unwrap_err());
    assert_eq!((status, body.error_type.as_str()), (403, "resource-disabled"));
    assert_eq!(custodian.call("GET", &path, None).unwrap()["state"], "disabled");
    custodian
        .call(
            "PATCH",
            &path,
            Some(&json!({"state": "active", "rotate_by": "2030-01-01T00:00:00Z"})),
        )
        .unwrap();
    assert_eq!(b.fetch(b.source(SimTee::Snp), KeyKind::P256).unwrap(), key3);
    let shown = custodian.call("GET", &path, None).unwrap();
    assert_eq!(
        (&shown["state"], &shown["rotate_by"]),
        (&json!("active"), &json!("2030-01-01T00:00:00Z"))
    );
    refused(
        custodian.request("PATCH", &path, Some(&json!({"state": "paused"}))).unwrap(),
        400,
        "bad-request",
    );
    refused(
        auditor.request("PATCH", &path, Some(&json!({"state": "disabled"}))).unwrap(),
        403,
        "forbidden",
    );

    // Destroy: crypto-shred, final.
    custodian.call("DELETE", &path, None).unwrap();
    let (status, body) = agent_error(&b.fetch(b.source(SimTee::Snp), KeyKind::P256).unwrap_err());
    assert_eq!((status, body.error_type.as_str()), (404, "resource-destroyed"));
    let (status, _) = custodian.request("PUT", &path, Some(&json!({"generate": 32}))).unwrap();
    assert!(status >= 400, "a destroyed path was reused");
}

/// The admin entries of the audit log about `target`: (operation, outcome, principal), where
/// the outcome is `intent`, `ok` or the refusal's type.
fn admin_entries_about(b: &Broker, target: &str) -> Vec<(String, String, String)> {
    let store = b.state.store.as_ref();
    let size = b.rt.block_on(store.audit_size()).unwrap();
    let lines =
        b.rt.block_on(keylatch_broker::audit::export::entries_jsonl(store, 0, size)).unwrap();
    String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["entry"].take())
        .filter(|e| e["kind"] == "admin" && e["resource"]["path"] == target)
        .map(|e| {
            let reasons = e["reasons"].as_array().unwrap();
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let outcome = if e["decision"] == "intent" {
                "intent".to_owned()
            } else {
                reasons.get(1).map(text).unwrap_or_default()
            };
            (text(&reasons[0]), outcome, text(&e["actor"]["principal"]))
        })
        .collect()
}

#[test]
fn an_admin_api_resource_write_is_recorded_once_with_its_principal() {
    let a = authors();
    let b = broker(&a);
    let custodian = client(&b, &token(&b, Role::KeyCustodian, &[]));
    let auditor = client(&b, &token(&b, Role::Auditor, &[]));
    let target = "default/k/once";
    let path = format!("/admin/v1/resources/{target}");

    let (status, _) = custodian.request("PUT", &path, Some(&json!({"generate": 32}))).unwrap();
    assert_eq!(status, 201);
    let (status, _) =
        custodian.request("PATCH", &path, Some(&json!({"state": "disabled"}))).unwrap();
    assert_eq!(status, 200);
    refused(
        auditor.request("PUT", &path, Some(&json!({"generate": 32}))).unwrap(),
        403,
        "forbidden",
    );
    let (status, _) = custodian.request("DELETE", &path, None).unwrap();
    assert_eq!(status, 200);

    let entries = admin_entries_about(&b, target);
    let entry =
        |op: &str, outcome: &str, who: &str| (op.to_owned(), outcome.to_owned(), who.to_owned());
    // One intent and one outcome per change, each with the custodian as principal; the refusal
    // once, with the auditor. No second `resource.put|update|delete` entry per call.
    let expected = [
        entry("resource.generate", "intent", "key-custodian"),
        entry("resource.generate", "ok", "key-custodian"),
        entry("resource.disable", "intent", "key-custodian"),
        entry("resource.disable", "ok", "key-custodian"),
        entry("resource.put", "forbidden", "auditor"),
        entry("resource.destroy", "intent", "key-custodian"),
        entry("resource.destroy", "ok", "key-custodian"),
    ];
    assert_eq!(entries, expected);
}

#[test]
#[allow(clippy::too_many_lines)] // reason: one scenario, step by step, through the real binary
fn keylatch_admin_covers_every_resource_operation_of_the_api() {
    let a = authors();
    let b = broker(&a);
    let dir = b.dir.path();
    let run = keylatch;
    let config = dir.join("keylatch.toml");
    let out = run(&[
        "token",
        "create",
        "--config",
        config.to_str().unwrap(),
        "--role",
        "key-custodian",
        "--name",
        "cli-custodian",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token_file = dir.join("c.token");
    std::fs::write(&token_file, &out.stdout).unwrap();
    let ca = dir.join("tls/ca.pem");
    // `keylatch admin --url --ca --token-file ARGS...`: the answer, or the failed run.
    let admin = |args: &[&str]| -> Result<Value, std::process::Output> {
        let mut all = vec![
            "admin",
            "--url",
            &b.url,
            "--ca",
            ca.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let out = run(&all);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(out)
        }
    };
    let ok = |args: &[&str]| {
        admin(args).unwrap_or_else(|o| panic!("{args:?}: {}", String::from_utf8_lossy(&o.stderr)))
    };
    let target = "default/cli/byok";
    let release = || b.fetch_path(b.source(SimTee::Snp), KeyKind::P256, target);

    // BYOK: the import key over the API, wrapped offline, imported over the API.
    let public = dir.join("import.pub.pem");
    let public_s = public.to_str().unwrap();
    assert_eq!(ok(&["keystore", "import-key", "--out", public_s]), json!({"written": public_s}));
    let key = dir.join("customer.key");
    std::fs::write(&key, [0x42u8; 32]).unwrap();
    let blob = dir.join("customer.blob");
    let wrap = run(&[
        "key",
        "wrap-for-import",
        "--public-key",
        public_s,
        "--key",
        key.to_str().unwrap(),
        "--out",
        blob.to_str().unwrap(),
    ]);
    assert!(wrap.status.success(), "{}", String::from_utf8_lossy(&wrap.stderr));
    let imported = ok(&["resource", "import", target, "--wrapped", blob.to_str().unwrap()]);
    assert_eq!(imported, json!({"path": target, "version": 1}));
    b.put_policy(target, ALLOW_SIM);
    assert_eq!(release().unwrap(), [0x42u8; 32]);

    // Rotate: by default random bytes of the current length; or from a file, or a blob.
    assert_eq!(ok(&["resource", "rotate", target]), json!({"path": target, "version": 2}));
    let v2 = release().unwrap();
    assert_eq!(v2.len(), 32);
    assert_ne!(v2, [0x42u8; 32]);
    let next = dir.join("next.key");
    std::fs::write(&next, b"rotated from a file").unwrap();
    let rotated = ok(&["resource", "rotate", target, "--from", next.to_str().unwrap()]);
    assert_eq!(rotated["version"], 3);
    assert_eq!(release().unwrap(), b"rotated from a file");
    assert_eq!(ok(&["resource", "rotate", target, "--generate", "48"])["version"], 4);
    assert_eq!(release().unwrap().len(), 48);
    // A rotation needs an existing resource; a put needs key material.
    let absent = admin(&["resource", "rotate", "default/cli/absent"]).unwrap_err();
    assert_eq!(absent.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&absent.stderr);
    assert!(stderr.contains("HTTP 404 not-found"), "{stderr}");
    let bare = admin(&["resource", "put", "default/cli/bare"]).unwrap_err();
    assert_eq!(bare.status.code(), Some(2));

    // Disable and enable.
    assert_eq!(
        ok(&["resource", "disable", target]),
        json!({"path": target, "changed": ["disabled"]})
    );
    let (status, body) = agent_error(&release().unwrap_err());
    assert_eq!((status, body.error_type.as_str()), (403, "resource-disabled"));
    assert_eq!(ok(&["resource", "show", target])["state"], "disabled");
    assert_eq!(ok(&["resource", "enable", target])["changed"], json!(["enabled"]));
    assert_eq!(release().unwrap().len(), 48);

    // Set and clear the rotate-by date.
    ok(&["resource", "set-rotate-by", target, "--rotate-by", "2030-01-01T00:00:00Z"]);
    assert_eq!(ok(&["resource", "show", target])["rotate_by"], "2030-01-01T00:00:00Z");
    ok(&["resource", "set-rotate-by", target, "--clear"]);
    assert_eq!(ok(&["resource", "show", target])["rotate_by"], Value::Null);
    let neither = admin(&["resource", "set-rotate-by", target]).unwrap_err();
    assert_eq!(neither.status.code(), Some(2), "clap refuses it");

    // Each change recorded once, as the operation it was, with the token's principal (reads
    // and the harness's store-direct policy left out).
    let ops: Vec<(String, String)> = admin_entries_about(&b, target)
        .into_iter()
        .filter(|(op, outcome, who)| outcome == "ok" && who != "cli" && op != "resource.show")
        .map(|(op, _, who)| (op, who))
        .collect();
    let who = "cli-custodian".to_owned();
    let expected: Vec<(String, String)> = [
        "resource.import",
        "resource.rotate",
        "resource.rotate",
        "resource.rotate",
        "resource.disable",
        "resource.enable",
        "resource.set-rotate-by",
        "resource.set-rotate-by",
    ]
    .into_iter()
    .map(|op| (op.to_owned(), who.clone()))
    .collect();
    assert_eq!(ops, expected);
}

/// Runs the `keylatch` binary with `args` as an operator would, without a `KEYLATCH_TOKEN` from
/// the test's environment.
fn keylatch(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_keylatch"))
        .args(args)
        .env_remove("KEYLATCH_TOKEN")
        .output()
        .unwrap()
}
