//! The physical floor of one key release on this machine: every cryptographic operation a
//! release cannot avoid, on both sides (the bench runs the guests and the broker in one
//! process), each timed with the fastest implementation here (aws-lc-rs), and the ceiling in
//! releases per second that follows when all cores do nothing else.
//!
//! Per release, for one guest and the broker:
//! - TLS 1.3 handshake (a booting VM has no session to resume): an X25519 key pair on each side,
//!   an X25519 agreement on each side, the server's ECDSA P-256 CertificateVerify signature, and
//!   the client's two P-256 verifies (that signature and the certificate's, by the pinned CA);
//! - the guest's ephemeral P-256 key pair (the tee-pubkey);
//! - the hardware's signature over the evidence (SNP: one P-384 sign; TDX: one P-256 sign of the
//!   quote) — a PSP or QE does it on real hardware, the simulator on this CPU here;
//! - the broker's evidence check (SNP: one P-384 verify; TDX: two P-256 verifies, quote and QE
//!   report), as `bench verify` counts it;
//! - the attestation token: one ES256 sign (attest) and one ES256 verify (resource, bearer);
//! - the JWE: an ephemeral P-256 key pair and an agreement (broker), an agreement (guest), an
//!   AES-256-GCM seal and open of the 32-byte key.
//!
//! Hashing, JSON, HTTP, the store and the audit log's durable commit are not in the floor: they
//! are the work the ceiling's share measures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair as _, ParsedPublicKey,
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};

use keylatch_cli::TeeArg;

/// Timings of each operation, repeated this often (after as many warm-up rounds).
const ROUNDS: u32 = 300;

/// One unavoidable operation, how often a release needs it, and what one costs here.
#[derive(Debug)]
pub struct FloorItem {
    pub what: &'static str,
    pub per_release: u32,
    pub each: Duration,
}

/// The unavoidable crypto of one release.
#[derive(Debug)]
pub struct Floor {
    pub items: Vec<FloorItem>,
}

impl Floor {
    /// CPU time of one release's unavoidable crypto.
    #[must_use]
    pub fn per_release(&self) -> Duration {
        self.items.iter().map(|i| i.each * i.per_release).sum()
    }

    /// Releases per second with every one of `cores` doing only the floor's work.
    #[must_use]
    pub fn ceiling(&self, cores: usize) -> f64 {
        #[allow(clippy::cast_precision_loss)] // reason: a handful of cores
        let cores = cores as f64;
        cores / self.per_release().as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Times every operation for `tee` now.
    pub fn measure(tee: TeeArg) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let p256 = Signer::new(&ECDSA_P256_SHA256_FIXED_SIGNING, &ECDSA_P256_SHA256_FIXED)?;
        let p384 = Signer::new(&ECDSA_P384_SHA384_FIXED_SIGNING, &ECDSA_P384_SHA384_FIXED)?;
        let (evidence_signer, evidence_verifies, evidence_sign, evidence_verify) = match tee {
            TeeArg::Snp => (&p384, 1, "ECDSA P-384 sign (SNP report)", "ECDSA P-384 verify"),
            TeeArg::Tdx => (&p256, 2, "ECDSA P-256 sign (TDX quote)", "ECDSA P-256 verify"),
        };
        let x25519 = time(|| {
            let key = EphemeralPrivateKey::generate(&agreement::X25519, &rng)
                .map_err(|_| anyhow!("X25519 key"))?;
            black_box(key.compute_public_key().map_err(|_| anyhow!("X25519 public key"))?);
            Ok(())
        })?;
        let x25519_peer = EphemeralPrivateKey::generate(&agreement::X25519, &rng)
            .and_then(|k| k.compute_public_key())
            .map_err(|_| anyhow!("X25519 peer"))?;
        let x25519_key = PrivateKey::generate(&agreement::X25519).map_err(|_| anyhow!("key"))?;
        let x25519_agree = time(|| agree(&x25519_key, &agreement::X25519, x25519_peer.as_ref()))?;
        let p256_keygen = time(|| {
            let key = PrivateKey::generate(&agreement::ECDH_P256).map_err(|_| anyhow!("key"))?;
            black_box(key.compute_public_key().map_err(|_| anyhow!("public key"))?);
            Ok(())
        })?;
        let ecdh_key = PrivateKey::generate(&agreement::ECDH_P256).map_err(|_| anyhow!("key"))?;
        let ecdh_peer = PrivateKey::generate(&agreement::ECDH_P256)
            .and_then(|k| k.compute_public_key())
            .map_err(|_| anyhow!("ECDH peer"))?;
        let ecdh = time(|| agree(&ecdh_key, &agreement::ECDH_P256, ecdh_peer.as_ref()))?;
        let gcm = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &[7u8; 32]).map_err(|_| anyhow!("GCM key"))?,
        );
        let nonce = || Nonce::assume_unique_for_key([0u8; 12]);
        let gcm_seal_open = time(|| {
            let mut buf = vec![0x5au8; 32];
            gcm.seal_in_place_append_tag(nonce(), Aad::empty(), &mut buf)
                .map_err(|_| anyhow!("GCM seal"))?;
            black_box(gcm.open_in_place(nonce(), Aad::empty(), &mut buf))
                .map_err(|_| anyhow!("GCM open"))?;
            Ok(())
        })?;
        let item = |what, per_release, each| FloorItem { what, per_release, each };
        Ok(Self {
            items: vec![
                item("X25519 key pair (TLS, both sides)", 2, x25519),
                item("X25519 agreement (TLS, both sides)", 2, x25519_agree),
                item("ECDSA P-256 sign (TLS CertificateVerify, token)", 2, p256.sign_time()?),
                item(
                    "ECDSA P-256 verify (TLS: signature and certificate; token)",
                    3,
                    p256.verify_time()?,
                ),
                item("P-256 key pair (tee-pubkey, JWE epk)", 2, p256_keygen),
                item("ECDH P-256 agreement (JWE, both sides)", 2, ecdh),
                item("AES-256-GCM seal and open of the key", 1, gcm_seal_open),
                item(evidence_sign, 1, evidence_signer.sign_time()?),
                item(evidence_verify, evidence_verifies, evidence_signer.verify_time()?),
            ],
        })
    }

    /// Prints the floor, the ceiling on `cores` and `measured`'s share of it.
    pub fn print(&self, cores: usize, measured: f64) {
        println!("floor (unavoidable crypto per release, aws-lc-rs on this machine):");
        for i in &self.items {
            println!("  {:>2} x {:>7.1} µs  {}", i.per_release, i.each.as_secs_f64() * 1e6, i.what);
        }
        let ceiling = self.ceiling(cores);
        println!(
            "  = {:.0} µs of CPU per release; ceiling on {cores} cores: {ceiling:.0} releases/s; \
             measured: {measured:.0}/s = {:.0}% of it",
            self.per_release().as_secs_f64() * 1e6,
            100.0 * measured / ceiling.max(f64::MIN_POSITIVE)
        );
    }
}

/// One ECDSA key pair with its verifying key parsed once, as the broker keeps them.
struct Signer {
    key: EcdsaKeyPair,
    public: ParsedPublicKey,
    rng: SystemRandom,
}

impl Signer {
    fn new(
        signing: &'static EcdsaSigningAlgorithm,
        verifying: &'static EcdsaVerificationAlgorithm,
    ) -> anyhow::Result<Self> {
        let key = EcdsaKeyPair::generate(signing).map_err(|_| anyhow!("ECDSA key"))?;
        let public = ParsedPublicKey::new(verifying, key.public_key().as_ref())
            .map_err(|_| anyhow!("ECDSA public key"))?;
        Ok(Self { key, public, rng: SystemRandom::new() })
    }

    fn sign_time(&self) -> anyhow::Result<Duration> {
        time(|| {
            black_box(
                self.key.sign(&self.rng, black_box(b"message")).map_err(|_| anyhow!("sign"))?,
            );
            Ok(())
        })
    }

    fn verify_time(&self) -> anyhow::Result<Duration> {
        let signature =
            self.key.sign(&self.rng, b"message").map_err(|_| anyhow!("sign for verify"))?;
        time(|| {
            self.public
                .verify_sig(black_box(b"message"), black_box(signature.as_ref()))
                .map_err(|_| anyhow!("the floor's own signature does not verify"))
        })
    }
}

/// One agreement of `key` with `peer`, its shared secret kept from the optimizer.
fn agree(key: &PrivateKey, alg: &'static agreement::Algorithm, peer: &[u8]) -> anyhow::Result<()> {
    agreement::agree(key, UnparsedPublicKey::new(alg, peer), anyhow!("agreement"), |secret| {
        black_box(secret);
        Ok(())
    })
}

/// Mean time of `op` over [`ROUNDS`] runs, after as many warm-up runs.
fn time(op: impl Fn() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    for _ in 0..ROUNDS {
        op()?;
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        op()?;
    }
    Ok(start.elapsed() / ROUNDS)
}
