//! The whole release flow with the pkcs11 keystore: an operator sets up a broker on a SoftHSM2
//! token with the `keylatch` commands, and `keylatch-agent get-resource` in a simulated SNP or
//! TDX guest receives exactly the key that was put in.

// reason: shared test bodies fail loudly; clippy.toml relaxes this only inside #[test] fns.
#![allow(clippy::unwrap_used)]

use e2e::{BrokerDir, Tee, ALLOW_SIMULATED, DISK_KEY};

fn releases_the_put_key_byte_for_byte(tee: Tee) {
    let Some(dir) = BrokerDir::pkcs11().unwrap() else { return };
    let key = e2e::random_key().unwrap();
    assert_eq!(dir.resource_put(DISK_KEY, &key).unwrap(), 1);
    assert_eq!(dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap(), 1);
    let broker = dir.start().unwrap();
    assert!(broker.log().contains("pkcs11 keystore"), "not on the HSM:\n{}", broker.log());

    let out = broker.target().get_resource(tee, DISK_KEY).unwrap();

    assert_eq!(out.code, Some(0), "{}\nbroker:\n{}", out.stderr, broker.log());
    assert_eq!(out.stdout, key);
    assert_eq!(out.stderr, "");
}

#[test]
fn simulated_snp_guest_gets_the_disk_key_from_a_pkcs11_broker() {
    releases_the_put_key_byte_for_byte(Tee::Snp);
}

#[test]
fn simulated_tdx_guest_gets_the_disk_key_from_a_pkcs11_broker() {
    releases_the_put_key_byte_for_byte(Tee::Tdx);
}

#[test]
fn generated_key_is_the_same_32_bytes_for_every_allowed_guest() {
    let Some(dir) = BrokerDir::pkcs11().unwrap() else { return };
    assert_eq!(dir.resource_generate(DISK_KEY, 32).unwrap(), 1);
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap();
    let broker = dir.start().unwrap();

    let snp = broker.target().get_resource(Tee::Snp, DISK_KEY).unwrap();
    let tdx = broker.target().get_resource(Tee::Tdx, DISK_KEY).unwrap();

    assert_eq!((snp.code, tdx.code), (Some(0), Some(0)), "{}{}", snp.stderr, tdx.stderr);
    assert_eq!(snp.stdout.len(), 32);
    assert_eq!(snp.stdout, tdx.stdout);
    assert_ne!(snp.stdout, [0u8; 32]);
}
