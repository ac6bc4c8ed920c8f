//! `refval`: the policy author's tool. Generates author keys, turns TOML bundles into signed
//! COSE bundles, adds co-signatures, verifies a signed bundle as a broker would, shows one, and
//! computes expected measurements (SEV-SNP launch digests, TDX event-log tables). File handling
//! lives here; every decision is the library's. Failures print one line `error: ...` and exit
//! non-zero.

mod push;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use reference_values::measure::{
    snp_launch_measurement, tdx_event_log_reference, SnpLaunchInputs, DEFAULT_GUEST_FEATURES,
};
use reference_values::{
    appraise, verify_bundle, AuthorKeys, AuthorPublicKey, AuthorSigningKey, Bundle, SignedBundle,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zeroize::Zeroizing;

#[derive(Debug, Parser)]
#[command(name = "refval", version, about = "Author, sign and check Keylatch reference values")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an author key: PKCS#8 PEM private key at OUT (mode 0600), SPKI PEM at OUT.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a TOML bundle and print it as the signed payload will hold it.
    Check { bundle: PathBuf },
    /// Sign a TOML bundle with one or more author keys.
    Sign {
        bundle: PathBuf,
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a signature to a signed bundle without touching its payload.
    Cosign {
        signed: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Where to write the result (default: replace SIGNED).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a signed bundle against trusted author keys and a threshold, as a broker does.
    Verify {
        signed: PathBuf,
        #[arg(long = "trust", required = true)]
        trust: Vec<PathBuf>,
        #[arg(long)]
        threshold: usize,
        /// Check expiry at this RFC 3339 instant instead of now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Show a signed bundle's contents and signers (signatures are not checked).
    Show {
        signed: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Appraise claims (JSON, as the broker records them) against a bundle (TOML or signed).
    Appraise {
        #[arg(long)]
        claims: PathBuf,
        bundle: PathBuf,
        #[arg(long)]
        at: Option<String>,
    },
    /// Compute an expected launch measurement.
    #[command(subcommand)]
    Measure(Measure),
    /// Publish a signed bundle to a broker (policy-author token from --token-file or
    /// KEYLATCH_TOKEN).
    Push {
        /// The broker, `https://host:port`.
        #[arg(long)]
        url: String,
        /// PEM CA certificate(s) the broker's TLS certificate must chain to.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The bundle name as configured on the broker.
        name: String,
        /// The signed bundle (`refval sign` output).
        bundle: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Measure {
    /// SEV-SNP launch measurement (hex, 48 bytes) of a QEMU guest.
    Snp(SnpMeasure),
    /// The `[tdx.event_log]` bundle table and the RTMRs of a TDX event log (a CCEL file, e.g.
    /// `/sys/firmware/acpi/tables/data/CCEL` copied from a known-good boot of the image).
    TdxEventLog {
        #[arg(long)]
        ccel: PathBuf,
    },
}

/// The inputs of `refval measure snp`, as [`SnpLaunchInputs`] takes them but for the guest
/// features (hex text here).
#[derive(Debug, clap::Args)]
struct SnpMeasure {
    #[arg(long)]
    ovmf: PathBuf,
    #[arg(long)]
    kernel: Option<PathBuf>,
    #[arg(long, requires = "kernel")]
    initrd: Option<PathBuf>,
    #[arg(long, requires = "kernel")]
    append: Option<String>,
    #[arg(long)]
    vcpus: u32,
    /// QEMU vCPU model, e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa.
    #[arg(long)]
    vcpu_type: String,
    /// `SEV_FEATURES` in hex (default 0x1, `SNPActive`).
    #[arg(long)]
    guest_features: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Failures are reported as one `error:` line. The only panics expected come from inside
    // dependencies (the `sev` crate's OVMF parser); the library turns those into errors, so the
    // default hook's multi-line report is silenced and any other panic still ends as one line.
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| run(cli))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("internal failure (a panic); please report it")));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out } => keygen(&out),
        Command::Push { url, ca, token_file, name, bundle } => {
            println!("{}", push::push(&url, &ca, token_file.as_deref(), &name, &bundle)?);
            Ok(())
        }
        Command::Check { bundle } => {
            let bundle = read_toml_bundle(&bundle)?;
            print!("{}", toml::to_string_pretty(&bundle).context("rendering bundle")?);
            Ok(())
        }
        Command::Sign { bundle, keys, out } => sign(&bundle, &keys, &out),
        Command::Cosign { signed, key, out } => {
            let mut bundle = read_signed(&signed)?;
            let key = read_private_key(&key)?;
            bundle.cosign(&key)?;
            write_file(out.as_deref().unwrap_or(&signed), &bundle.to_bytes()?)?;
            println!("added signature by {}", key.kid());
            Ok(())
        }
        Command::Verify { signed, trust, threshold, at } => {
            verify(&signed, &trust, threshold, at.as_deref())
        }
        Command::Show { signed, json } => show(&signed, json),
        Command::Appraise { claims, bundle, at } => {
            let text = fs::read_to_string(&claims)
                .with_context(|| format!("reading {}", claims.display()))?;
            let claims: verifier::Claims = serde_json::from_str(&text).context("claims JSON")?;
            let bundle = if bundle.extension().is_some_and(|e| e == "toml") {
                read_toml_bundle(&bundle)?
            } else {
                read_signed(&bundle)?.unverified_bundle().clone()
            };
            let appraisal = appraise(&claims, &bundle, instant(at.as_deref())?);
            println!("{}", serde_json::to_string_pretty(&appraisal)?);
            if !appraisal.is_accepted() {
                bail!("{} mismatch(es)", appraisal.mismatches.len());
            }
            Ok(())
        }
        Command::Measure(Measure::Snp(m)) => {
            let guest_features = match m.guest_features {
                Some(h) => u64::from_str_radix(h.trim_start_matches("0x"), 16)
                    .with_context(|| format!("--guest-features {h:?} is not hex"))?,
                None => DEFAULT_GUEST_FEATURES,
            };
            let digest = snp_launch_measurement(&SnpLaunchInputs {
                ovmf: m.ovmf,
                kernel: m.kernel,
                initrd: m.initrd,
                append: m.append,
                vcpus: m.vcpus,
                vcpu_type: m.vcpu_type,
                guest_features,
            })?;
            println!("{digest}");
            Ok(())
        }
        Command::Measure(Measure::TdxEventLog { ccel }) => {
            let bytes = fs::read(&ccel).with_context(|| format!("reading {}", ccel.display()))?;
            let measured =
                tdx_event_log_reference(&bytes).with_context(|| ccel.display().to_string())?;
            print!("{}", measured.to_toml().context("rendering TOML")?);
            Ok(())
        }
    }
}

fn keygen(out: &Path) -> Result<()> {
    let key = AuthorSigningKey::generate()?;
    let pem = key.to_pkcs8_pem()?;
    let public_path = pub_path(out);
    if public_path.exists() {
        bail!("{} exists; refusing to overwrite", public_path.display());
    }
    // create_new + mode: the file never exists with wider permissions, and is never overwritten.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    let public = key.public().to_pem()?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&public_path)
        .and_then(|mut f| f.write_all(public.as_bytes()))
        .with_context(|| format!("writing {}", public_path.display()))?;
    println!("kid {}", key.kid());
    Ok(())
}

fn sign(bundle: &Path, keys: &[PathBuf], out: &Path) -> Result<()> {
    let bundle = read_toml_bundle(bundle)?;
    let keys = keys.iter().map(|p| read_private_key(p)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&AuthorSigningKey> = keys.iter().collect();
    let signed = SignedBundle::sign(&bundle, &refs)?;
    write_file(out, &signed.to_bytes()?)?;
    println!("signed {:?} version {} with {} key(s)", bundle.name, bundle.version, keys.len());
    Ok(())
}

fn verify(signed: &Path, trust: &[PathBuf], threshold: usize, at: Option<&str>) -> Result<()> {
    let candidate = read_signed(signed)?;
    let keys = trust
        .iter()
        .map(|p| {
            let pem = fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            AuthorPublicKey::from_pem(&pem).with_context(|| p.display().to_string())
        })
        .collect::<Result<Vec<_>>>()?;
    let trust = AuthorKeys::new(keys, threshold)?;
    let verified = verify_bundle(&candidate, &trust, instant(at)?)
        .with_context(|| signed.display().to_string())?;
    let b = verified.bundle();
    println!(
        "ok: bundle {:?} version {}, expires {}",
        b.name,
        b.version,
        b.expires.format(&Rfc3339)?
    );
    let signers: Vec<String> = verified.signers().iter().map(ToString::to_string).collect();
    println!(
        "signed by {} trusted key(s), threshold {}: {}",
        signers.len(),
        threshold,
        signers.join(", ")
    );
    println!("payload sha256 {}", hex::encode(verified.digest()));
    Ok(())
}

fn show(signed: &Path, json: bool) -> Result<()> {
    let bundle = read_signed(signed)?;
    let kids: Vec<Option<String>> =
        bundle.signature_kids().into_iter().map(|k| k.map(|k| k.to_string())).collect();
    if json {
        let doc = serde_json::json!({
            "bundle": bundle.unverified_bundle(),
            "payload_sha256": hex::encode(bundle.payload_sha256()),
            "signatures": kids.iter().map(|k| serde_json::json!({"alg": "ES384", "kid": k})).collect::<Vec<_>>(),
            "signatures_verified": false,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("# signatures NOT verified here: use `refval verify`");
    println!("# payload sha256 {}", hex::encode(bundle.payload_sha256()));
    for kid in &kids {
        println!("# signed by kid {}", kid.as_deref().unwrap_or("(missing)"));
    }
    print!("{}", toml::to_string_pretty(bundle.unverified_bundle()).context("rendering bundle")?);
    Ok(())
}

fn read_toml_bundle(path: &Path) -> Result<Bundle> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Bundle::from_toml(&text).with_context(|| path.display().to_string())
}

fn read_signed(path: &Path) -> Result<SignedBundle> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SignedBundle::from_bytes(&bytes).with_context(|| path.display().to_string())
}

fn read_private_key(path: &Path) -> Result<AuthorSigningKey> {
    let pem = Zeroizing::new(
        fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    AuthorSigningKey::from_pkcs8_pem(&pem).with_context(|| path.display().to_string())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn pub_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn instant(at: Option<&str>) -> Result<OffsetDateTime> {
    match at {
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .with_context(|| format!("--at {text:?} is not RFC 3339")),
        None => Ok(OffsetDateTime::now_utc()),
    }
}
