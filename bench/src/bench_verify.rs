//! `keylatch bench verify`: how much a warm verification costs on this machine compared with the
//! signature checks it cannot avoid (SNP: one ECDSA P-384 verify of the report; TDX: two ECDSA
//! P-256 verifies, quote and QE report), both measured in the same run with the same crypto
//! library. Uses simulated evidence: many distinct reports from one platform, as a broker sees a
//! fleet booting, with the verifier's caches warm (chains and collateral already checked).

// reason: the corpora are vectors of exactly DISTINCT items, indexed only by `i % DISTINCT`.
#![allow(clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand_core::{OsRng, RngCore};
use signature::Verifier as _;
use verifier::sim::snp::SimSnpReport;
use verifier::sim::tdx::SimTdxQuote;
use verifier::sim::SimPki;
use verifier::snp::{SnpEndorsements, SnpVerifier};
use verifier::tdx::{parse_quote, TdxVerifier};
use verifier::x509::{pem_certificates, Certificate, PublicKey};
use verifier::Now;

use keylatch_cli::TeeArg;

/// Distinct pieces of evidence cycled through (each with its own REPORT_DATA).
const DISTINCT: usize = 32;

/// Iterations per timed round; raw and verify rounds alternate.
const ROUND: u32 = 50;

#[derive(Debug, clap::Args)]
pub struct BenchVerifyArgs {
    #[arg(long, value_enum)]
    pub tee: TeeArg,
    /// Verifications to time (and as many raw signature rounds).
    #[arg(long, default_value_t = 2000)]
    pub iterations: u32,
}

/// One timed operation over the corpus: returns nothing, must fail loudly on a wrong result.
type Op<'a> = Box<dyn Fn(usize) -> anyhow::Result<()> + 'a>;

pub fn run(args: &BenchVerifyArgs) -> anyhow::Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let pki = SimPki::generate(&mut OsRng).context("generating a simulation PKI")?;
    let now = Now::now_utc();
    match args.tee {
        TeeArg::Snp => bench_snp(&pki, now, args.iterations),
        TeeArg::Tdx => bench_tdx(&pki, now, args.iterations),
    }
}

fn bench_snp(pki: &SimPki, now: Now, iterations: u32) -> anyhow::Result<()> {
    let verifier = SnpVerifier::new(pki.amd.anchors()?);
    let mut reports = Vec::with_capacity(DISTINCT);
    let mut signer = Vec::new();
    for _ in 0..DISTINCT {
        let mut spec = SimSnpReport::default();
        OsRng.fill_bytes(&mut spec.report_data);
        let (report, der) = pki.amd.mint(&spec, &mut OsRng)?;
        reports.push(report);
        signer = der;
    }
    let endorsements = SnpEndorsements::new(signer.clone());
    let PublicKey::P384(vcek) = Certificate::from_der("VCEK", &signer)?.public_key().clone() else {
        bail!("the simulated VCEK is not a P-384 key");
    };
    let signatures =
        reports.iter().map(|r| snp_signature(r)).collect::<anyhow::Result<Vec<_>>>()?;
    let signed_part =
        |i: usize| reports[i % DISTINCT].get(..verifier::snp::SIGNED_LEN).unwrap_or_default();

    let verify: Op = Box::new(|i| {
        black_box(verifier.verify(black_box(&reports[i % DISTINCT]), &endorsements, None, now)?);
        Ok(())
    });
    let raw: Op = Box::new(|i| {
        vcek.verify(black_box(signed_part(i)), black_box(&signatures[i % DISTINCT]))
            .context("raw P-384 verify")
    });
    report(
        "snp",
        &format!("simulated v5 Genoa reports ({DISTINCT} distinct, one VCEK)"),
        "one ECDSA P-384 verify (RustCrypto p384)",
        &measure(&verify, &raw, iterations)?,
    );
    Ok(())
}

/// The report's ECDSA signature: r and s are 72-byte little-endian fields of which the low 48
/// bytes are the P-384 scalars.
fn snp_signature(report: &[u8]) -> anyhow::Result<p384::ecdsa::Signature> {
    let scalar = |offset: usize| -> anyhow::Result<[u8; 48]> {
        let mut be: [u8; 48] =
            report.get(offset..offset + 48).context("short report")?.try_into()?;
        be.reverse();
        Ok(be)
    };
    Ok(p384::ecdsa::Signature::from_scalars(scalar(0x2A0)?, scalar(0x2E8)?)?)
}

fn bench_tdx(pki: &SimPki, now: Now, iterations: u32) -> anyhow::Result<()> {
    let verifier = TdxVerifier::new(pki.intel.anchors());
    let collateral =
        pki.intel.collateral(now - time::Duration::days(1), now + time::Duration::days(1))?;
    let mut quotes = Vec::with_capacity(DISTINCT);
    let mut raws = Vec::with_capacity(DISTINCT);
    for _ in 0..DISTINCT {
        let mut spec = SimTdxQuote::default();
        OsRng.fill_bytes(&mut spec.report_data);
        let quote = pki.intel.mint(&spec, &mut OsRng)?;
        raws.push(RawTdxSignatures::from_quote(&quote)?);
        quotes.push(quote);
    }
    let verify: Op = Box::new(|i| {
        black_box(verifier.verify(black_box(&quotes[i % DISTINCT]), &collateral, None, now)?);
        Ok(())
    });
    let raw: Op = Box::new(|i| raws[i % DISTINCT].verify(&quotes[i % DISTINCT]));
    report(
        "tdx",
        &format!("simulated v4 quotes ({DISTINCT} distinct, one platform)"),
        "two ECDSA P-256 verifies (RustCrypto p256)",
        &measure(&verify, &raw, iterations)?,
    );
    Ok(())
}

/// The two signatures of a quote with the keys that check them.
struct RawTdxSignatures {
    attestation_key: p256::ecdsa::VerifyingKey,
    quote_signature: p256::ecdsa::Signature,
    signed_len: usize,
    pck_key: p256::ecdsa::VerifyingKey,
    qe_report: Vec<u8>,
    qe_report_signature: p256::ecdsa::Signature,
}

impl RawTdxSignatures {
    fn from_quote(quote: &[u8]) -> anyhow::Result<Self> {
        let q = parse_quote(quote)?;
        let mut sec1 = [4u8; 65];
        sec1.get_mut(1..).context("sec1")?.copy_from_slice(&q.attestation_key);
        let pck_der = pem_certificates("PCK chain", &q.pck_chain_pem)?
            .into_iter()
            .next()
            .context("empty PCK chain")?;
        let PublicKey::P256(pck_key) = Certificate::from_der("PCK", &pck_der)?.public_key().clone()
        else {
            bail!("the PCK key is not P-256");
        };
        Ok(Self {
            attestation_key: p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)?,
            quote_signature: p256::ecdsa::Signature::from_slice(&q.signature)?,
            signed_len: q.signed_len,
            pck_key,
            qe_report: q.qe_report_raw.to_vec(),
            qe_report_signature: p256::ecdsa::Signature::from_slice(&q.qe_report_signature)?,
        })
    }

    fn verify(&self, quote: &[u8]) -> anyhow::Result<()> {
        let signed = quote.get(..self.signed_len).context("short quote")?;
        self.attestation_key.verify(black_box(signed), &self.quote_signature)?;
        self.pck_key.verify(black_box(&self.qe_report), &self.qe_report_signature)?;
        Ok(())
    }
}

struct Figures {
    iterations: u32,
    verify: Duration,
    raw: Duration,
}

/// Warms both operations over the whole corpus, then times them in interleaved rounds so drift
/// in machine load hits both alike.
fn measure(verify: &Op, raw: &Op, iterations: u32) -> anyhow::Result<Figures> {
    for i in 0..DISTINCT {
        verify(i)?;
        raw(i)?;
    }
    let (mut verify_total, mut raw_total) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0u32;
    while done < iterations {
        let n = ROUND.min(iterations - done);
        let start = Instant::now();
        for i in done..done + n {
            raw(i as usize)?;
        }
        raw_total += start.elapsed();
        let start = Instant::now();
        for i in done..done + n {
            verify(i as usize)?;
        }
        verify_total += start.elapsed();
        done += n;
    }
    Ok(Figures { iterations, verify: verify_total / iterations, raw: raw_total / iterations })
}

fn report(tee: &str, corpus: &str, floor: &str, f: &Figures) {
    let per_second = |d: Duration| 1.0 / d.as_secs_f64().max(f64::MIN_POSITIVE);
    println!("keylatch bench verify --tee {tee}: {} iterations over {corpus}", f.iterations);
    println!(
        "  warm verify            {:>9.1} µs/op  {:>8.0} ops/s",
        f.verify.as_secs_f64() * 1e6,
        per_second(f.verify)
    );
    println!(
        "  raw signature checks   {:>9.1} µs/op  {:>8.0} ops/s  ({floor})",
        f.raw.as_secs_f64() * 1e6,
        per_second(f.raw)
    );
    println!(
        "  ratio                  {:>9.3}x  (goal: at most 1.2x)",
        f.verify.as_secs_f64() / f.raw.as_secs_f64().max(f64::MIN_POSITIVE)
    );
}
