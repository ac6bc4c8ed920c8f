//! `keylatch init` as an operator runs it: what it writes is private where it must be.

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
