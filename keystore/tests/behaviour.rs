//! What every keystore backend must do, written once and run against `soft` and against
//! `pkcs11` on a real SoftHSM2 token (`<test>::soft`, `<test>::pkcs11`).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod common;

use common::{Fixture, Kind};
use rsa::pkcs8::EncodePublicKey as _;

use keylatch_keystore::{wrap_for_import, KeystoreError, ResourceBinding, SealAlgorithm};

on_both_backends!(
    seal_then_unseal_returns_the_plaintext,
    wrong_binding_or_altered_ciphertext_fails_integrity,
    generated_keys_have_the_length_asked_and_differ,
    byok_key_wrapped_by_wrap_for_import_unseals_byte_for_byte,
    byok_key_wrapped_by_python_cryptography_unseals_byte_for_byte,
    byok_blob_altered_or_for_another_import_key_is_refused,
    kek_rotation_interrupted_by_a_restart_loses_nothing,
    no_plaintext_key_bytes_in_any_file_at_rest,
);

fn fixture(kind: Kind) -> Option<Fixture> {
    Fixture::new(kind)
}

fn seal_then_unseal_returns_the_plaintext(kind: Kind) {
    let Some(mut f) = fixture(kind) else { return };
    let b = ResourceBinding::new("default/disk/root", 1);
    let sealed = f.ks().seal(&b, b"secret disk key bytes").unwrap();
    assert_eq!(sealed.algorithm, SealAlgorithm::Aes256Gcm);
    assert_eq!(sealed.nonce.len(), 12);
    assert_eq!(sealed.ciphertext.len(), 21 + 16, "ciphertext then a 16-byte tag");
    assert_eq!(sealed.kek_id, f.ks().describe().current_kek);
    assert_eq!(f.ks().unseal(&b, &sealed).unwrap().as_slice(), b"secret disk key bytes");
    // Another process (a restarted broker) opens it too.
    f.reopen();
    assert_eq!(f.ks().unseal(&b, &sealed).unwrap().as_slice(), b"secret disk key bytes");
    // Two seals of the same plaintext never share a nonce.
    assert_ne!(f.ks().seal(&b, b"secret disk key bytes").unwrap().nonce, sealed.nonce);
}

fn wrong_binding_or_altered_ciphertext_fails_integrity(kind: Kind) {
    let Some(f) = fixture(kind) else { return };
    let ks = f.ks();
    let b = ResourceBinding::new("default/disk/root", 1);
    let sealed = ks.seal(&b, b"0123456789abcdef0123456789abcdef").unwrap();
    for other in [
        ResourceBinding::new("default/disk/other", 1),
        ResourceBinding::new("default/disk/root", 2),
    ] {
        let got = ks.unseal(&other, &sealed);
        assert!(matches!(got, Err(KeystoreError::Integrity)), "{got:?}");
    }
    for i in [0, sealed.ciphertext.len() - 1] {
        let mut altered = sealed.clone();
        altered.ciphertext[i] ^= 0x80;
        assert!(matches!(ks.unseal(&b, &altered), Err(KeystoreError::Integrity)), "byte {i}");
    }
    let mut nonce = sealed.clone();
    nonce.nonce[11] ^= 1;
    assert!(matches!(ks.unseal(&b, &nonce), Err(KeystoreError::Integrity)));
    let mut short = sealed.clone();
    short.ciphertext.truncate(15);
    assert!(matches!(ks.unseal(&b, &short), Err(KeystoreError::Integrity)));
    let mut stranger = sealed.clone();
    stranger.kek_id = "no-such-kek-9".into();
    assert!(
        matches!(ks.unseal(&b, &stranger), Err(KeystoreError::UnknownKek(id)) if id == "no-such-kek-9")
    );
    // Still healthy after all those refusals.
    assert_eq!(ks.unseal(&b, &sealed).unwrap().as_slice(), b"0123456789abcdef0123456789abcdef");
}

fn generated_keys_have_the_length_asked_and_differ(kind: Kind) {
    let Some(f) = fixture(kind) else { return };
    let ks = f.ks();
    let b = ResourceBinding::new("r/t/g", 1);
    for len in [1usize, 16, 32, 64, 4096] {
        let one = ks.unseal(&b, &ks.generate(&b, len).unwrap()).unwrap();
        let two = ks.unseal(&b, &ks.generate(&b, len).unwrap()).unwrap();
        assert_eq!((one.len(), two.len()), (len, len));
        if len >= 16 {
            assert_ne!(one, two);
            assert!(one.iter().any(|&x| x != 0));
        }
    }
    assert!(matches!(ks.generate(&b, 0), Err(KeystoreError::InvalidInput(_))));
    assert!(matches!(ks.generate(&b, 4097), Err(KeystoreError::InvalidInput(_))));
}

/// Key sizes that exercise KWP padding: 1 byte, a non-multiple of 8, AES-256, and a long one.
const BYOK_KEYS: [&[u8]; 4] = [&[0xa5], b"twenty octets of key", &[0x3c; 32], &[0x77; 512]];

fn byok_key_wrapped_by_wrap_for_import_unseals_byte_for_byte(kind: Kind) {
    let Some(mut f) = fixture(kind) else { return };
    let spki = f.ks().import_public_key().unwrap();
    // The same key pair comes back every time, and after a restart.
    assert_eq!(f.ks().import_public_key().unwrap(), spki);
    f.reopen();
    assert_eq!(f.ks().import_public_key().unwrap(), spki);
    for (i, key) in BYOK_KEYS.iter().enumerate() {
        let blob = wrap_for_import(&spki, key).unwrap();
        assert_eq!(blob.len(), 384 + key.len().div_ceil(8) * 8 + 8);
        let b = ResourceBinding::new(format!("byok/key/{i}"), 1);
        let sealed = f.ks().import_wrapped(&b, &blob).unwrap();
        assert_eq!(sealed.kek_id, f.ks().describe().current_kek);
        assert_eq!(f.ks().unseal(&b, &sealed).unwrap().as_slice(), *key);
    }
}

fn byok_key_wrapped_by_python_cryptography_unseals_byte_for_byte(kind: Kind) {
    let Some(f) = fixture(kind) else { return };
    let spki = f.ks().import_public_key().unwrap();
    for (i, key) in BYOK_KEYS.iter().enumerate() {
        let Some(blob) = common::python_wrap_for_import(&spki, key) else { return };
        let b = ResourceBinding::new(format!("byok/python/{i}"), 3);
        let sealed = f.ks().import_wrapped(&b, &blob).unwrap();
        assert_eq!(f.ks().unseal(&b, &sealed).unwrap().as_slice(), *key);
    }
}

fn byok_blob_altered_or_for_another_import_key_is_refused(kind: Kind) {
    let Some(f) = fixture(kind) else { return };
    // Before any import key exists there is nothing to unwrap with.
    let early = f.ks().import_wrapped(&ResourceBinding::new("byok/early", 1), &[0u8; 400]);
    assert!(matches!(early, Err(KeystoreError::InvalidInput(_))), "{early:?}");
    let spki = f.ks().import_public_key().unwrap();
    let b = ResourceBinding::new("byok/bad", 1);
    let blob = wrap_for_import(&spki, &[0x11; 32]).unwrap();
    let mut rsa_flip = blob.clone();
    rsa_flip[10] ^= 1;
    let mut kwp_flip = blob.clone();
    kwp_flip[384 + 3] ^= 1;
    for bad in [&rsa_flip, &kwp_flip] {
        let got = f.ks().import_wrapped(&b, bad);
        assert!(matches!(got, Err(KeystoreError::Integrity)), "{got:?}");
    }
    assert!(matches!(
        f.ks().import_wrapped(&b, &blob[..384 + 8]),
        Err(KeystoreError::InvalidInput(_))
    ));
    assert!(matches!(f.ks().import_wrapped(&b, &blob[..100]), Err(KeystoreError::InvalidInput(_))));
    // A blob made for another keystore's import key does not open here.
    let other = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 3072).unwrap().to_public_key();
    let other_spki = other.to_public_key_der().unwrap().as_bytes().to_vec();
    let foreign = wrap_for_import(&other_spki, &[0x11; 32]).unwrap();
    assert!(matches!(f.ks().import_wrapped(&b, &foreign), Err(KeystoreError::Integrity)));
    // The customer side refuses what is not an RSA-3072/4096 SubjectPublicKeyInfo.
    assert!(matches!(wrap_for_import(&spki[1..], &[1; 32]), Err(KeystoreError::InvalidInput(_))));
    assert!(matches!(wrap_for_import(&spki, &[]), Err(KeystoreError::InvalidInput(_))));
    // And the good blob still imports after all that.
    let sealed = f.ks().import_wrapped(&b, &blob).unwrap();
    assert_eq!(f.ks().unseal(&b, &sealed).unwrap().as_slice(), &[0x11; 32]);
}

fn kek_rotation_interrupted_by_a_restart_loses_nothing(kind: Kind) {
    let Some(mut f) = fixture(kind) else { return };
    let old = f.ks().describe().current_kek;
    assert_eq!(f.ks().kek_ids().unwrap(), vec![old.clone()]);
    let resources: Vec<_> = (0..6u8)
        .map(|i| {
            let b = ResourceBinding::new(format!("rot/key/{i}"), u64::from(i) + 1);
            let plaintext = vec![i; 32];
            let sealed = f.ks().seal(&b, &plaintext).unwrap();
            (b, plaintext, sealed)
        })
        .collect();

    let new = f.ks().rotate_kek().unwrap();
    assert_ne!(new, old);
    assert_eq!(f.ks().kek_ids().unwrap(), vec![old.clone(), new.clone()]);
    assert_eq!(f.ks().describe().current_kek, new);
    let mut rewrapped = Vec::new();
    for (b, _, sealed) in &resources[..3] {
        let r = f.ks().rewrap(b, sealed).unwrap();
        assert_eq!(r.kek_id, new);
        rewrapped.push(r);
    }

    // The broker restarts halfway through.
    f.reopen();
    assert_eq!(f.ks().describe().current_kek, new);
    assert_eq!(f.ks().kek_ids().unwrap(), vec![old.clone(), new.clone()]);
    // Resuming from the start is harmless: already re-wrapped values come back unchanged.
    for ((b, _, _), done) in resources[..3].iter().zip(&rewrapped) {
        assert_eq!(&f.ks().rewrap(b, done).unwrap(), done);
    }
    for (b, _, sealed) in &resources[3..] {
        let r = f.ks().rewrap(b, sealed).unwrap();
        assert_eq!(r.kek_id, new);
        rewrapped.push(r);
    }

    assert!(matches!(f.ks().retire_kek(&new), Err(KeystoreError::InvalidInput(_))));
    f.ks().retire_kek(&old).unwrap();
    assert_eq!(f.ks().kek_ids().unwrap(), vec![new.clone()]);
    f.reopen();
    assert_eq!(f.ks().kek_ids().unwrap(), vec![new.clone()]);
    for ((b, plaintext, old_sealed), r) in resources.iter().zip(&rewrapped) {
        assert_eq!(f.ks().unseal(b, r).unwrap().as_slice(), plaintext.as_slice());
        // What only the retired KEK sealed is gone for good (crypto-shredded).
        assert!(
            matches!(f.ks().unseal(b, old_sealed), Err(KeystoreError::UnknownKek(id)) if id == old)
        );
    }
    assert!(matches!(f.ks().retire_kek(&old), Err(KeystoreError::UnknownKek(_))));
}

fn no_plaintext_key_bytes_in_any_file_at_rest(kind: Kind) {
    let Some(mut f) = fixture(kind) else { return };
    let sealed_key = *b"KEYLATCH-PLAINTEXT-sealed-0123456";
    let byok_key = *b"KEYLATCH-PLAINTEXT-imported-98765";
    let b = ResourceBinding::new("scan/key", 1);
    let mut generated = Vec::new();
    let spki = f.ks().import_public_key().unwrap();
    let sealed = f.ks().seal(&b, &sealed_key).unwrap();
    let imported = f.ks().import_wrapped(&b, &wrap_for_import(&spki, &byok_key).unwrap()).unwrap();
    for _ in 0..3 {
        let g = f.ks().generate(&b, 32).unwrap();
        generated.push(f.ks().unseal(&b, &g).unwrap());
    }
    f.ks().rotate_kek().unwrap();
    f.ks().rewrap(&b, &sealed).unwrap();
    f.ks().rewrap(&b, &imported).unwrap();
    f.close();

    let files = f.files_at_rest();
    assert!(files.len() >= 2, "found {files:?}");
    let mut needles: Vec<Vec<u8>> = vec![sealed_key.to_vec(), byok_key.to_vec()];
    needles.extend(generated.iter().map(|g| g.to_vec()));
    for needle in &needles {
        for form in [needle.clone(), hex::encode(needle).into_bytes()] {
            let probe = &form[..16];
            for file in &files {
                let bytes = std::fs::read(file).unwrap();
                assert!(
                    !bytes.windows(probe.len()).any(|w| w == probe),
                    "plaintext key bytes found in {}",
                    file.display()
                );
            }
        }
    }
}
