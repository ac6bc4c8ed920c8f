//! `keylatch init` as an operator runs it: what it writes is private where it must be, and the
//! configuration and the state can live apart (the packaged layout; as root with the package
//! installed, tests/tests/deb_packages.rs runs it for /etc/keylatch and /var/lib/keylatch).

// reason: shared test bodies fail loudly; clippy.toml relaxes this only inside #[test] fns.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;

use e2e::BrokerDir;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_the_database_and_private_keys_with_mode_0600() {
    let dir = BrokerDir::soft().unwrap();
    let p = dir.path();

    assert_eq!(mode(&p.join("keylatch.db")), 0o600);
    assert_eq!(mode(&p.join("token-signing-key.pem")), 0o600);
    assert_eq!(mode(&p.join("tls/server-key.pem")), 0o600);
    assert_eq!(mode(&p.join("kek.json")), 0o600);
    assert_eq!(mode(&p.join("tls/ca.pem")), 0o644);
}

#[test]
fn database_and_its_wal_files_stay_0600_while_the_broker_serves() {
    let dir = BrokerDir::soft().unwrap();
    dir.resource_put(e2e::DISK_KEY, b"k").unwrap();
    dir.policy_set(e2e::DISK_KEY, e2e::ALLOW_SIMULATED).unwrap();
    let broker = dir.start().unwrap();
    let got = broker.target().get_resource(e2e::Tee::Snp, e2e::DISK_KEY).unwrap();
    assert_eq!((got.code, got.stdout.as_slice()), (Some(0), b"k".as_slice()), "{}", got.stderr);

    for file in ["keylatch.db", "keylatch.db-wal", "keylatch.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    broker.terminate().unwrap();
    assert_eq!(mode(&dir.path().join("keylatch.db")), 0o600);
}

#[test]
fn init_with_a_config_dir_names_the_state_by_absolute_path_and_serves_from_anywhere() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/keylatch");
    let state = root.path().join("var/lib/keylatch");
    let addr = e2e::broker::free_port().unwrap();
    // A relative --dir (from the operator's working directory) is named absolutely.
    let out = std::process::Command::new(e2e::bins::path(e2e::bins::KEYLATCH).unwrap())
        .current_dir(root.path())
        .args(["init", "--simulated", "--listen", &addr.to_string(), "--config-dir"])
        .arg(&etc)
        .args(["--dir", "var/lib/keylatch"])
        .output()
        .unwrap();
    let out = e2e::Outcome::from(out).success("keylatch init").unwrap();
    let config = etc.join("keylatch.toml");
    assert!(out.stdout_text().contains(&format!("keylatch serve --config {}", config.display())));

    let table: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let db = state.join("keylatch.db");
    let kek = state.join("kek.json");
    assert_eq!(table["store"]["path"].as_str(), db.to_str());
    assert_eq!(table["keystore"]["kek_file"].as_str(), kek.to_str());
    assert_eq!(table["token_signing_key"].as_str(), Some("token-signing-key.pem"));
    for file in ["token-signing-key.pem", "audit-signing-key.pem", "tls/server-key.pem"] {
        assert_eq!(mode(&etc.join(file)), 0o600, "{file}");
    }
    for file in ["tls/ca.pem", "tls/server.pem", "audit.pub", "sim-pki"] {
        assert!(etc.join(file).exists(), "{file} in the config dir");
    }
    assert_eq!((mode(&db), mode(&kek)), (0o600, 0o600));
    for name in ["keylatch.db", "kek.json"] {
        assert!(!etc.join(name).exists(), "{name} is state, not configuration");
    }
    assert!(!state.join("keylatch.toml").exists());

    // Served from another working directory, it finds everything: ready (store and keystore).
    let mut serve = std::process::Command::new(e2e::bins::path(e2e::bins::KEYLATCH).unwrap());
    serve.current_dir("/").arg("serve").arg("--config").arg(&config);
    let broker =
        e2e::Broker::start_command(serve, addr, &etc.join("tls/ca.pem"), &root.path().join("log"))
            .unwrap();
    broker.client().unwrap().healthy().unwrap();
    assert_eq!(broker.terminate().unwrap(), Some(0));
}
