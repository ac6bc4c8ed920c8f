//! `keylatch sim init` and `keylatch sim evidence`: a simulation PKI on disk, and SNP reports or
//! TDX quotes (with collateral) minted under it, in the real formats. For CI and demos without
//! hardware; a broker accepts such evidence only with `allow_simulated = true`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand_core::OsRng;
use verifier::claims::{SnpProduct, SnpSigningKey, TdxBody};
use verifier::sim::snp::SimSnpReport;
use verifier::sim::tdx::SimTdxQuote;
use verifier::sim::SimPki;
use verifier::Now;

use super::evidence::report_data_from_hex;
use super::{load_sim_pki, write_private, write_public, TeeArg};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory to create the PKI in (created if missing; existing PKI files are never overwritten).
    #[arg(long)]
    pub out: PathBuf,
}

/// Generates a simulation PKI and writes it to `args.out`: certificates 0644, keys 0600.
pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let pki = SimPki::generate(&mut OsRng).context("generating the simulation PKI")?;
    let files = pki.to_files().context("encoding the simulation PKI")?;
    if let Some((name, _)) = files.iter().find(|(name, _)| args.out.join(name).exists()) {
        bail!(
            "{} already exists: refusing to overwrite a simulation PKI",
            args.out.join(name).display()
        );
    }
    for (name, contents) in &files {
        let path = args.out.join(name);
        if name.contains("key") {
            write_private(&path, contents)?;
        } else {
            write_public(&path, contents)?;
        }
    }
    println!("simulation PKI written to {} ({} files)", args.out.display(), files.len());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct EvidenceArgs {
    #[arg(long, value_enum)]
    pub tee: TeeArg,
    /// The simulation PKI directory (from `keylatch sim init`).
    #[arg(long)]
    pub pki: PathBuf,
    /// REPORT_DATA (up to 128 hex digits, zero-padded).
    #[arg(long)]
    pub report_data: String,
    /// SNP MEASUREMENT or TDX MRTD (96 hex digits).
    #[arg(long)]
    pub measurement: Option<String>,
    /// SNP: report version 2, 3 or 5 (default 5). TDX: quote version 4 or 5 (default 4).
    #[arg(long)]
    pub version: Option<u32>,
    /// SNP product: milan, genoa or turin (default genoa).
    #[arg(long)]
    pub product: Option<String>,
    /// SNP: sign with the VLEK instead of a VCEK.
    #[arg(long)]
    pub vlek: bool,
    /// TDX: a TDX 1.5 body (needs --version 5).
    #[arg(long)]
    pub tdx15: bool,
    /// Set the guest's debug bit (SNP policy DEBUG, TDX TUD.DEBUG).
    #[arg(long)]
    pub debug: bool,
    /// Where to write the report or quote. SNP also writes the signer certificate to
    /// `FILE.vcek.der` (or `.vlek.der`); TDX writes signed collateral to `FILE.collateral.json`.
    #[arg(long)]
    pub out: PathBuf,
}

/// Mints one piece of simulated evidence and writes it with what verifies it.
pub fn evidence(args: &EvidenceArgs) -> anyhow::Result<()> {
    let pki = load_sim_pki(&args.pki)?;
    let report_data = report_data_from_hex(&args.report_data)?;
    let measurement = args.measurement.as_deref().map(measurement_from_hex).transpose()?;
    match args.tee {
        TeeArg::Snp => {
            let product = match &args.product {
                Some(name) => SnpProduct::from_name(name)
                    .with_context(|| format!("unknown product {name}: milan, genoa or turin"))?,
                None => SnpProduct::Genoa,
            };
            let mut spec = SimSnpReport::for_product(product);
            spec.version = args.version.unwrap_or(5);
            spec.report_data = report_data;
            if let Some(m) = measurement {
                spec.measurement = m;
            }
            if args.debug {
                spec.policy |= SNP_POLICY_DEBUG;
            }
            let (kind, suffix) = if args.vlek {
                (SnpSigningKey::Vlek, "vlek.der")
            } else {
                (SnpSigningKey::Vcek, "vcek.der")
            };
            spec.signing_key = kind;
            let (report, signer) = pki.amd.mint(&spec, &mut OsRng).context("minting the report")?;
            let signer_path = sibling(&args.out, suffix);
            std::fs::write(&args.out, &report)
                .with_context(|| format!("writing {}", args.out.display()))?;
            std::fs::write(&signer_path, &signer)
                .with_context(|| format!("writing {}", signer_path.display()))?;
            println!("{}\n{}", args.out.display(), signer_path.display());
        }
        TeeArg::Tdx => {
            let mut spec = SimTdxQuote {
                version: u16::try_from(args.version.unwrap_or(4)).context("--version")?,
                report_data,
                debug: args.debug,
                ..SimTdxQuote::default()
            };
            if args.tdx15 {
                spec.body = TdxBody::Tdx15;
            }
            if let Some(m) = measurement {
                spec.mr_td = m;
            }
            let quote = pki.intel.mint(&spec, &mut OsRng).context("minting the quote")?;
            let now = Now::now_utc();
            let collateral = pki
                .intel
                .collateral(now - time::Duration::days(1), now + time::Duration::days(30))
                .context("signing the collateral")?;
            let collateral_path = sibling(&args.out, "collateral.json");
            std::fs::write(&args.out, &quote)
                .with_context(|| format!("writing {}", args.out.display()))?;
            std::fs::write(&collateral_path, collateral.to_json())
                .with_context(|| format!("writing {}", collateral_path.display()))?;
            println!("{}\n{}", args.out.display(), collateral_path.display());
        }
    }
    Ok(())
}

/// SNP guest policy bit 19: DEBUG.
const SNP_POLICY_DEBUG: u64 = 1 << 19;

fn measurement_from_hex(s: &str) -> anyhow::Result<[u8; 48]> {
    let mut out = [0u8; 48];
    hex::decode_to_slice(s.trim(), &mut out).context("--measurement must be 96 hex digits")?;
    Ok(out)
}

/// `FILE.suffix` next to `FILE`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}
