//! `keylatch evidence verify`: verifies one SEV-SNP report, TDX quote, SGX quote or Azure
//! confidential VM's vTPM evidence offline and prints its claims. Owns turning files and flags
//! into verifier inputs; the verification itself is the `verifier` crate's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use verifier::azure::{verify_az_snp, verify_az_tdx, AzSnpInputs};
use verifier::claims::SgxClaims;
use verifier::sgx::SgxVerifier;
use verifier::snp::{SnpEndorsements, SnpRevocation, SnpTrustAnchors, SnpVerifier};
use verifier::tdx::{TdxCollateral, TdxTrustAnchors, TdxVerifier};
use verifier::{Claims, Now, VerifyError};

use super::{load_sim_pki, parse_time};

/// The TEE whose evidence `keylatch evidence verify` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyTee {
    Snp,
    Tdx,
    /// An SGX (version 3) quote: verified offline only; the broker does not serve SGX enclaves.
    Sgx,
    /// Azure SEV-SNP confidential VM: guest-components `az-snp-vtpm` evidence JSON.
    AzSnpVtpm,
    /// Azure TDX confidential VM: guest-components `az-tdx-vtpm` evidence JSON.
    AzTdxVtpm,
}

/// What verified evidence says: a confidential VM's [`Claims`], or an SGX enclave's.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Verified {
    Vm(Box<Claims>),
    Sgx(Box<SgxClaims>),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Which TEE produced the evidence.
    #[arg(long, value_enum)]
    pub tee: VerifyTee,
    /// The evidence: a raw SNP report (1184 bytes) or guest-components SNP evidence JSON; a raw
    /// TDX quote or guest-components TDX evidence JSON (`{"quote": base64, "cc_eventlog":
    /// base64}`; a `cc_eventlog` is replayed against the quote's RTMRs); a raw SGX quote; for the Azure TEEs
    /// the evidence JSON as the attester sent it (versions 0, 1, 2).
    #[arg(long)]
    pub evidence: PathBuf,
    /// SNP: the VCEK or VLEK (DER or PEM). A PEM file may carry more certificates after it
    /// (ASK, ASVK); they are checked against the pinned ARK. Not needed when the evidence JSON
    /// carries the VCEK (Azure evidence always does).
    #[arg(long)]
    pub endorsement: Option<PathBuf>,
    /// SNP: extra intermediate certificates (DER or PEM), checked against the pinned ARK. AMD's
    /// ASKs and ASVKs are built in; this is for others (e.g. a newer ASK).
    #[arg(long)]
    pub chain: Vec<PathBuf>,
    /// SNP: AMD CRL(s) (DER or PEM, as KDS serves `vcek|vlek/v1/{product}/crl`) to check the
    /// chain against. With it, a revoked ASK/ASVK/VCEK/VLEK fails at the chain step and a CRL
    /// that is not current at `--at` (or has no CRL for the product) fails at the collateral
    /// step. Without it, revocation is not checked.
    #[arg(long)]
    pub crl: Vec<PathBuf>,
    /// TDX, SGX and az-tdx-vtpm: the collateral in Intel PCS JSON layout (TCB info, QE identity,
    /// CRLs, chains; for SGX, TCB info id `SGX` and QE identity id `QE`). Without it,
    /// az-tdx-vtpm evidence is checked as far as it can be and then fails at the collateral step.
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Verify as of this instant (RFC 3339). Default: now.
    #[arg(long, value_parser = parse_time)]
    pub at: Option<Now>,
    /// Require this REPORT_DATA (128 hex digits; shorter values are zero-padded).
    #[arg(long)]
    pub report_data: Option<String>,
    /// Azure: require this TPM quote nonce (extraData), hex, exactly (for the KBS protocol: the
    /// 48-byte SHA-384 binding of nonce and tee-pubkey).
    #[arg(long)]
    pub nonce: Option<String>,
    /// Trust the simulation PKI in DIR instead of AMD's and Intel's roots.
    #[arg(long, value_name = "DIR")]
    pub sim_pki: Option<PathBuf>,
}

/// The outcome: claims, or the verifier's step and reason (exit 1). Usage and I/O problems are
/// `Err` (exit 2).
pub fn run(args: &VerifyArgs) -> anyhow::Result<Result<Verified, VerifyError>> {
    let common = Common {
        now: args.at.unwrap_or_else(Now::now_utc),
        expected: args.report_data.as_deref().map(report_data_from_hex).transpose()?,
        evidence: read(&args.evidence)?,
    };
    let vm = |c: Claims| Verified::Vm(Box::new(c));
    Ok(match args.tee {
        VerifyTee::Snp => run_snp(args, &common)?.map(vm),
        VerifyTee::Tdx => run_tdx(args, &common)?.map(vm),
        VerifyTee::Sgx => run_sgx(args, &common)?.map(|c| Verified::Sgx(Box::new(c))),
        VerifyTee::AzSnpVtpm => run_az_snp(args, &common)?.map(vm),
        VerifyTee::AzTdxVtpm => run_az_tdx(args, &common)?.map(vm),
    })
}

/// What every TEE's verification reads from the arguments the same way.
struct Common {
    now: Now,
    expected: Option<[u8; 64]>,
    evidence: Vec<u8>,
}

fn run_snp(args: &VerifyArgs, c: &Common) -> anyhow::Result<Result<Claims, VerifyError>> {
    let anchors = snp_anchors(args)?;
    let (report, endorsements) = match snp_inputs(&c.evidence, args) {
        Ok(inputs) => inputs,
        Err(Failure::Verify(e)) => return Ok(Err(e)),
        Err(Failure::Usage(e)) => return Err(e),
    };
    let verifier = SnpVerifier::new(anchors);
    Ok(match revocation(args)? {
        None => verifier.verify(&report, &endorsements, c.expected.as_ref(), c.now),
        Some(r) => {
            verifier.verify_with_revocation(&report, &endorsements, c.expected.as_ref(), c.now, &r)
        }
    })
}

/// Azure SNP: the evidence JSON, with `--endorsement`/`--chain` as the VCEK when the evidence
/// lacks one, `--crl` and `--nonce`.
fn run_az_snp(args: &VerifyArgs, c: &Common) -> anyhow::Result<Result<Claims, VerifyError>> {
    let fallback = match flag_endorsements(args)
        .and_then(|e| e.map(|mut e| add_chain(args, &mut e).map(|()| e)).transpose())
    {
        Ok(e) => e,
        Err(Failure::Verify(e)) => return Ok(Err(e)),
        Err(Failure::Usage(e)) => return Err(e),
    };
    let revocation = revocation(args)?;
    let inputs = AzSnpInputs { fallback: fallback.as_ref(), revocation: revocation.as_ref() };
    let verifier = SnpVerifier::new(snp_anchors(args)?);
    Ok(verify_az_snp(&verifier, &c.evidence, inputs, nonce(args)?.as_deref(), c.now))
}

/// Azure TDX: the evidence JSON, with `--collateral` when there is some, and `--nonce`.
fn run_az_tdx(args: &VerifyArgs, c: &Common) -> anyhow::Result<Result<Claims, VerifyError>> {
    let collateral = match args.collateral.as_deref().map(read).transpose()? {
        Some(bytes) => match TdxCollateral::from_json(&bytes) {
            Ok(col) => Some(col),
            Err(e) => return Ok(Err(e)),
        },
        None => None,
    };
    let verifier = TdxVerifier::new(intel_anchors(args)?);
    Ok(verify_az_tdx(&verifier, &c.evidence, collateral.as_ref(), nonce(args)?.as_deref(), c.now))
}

/// `--nonce` as bytes.
fn nonce(args: &VerifyArgs) -> anyhow::Result<Option<Vec<u8>>> {
    args.nonce.as_deref().map(hex::decode).transpose().context("--nonce is not hex")
}

/// AMD's production roots, or the simulation PKI's with `--sim-pki`.
fn snp_anchors(args: &VerifyArgs) -> anyhow::Result<SnpTrustAnchors> {
    match args.sim_pki.as_deref().map(load_sim_pki).transpose()? {
        Some(pki) => pki.amd.anchors().context("simulation anchors"),
        None => SnpTrustAnchors::production().context("AMD roots"),
    }
}

fn run_tdx(args: &VerifyArgs, c: &Common) -> anyhow::Result<Result<Claims, VerifyError>> {
    let anchors = intel_anchors(args)?;
    let collateral = match intel_collateral(args, "TDX")? {
        Ok(col) => col,
        Err(e) => return Ok(Err(e)),
    };
    let (quote, event_log) = match tdx_evidence(&c.evidence) {
        Ok(parts) => parts,
        Err(e) => return Ok(Err(e)),
    };
    Ok(TdxVerifier::new(anchors).verify_with_event_log(
        &quote,
        event_log.as_deref(),
        &collateral,
        c.expected.as_ref(),
        c.now,
    ))
}

/// SGX: a raw quote with its collateral.
fn run_sgx(args: &VerifyArgs, c: &Common) -> anyhow::Result<Result<SgxClaims, VerifyError>> {
    let anchors = intel_anchors(args)?;
    let collateral = match intel_collateral(args, "SGX")? {
        Ok(col) => col,
        Err(e) => return Ok(Err(e)),
    };
    Ok(SgxVerifier::new(anchors).verify(&c.evidence, &collateral, c.expected.as_ref(), c.now))
}

/// Intel's production root, or the simulation PKI's with `--sim-pki`.
fn intel_anchors(args: &VerifyArgs) -> anyhow::Result<TdxTrustAnchors> {
    Ok(match args.sim_pki.as_deref().map(load_sim_pki).transpose()? {
        Some(pki) => pki.intel.anchors(),
        None => TdxTrustAnchors::production(),
    })
}

/// The `--collateral` file (required for `tee`), or the verifier's reason it does not parse.
fn intel_collateral(
    args: &VerifyArgs,
    tee: &str,
) -> anyhow::Result<Result<TdxCollateral, VerifyError>> {
    let Some(path) = &args.collateral else { bail!("--collateral is required for {tee}") };
    Ok(TdxCollateral::from_json(&read(path)?))
}

enum Failure {
    Verify(VerifyError),
    Usage(anyhow::Error),
}

/// `--crl` as a revocation requirement, when given.
fn revocation(args: &VerifyArgs) -> anyhow::Result<Option<SnpRevocation>> {
    if args.crl.is_empty() {
        return Ok(None);
    }
    let mut crls = Vec::new();
    for path in &args.crl {
        let bytes = read(path)?;
        let der = keylatch_broker::collateral::der_from_any(&bytes)
            .with_context(|| format!("{}: not a DER or PEM CRL", path.display()))?;
        crls.push(der.into());
    }
    Ok(Some(SnpRevocation::required(crls, 0)))
}

/// The report and its endorsements, from raw or guest-components JSON evidence plus flags.
fn snp_inputs(evidence: &[u8], args: &VerifyArgs) -> Result<(Vec<u8>, SnpEndorsements), Failure> {
    let (report, endorsements) = if looks_like_json(evidence) {
        let coco = verifier::snp::report_from_coco_evidence(evidence).map_err(Failure::Verify)?;
        let endorsements = coco.endorsements();
        (coco.report, endorsements)
    } else {
        (evidence.to_vec(), None)
    };
    let mut endorsements = flag_endorsements(args)?.or(endorsements).ok_or_else(|| {
        Failure::Usage(anyhow::anyhow!(
            "no VCEK or VLEK: pass --endorsement, or evidence JSON whose cert_chain carries it"
        ))
    })?;
    add_chain(args, &mut endorsements)?;
    Ok((report, endorsements))
}

/// `--endorsement` (signer, then any intermediates in the file), when given.
fn flag_endorsements(args: &VerifyArgs) -> Result<Option<SnpEndorsements>, Failure> {
    let mut endorsements = None;
    if let Some(path) = &args.endorsement {
        let bytes = read(path).map_err(Failure::Usage)?;
        let mut certs = split_certificates(&bytes).map_err(Failure::Verify)?.into_iter();
        let signer = certs.next().ok_or_else(|| {
            Failure::Usage(anyhow::anyhow!("{} holds no certificate", path.display()))
        })?;
        let mut e = SnpEndorsements::new(signer);
        for cert in certs {
            e = e.with_intermediate(cert);
        }
        endorsements = Some(e);
    }
    Ok(endorsements)
}

/// Adds the `--chain` certificates to `e`.
fn add_chain(args: &VerifyArgs, e: &mut SnpEndorsements) -> Result<(), Failure> {
    for path in &args.chain {
        let bytes = read(path).map_err(Failure::Usage)?;
        e.intermediates.extend(split_certificates(&bytes).map_err(Failure::Verify)?);
    }
    Ok(())
}

/// One DER certificate, or every certificate of a PEM file, as DER.
fn split_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, VerifyError> {
    if bytes.starts_with(b"-----BEGIN") {
        return verifier::x509::pem_certificates("endorsement PEM", bytes)
            .map_err(|reason| VerifyError::new(verifier::Step::Chain, reason));
    }
    Ok(vec![bytes.to_vec()])
}

/// A raw quote (no event log), or guest-components TDX evidence JSON (quote and, when sent,
/// the `cc_eventlog` the verifier replays).
fn tdx_evidence(evidence: &[u8]) -> Result<(Vec<u8>, Option<Vec<u8>>), VerifyError> {
    if !looks_like_json(evidence) {
        return Ok((evidence.to_vec(), None));
    }
    let ev = verifier::tdx::tdx_from_coco_evidence(evidence)?;
    Ok((ev.quote, ev.cc_eventlog))
}

fn looks_like_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Parses up to 64 bytes of hex into a zero-padded REPORT_DATA.
pub fn report_data_from_hex(hex_digits: &str) -> anyhow::Result<[u8; 64]> {
    let bytes = hex::decode(hex_digits.trim()).context("--report-data is not hex")?;
    if bytes.len() > 64 {
        bail!("--report-data holds {} bytes; REPORT_DATA has 64", bytes.len());
    }
    let mut out = [0u8; 64];
    out.get_mut(..bytes.len()).context("length checked above")?.copy_from_slice(&bytes);
    Ok(out)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_is_zero_padded() {
        let rd = report_data_from_hex("0102").unwrap();
        assert_eq!(rd[..2], [1, 2]);
        assert!(rd[2..].iter().all(|b| *b == 0));
    }

    #[test]
    fn report_data_longer_than_64_bytes_is_refused() {
        assert!(report_data_from_hex(&"00".repeat(65)).is_err());
    }
}
