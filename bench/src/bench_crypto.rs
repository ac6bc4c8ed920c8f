//! `keylatch bench crypto`: what the broker's and the agent's per-release cryptography costs on
//! this machine, each operation next to the raw aws-lc-rs operations it cannot avoid, timed in
//! the same run: JWE seal (broker) and open (agent) of a 32-byte key, ECDH-ES+A256KW on P-256
//! with A256GCM; attestation token sign and verify, ES256 over claims the size of a real
//! token's. The difference is JSON, base64, key wrap, the Concat KDF and copying (for token
//! sign also cloning the claims map, which `sign` consumes).

use std::hint::black_box;

use anyhow::{bail, Context};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use keylatch_wire::{decrypt, encrypt, Jwe, Jwk, KeyKind, TeeKeyPair};
use serde_json::{json, Map, Value};

use crate::bench_verify::{measure, print_figures, Op};
use keylatch_broker::token::TokenKey;

/// Claims (besides the evidence) sized like a real SNP token's: about 2 KB of JSON.
const EVIDENCE_FIELDS: usize = 40;

#[derive(Debug, clap::Args)]
pub struct BenchCryptoArgs {
    /// Operations to time (and as many raw rounds) per figure.
    #[arg(long, default_value_t = 2000)]
    pub iterations: u32,
}

pub fn run(args: &BenchCryptoArgs) -> anyhow::Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let n = args.iterations;
    println!("keylatch bench crypto: {n} iterations per figure");
    bench_jwe(n)?;
    bench_token(n)?;
    Ok(())
}

fn bench_jwe(iterations: u32) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let guest = TeeKeyPair::generate(KeyKind::P256)?;
    let jwk = guest.public_jwk();
    let Jwk::P256(point) = &jwk else { bail!("a P-256 tee-pubkey was expected") };
    let peer = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(point, false);
    let secret = [0x5au8; 32];
    let gcm = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &[7u8; 32]).map_err(|_| anyhow::anyhow!("GCM key"))?,
    );
    let nonce = || Nonce::assume_unique_for_key([0u8; 12]);

    let seal: Op = Box::new(|_| {
        black_box(encrypt(black_box(&jwk), &secret)?);
        Ok(())
    });
    // The broker's unavoidable part: an ephemeral key, one agreement, one GCM seal.
    let raw_seal: Op = Box::new(|_| {
        let eph = EphemeralPrivateKey::generate(&ECDH_P256, &rng)
            .map_err(|_| anyhow::anyhow!("ephemeral key"))?;
        black_box(eph.compute_public_key().map_err(|_| anyhow::anyhow!("public key"))?);
        agreement::agree_ephemeral(
            eph,
            UnparsedPublicKey::new(&ECDH_P256, black_box(peer.as_bytes())),
            anyhow::anyhow!("ECDH"),
            keep,
        )?;
        let mut buf = secret.to_vec();
        let tag = gcm
            .seal_in_place_separate_tag(nonce(), Aad::from(b"aad"), &mut buf)
            .map_err(|_| anyhow::anyhow!("GCM seal"))?;
        black_box(tag.as_ref());
        Ok(())
    });
    println!("JWE seal (broker), ECDH-ES+A256KW P-256 + A256GCM, 32-byte key");
    print_figures(
        "keylatch_wire::encrypt",
        "P-256 key generation + ECDH + AES-256-GCM seal, aws-lc-rs",
        &measure(&seal, &raw_seal, iterations)?,
        None,
    );

    let jwe: Jwe = encrypt(&jwk, &secret)?;
    let epk = epk_point(&jwe)?;
    let mut sealed = secret.to_vec();
    let tag = gcm
        .seal_in_place_separate_tag(nonce(), Aad::from(b"aad"), &mut sealed)
        .map_err(|_| anyhow::anyhow!("GCM seal"))?;
    sealed.extend_from_slice(tag.as_ref());
    let agent_key =
        agreement::PrivateKey::generate(&ECDH_P256).map_err(|_| anyhow::anyhow!("agent key"))?;
    let open: Op = Box::new(|_| {
        let plain = decrypt(&guest, black_box(&jwe))?;
        if plain.as_slice() != secret {
            bail!("JWE open returned other bytes");
        }
        Ok(())
    });
    // The agent's unavoidable part: one agreement with the epk, one GCM open.
    let raw_open: Op = Box::new(|_| {
        agreement::agree(
            &agent_key,
            UnparsedPublicKey::new(&ECDH_P256, black_box(epk.as_slice())),
            anyhow::anyhow!("ECDH"),
            keep,
        )?;
        let mut buf = sealed.clone();
        black_box(gcm.open_in_place(nonce(), Aad::from(b"aad"), &mut buf))
            .map_err(|_| anyhow::anyhow!("GCM open"))?;
        Ok(())
    });
    println!("JWE open (agent), same JWE");
    print_figures(
        "keylatch_wire::decrypt",
        "ECDH + AES-256-GCM open, aws-lc-rs",
        &measure(&open, &raw_open, iterations)?,
        None,
    );
    Ok(())
}

/// The raw benches' KDF: keeps the shared secret from being optimized away, derives nothing.
#[allow(clippy::unnecessary_wraps)] // reason: aws-lc-rs's `agree` takes a KDF that returns a Result
fn keep(z: &[u8]) -> anyhow::Result<()> {
    black_box(z);
    Ok(())
}

/// The uncompressed point of a JWE's `epk`.
fn epk_point(jwe: &Jwe) -> anyhow::Result<Vec<u8>> {
    let header: Value =
        serde_json::from_slice(&keylatch_wire::b64::decode("protected", &jwe.protected)?)?;
    let coord = |name: &str| -> anyhow::Result<Vec<u8>> {
        let s = header
            .get("epk")
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .context("epk coordinate")?;
        Ok(keylatch_wire::b64::decode("epk", s)?)
    };
    let mut point = vec![4u8];
    point.extend(coord("x")?);
    point.extend(coord("y")?);
    Ok(point)
}

fn bench_token(iterations: u32) -> anyhow::Result<()> {
    let key = TokenKey::generate()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = token_claims(now);
    let token = key.sign(claims.clone())?;
    let (signing_input, _) = token.rsplit_once('.').context("token")?;
    let message = signing_input.as_bytes();
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| anyhow::anyhow!("P-256 key"))?;
    let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
        .map_err(|_| anyhow::anyhow!("P-256 public key"))?;
    let signature = pair.sign(&rng, message).map_err(|_| anyhow::anyhow!("P-256 sign"))?;

    let sign: Op = Box::new(|_| {
        black_box(key.sign(black_box(claims.clone()))?);
        Ok(())
    });
    let raw_sign: Op = Box::new(|_| {
        black_box(pair.sign(&rng, black_box(message)).map_err(|_| anyhow::anyhow!("sign"))?);
        Ok(())
    });
    println!("attestation token sign (ES256, {} bytes)", token.len());
    print_figures(
        "TokenKey::sign + clone",
        "one ECDSA P-256 sign of the same bytes, aws-lc-rs",
        &measure(&sign, &raw_sign, iterations)?,
        None,
    );

    let verify: Op = Box::new(|_| {
        black_box(key.verify(black_box(&token), now)?);
        Ok(())
    });
    let raw_verify: Op = Box::new(|_| {
        public
            .verify_sig(black_box(message), black_box(signature.as_ref()))
            .map_err(|_| anyhow::anyhow!("verify"))
    });
    println!("attestation token verify (ES256, same token)");
    print_figures(
        "TokenKey::verify",
        "one ECDSA P-256 verify, key parsed, aws-lc-rs",
        &measure(&verify, &raw_verify, iterations)?,
        None,
    );
    Ok(())
}

/// Claims shaped like an attestation token's: ids, times, a tee-pubkey and an evidence object.
fn token_claims(now: i64) -> Map<String, Value> {
    let evidence: Map<String, Value> = (0..EVIDENCE_FIELDS)
        .map(|i| (format!("field_{i:02}"), json!(hex::encode([i as u8; 24]))))
        .collect();
    let mut m = Map::new();
    m.insert("jti".into(), json!(hex::encode([1u8; 16])));
    m.insert("iat".into(), json!(now));
    m.insert("nbf".into(), json!(now));
    m.insert("exp".into(), json!(now + 300));
    m.insert("tee-pubkey".into(), json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}));
    m.insert("evidence".into(), Value::Object(evidence));
    m
}
