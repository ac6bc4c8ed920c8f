//! Interoperability with an independent JOSE implementation, Python's `jwcrypto`: it decrypts
//! what this crate encrypts, and this crate decrypts what it (and `cryptography`'s primitives)
//! encrypt, for every key kind.
//! (Test-only; the product uses no non-Rust crypto.) Skipped when `jwcrypto` cannot be installed.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use keylatch_test_vectors::jwcrypto;
use keylatch_wire::{b64, decrypt, encrypt, Jwe, KeyKind, TeeKeyPair};

/// The upstream client needs `epk` inside the protected header and uses the re-serialized header
/// as AAD; jwcrypto puts `epk` into the unprotected per-recipient header (which that client
/// cannot read), so the EC direction is done with `cryptography`'s primitives (its own ECDH,
/// Concat KDF, AES key wrap and AES-GCM) and RSA with jwcrypto itself.
const ENCRYPT: &str = r#"
import sys, json, os, base64
from jwcrypto import jwk, jwe
d = json.load(sys.stdin)
pub = d["jwk"]
pt = bytes.fromhex(d["plaintext"])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
unb64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
if pub["kty"] == "RSA":
    t = jwe.JWE(pt, protected=json.dumps({"alg": pub["alg"], "enc": "A256GCM"}, separators=(",", ":")))
    t.add_recipient(jwk.JWK(**pub))
    print(t.serialize())
else:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[pub["crv"]]
    n = {"P-256": 32, "P-384": 48}[pub["crv"]]
    peer = ec.EllipticCurvePublicNumbers(int.from_bytes(unb64(pub["x"]), "big"), int.from_bytes(unb64(pub["y"]), "big"), curve).public_key()
    eph = ec.generate_private_key(curve)
    z = eph.exchange(ec.ECDH(), peer)
    alg = b"ECDH-ES+A256KW"
    other = len(alg).to_bytes(4, "big") + alg + (0).to_bytes(4, "big") * 2 + (256).to_bytes(4, "big")
    kek = ConcatKDFHash(algorithm=hashes.SHA256(), length=32, otherinfo=other).derive(z)
    cek = os.urandom(32)
    nums = eph.public_key().public_numbers()
    epk = {"crv": pub["crv"], "kty": "EC", "x": b64(nums.x.to_bytes(n, "big")), "y": b64(nums.y.to_bytes(n, "big"))}
    protected = b64(json.dumps({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "epk": epk}, separators=(",", ":"), sort_keys=True).encode())
    iv = os.urandom(12)
    ct = AESGCM(cek).encrypt(iv, pt, protected.encode())
    print(json.dumps({"protected": protected, "encrypted_key": b64(aes_key_wrap(kek, cek)), "iv": b64(iv), "ciphertext": b64(ct[:-16]), "tag": b64(ct[-16:])}))
"#;

#[test]
fn jwcrypto_decrypts_ours_and_we_decrypt_jwcryptos() {
    if !jwcrypto::available() {
        return;
    }
    let plaintext = b"disk key: 32 bytes of entropy..!";
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa3072] {
        let kp = TeeKeyPair::generate(kind).unwrap();
        let ours = encrypt(&kp.public_jwk(), plaintext).unwrap();
        let input = serde_json::json!({
            "pem": kp.danger_to_pkcs8_pem().unwrap().as_str(),
            "jwe": serde_json::from_str::<serde_json::Value>(&ours.to_json()).unwrap(),
        });
        let out = jwcrypto::python(jwcrypto::DECRYPT, &input.to_string()).unwrap();
        assert_eq!(out.trim(), hex::encode(plaintext), "{kind:?}: jwcrypto decrypting ours");

        let input = serde_json::json!({"jwk": kp.public_jwk().to_json(), "plaintext": hex::encode(plaintext)});
        let theirs = jwcrypto::python(ENCRYPT, &input.to_string()).unwrap();
        let jwe = Jwe::from_json(theirs.trim().as_bytes()).unwrap();
        let header = String::from_utf8(b64::decode("protected", &jwe.protected).unwrap()).unwrap();
        assert!(header.starts_with(r#"{"alg":"#), "{header}");
        assert_eq!(
            decrypt(&kp, &jwe).unwrap().as_slice(),
            plaintext,
            "{kind:?}: ours decrypting jwcrypto's"
        );
    }
}
