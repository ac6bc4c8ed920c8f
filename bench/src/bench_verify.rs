//! `keylatch bench verify`: how much a warm verification costs on this machine compared with the
//! signature checks it cannot avoid, done by the fastest implementation here (aws-lc-rs), in the
//! same run: SNP, one ECDSA P-384 verify of the report with the VCEK key already parsed; TDX,
//! two ECDSA P-256 verifies (QE report by the already parsed PCK key, quote by the attestation
//! key, which arrives in the quote and so is parsed from it). Uses simulated evidence: many
//! distinct reports from one platform, as a broker sees a fleet booting, with the verifier's
//! caches warm (chains and collateral already checked). Every evidence version the verifier
//! accepts is covered (SNP reports v2, v3, v5; TDX quotes v4, v5), or one with `--version`.
//!
//! TDX also times the same quotes with their CCEL event log (a simulated grub boot, in a
//! 64 KiB log area padded as firmware leaves it): parsing and replaying it into RTMR0-3 is
//! printed beside the plain warm verify, as the ratio of the two.

// reason: the corpora are vectors of exactly DISTINCT items, indexed only by `i % DISTINCT`.
#![allow(clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_lc_rs::signature::{
    ParsedPublicKey, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
};
use rand_core::{OsRng, RngCore};
use verifier::claims::TdxBody;
use verifier::sim::ccel::{event_log, rtmrs, SimEvent};
use verifier::sim::snp::SimSnpReport;
use verifier::sim::tdx::SimTdxQuote;
use verifier::sim::SimPki;
use verifier::snp::{SnpEndorsements, SnpVerifier};
use verifier::tdx::{parse_quote, TdxVerifier};
use verifier::x509::{pem_certificates, Certificate};
use verifier::Now;

use keylatch_cli::TeeArg;

/// Distinct pieces of evidence cycled through (each with its own REPORT_DATA).
const DISTINCT: usize = 32;

/// Iterations per timed round; raw and verify rounds alternate.
const ROUND: u32 = 50;

/// What the raw figure is.
const SNP_FLOOR: &str = "one ECDSA P-384 verify, aws-lc-rs, key parsed";
const TDX_FLOOR: &str = "two ECDSA P-256 verifies, aws-lc-rs";

/// The CCEL log area the TDX event-log figure uses (TDVF's usual size).
const CCEL_AREA: usize = 64 * 1024;

#[derive(Debug, clap::Args)]
pub struct BenchVerifyArgs {
    #[arg(long, value_enum)]
    pub tee: TeeArg,
    /// Evidence version to time (SNP report 2, 3 or 5; TDX quote 4 or 5); all of them when absent.
    #[arg(long)]
    pub version: Option<u16>,
    /// Verifications to time per version (and as many raw signature rounds).
    #[arg(long, default_value_t = 2000)]
    pub iterations: u32,
}

/// One timed operation over the corpus: returns nothing, must fail loudly on a wrong result.
pub(super) type Op<'a> = Box<dyn Fn(usize) -> anyhow::Result<()> + 'a>;

pub fn run(args: &BenchVerifyArgs) -> anyhow::Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let all: &[u16] = match args.tee {
        TeeArg::Snp => &[2, 3, 5],
        TeeArg::Tdx => &[4, 5],
    };
    let versions: Vec<u16> = match args.version {
        Some(v) if all.contains(&v) => vec![v],
        Some(v) => bail!("--version {v}: the {:?} versions are {all:?}", args.tee),
        None => all.to_vec(),
    };
    let pki = SimPki::generate(&mut OsRng).context("generating a simulation PKI")?;
    let now = Now::now_utc();
    for version in versions {
        match args.tee {
            TeeArg::Snp => bench_snp(&pki, now, version, args.iterations)?,
            TeeArg::Tdx => bench_tdx(&pki, now, version, args.iterations)?,
        }
    }
    Ok(())
}

fn bench_snp(pki: &SimPki, now: Now, version: u16, iterations: u32) -> anyhow::Result<()> {
    let verifier = SnpVerifier::new(pki.amd.anchors()?);
    let mut reports = Vec::with_capacity(DISTINCT);
    let mut signer = Vec::new();
    for _ in 0..DISTINCT {
        let mut spec = SimSnpReport { version: version.into(), ..SimSnpReport::default() };
        OsRng.fill_bytes(&mut spec.report_data);
        let (report, der) = pki.amd.mint(&spec, &mut OsRng)?;
        reports.push(report);
        signer = der;
    }
    let endorsements = SnpEndorsements::new(signer.clone());
    let vcek = Certificate::from_der("VCEK", &signer)?;
    let vcek = ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, vcek.public_key().as_bytes())
        .map_err(|e| anyhow::anyhow!("the simulated VCEK is not a P-384 key: {e}"))?;
    let signatures =
        reports.iter().map(|r| snp_signature(r)).collect::<anyhow::Result<Vec<_>>>()?;
    let signed_part =
        |i: usize| reports[i % DISTINCT].get(..verifier::snp::SIGNED_LEN).unwrap_or_default();

    let verify: Op = Box::new(|i| {
        black_box(verifier.verify(black_box(&reports[i % DISTINCT]), &endorsements, None, now)?);
        Ok(())
    });
    let raw: Op = Box::new(|i| {
        vcek.verify_sig(black_box(signed_part(i)), black_box(&signatures[i % DISTINCT]))
            .map_err(|_| anyhow::anyhow!("raw P-384 verify failed"))
    });
    report(
        &format!("snp --version {version}"),
        &format!("simulated v{version} Genoa reports ({DISTINCT} distinct, one VCEK)"),
        SNP_FLOOR,
        &measure(&verify, &raw, iterations)?,
    );
    Ok(())
}

/// The report's ECDSA signature as fixed big-endian `r || s`: r and s are 72-byte
/// little-endian fields of which the low 48 bytes are the P-384 scalars.
fn snp_signature(report: &[u8]) -> anyhow::Result<[u8; 96]> {
    let mut sig = [0u8; 96];
    for (out, offset) in sig.chunks_mut(48).zip([0x2A0, 0x2E8]) {
        let le = report.get(offset..offset + 48).context("short report")?;
        out.iter_mut().zip(le.iter().rev()).for_each(|(d, s)| *d = *s);
    }
    Ok(sig)
}

fn bench_tdx(pki: &SimPki, now: Now, version: u16, iterations: u32) -> anyhow::Result<()> {
    let verifier = TdxVerifier::new(pki.intel.anchors());
    let collateral =
        pki.intel.collateral(now - time::Duration::days(1), now + time::Duration::days(1))?;
    let body = if version == 5 { TdxBody::Tdx15 } else { TdxBody::Tdx10 };
    let events = SimEvent::direct_grub_boot();
    let log = event_log(&events, CCEL_AREA);
    let rtmr = rtmrs(&log)?;
    let mut quotes = Vec::with_capacity(DISTINCT);
    let mut raws = Vec::with_capacity(DISTINCT);
    for _ in 0..DISTINCT {
        let mut spec = SimTdxQuote { version, body, rtmr, ..SimTdxQuote::default() };
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
    let body_name = if version == 5 { "TDX 1.5" } else { "TDX 1.0" };
    report(
        &format!("tdx --version {version}"),
        &format!(
            "simulated v{version} quotes, {body_name} body ({DISTINCT} distinct, one platform)"
        ),
        TDX_FLOOR,
        &measure(&verify, &raw, iterations)?,
    );
    let with_log: Op = Box::new(|i| {
        let quote = black_box(&quotes[i % DISTINCT]);
        let claims = verifier.verify_with_event_log(quote, Some(&log), &collateral, None, now)?;
        let replayed = claims.tdx.and_then(|t| t.event_log).map(|l| l.events.len());
        if replayed != Some(events.len()) {
            bail!("the event log was not replayed: {replayed:?} events");
        }
        Ok(())
    });
    print_beside(
        "warm verify + CCEL",
        "warm verify",
        &format!("  (CCEL: {} events in a {} KiB area)", events.len(), CCEL_AREA / 1024),
        &measure(&with_log, &verify, iterations)?,
        None,
    );
    Ok(())
}

/// The two signatures of a quote with the keys that check them: the PCK key parsed once (it is
/// the same for every quote of a platform), the attestation key as the quote carries it.
struct RawTdxSignatures {
    attestation_key: [u8; 65],
    quote_signature: Vec<u8>,
    signed_len: usize,
    pck_key: ParsedPublicKey,
    qe_report: Vec<u8>,
    qe_report_signature: Vec<u8>,
}

impl RawTdxSignatures {
    fn from_quote(quote: &[u8]) -> anyhow::Result<Self> {
        let q = parse_quote(quote)?.signing;
        let mut attestation_key = [4u8; 65];
        attestation_key.get_mut(1..).context("sec1")?.copy_from_slice(&q.attestation_key);
        let pck_der = pem_certificates("PCK chain", &q.qe.pck_chain_pem)?
            .into_iter()
            .next()
            .context("empty PCK chain")?;
        let pck = Certificate::from_der("PCK", &pck_der)?;
        let pck_key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pck.public_key().as_bytes())
            .map_err(|e| anyhow::anyhow!("the PCK key is not P-256: {e}"))?;
        Ok(Self {
            attestation_key,
            quote_signature: q.signature.to_vec(),
            signed_len: q.signed_len,
            pck_key,
            qe_report: q.qe.qe_report_raw.to_vec(),
            qe_report_signature: q.qe.qe_report_signature.to_vec(),
        })
    }

    fn verify(&self, quote: &[u8]) -> anyhow::Result<()> {
        let signed = quote.get(..self.signed_len).context("short quote")?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, black_box(&self.attestation_key))
            .verify(black_box(signed), &self.quote_signature)
            .map_err(|_| anyhow::anyhow!("raw quote verify failed"))?;
        self.pck_key
            .verify_sig(black_box(&self.qe_report), &self.qe_report_signature)
            .map_err(|_| anyhow::anyhow!("raw QE report verify failed"))?;
        Ok(())
    }
}

/// Mean time per operation of the measured path and of its raw floor.
pub(super) struct Figures {
    pub(super) iterations: u32,
    pub(super) verify: Duration,
    pub(super) raw: Duration,
}

/// Warms both operations over the whole corpus, then times them in interleaved rounds so drift
/// in machine load hits both alike. (`bench crypto` times its operations the same way.)
pub(super) fn measure(verify: &Op, raw: &Op, iterations: u32) -> anyhow::Result<Figures> {
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

fn report(what: &str, corpus: &str, floor: &str, f: &Figures) {
    println!("keylatch bench verify --tee {what}: {} iterations over {corpus}", f.iterations);
    print_figures("warm verify", floor, f, Some(1.2));
}

/// The three lines of a figure: measured path, raw floor (named), ratio (with its goal).
pub(super) fn print_figures(measured: &str, floor: &str, f: &Figures, goal: Option<f64>) {
    print_beside(measured, "raw operations", &format!("  ({floor})"), f, goal);
}

/// The three lines of a figure: measured path, the `baseline` it is compared with (`f.raw`,
/// followed by `note`), ratio (with its goal).
fn print_beside(measured: &str, baseline: &str, note: &str, f: &Figures, goal: Option<f64>) {
    let per_second = |d: Duration| 1.0 / d.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "  {measured:<22} {:>9.1} µs/op  {:>8.0} ops/s",
        f.verify.as_secs_f64() * 1e6,
        per_second(f.verify)
    );
    println!(
        "  {baseline:<22} {:>9.1} µs/op  {:>8.0} ops/s{note}",
        f.raw.as_secs_f64() * 1e6,
        per_second(f.raw)
    );
    let ratio = f.verify.as_secs_f64() / f.raw.as_secs_f64().max(f64::MIN_POSITIVE);
    match goal {
        Some(g) => println!("  {:<22} {ratio:>9.3}x  (goal: at most {g}x)", "ratio"),
        None => println!("  {:<22} {ratio:>9.3}x", "ratio"),
    }
}
