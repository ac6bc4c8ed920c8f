//! What only the `pkcs11` backend promises, against a real SoftHSM2 token: the keys it makes
//! cannot be read out, a vanished token is `Unavailable` and the backend heals by itself, and its
//! configuration comes from TOML with the PIN from a private file or the environment.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod common;

use std::os::unix::fs::PermissionsExt as _;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use keylatch_keystore::pkcs11::{PinSource, Pkcs11Config, Pkcs11Keystore, IMPORT_KEY_LABEL};
use keylatch_keystore::{Keystore, KeystoreError, ResourceBinding};

use common::SoftHsm;

#[test]
fn kek_and_import_key_are_sensitive_and_can_never_be_read_or_wrapped_out() {
    let Some(hsm) = SoftHsm::new() else { return };
    let ks = hsm.open();
    let kek_id = ks.describe().current_kek;
    assert_eq!(kek_id, "keylatch-kek-1");
    ks.import_public_key().unwrap();
    drop(ks); // finalizes the module, so this test can open its own context

    let ctx = Pkcs11::new(common::SOFTHSM_MODULE).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
    let slot = ctx.get_slots_with_token().unwrap()[0];
    let session = ctx.open_rw_session(slot).unwrap();
    session.login(UserType::User, Some(&AuthPin::from(common::USER_PIN.to_string()))).unwrap();
    let kek = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(kek_id.into_bytes()),
        ])
        .unwrap();
    let private = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(IMPORT_KEY_LABEL.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!((kek.len(), private.len()), (1, 1));

    let wanted = [
        AttributeType::Token,
        AttributeType::Sensitive,
        AttributeType::AlwaysSensitive,
        AttributeType::Extractable,
        AttributeType::NeverExtractable,
        AttributeType::Value,
        AttributeType::PrivateExponent,
    ];
    for handle in [kek[0], private[0]] {
        let attrs = session.get_attributes(handle, &wanted).unwrap();
        for expected in [
            Attribute::Token(true),
            Attribute::Sensitive(true),
            Attribute::AlwaysSensitive(true),
            Attribute::Extractable(false),
            Attribute::NeverExtractable(true),
        ] {
            assert!(attrs.contains(&expected), "{expected:?} missing from {attrs:?}");
        }
        // CKA_VALUE / CKA_PRIVATE_EXPONENT are refused (CKR_ATTRIBUTE_SENSITIVE), so absent.
        assert!(
            !attrs.iter().any(|a| matches!(a, Attribute::Value(_) | Attribute::PrivateExponent(_))),
            "secret attribute readable: {attrs:?}"
        );
    }

    // Nor can the KEK be wrapped out under a key the caller knows.
    let wrapping = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Value(vec![9u8; 32]),
            Attribute::Wrap(true),
        ])
        .unwrap();
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, kek[0]);
    assert!(
        matches!(
            wrapped,
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::KeyUnextractable, _))
        ),
        "{wrapped:?}"
    );
    drop(session);
    ctx.finalize().unwrap();
}

/// "HSM unplugged" is renaming SoftHSM's `directories.tokendir` away. Observed with SoftHSM 2.6.1:
/// the open session itself survives, but SoftHSM re-reads an object's file when it is used, so
/// the next C_DecryptInit/C_EncryptInit with the KEK fails with CKR_OBJECT_HANDLE_INVALID; the
/// backend then closes the session, finalizes and re-initializes, and C_Initialize fails with
/// CKR_GENERAL_ERROR while the configured token directory is missing. Every call is then
/// `Unavailable` (it tries to reconnect each time). Renaming the directory back is "plugged in
/// again": the next call initializes, logs in and finds the KEK by its label.
#[test]
fn token_gone_mid_run_is_unavailable_and_the_backend_recovers_by_itself() {
    let Some(hsm) = SoftHsm::new() else { return };
    let ks = hsm.open();
    let b = ResourceBinding::new("default/disk/root", 7);
    let sealed = ks.seal(&b, b"disk key while the HSM is up").unwrap();

    std::fs::rename(&hsm.token_dir, hsm.unplugged_dir()).unwrap();
    for _ in 0..3 {
        let unseal = ks.unseal(&b, &sealed);
        assert!(matches!(unseal, Err(KeystoreError::Unavailable(_))), "{unseal:?}");
        let seal = ks.seal(&b, b"x");
        assert!(matches!(seal, Err(KeystoreError::Unavailable(_))), "{seal:?}");
        let health = ks.health();
        assert!(matches!(health, Err(KeystoreError::Unavailable(_))), "{health:?}");
    }

    std::fs::rename(hsm.unplugged_dir(), &hsm.token_dir).unwrap();
    ks.health().unwrap();
    assert_eq!(ks.unseal(&b, &sealed).unwrap().as_slice(), b"disk key while the HSM is up");
    let again = ks.seal(&b, b"after").unwrap();
    assert_eq!(again.kek_id, sealed.kek_id, "no second KEK was made while the token was away");
    assert_eq!(ks.unseal(&b, &again).unwrap().as_slice(), b"after");
    assert_eq!(ks.kek_ids().unwrap(), vec!["keylatch-kek-1".to_string()]);
}

#[test]
fn config_comes_from_keystore_toml_with_pin_file_or_env() {
    let file: Pkcs11Config = toml::from_str(
        r#"
        module = "/usr/lib/softhsm/libsofthsm2.so"
        token_label = "keylatch"
        pin = { file = "/etc/keylatch/hsm-pin" }
        "#,
    )
    .unwrap();
    assert_eq!(
        file,
        Pkcs11Config {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "keylatch".into(),
            pin: PinSource::File("/etc/keylatch/hsm-pin".into()),
        }
    );
    let env: Pkcs11Config =
        toml::from_str("module = \"/m.so\"\ntoken_label = \"t\"\npin = { env = \"HSM_PIN\" }\n")
            .unwrap();
    assert_eq!(env.pin, PinSource::Env("HSM_PIN".into()));
    // A PIN written into the config, or a typo, is refused rather than ignored.
    assert!(toml::from_str::<Pkcs11Config>(
        "module = \"/m.so\"\ntoken_label = \"t\"\npin = \"1234\"\n"
    )
    .is_err());
    assert!(toml::from_str::<Pkcs11Config>(
        "module = \"/m.so\"\ntoken_lable = \"t\"\npin = { env = \"P\" }\n"
    )
    .is_err());
}

#[test]
fn pin_from_environment_logs_in_and_a_wrong_or_exposed_pin_is_a_config_error() {
    let Some(hsm) = SoftHsm::new() else { return };
    let var = "KEYLATCH_TEST_HSM_PIN";
    std::env::set_var(var, common::USER_PIN);
    let by_env = Pkcs11Config { pin: PinSource::Env(var.into()), ..hsm.config.clone() };
    let ks = Pkcs11Keystore::open(by_env.clone()).unwrap();
    assert_eq!(ks.describe().backend, "pkcs11");
    assert!(!ks.describe().development_only);
    drop(ks);

    std::env::set_var(var, "wrong-pin");
    let wrong = Pkcs11Keystore::open(by_env);
    assert!(matches!(wrong, Err(KeystoreError::Config(_))), "{wrong:?}");

    let PinSource::File(pin_file) = &hsm.config.pin else { unreachable!() };
    std::fs::set_permissions(pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = Pkcs11Keystore::open(hsm.config.clone());
    assert!(matches!(exposed, Err(KeystoreError::Config(_))), "{exposed:?}");

    let unset = Pkcs11Config { pin: PinSource::Env("KEYLATCH_TEST_UNSET".into()), ..hsm.config };
    assert!(matches!(Pkcs11Keystore::open(unset), Err(KeystoreError::Config(_))));
}

#[test]
fn unknown_token_label_is_unavailable_and_a_missing_module_is_a_config_error() {
    let Some(hsm) = SoftHsm::new() else { return };
    let other = Pkcs11Config { token_label: "no-such-token".into(), ..hsm.config.clone() };
    assert!(matches!(Pkcs11Keystore::open(other), Err(KeystoreError::Unavailable(_))));
    let module = Pkcs11Config { module: hsm.dir.path().join("nope.so"), ..hsm.config.clone() };
    assert!(matches!(Pkcs11Keystore::open(module), Err(KeystoreError::Config(_))));
    // The failed attempts leave nothing behind: the real token still opens.
    hsm.open().health().unwrap();
}

/// Two brokers on one token (replicas): a rotation made by one is used by the other's next seal,
/// and each opens what the other sealed.
#[test]
fn two_keystores_on_one_token_see_each_others_rotation() {
    let Some(hsm) = SoftHsm::new() else { return };
    let (a, b) = (hsm.open(), hsm.open());
    let r = ResourceBinding::new("replica/key", 1);
    let by_a = a.seal(&r, b"sealed by a").unwrap();
    assert_eq!(b.unseal(&r, &by_a).unwrap().as_slice(), b"sealed by a");
    let new = a.rotate_kek().unwrap();
    assert_eq!(new, "keylatch-kek-2");
    let by_b = b.seal(&r, b"sealed by b").unwrap();
    assert_eq!(by_b.kek_id, new);
    assert_eq!(b.describe().current_kek, new);
    assert_eq!(a.unseal(&r, &by_b).unwrap().as_slice(), b"sealed by b");
    assert_eq!(b.rewrap(&r, &by_a).unwrap().kek_id, new);
    a.retire_kek("keylatch-kek-1").unwrap();
    assert_eq!(b.kek_ids().unwrap(), vec![new]);
    // Closing one finalizes the shared module; the other recovers by itself on its next call.
    drop(a);
    assert_eq!(b.unseal(&r, &by_b).unwrap().as_slice(), b"sealed by b");
}
