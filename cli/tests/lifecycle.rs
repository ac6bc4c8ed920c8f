//! Resource lifecycle and key custody against the real broker (HTTPS, simulated SNP guest via
//! the agent library), on the soft keystore and on SoftHSM2 through PKCS#11: release, BYOK
//! import (our wrapper and Python `cryptography`), rotate, disable, enable, destroy, KEK
//! rotation interrupted and resumed, token loss and recovery, and a scan of the database files
//! and captured logs for plaintext. Operator steps run the real `keylatch` binary.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

// The broker harness the HTTP tests use (a broker from `keylatch init` served on 127.0.0.1).
#[path = "../../server/tests/common/mod.rs"]
mod common;
#[path = "../../keystore/tests/common/mod.rs"]
#[allow(unused_macros, clippy::all, clippy::pedantic)] // reason: shared fixture from keystore
mod hsm;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine as _;
use common::{agent_error, error_of, Broker, LogWriter, Raw, ALLOW_SIM, LOGS, RESOURCE, SECRET};
use keylatch_agent::evidence::SimTee;
use keylatch_broker::custody::{self, Actor, Cryptoperiod, Material};
use keylatch_broker::store::ResourceState;
use keylatch_keystore::pkcs11::PinSource;
use keylatch_wire::KeyKind;
use zeroize::Zeroizing;

// ---------------------------------------------------------------- fixture

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Soft,
    Pkcs11,
}

/// The broker (dropped first) and its token.
struct Setup {
    broker: Broker,
    hsm: Option<hsm::SoftHsm>,
}

impl Setup {
    fn new(backend: Backend) -> Option<Self> {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
        let hsm = match backend {
            Backend::Soft => None,
            Backend::Pkcs11 => Some(hsm::SoftHsm::new()?),
        };
        let keystore = hsm.as_ref().map(|h| {
            let PinSource::File(pin) = &h.config.pin else { panic!("pin file") };
            format!(
                "backend = \"pkcs11\"\npkcs11 = {{ module = \"{}\", token_label = \"{}\", pin = {{ file = \"{}\" }} }}",
                h.config.module.display(),
                h.config.token_label,
                pin.display()
            )
        });
        let broker = Broker::start(
            |c| match keystore {
                Some(k) => c.replace("backend = \"soft\"\nkek_file = \"kek.json\"", &k),
                None => c,
            },
            ALLOW_SIM,
        );
        assert_eq!(
            broker.state.keystore.describe().backend,
            if backend == Backend::Soft { "soft" } else { "pkcs11" }
        );
        Some(Self { broker, hsm })
    }

    fn config(&self) -> PathBuf {
        self.broker.dir.path().join("keylatch.toml")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.broker.dir.path().join(name)
    }

    /// Runs `keylatch <args> --config <config>` (when `config`); output goes to [`LOGS`].
    fn keylatch(&self, args: &[&str], config: bool) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keylatch"));
        cmd.args(args).env("RUST_LOG", "debug");
        if config {
            cmd.arg("--config").arg(self.config());
        }
        let out = cmd.output().unwrap();
        let mut logs = LOGS.lock().unwrap();
        logs.extend_from_slice(&out.stdout);
        logs.extend_from_slice(&out.stderr);
        out
    }

    fn keylatch_ok(&self, args: &[&str]) -> String {
        let out = self.keylatch(args, true);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Releases `path` to a simulated SNP guest: the bytes, or the broker's (status, type).
    fn release(&self, path: &str) -> Result<Vec<u8>, (u16, String)> {
        let b = &self.broker;
        b.fetch_path(b.source(SimTee::Snp), KeyKind::P256, path).map_err(|e| {
            let (status, body) = agent_error(&e);
            (status, body.error_type)
        })
    }

    fn put(&self, path: &str, material: Material) -> u64 {
        let s = &self.broker.state;
        self.broker
            .rt
            .block_on(custody::put(
                s.store.as_ref(),
                &s.keystore,
                Actor::cli(&s.audit),
                custody_now(),
                path,
                material,
                Cryptoperiod::Inherit,
            ))
            .unwrap()
            .version
    }

    /// Asserts that no secret appears, raw, hex or base64, in the database files or the logs.
    fn assert_no_plaintext(&self, secrets: &[&[u8]]) {
        let mut hay = Vec::new();
        for name in ["keylatch.db", "keylatch.db-wal"] {
            if let Ok(bytes) = std::fs::read(self.file(name)) {
                hay.extend_from_slice(&bytes);
            }
        }
        let logs = LOGS.lock().unwrap().clone();
        assert!(!logs.is_empty(), "logs were captured");
        hay.extend_from_slice(&logs);
        for secret in secrets {
            let b64 = base64::engine::general_purpose::STANDARD;
            let b64_url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let forms: Vec<Vec<u8>> = vec![
                secret.to_vec(),
                hex::encode(secret).into_bytes(),
                hex::encode_upper(secret).into_bytes(),
                b64.encode(secret).into_bytes(),
                b64_url.encode(secret).into_bytes(),
            ];
            for form in forms {
                assert!(
                    !hay.windows(form.len()).any(|w| w == form.as_slice()),
                    "plaintext found at rest or in logs: {}",
                    String::from_utf8_lossy(&form)
                );
            }
        }
    }
}

fn custody_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn soft() {
                super::$name(super::Backend::Soft);
            }
            #[test]
            fn pkcs11() {
                super::$name(super::Backend::Pkcs11);
            }
        }
    )*};
}

on_both!(
    release_flow_serves_put_and_generated_keys,
    byok_imports_from_our_wrapper_and_python_release_byte_for_byte,
    rotate_disable_enable_destroy_behave_as_documented,
    kek_rotation_interrupted_midway_resumes_without_loss,
    kek_rotated_by_the_cli_applies_to_the_serving_broker_without_restart,
    cryptoperiods_show_overdue_and_due_soon,
);

// ---------------------------------------------------------------- tests

fn release_flow_serves_put_and_generated_keys(backend: Backend) {
    let Some(s) = Setup::new(backend) else { return };
    assert_eq!(s.release(RESOURCE).unwrap(), SECRET);

    let out = s.keylatch_ok(&["resource", "generate", "default/gen/k1", "--length", "48"]);
    assert!(out.starts_with("default/gen/k1 version 1 (KEK "), "{out}");
    s.broker.put_policy("default/gen/k1", ALLOW_SIM);
    let generated = s.release("default/gen/k1").unwrap();
    assert_eq!(generated.len(), 48);
    assert_ne!(generated, vec![0u8; 48]);
    s.assert_no_plaintext(&[SECRET, &generated]);
}

fn byok_imports_from_our_wrapper_and_python_release_byte_for_byte(backend: Backend) {
    let Some(s) = Setup::new(backend) else { return };
    let pem = s.file("import.pem");
    s.keylatch_ok(&["key", "import-public-key", "--out", pem.to_str().unwrap()]);
    let text = std::fs::read_to_string(&pem).unwrap();
    assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{text}");

    // Customer side: our wrapper, offline (no config).
    let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    let key_file = s.file("customer.key");
    std::fs::write(&key_file, &key).unwrap();
    let blob = s.file("customer.blob");
    let out = s.keylatch(
        &[
            "key",
            "wrap-for-import",
            "--public-key",
            pem.to_str().unwrap(),
            "--key",
            key_file.to_str().unwrap(),
            "--out",
            blob.to_str().unwrap(),
        ],
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), 384 + 40, "RSA-3072 part + KWP(32)");
    std::fs::remove_file(&key_file).unwrap();
    let out = s.keylatch_ok(&[
        "resource",
        "import",
        "default/byok/ours",
        "--wrapped",
        blob.to_str().unwrap(),
    ]);
    assert!(out.starts_with("default/byok/ours version 1"), "{out}");
    s.broker.put_policy("default/byok/ours", ALLOW_SIM);
    assert_eq!(s.release("default/byok/ours").unwrap(), key);

    // A blob that does not open is refused and writes nothing.
    let mut bad = std::fs::read(&blob).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let bad_file = s.file("bad.blob");
    std::fs::write(&bad_file, &bad).unwrap();
    let out = s.keylatch(
        &["resource", "import", "default/byok/bad", "--wrapped", bad_file.to_str().unwrap()],
        true,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let st = &s.broker.state;
    let none = s.broker.rt.block_on(st.store.resource_lifecycle("default/byok/bad")).unwrap();
    assert_eq!(none, None);

    // An independent implementation: Python `cryptography`.
    let spki = der::pem::decode_vec(text.trim().as_bytes()).unwrap().1;
    let py_key: Vec<u8> = (0u8..24).map(|i| 0xA0 ^ i).collect();
    let mut secrets: Vec<&[u8]> = vec![SECRET, &key];
    if let Some(py_blob) = hsm::python_wrap_for_import(&spki, &py_key) {
        assert_eq!(s.put("default/byok/python", Material::Wrapped(py_blob)), 1);
        s.broker.put_policy("default/byok/python", ALLOW_SIM);
        assert_eq!(s.release("default/byok/python").unwrap(), py_key);
        secrets.push(&py_key);
    }
    s.assert_no_plaintext(&secrets);
}

fn rotate_disable_enable_destroy_behave_as_documented(backend: Backend) {
    let Some(s) = Setup::new(backend) else { return };
    let next = b"second version of the disk key, rotated".to_vec();
    let next_file = s.file("next.key");
    std::fs::write(&next_file, &next).unwrap();
    let out =
        s.keylatch_ok(&["resource", "rotate", RESOURCE, "--from", next_file.to_str().unwrap()]);
    assert!(out.starts_with(&format!("{RESOURCE} version 2")), "{out}");
    std::fs::remove_file(&next_file).unwrap();
    assert_eq!(s.release(RESOURCE).unwrap(), next);

    // Rotation without material: a generated key of the current length becomes version 3.
    let out = s.keylatch_ok(&["resource", "rotate", RESOURCE]);
    assert!(out.starts_with(&format!("{RESOURCE} version 3")), "{out}");
    let generated = s.release(RESOURCE).unwrap();
    assert_eq!(generated.len(), next.len());
    assert_ne!(generated, next);
    let show: serde_json::Value =
        serde_json::from_str(&s.keylatch_ok(&["resource", "show", RESOURCE])).unwrap();
    assert_eq!(show["state"], "active");
    assert_eq!(show["current_version"], 3);
    assert_eq!(show["version_list"].as_array().unwrap().len(), 3, "old versions are kept");

    s.keylatch_ok(&["resource", "disable", RESOURCE]);
    assert_eq!(s.release(RESOURCE).unwrap_err(), (403, "resource-disabled".to_owned()));
    s.keylatch_ok(&["resource", "enable", RESOURCE]);
    assert_eq!(s.release(RESOURCE).unwrap(), generated);

    let sealed_hex: Vec<String> = s
        .broker
        .rt
        .block_on(s.broker.state.store.resource_versions(Some(RESOURCE)))
        .unwrap()
        .iter()
        .map(|v| hex::encode(&v.sealed.ciphertext))
        .collect();
    assert_eq!(sealed_hex.len(), 3);
    let out = s.keylatch(&["resource", "destroy", RESOURCE], true);
    assert_eq!(out.status.code(), Some(2), "destroy needs --yes");
    let out = s.keylatch_ok(&["resource", "destroy", RESOURCE, "--yes"]);
    assert_eq!(out.trim(), format!("{RESOURCE} destroyed (3 versions removed)"));
    assert_eq!(s.release(RESOURCE).unwrap_err(), (404, "resource-destroyed".to_owned()));
    assert_eq!(s.release("default/disk-key/never").unwrap_err(), (404, "not-found".to_owned()));

    // Destroyed is final: put, rotate and enable are refused, nothing is written.
    for args in [
        vec!["resource", "generate", RESOURCE],
        vec!["resource", "rotate", RESOURCE],
        vec!["resource", "enable", RESOURCE],
    ] {
        let out = s.keylatch(&args, true);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("was destroyed"), "{args:?}: {}", stderr(&out));
    }
    let st = &s.broker.state;
    let lifecycle = s.broker.rt.block_on(st.store.resource_lifecycle(RESOURCE)).unwrap().unwrap();
    assert_eq!(lifecycle.state, ResourceState::Destroyed);
    assert!(s.broker.rt.block_on(st.store.resource_versions(Some(RESOURCE))).unwrap().is_empty());
    let list: serde_json::Value =
        serde_json::from_str(&s.keylatch_ok(&["resource", "list", "--json"])).unwrap();
    assert_eq!(list[0]["path"], RESOURCE);
    assert_eq!(list[0]["state"], "destroyed");
    assert_eq!(list[0]["versions"], 0);

    // Crypto-shred: no copy of any version's ciphertext is left in the database or its WAL.
    let mut files = std::fs::read(s.file("keylatch.db")).unwrap();
    files.extend(std::fs::read(s.file("keylatch.db-wal")).unwrap_or_default());
    for ct in &sealed_hex {
        assert!(!files.windows(ct.len()).any(|w| w == ct.as_bytes()), "ciphertext left on disk");
    }
    // Every action was recorded as an admin action, the refusals included.
    let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned();
    for op in ["resource.rotate", "resource.disable", "resource.enable", "resource.destroy"] {
        assert!(logs.contains(&format!("\"operation\":\"{op}\"")), "{op} recorded");
    }
    assert!(logs.contains("\"outcome\":\"resource-destroyed\""), "refusal recorded");
    s.assert_no_plaintext(&[SECRET, &next, &generated]);
}

fn kek_rotation_interrupted_midway_resumes_without_loss(backend: Backend) {
    let Some(s) = Setup::new(backend) else { return };
    let mut expected = vec![(RESOURCE.to_owned(), SECRET.to_vec())];
    for i in 0..3u8 {
        let path = format!("default/kek/r{i}");
        let bytes = vec![0x5A ^ i; 32];
        s.put(&path, Material::Plaintext(Zeroizing::new(bytes.clone())));
        s.broker.put_policy(&path, ALLOW_SIM);
        expected.push((path, bytes));
    }
    let status = |s: &Setup| -> serde_json::Value {
        serde_json::from_str(&s.keylatch_ok(&["kek", "status", "--json"])).unwrap()
    };
    let old = status(&s)["current"].as_str().unwrap().to_owned();
    // Rotated by the running broker's own keystore (another process's rotation: see
    // kek_rotated_by_the_cli_applies_to_the_serving_broker_without_restart).
    let st = &s.broker.state;
    let new =
        s.broker.rt.block_on(custody::kek_rotate(&st.keystore, Actor::cli(&st.audit))).unwrap();
    assert_ne!(new, old);
    let before = status(&s);
    assert_eq!(before["current"], new.as_str());
    assert_eq!(
        before["keks"][0],
        serde_json::json!({"id": old, "current": false, "held": true, "versions": 4})
    );
    assert_eq!(
        before["keks"][1],
        serde_json::json!({"id": new, "current": true, "held": true, "versions": 0})
    );

    // Interrupted: the first run stops after two rows.
    let out = s.keylatch_ok(&["kek", "rewrap", "--limit", "2"]);
    assert_eq!(out.trim(), "re-wrapped 2, already current 0, remaining 2");
    let mid = status(&s);
    assert_eq!(mid["keks"][0]["versions"], 2);
    assert_eq!(mid["keks"][1]["versions"], 2);
    for (path, bytes) in &expected {
        assert_eq!(&s.release(path).unwrap(), bytes, "{path} opens mid-rotation");
    }
    let out = s.keylatch(&["kek", "retire", "--id", &old], true);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("2 resource versions are sealed under it"), "{}", stderr(&out));

    // Resumed: the second run finishes; nothing was lost.
    let out = s.keylatch_ok(&["kek", "rewrap"]);
    assert_eq!(out.trim(), "re-wrapped 2, already current 2, remaining 0");
    let out = s.keylatch(&["kek", "retire", "--id", &new], true);
    assert!(stderr(&out).contains("it is current"), "{}", stderr(&out));
    s.keylatch_ok(&["kek", "retire", "--id", &old]);
    let after = status(&s);
    assert_eq!(
        after["keks"],
        serde_json::json!([{"id": new, "current": true, "held": true, "versions": 4}])
    );
    for (path, bytes) in &expected {
        assert_eq!(&s.release(path).unwrap(), bytes, "{path} opens after retirement");
    }
    let secrets: Vec<&[u8]> = expected.iter().map(|(_, b)| b.as_slice()).collect();
    s.assert_no_plaintext(&secrets);
}

fn kek_rotated_by_the_cli_applies_to_the_serving_broker_without_restart(backend: Backend) {
    let Some(s) = Setup::new(backend) else { return };
    let status = |s: &Setup| -> serde_json::Value {
        serde_json::from_str(&s.keylatch_ok(&["kek", "status", "--json"])).unwrap()
    };
    let old = status(&s)["current"].as_str().unwrap().to_owned();
    // `keylatch kek rotate` in its own process, while the broker serves.
    let out = s.keylatch_ok(&["kek", "rotate"]);
    let new = out.split_whitespace().nth(2).unwrap().to_owned();
    assert!(out.starts_with(&format!("current KEK: {new} ")), "{out}");
    assert_ne!(new, old);

    // A new resource written through the serving broker's admin API is sealed under the new KEK.
    let token = s.keylatch_ok(&["token", "create", "--role", "key-custodian", "--name", "k"]);
    let b = &s.broker;
    let admin = keylatch_cli::remote::AdminClient::new(
        &b.url,
        &b.ca,
        Zeroizing::new(token.trim().to_owned()),
    )
    .unwrap();
    let path = "default/kek/after-rotation";
    let bytes = [0x3Cu8; 32];
    let value = base64::engine::general_purpose::STANDARD.encode(bytes);
    let put = admin
        .call(
            "PUT",
            &format!("/admin/v1/resources/{path}"),
            Some(&serde_json::json!({"value": value})),
        )
        .unwrap();
    assert_eq!(put["version"], 1);
    b.put_policy(path, ALLOW_SIM);
    let kek_of = |st: &serde_json::Value, p: &str| {
        st["versions"].as_array().unwrap().iter().find(|v| v["path"] == p).unwrap()["kek_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let after = status(&s);
    assert_eq!(after["current"], new.as_str());
    assert_eq!(kek_of(&after, path), new, "new writes use the rotated KEK");
    assert_eq!(kek_of(&after, RESOURCE), old, "old versions keep theirs");
    // Both release, from the same broker, never restarted.
    assert_eq!(s.release(RESOURCE).unwrap(), SECRET);
    assert_eq!(s.release(path).unwrap(), bytes);
    assert_eq!(b.state.keystore.describe().current_kek, new);
}

fn cryptoperiods_show_overdue_and_due_soon(backend: Backend) {
    let Some(s) = Setup::new(backend) else { return };
    let before = custody_now();
    s.keylatch_ok(&["resource", "set-rotate-by", RESOURCE, "--rotate-by", "2020-01-01T00:00:00Z"]);
    s.keylatch_ok(&["resource", "generate", "default/cp/soon", "--cryptoperiod-days", "10"]);
    s.keylatch_ok(&["resource", "generate", "default/cp/later", "--cryptoperiod-days", "90"]);
    s.keylatch_ok(&["resource", "generate", "default/cp/none"]);
    let list: serde_json::Value =
        serde_json::from_str(&s.keylatch_ok(&["resource", "list", "--json"])).unwrap();
    let due: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["path"].as_str().unwrap().to_owned(), r["due"].as_str().unwrap().to_owned()))
        .collect();
    let want = |p: &str, d: &str| (p.to_owned(), d.to_owned());
    assert_eq!(
        due,
        vec![
            want("default/cp/later", "ok"),
            want("default/cp/none", "no-deadline"),
            want("default/cp/soon", "due-soon"),
            want(RESOURCE, "overdue"),
        ]
    );
    let table = s.keylatch_ok(&["resource", "list"]);
    assert!(table.contains("2020-01-01T00:00:00Z overdue"), "{table}");

    let st = &s.broker.state;
    let now = custody_now();
    let statuses = s
        .broker
        .rt
        .block_on(custody::cryptoperiod_status(st.store.as_ref(), now, 30 * 86_400))
        .unwrap();
    assert_eq!(custody::cryptoperiod_counts(&statuses), (1, 1));
    let soon = statuses.iter().find(|c| c.path == "default/cp/soon").unwrap();
    // rotate_by = (when the CLI ran, between `before` and `now`) + 10 days.
    let elapsed = now - before;
    assert!((10 * 86_400 - elapsed..=10 * 86_400).contains(&soon.seconds_left.unwrap()));

    // A rotation restarts a cryptoperiod in days and meets an absolute date.
    s.keylatch_ok(&["resource", "rotate", RESOURCE]);
    let show: serde_json::Value =
        serde_json::from_str(&s.keylatch_ok(&["resource", "show", RESOURCE])).unwrap();
    assert_eq!(show["rotate_by"], serde_json::Value::Null);
    assert_eq!(show["due"], "no-deadline");

    // The warning window comes from [lifecycle] rotation_warning_days.
    let config = std::fs::read_to_string(s.config()).unwrap();
    assert!(config.contains("rotation_warning_days = 30"));
    std::fs::write(
        s.config(),
        config.replace("rotation_warning_days = 30", "rotation_warning_days = 5"),
    )
    .unwrap();
    let list: serde_json::Value =
        serde_json::from_str(&s.keylatch_ok(&["resource", "list", "--json"])).unwrap();
    assert_eq!(list[2]["path"], "default/cp/soon");
    assert_eq!(list[2]["due"], "ok");
}

#[test]
fn token_loss_mid_run_is_503_naming_the_keystore_and_recovers() {
    let Some(s) = Setup::new(Backend::Pkcs11) else { return };
    let hsm = s.hsm.as_ref().unwrap();
    assert_eq!(s.release(RESOURCE).unwrap(), SECRET);
    let b = &s.broker;
    let source = b.source(SimTee::Snp);

    std::fs::rename(&hsm.token_dir, hsm.unplugged_dir()).unwrap();
    let raw = Raw::auth(b, "snp");
    raw.attest_ok(source.as_ref());
    let body = error_of(&raw.resource(RESOURCE, true, None), 503);
    assert_eq!(body.error_type, "unavailable");
    assert!(
        body.detail.starts_with("keystore pkcs11 (token \"keylatch-test\" via ")
            && body.detail.ends_with("unavailable; retry later"),
        "{}",
        body.detail
    );
    // Lifecycle actions fail the same way and write nothing.
    let st = &b.state;
    let err =
        b.rt.block_on(custody::rotate(
            st.store.as_ref(),
            &st.keystore,
            Actor::cli(&st.audit),
            custody_now(),
            RESOURCE,
            None,
            Cryptoperiod::Inherit,
        ))
        .unwrap_err();
    assert_eq!(err.kind(), keylatch_broker::ErrorKind::Unavailable, "{err}");
    let versions = b.rt.block_on(st.store.resource_versions(Some(RESOURCE))).unwrap();
    assert_eq!(versions.len(), 1, "no partial write");

    std::fs::rename(hsm.unplugged_dir(), &hsm.token_dir).unwrap();
    let reply = raw.resource(RESOURCE, true, None);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(s.release(RESOURCE).unwrap(), SECRET);
    let _ = std::io::stdout().flush();
}

#[test]
fn disabled_resource_is_refused_before_its_policy_is_read() {
    let Some(s) = Setup::new(Backend::Soft) else { return };
    let st = &s.broker.state;
    s.broker.put_policy(RESOURCE, "[[rules]]\nname = \"none\"\ntees = [\"tdx\"]\n");
    assert_eq!(s.release(RESOURCE).unwrap_err(), (403, "policy-denied".to_owned()));
    s.broker
        .rt
        .block_on(custody::disable(
            st.store.as_ref(),
            Actor::cli(&st.audit),
            custody_now(),
            RESOURCE,
        ))
        .unwrap();
    assert_eq!(s.release(RESOURCE).unwrap_err(), (403, "resource-disabled".to_owned()));
    let missing = s
        .broker
        .rt
        .block_on(custody::disable(
            st.store.as_ref(),
            Actor::cli(&st.audit),
            custody_now(),
            "a/b/none",
        ))
        .unwrap_err();
    assert_eq!(missing.kind(), keylatch_broker::ErrorKind::NotFound);
    let _: &Path = s.broker.dir.path();
    let _ = Arc::clone(&st.keystore);
}
