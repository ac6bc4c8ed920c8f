//! JWE round trips, tamper detection, refused algorithms and headers, the Concat KDF vector of
//! RFC 7518 Appendix C, and the AAD rule of the upstream client.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use keylatch_wire::jwe::{concat_kdf, encrypt_with};
use keylatch_wire::{b64, decrypt, encrypt, Jwe, Jwk, KeyKind, TeeKeyPair, WireError};
use rand_core::OsRng;
use sha2::Sha256;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn pair(kind: KeyKind) -> TeeKeyPair {
    TeeKeyPair::generate(kind).unwrap()
}

fn header_of(jwe: &Jwe) -> String {
    String::from_utf8(b64::decode("p", &jwe.protected).unwrap()).unwrap()
}

#[test]
fn round_trips_for_every_key_kind() {
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa3072] {
        let kp = pair(kind);
        let jwe = encrypt(&kp.public_jwk(), SECRET).unwrap();
        assert_eq!(decrypt(&kp, &jwe).unwrap().as_slice(), SECRET, "{kind:?}");
        assert_eq!(b64::decode("iv", &jwe.iv).unwrap().len(), 12);
        assert_eq!(b64::decode("tag", &jwe.tag).unwrap().len(), 16);
        // The same plaintext twice gives different messages (fresh CEK, IV, ephemeral key).
        assert_ne!(encrypt(&kp.public_jwk(), SECRET).unwrap(), jwe);
    }
}

#[test]
fn emits_protected_header_in_upstream_order() {
    let kp = pair(KeyKind::P256);
    let h = header_of(&encrypt(&kp.public_jwk(), SECRET).unwrap());
    assert!(
        h.starts_with(
            r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":""#
        ),
        "{h}"
    );
    let kp = pair(KeyKind::Rsa3072);
    let jwe = encrypt(&kp.public_jwk(), SECRET).unwrap();
    assert_eq!(header_of(&jwe), r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
    assert_eq!(b64::decode("ek", &jwe.encrypted_key).unwrap().len(), 384);
}

fn flip_char(s: &str, at: usize) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let c = chars[at];
    chars[at] = if c == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn rejects_every_tampered_member() {
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa3072] {
        let kp = pair(kind);
        let good = encrypt(&kp.public_jwk(), SECRET).unwrap();
        let members: [fn(&mut Jwe) -> &mut String; 5] = [
            |j| &mut j.protected,
            |j| &mut j.encrypted_key,
            |j| &mut j.iv,
            |j| &mut j.ciphertext,
            |j| &mut j.tag,
        ];
        for (i, member) in members.iter().enumerate() {
            let mut bad = good.clone();
            let s = member(&mut bad);
            *s = flip_char(s, 5);
            assert!(decrypt(&kp, &bad).is_err(), "{kind:?} member {i} tampered but decrypted");
        }
    }
}

#[test]
fn rejects_wrong_key_pair() {
    let kp = pair(KeyKind::P256);
    let other = pair(KeyKind::P256);
    let jwe = encrypt(&kp.public_jwk(), SECRET).unwrap();
    assert_eq!(decrypt(&other, &jwe), Err(WireError::Decrypt("AES key unwrap")));
    let p384 = pair(KeyKind::P384);
    assert_eq!(
        decrypt(&p384, &jwe),
        Err(WireError::Header("epk curve differs from the key pair's"))
    );
}

fn with_header(jwe: &Jwe, header: &str) -> Jwe {
    Jwe { protected: b64::encode(header.as_bytes()), ..jwe.clone() }
}

#[test]
fn refuses_rsa1_5_dir_unknown_alg_enc_and_extra_members() {
    let kp = pair(KeyKind::Rsa3072);
    let jwe = encrypt(&kp.public_jwk(), SECRET).unwrap();
    for (header, err) in [
        (
            r#"{"alg":"RSA1_5","enc":"A256GCM"}"#,
            WireError::Header("unsupported alg (ECDH-ES+A256KW or RSA-OAEP-256)"),
        ),
        (
            r#"{"alg":"dir","enc":"A256GCM"}"#,
            WireError::Header("unsupported alg (ECDH-ES+A256KW or RSA-OAEP-256)"),
        ),
        (
            r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#,
            WireError::Header("unsupported alg (ECDH-ES+A256KW or RSA-OAEP-256)"),
        ),
        (r#"{"alg":"RSA-OAEP-256","enc":"A128GCM"}"#, WireError::Header("enc must be A256GCM")),
        (
            r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","zip":"DEF"}"#,
            WireError::Header("unsupported header member"),
        ),
        (
            r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM"}"#,
            WireError::Header("alg does not match the key pair"),
        ),
        (r#"{"enc":"A256GCM"}"#, WireError::Header("alg and enc are required")),
    ] {
        assert_eq!(decrypt(&kp, &with_header(&jwe, header)), Err(err), "{header}");
    }
    let ec = pair(KeyKind::P256);
    let jwe = encrypt(&ec.public_jwk(), SECRET).unwrap();
    let h = header_of(&jwe);
    let p384 = h.replace("P-256", "P-384");
    assert_eq!(
        decrypt(&ec, &with_header(&jwe, &p384)),
        Err(WireError::Header("epk curve differs from the key pair's"))
    );
    let apu = h.replacen(r#""enc":"A256GCM","#, r#""apu":"QWxpY2U","enc":"A256GCM","#, 1);
    assert_eq!(
        decrypt(&ec, &with_header(&jwe, &apu)),
        Err(WireError::Header("unsupported header member"))
    );
}

#[test]
fn rejects_padded_base64_and_unknown_jwe_members() {
    let kp = pair(KeyKind::P256);
    let jwe = encrypt(&kp.public_jwk(), SECRET).unwrap();
    // 12-byte IV encodes to 16 characters without padding; a padded tag shows the rule.
    let padded = Jwe { tag: format!("{}==", &jwe.tag), ..jwe.clone() };
    assert_eq!(decrypt(&kp, &padded), Err(WireError::Base64("tag")));
    let mut v: serde_json::Value = serde_json::from_str(&jwe.to_json()).unwrap();
    v["aad"] = serde_json::Value::from("eA");
    assert_eq!(Jwe::from_json(v.to_string().as_bytes()), Err(WireError::Json("JWE")));
    assert_eq!(Jwe::from_json(jwe.to_json().as_bytes()), Ok(jwe));
}

/// The trap: AAD is the base64url of the header *re-serialized* in upstream order, not the
/// received `protected` string. A JWE whose `protected` lists `enc` before `alg` decrypts only
/// when its tag was computed over the re-serialized form.
#[test]
fn rebuilds_aad_from_decoded_header_as_upstream_client_does() {
    let kp = pair(KeyKind::Rsa3072);
    let Jwk::Rsa(pk) = kp.public_jwk() else { panic!("RSA key expected") };
    let cek = [7u8; 32];
    let iv = [9u8; 12];
    let encrypted_key = pk.encrypt(&mut OsRng, rsa::Oaep::new::<Sha256>(), &cek).unwrap();
    let received = b64::encode(br#"{"enc":"A256GCM","alg":"RSA-OAEP-256"}"#);
    let rebuilt = b64::encode(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
    let seal = |aad: &str| {
        let mut buf = SECRET.to_vec();
        let tag = Aes256Gcm::new_from_slice(&cek)
            .unwrap()
            .encrypt_in_place_detached(&Nonce::from(iv), aad.as_bytes(), &mut buf)
            .unwrap();
        let tag: [u8; 16] = tag.into();
        Jwe {
            protected: received.clone(),
            encrypted_key: b64::encode(&encrypted_key),
            iv: b64::encode(&iv),
            ciphertext: b64::encode(&buf),
            tag: b64::encode(&tag),
        }
    };
    assert_eq!(decrypt(&kp, &seal(&rebuilt)).unwrap().as_slice(), SECRET);
    assert_eq!(decrypt(&kp, &seal(&received)), Err(WireError::Decrypt("A256GCM")));
}

/// RFC 7518 Appendix C: ECDH-ES with P-256, apu "Alice", apv "Bob", A128GCM (128-bit key).
#[test]
fn concat_kdf_matches_rfc7518_appendix_c() {
    let alice_d = b64::decode("d", "0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo").unwrap();
    let bob = Jwk::from_json(&serde_json::json!({
        "kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
        "x": "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
        "y": "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck"
    }))
    .unwrap();
    let Jwk::P256(bob) = bob else { panic!("P-256 expected") };
    let alice = p256::SecretKey::from_slice(&alice_d).unwrap();
    let z = p256::ecdh::diffie_hellman(alice.to_nonzero_scalar(), bob.as_affine());
    let key = concat_kdf(z.raw_secret_bytes(), b"A128GCM", b"Alice", b"Bob", 128);
    assert_eq!(b64::encode(&key), "VqqN6vgjbSBcIijNcacQGg");
    // Two SHA-256 rounds for a 512-bit output; the first round is a prefix-independent block.
    let long = concat_kdf(z.raw_secret_bytes(), b"A128GCM", b"Alice", b"Bob", 512);
    assert_eq!(long.len(), 64);
}

#[test]
fn encrypts_deterministically_under_a_seeded_rng_shape() {
    // Sanity on lengths of the ECDH path: 40-byte wrapped key, ciphertext as long as plaintext.
    let kp = pair(KeyKind::P384);
    let jwe = encrypt_with(&kp.public_jwk(), b"abc", &mut OsRng).unwrap();
    assert_eq!(b64::decode("ek", &jwe.encrypted_key).unwrap().len(), 40);
    assert_eq!(
        b64::decode("ct", &jwe.ciphertext).unwrap(),
        b64::decode("ct", &jwe.ciphertext).unwrap()
    );
    assert_eq!(b64::decode("ct", &jwe.ciphertext).unwrap().len(), 3);
    assert_eq!(decrypt(&kp, &jwe).unwrap().as_slice(), b"abc");
}
