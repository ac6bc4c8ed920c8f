//! JWK parsing rules and the REPORT_DATA binding.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use keylatch_wire::{
    report_data_binding, report_data_binding_48, Jwk, KeyKind, TeeKeyPair, WireError,
};
use rsa::traits::PublicKeyParts;
use serde_json::json;

const BOB_X: &str = "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ";
const BOB_Y: &str = "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck";

fn ec(crv: &str, alg: &str, x: &str, y: &str) -> serde_json::Value {
    json!({"kty": "EC", "crv": crv, "alg": alg, "x": x, "y": y})
}

#[test]
fn binding_is_sha384_of_jcs_zero_padded() {
    let jwk = Jwk::from_json(&ec("P-256", "ECDH-ES+A256KW", BOB_X, BOB_Y)).unwrap();
    // SHA-384 of {"additional-evidence":"","nonce":"AAECAwQ=","tee-pubkey":{"alg":..,"crv":..,"kty":"EC","x":..,"y":..}}
    let expected = "c9418b56c7a48fadaf8c73cd4e78cbf10ae4015877945f6b928480bb5fbb7e7ad33a22e0ec6812a600829a8d2e36b031";
    assert_eq!(hex::encode(report_data_binding_48("AAECAwQ=", &jwk, "")), expected);
    let padded = report_data_binding("AAECAwQ=", &jwk, "");
    assert_eq!(hex::encode(&padded[..48]), expected);
    assert_eq!(padded[48..], [0u8; 16]);
    assert_ne!(report_data_binding("AAECAwQ=", &jwk, "{}"), padded);
    assert_ne!(report_data_binding("AAECAwQ", &jwk, ""), padded);
}

#[test]
fn parsed_jwk_reserializes_to_the_received_strings() {
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa3072] {
        let jwk = TeeKeyPair::generate(kind).unwrap().public_jwk();
        let v = jwk.to_json();
        assert_eq!(Jwk::from_json(&v).unwrap().to_json(), v);
        let s = serde_json::to_string(&jwk).unwrap();
        assert_eq!(serde_json::from_str::<Jwk>(&s).unwrap(), jwk);
    }
}

#[test]
fn rejects_bad_jwks() {
    let cases = [
        (
            ec("P-256", "ECDH-ES+A256KW", &format!("{BOB_X}="), BOB_Y),
            WireError::Base64("tee-pubkey x"),
        ),
        (ec("P-256", "ECDH-ES", BOB_X, BOB_Y), WireError::Jwk("EC key alg must be ECDH-ES+A256KW")),
        (
            ec("P-521", "ECDH-ES+A256KW", BOB_X, BOB_Y),
            WireError::Jwk("unsupported curve (P-256 or P-384)"),
        ),
        (
            ec("P-384", "ECDH-ES+A256KW", BOB_X, BOB_Y),
            WireError::Jwk("EC coordinate has the wrong length"),
        ),
        (
            ec("P-256", "ECDH-ES+A256KW", BOB_X, "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOycs"),
            WireError::Jwk("EC point is not on the curve"),
        ),
        (
            json!({"kty": "RSA", "alg": "RSA1_5", "n": "AQAB", "e": "AQAB"}),
            WireError::Jwk("RSA key alg must be RSA-OAEP-256"),
        ),
        (json!({"kty": "oct", "k": "AQAB"}), WireError::Json("tee-pubkey")),
    ];
    for (v, err) in cases {
        assert_eq!(Jwk::from_json(&v), Err(err), "{v}");
    }
    // A 1024-bit modulus is refused.
    let small = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap().to_public_key();
    let v = json!({"kty": "RSA", "alg": "RSA-OAEP-256",
        "n": keylatch_wire::b64::encode(&small.n().to_bytes_be()),
        "e": keylatch_wire::b64::encode(&small.e().to_bytes_be())});
    assert_eq!(Jwk::from_json(&v), Err(WireError::Jwk("RSA modulus shorter than 2048 bits")));
    let v = json!({"kty": "RSA", "alg": "RSA-OAEP-256",
        "n": keylatch_wire::b64::encode(&[&[0u8][..], &small.n().to_bytes_be()].concat()),
        "e": "AQAB"});
    assert_eq!(Jwk::from_json(&v), Err(WireError::Jwk("RSA n and e must be minimal big-endian")));
}
