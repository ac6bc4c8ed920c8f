//! The soft backend: sealing is bound to the resource, files are private, nothing leaks.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;

use keylatch_keystore::soft::SoftKeystore;
use keylatch_keystore::{Keystore, KeystoreError, ResourceBinding};

/// A new soft keystore with its KEK at `kek.json` in the returned directory.
fn soft_keystore() -> (tempfile::TempDir, SoftKeystore) {
    let dir = tempfile::tempdir().unwrap();
    let ks = SoftKeystore::create(&dir.path().join("kek.json")).unwrap();
    (dir, ks)
}

#[test]
fn seal_then_unseal_returns_the_plaintext() {
    let (dir, ks) = soft_keystore();
    let b = ResourceBinding::new("default/disk/root", 1);
    let sealed = ks.seal(&b, b"secret disk key bytes").unwrap();
    assert_eq!(ks.unseal(&b, &sealed).unwrap().as_slice(), b"secret disk key bytes");
    // The same key file opened again unseals too.
    let again = SoftKeystore::open(&dir.path().join("kek.json")).unwrap();
    assert_eq!(again.unseal(&b, &sealed).unwrap().as_slice(), b"secret disk key bytes");
}

#[test]
fn wrong_path_version_or_altered_ciphertext_fails_integrity() {
    let (_dir, ks) = soft_keystore();
    let b = ResourceBinding::new("default/disk/root", 1);
    let sealed = ks.seal(&b, b"k").unwrap();
    for other in [
        ResourceBinding::new("default/disk/other", 1),
        ResourceBinding::new("default/disk/root", 2),
    ] {
        assert!(matches!(ks.unseal(&other, &sealed), Err(KeystoreError::Integrity)));
    }
    let mut altered = sealed.clone();
    altered.ciphertext[0] ^= 1;
    assert!(matches!(ks.unseal(&b, &altered), Err(KeystoreError::Integrity)));
}

#[test]
fn kek_file_is_private_and_a_readable_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek.json");
    SoftKeystore::create(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(SoftKeystore::create(&path).is_err(), "never overwrites");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(SoftKeystore::open(&path), Err(KeystoreError::Config(_))));
}

#[test]
fn generated_keys_have_the_length_asked_and_differ() {
    let (_dir, ks) = soft_keystore();
    let b = ResourceBinding::new("r/t/g", 1);
    let one = ks.unseal(&b, &ks.generate(&b, 32).unwrap()).unwrap();
    let two = ks.unseal(&b, &ks.generate(&b, 32).unwrap()).unwrap();
    assert_eq!(one.len(), 32);
    assert_ne!(one, two);
    assert!(ks.generate(&b, 0).is_err());
}

#[test]
fn sealed_form_contains_no_plaintext() {
    let (_dir, ks) = soft_keystore();
    let plaintext = [0x5au8; 32];
    let sealed = ks.seal(&ResourceBinding::new("r/t/g", 1), &plaintext).unwrap();
    let json = serde_json::to_vec(&sealed).unwrap();
    assert!(!json.windows(32).any(|w| w == plaintext));
    assert!(!String::from_utf8(json).unwrap().contains(&hex::encode(plaintext)));
}

#[test]
fn import_key_and_rotated_kek_file_stay_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek.json");
    let ks = SoftKeystore::create(&path).unwrap();
    ks.import_public_key().unwrap();
    let import = ks.import_key_path();
    assert_eq!(import, dir.path().join("kek.json.import-key.pem"));
    assert_eq!(std::fs::metadata(&import).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&import).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(ks.rotate_kek().unwrap(), "soft-kek-2");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!dir.path().join("kek.json.tmp").exists());
    // A readable import key is refused like a readable KEK file.
    std::fs::set_permissions(&import, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(ks.import_public_key(), Err(KeystoreError::Config(_))));
    // A missing KEK file is Unavailable (the broker retries), not a crash.
    assert!(matches!(
        SoftKeystore::open(&dir.path().join("absent.json")),
        Err(KeystoreError::Unavailable(_))
    ));
}

#[test]
fn kek_rotated_and_retired_by_another_process_apply_without_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek.json");
    // `broker` stays open as a serving broker's keystore; `cli` is `keylatch kek ...` beside it.
    let broker = SoftKeystore::create(&path).unwrap();
    let old = ResourceBinding::new("default/disk/old", 1);
    let sealed_old = broker.seal(&old, b"old key").unwrap();
    assert_eq!(sealed_old.kek_id, "soft-kek-1");

    let cli = SoftKeystore::open(&path).unwrap();
    assert_eq!(cli.rotate_kek().unwrap(), "soft-kek-2");
    assert_eq!(broker.describe().current_kek, "soft-kek-1", "not read yet");
    let new = ResourceBinding::new("default/disk/new", 1);
    let sealed_new = broker.seal(&new, b"new key").unwrap();
    assert_eq!(sealed_new.kek_id, "soft-kek-2", "the broker seals under the rotated KEK");
    assert_eq!(broker.describe().current_kek, "soft-kek-2");
    assert_eq!(broker.unseal(&old, &sealed_old).unwrap().as_slice(), b"old key");
    assert_eq!(cli.unseal(&new, &sealed_new).unwrap().as_slice(), b"new key");

    // A rotation by the broker keeps the KEK the CLI added (the file is re-read first).
    assert_eq!(broker.rotate_kek().unwrap(), "soft-kek-3");
    assert_eq!(cli.kek_ids().unwrap(), ["soft-kek-1", "soft-kek-2", "soft-kek-3"]);

    // Retired elsewhere: the broker no longer opens what only that KEK sealed.
    cli.retire_kek("soft-kek-1").unwrap();
    assert!(matches!(broker.unseal(&old, &sealed_old), Err(KeystoreError::UnknownKek(_))));
    assert_eq!(broker.unseal(&new, &sealed_new).unwrap().as_slice(), b"new key");
    assert_eq!(broker.kek_ids().unwrap(), ["soft-kek-2", "soft-kek-3"]);

    // A KEK file that vanished fails closed (health and every operation), then recovers.
    let moved = dir.path().join("moved.json");
    std::fs::rename(&path, &moved).unwrap();
    assert!(matches!(broker.health(), Err(KeystoreError::Unavailable(_))));
    assert!(matches!(broker.seal(&new, b"x"), Err(KeystoreError::Unavailable(_))));
    std::fs::rename(&moved, &path).unwrap();
    broker.health().unwrap();
}
