//! `keylatch init` as an operator runs it: what it writes is private where it must be.

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
    for side in ["keylatch.db-wal", "keylatch.db-shm"] {
        if p.join(side).exists() {
            assert_eq!(mode(&p.join(side)), 0o600, "{side}");
        }
    }
    assert_eq!(mode(&p.join("token-signing-key.pem")), 0o600);
    assert_eq!(mode(&p.join("tls/server-key.pem")), 0o600);
    assert_eq!(mode(&p.join("kek.json")), 0o600);
    assert_eq!(mode(&p.join("tls/ca.pem")), 0o644);
}

#[test]
fn database_stays_0600_after_the_broker_writes_to_it() {
    let dir = BrokerDir::soft().unwrap();
    dir.resource_put(e2e::DISK_KEY, b"k").unwrap();
    let broker = dir.start().unwrap();
    broker.terminate().unwrap();

    assert_eq!(mode(&dir.path().join("keylatch.db")), 0o600);
    for side in ["keylatch.db-wal", "keylatch.db-shm"] {
        if dir.path().join(side).exists() {
            assert_eq!(mode(&dir.path().join(side)), 0o600, "{side}");
        }
    }
}
