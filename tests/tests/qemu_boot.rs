//! The boot path in a real VM: a broker on the host's 127.0.0.1 (SoftHSM2 KEK, a release policy
//! that pins the launch measurement) and a LUKS2 disk made with its key; the host's Debian
//! kernel boots under QEMU (TCG) with an initramfs from `mkinitramfs` and the SHIPPED Keylatch
//! hook and local-top script. Inside the VM `keylatch-agent` (simulated SEV-SNP evidence, all
//! else real) attests over the VM's network and opens the disk with dm-crypt.
//!
//! Boots, in order: the first makes a filesystem and a marker file inside the mapping, the
//! second mounts it and prints the marker; with the key disabled by the custodian the boot
//! stops in the initramfs with the broker's reason and no mapping; re-enabled, it boots again;
//! a VM whose measurement differs is refused the same way. Each boot's duration is printed.
//! Run it alone with `cargo nextest run -p e2e -E 'test(qemu)'` (after the build steps).

use std::path::Path;

use e2e::vm::{Boot, Host, GUEST_BROKER, MAPPING};
use e2e::{luks, BrokerDir, DISK_KEY};

/// The measurement the release policy pins (SNP MEASUREMENT, 48 bytes).
fn good() -> String {
    "a1".repeat(48)
}

/// The measurement of an image that differs.
fn other() -> String {
    "b2".repeat(48)
}

fn agent_toml(dir: &BrokerDir, measurement: &str) -> String {
    format!(
        "url = \"https://{GUEST_BROKER}\"\nca = \"{}\"\nresource = \"kbs:///{DISK_KEY}\"\n\
         deadline = 60\n\n[luks]\ndevice = \"/dev/vda\"\nname = \"{MAPPING}\"\n\n\
         [simulate]\ntee = \"snp\"\nsim_pki = \"{}\"\nmeasurement = \"{measurement}\"\n",
        dir.ca().display(),
        dir.sim_pki().display()
    )
}

fn report(n: usize, what: &str, boot: &Boot) {
    println!("boot {n} ({what}): {:.1} s", boot.duration.as_secs_f64());
}

fn lines(boot: &Boot) -> String {
    boot.keylatch_lines().join("\n")
}

/// The refusal as the console shows it: the agent's one-line reason, the local-top script
/// stopping the boot, and (from the test's panic script) no device-mapper mapping.
fn assert_refused(boot: &Boot, reason: &str) {
    let shown = lines(boot);
    assert!(
        boot.console.contains(reason),
        "the broker's reason {reason:?} is not on the console:\n{shown}\n---\n{}",
        boot.console
    );
    assert!(
        shown.contains(
            "keylatch: the disk key was not released (keylatch-agent exit 1, reason above); \
             not booting"
        ),
        "{shown}"
    );
    assert!(shown.contains("keylatch-e2e: mappings: []"), "{shown}");
    assert!(!shown.contains("keylatch-e2e: marker"), "{shown}");
    assert!(!shown.contains("keylatch-e2e: formatted"), "{shown}");
}

#[test]
fn qemu_boot_opens_the_disk_only_while_the_broker_releases_its_key() {
    let Some(host) = Host::find().unwrap() else { return };
    let Some(cryptsetup) = luks::cryptsetup() else { return };
    let Some(dir) = BrokerDir::pkcs11_with_hostnames(&["10.0.2.100", "127.0.0.1"]).unwrap() else {
        return;
    };
    let work = dir.path().join("vm");
    std::fs::create_dir_all(&work).unwrap();
    let key = e2e::random_key().unwrap();
    let disk = work.join("disk.img");
    luks::format(&cryptsetup, &disk, &key).unwrap();
    dir.resource_put(DISK_KEY, &key).unwrap();
    let policy = format!(
        "[[rules]]\nname = \"golden\"\ntees = [\"snp\"]\nallow_simulated = true\n\
         claims = [{{ claim = \"snp.measurement\", equals = \"{}\" }}]\n",
        good()
    );
    dir.policy_set(DISK_KEY, &policy).unwrap();
    let broker = dir.start().unwrap();
    let port = broker.addr().port();

    let agent = e2e::vm::stripped_agent(&work).unwrap();
    let good_config = work.join("agent.toml");
    std::fs::write(&good_config, agent_toml(&dir, &good())).unwrap();
    let other_config = work.join("agent-other.toml");
    std::fs::write(&other_config, agent_toml(&dir, &other())).unwrap();
    let initrd = work.join("initrd.img");
    let built = host.initramfs(&work, &agent, &good_config, &initrd).unwrap();
    println!("mkinitramfs: {:.1} s", built.as_secs_f64());
    let other_initrd = work.join("initrd-other.img");
    host.initramfs(&work, &agent, &other_config, &other_initrd).unwrap();

    let marker = hex::encode(e2e::random_key().unwrap());
    let console = |n: usize| work.join(format!("console-{n}.log"));
    let boot = |n: usize, initrd: &Path, cmdline: &str| {
        host.boot(initrd, &disk, cmdline, port, &console(n)).unwrap()
    };

    // 1. The key is released: a filesystem and the marker are written through the mapping.
    let first = boot(1, &initrd, &format!("keylatch_e2e=format keylatch_e2e_marker={marker}"));
    report(1, "released, format", &first);
    assert!(
        lines(&first).contains("keylatch-e2e: formatted"),
        "{}\nbroker:\n{}",
        first.console,
        broker.log()
    );
    assert_eq!(first.qemu_exit, Some(0));

    // 2. A new boot reads the marker back through a fresh mapping.
    let second = boot(2, &initrd, "keylatch_e2e=check");
    report(2, "released, read", &second);
    assert!(
        lines(&second).contains(&format!("keylatch-e2e: marker: {marker}")),
        "{}",
        second.console
    );

    // 3. The custodian disables the key: the boot stops with the broker's reason.
    dir.admin(&["resource", "disable"], &[DISK_KEY.as_ref()]).unwrap();
    let third = boot(3, &initrd, "keylatch_e2e=check");
    report(3, "key disabled", &third);
    assert_refused(
        &third,
        "error: resource: resource-disabled: resource default/disk-key/vm-1 is disabled",
    );

    // 4. Re-enabled, the same VM boots and reads its data again.
    dir.admin(&["resource", "enable"], &[DISK_KEY.as_ref()]).unwrap();
    let fourth = boot(4, &initrd, "keylatch_e2e=check");
    report(4, "key re-enabled", &fourth);
    assert!(
        lines(&fourth).contains(&format!("keylatch-e2e: marker: {marker}")),
        "{}",
        fourth.console
    );

    // 5. A VM that booted something else (another measurement) is refused the same way.
    let fifth = boot(5, &other_initrd, "keylatch_e2e=check");
    report(5, "other measurement", &fifth);
    assert_refused(
        &fifth,
        &format!(
            "error: resource: policy-denied: policy v1 denies {DISK_KEY}: golden: \
             snp.measurement expected \"{}\" got \"{}\"",
            good(),
            other()
        ),
    );
}
