//! `keylatch evidence verify`: verifies one SEV-SNP report or TDX quote offline and prints its
//! claims. Owns turning files and flags into verifier inputs; the verification itself is the
//! `verifier` crate's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use verifier::snp::{SnpEndorsements, SnpRevocation, SnpTrustAnchors, SnpVerifier};
use verifier::tdx::{TdxCollateral, TdxTrustAnchors, TdxVerifier};
use verifier::{Claims, Now, VerifyError};

use super::{load_sim_pki, parse_time, TeeArg};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Which TEE produced the evidence.
    #[arg(long, value_enum)]
    pub tee: TeeArg,
    /// The evidence: a raw SNP report (1184 bytes) or guest-components SNP evidence JSON; a raw
    /// TDX quote or guest-components TDX evidence JSON (`{"quote": base64, "cc_eventlog":
    /// base64}`; a `cc_eventlog` is replayed against the quote's RTMRs).
    #[arg(long)]
    pub evidence: PathBuf,
    /// SNP: the VCEK or VLEK (DER or PEM). A PEM file may carry more certificates after it
    /// (ASK, ASVK); they are checked against the pinned ARK. Not needed when the evidence JSON
    /// carries the VCEK.
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
    /// TDX: the collateral in Intel PCS JSON layout (TCB info, QE identity, CRLs, chains).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Verify as of this instant (RFC 3339). Default: now.
    #[arg(long, value_parser = parse_time)]
    pub at: Option<Now>,
    /// Require this REPORT_DATA (128 hex digits; shorter values are zero-padded).
    #[arg(long)]
    pub report_data: Option<String>,
    /// Trust the simulation PKI in DIR instead of AMD's and Intel's roots.
    #[arg(long, value_name = "DIR")]
    pub sim_pki: Option<PathBuf>,
}

/// The outcome: claims, or the verifier's step and reason (exit 1). Usage and I/O problems are
/// `Err` (exit 2).
pub fn run(args: &VerifyArgs) -> anyhow::Result<Result<Claims, VerifyError>> {
    let now = args.at.unwrap_or_else(Now::now_utc);
    let expected = args.report_data.as_deref().map(report_data_from_hex).transpose()?;
    let evidence = read(&args.evidence)?;
    let sim = args.sim_pki.as_deref().map(load_sim_pki).transpose()?;
    match args.tee {
        TeeArg::Snp => {
            let anchors = match &sim {
                Some(pki) => pki.amd.anchors().context("simulation anchors")?,
                None => SnpTrustAnchors::production().context("AMD roots")?,
            };
            let (report, endorsements) = match snp_inputs(&evidence, args) {
                Ok(inputs) => inputs,
                Err(Failure::Verify(e)) => return Ok(Err(e)),
                Err(Failure::Usage(e)) => return Err(e),
            };
            let verifier = SnpVerifier::new(anchors);
            if args.crl.is_empty() {
                return Ok(verifier.verify(&report, &endorsements, expected.as_ref(), now));
            }
            let mut crls = Vec::new();
            for path in &args.crl {
                let bytes = read(path)?;
                let der = keylatch_broker::collateral::der_from_any(&bytes)
                    .with_context(|| format!("{}: not a DER or PEM CRL", path.display()))?;
                crls.push(der.into());
            }
            let revocation = SnpRevocation::required(crls, 0);
            Ok(verifier.verify_with_revocation(
                &report,
                &endorsements,
                expected.as_ref(),
                now,
                &revocation,
            ))
        }
        TeeArg::Tdx => {
            let anchors = match &sim {
                Some(pki) => pki.intel.anchors(),
                None => TdxTrustAnchors::production(),
            };
            let Some(path) = &args.collateral else { bail!("--collateral is required for TDX") };
            let collateral = match TdxCollateral::from_json(&read(path)?) {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            let (quote, event_log) = match tdx_evidence(&evidence) {
                Ok(parts) => parts,
                Err(e) => return Ok(Err(e)),
            };
            Ok(TdxVerifier::new(anchors).verify_with_event_log(
                &quote,
                event_log.as_deref(),
                &collateral,
                expected.as_ref(),
                now,
            ))
        }
    }
}

enum Failure {
    Verify(VerifyError),
    Usage(anyhow::Error),
}

/// The report and its endorsements, from raw or guest-components JSON evidence plus flags.
fn snp_inputs(evidence: &[u8], args: &VerifyArgs) -> Result<(Vec<u8>, SnpEndorsements), Failure> {
    let (report, mut endorsements) = if looks_like_json(evidence) {
        let coco = verifier::snp::report_from_coco_evidence(evidence).map_err(Failure::Verify)?;
        let endorsements = coco.endorsements();
        (coco.report, endorsements)
    } else {
        (evidence.to_vec(), None)
    };
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
    let Some(mut endorsements) = endorsements else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no VCEK or VLEK: pass --endorsement, or evidence JSON whose cert_chain carries it"
        )));
    };
    for path in &args.chain {
        let bytes = read(path).map_err(Failure::Usage)?;
        for cert in split_certificates(&bytes).map_err(Failure::Verify)? {
            endorsements = endorsements.with_intermediate(cert);
        }
    }
    Ok((report, endorsements))
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
