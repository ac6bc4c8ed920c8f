//! A broker is its directory: after a SIGKILL (no shutdown code runs) a new `keylatch serve` on
//! the same directory and port serves the same sealed key from the same HSM token, and after a
//! graceful SIGTERM the process exits 0.

use e2e::{BrokerDir, Tee, ALLOW_SIMULATED, DISK_KEY};

#[test]
fn killed_broker_restarted_on_its_directory_releases_the_same_key() {
    let Some(dir) = BrokerDir::pkcs11().unwrap() else { return };
    let key = e2e::random_key().unwrap();
    dir.resource_put(DISK_KEY, &key).unwrap();
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap();
    let first = dir.start().unwrap();
    let before = first.target().get_resource(Tee::Tdx, DISK_KEY).unwrap();
    assert_eq!(
        (before.code, before.stdout.as_slice()),
        (Some(0), key.as_slice()),
        "{}",
        before.stderr
    );
    let addr = first.addr();
    first.kill().unwrap();

    let second = dir.start().unwrap();
    let after = second.target().get_resource(Tee::Snp, DISK_KEY).unwrap();

    assert_eq!(second.addr(), addr);
    assert_eq!(
        (after.code, after.stdout.as_slice()),
        (Some(0), key.as_slice()),
        "{}",
        after.stderr
    );
    assert_eq!(second.terminate().unwrap(), Some(0));
}
