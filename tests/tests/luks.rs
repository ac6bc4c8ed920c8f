//! The boot path on a real LUKS2 image: `keylatch-agent unlock-luks --test-passphrase` opens a
//! file-backed image with the key the broker releases; once the operator changes the policy to
//! deny, the same command exits 1 with the broker's reason, never runs cryptsetup, and the
//! image stays locked. (device-mapper is not available to tests, hence `--test-passphrase`.)

use std::path::Path;

use e2e::luks::{self, Spy};
use e2e::{BrokerDir, Tee, ALLOW_SIMULATED, DISK_KEY};

const TDX_ONLY: &str = "[[rules]]\nname = \"tdx-only\"\ntees = [\"tdx\"]\nallow_simulated = true\n";

#[test]
fn unlock_luks_opens_the_image_then_exits_1_once_the_policy_denies() {
    let Some(cryptsetup) = luks::cryptsetup() else { return };
    let Some(dir) = BrokerDir::pkcs11().unwrap() else { return };
    let key = e2e::random_key().unwrap();
    let image = dir.path().join("disk.img");
    luks::format(&cryptsetup, &image, &key).unwrap();
    assert!(!luks::key_opens(&cryptsetup, &image, &[0u8; 32]).unwrap(), "a wrong key opened it");
    dir.resource_put(DISK_KEY, &key).unwrap();
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap();
    let broker = dir.start().unwrap();
    let spy = Spy::install(dir.path(), &cryptsetup).unwrap();
    let target = broker.target();

    let opened = target.unlock_luks_test(Tee::Snp, DISK_KEY, &image, "e2e-root", &spy.program);

    let opened = opened.unwrap();
    assert_eq!(opened.code, Some(0), "{}\nbroker:\n{}", opened.stderr, broker.log());
    assert_eq!(opened.stderr, "");
    let expected_call = format!("open --key-file=- --test-passphrase {} e2e-root", image.display());
    assert_eq!(spy.calls(), vec![expected_call.clone()]);

    assert_eq!(dir.policy_set(DISK_KEY, TDX_ONLY).unwrap(), 2);
    let before = std::fs::read(&image).unwrap();

    let denied = target.unlock_luks_test(Tee::Snp, DISK_KEY, &image, "e2e-root", &spy.program);

    let denied = denied.unwrap();
    assert_eq!(denied.code, Some(1), "{}", denied.stderr);
    assert_eq!(
        denied.stderr,
        "error: resource: policy-denied: policy v2 denies default/disk-key/vm-1: \
         tdx-only: tee snp not in [\"tdx\"]\n"
    );
    assert_eq!(spy.calls(), vec![expected_call], "cryptsetup ran after a denial");
    assert!(!Path::new("/dev/mapper/e2e-root").exists());
    assert!(std::fs::read(&image).unwrap() == before, "the image changed");
    assert!(luks::key_opens(&cryptsetup, &image, &key).unwrap(), "the key no longer opens it");
}
