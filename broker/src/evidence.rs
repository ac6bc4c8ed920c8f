//! Evidence checking for `attest`: the verifiers (built once per process, their chain and
//! collateral caches shared by every request), the choice of trust anchors, the unsigned
//! `sample` TEE, and the init-data digest check. TDX evidence may carry the CCEL event log
//! (`cc_eventlog`); the verifier then replays it against the quote's RTMRs. Azure vTPM evidence
//! (`az-snp-vtpm`, `az-tdx-vtpm`) goes through the same domains' SNP and TDX verifiers (and
//! their caches), its TPM quote bound to the 48-byte KBS binding (see `azure_nonce`).
//!
//! Anchors: when a simulation PKI is configured, evidence is first tried under it; evidence
//! whose chain verifies there is simulated, and is refused by name unless `allow_simulated`.
//! Evidence whose chain does not verify under the simulation PKI is verified under the pinned
//! hardware roots. No evidence verifies under both.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use std::sync::Arc;

use verifier::azure::{verify_decoded_az_snp, verify_decoded_az_tdx, AzSnpInputs};
use verifier::snp::{SnpRevocation, SnpTrustAnchors, SnpVerifier};
use verifier::tdx::{TdxCollateral, TdxTrustAnchors, TdxVerifier};
use verifier::{Claims, CocoEvidence, HexBytes, Now, Reason, Step, Tee, VerifyError};

use crate::collateral::HardwareCollateral;
use crate::error::{ApiError, ErrorKind};

/// Verifiers for one trust domain (hardware or simulation).
#[derive(Debug)]
pub struct Domain {
    pub snp: SnpVerifier,
    pub tdx: TdxVerifier,
    pub tdx_collateral: Option<TdxCollateral>,
}

/// All verifiers of the process.
#[derive(Debug)]
pub struct Verifiers {
    pub hardware: Domain,
    pub sim: Option<Domain>,
    pub allow_simulated: bool,
    pub allow_sample: bool,
    /// Hardware SNP chains need a current AMD CRL (`[collateral] amd_crl_check`); `new` leaves
    /// it off, `AppState` sets it from the configuration. Simulated chains are checked
    /// against the CRLs their ARK issued when any is given (they have no KDS).
    pub amd_crl_required: bool,
    /// Seconds an AMD CRL is accepted after its nextUpdate.
    pub amd_crl_grace_s: u32,
}

impl Verifiers {
    /// Hardware anchors (pinned), optional hardware TDX collateral, optional simulation PKI.
    pub fn new(
        tdx_collateral: Option<TdxCollateral>,
        sim: Option<(SnpTrustAnchors, TdxTrustAnchors, TdxCollateral)>,
        allow_simulated: bool,
        allow_sample: bool,
    ) -> Result<Self, VerifyError> {
        Ok(Self {
            hardware: Domain {
                snp: SnpVerifier::new(SnpTrustAnchors::production()?),
                tdx: TdxVerifier::new(TdxTrustAnchors::production()),
                tdx_collateral,
            },
            sim: sim.map(|(snp, tdx, col)| Domain {
                snp: SnpVerifier::new(snp),
                tdx: TdxVerifier::new(tdx),
                tdx_collateral: Some(col),
            }),
            allow_simulated,
            allow_sample,
            amd_crl_required: false,
            amd_crl_grace_s: 0,
        })
    }

    /// Verifies decoded `evidence` expecting `expected` REPORT_DATA (64 bytes). CPU-bound:
    /// call off the async runtime.
    pub fn verify(
        &self,
        evidence: &CocoEvidence,
        expected: &[u8; 64],
        now: Now,
    ) -> Result<Claims, ApiError> {
        self.verify_with(evidence, expected, now, &HardwareCollateral::default())
    }

    /// [`Verifiers::verify`] with collateral found for the hardware domain.
    pub fn verify_with(
        &self,
        evidence: &CocoEvidence,
        expected: &[u8; 64],
        now: Now,
        hw: &HardwareCollateral,
    ) -> Result<Claims, ApiError> {
        let tee = evidence.tee();
        // The simulation domain gets the CRLs only: its endorsements and collateral are its own.
        let sim_collateral =
            HardwareCollateral { snp_crls: hw.snp_crls.clone(), ..Default::default() };
        let grace = self.amd_crl_grace_s;
        let attempt = |d: &Domain, c: &HardwareCollateral, r: &SnpRevocation| {
            verify_in(d, evidence, expected, now, c, r)
        };
        if let Some(sim) = &self.sim {
            let revocation = SnpRevocation::when_given(hw.snp_crls.clone(), grace);
            match attempt(sim, &sim_collateral, &revocation) {
                Ok(claims) if self.allow_simulated => return Ok(claims),
                Ok(_) => return Err(simulated_refused()),
                Err(e) if e.step == Step::Parse => return Err(evidence_error(tee, &e)),
                // The chain verified under the simulation PKI; its CRL refused it.
                Err(e) if is_revocation_failure(tee, &e) => {
                    return Err(if self.allow_simulated {
                        evidence_error(tee, &e)
                    } else {
                        simulated_refused()
                    })
                }
                Err(e) if e.step != Step::Chain && e.step != Step::Collateral => {
                    return Err(if self.allow_simulated {
                        evidence_error(tee, &e)
                    } else {
                        simulated_refused()
                    })
                }
                Err(_) => {}
            }
        }
        let revocation = if self.amd_crl_required {
            SnpRevocation::required(hw.snp_crls.clone(), grace)
        } else {
            SnpRevocation::when_given(hw.snp_crls.clone(), grace)
        };
        attempt(&self.hardware, hw, &revocation).map_err(|e| evidence_error(tee, &e))
    }

    fn verify_sample(&self, primary: &Value, expected: &[u8; 64]) -> Result<Claims, ApiError> {
        if !self.allow_sample {
            return Err(sample_refused());
        }
        let bad = |why: &str| {
            ApiError::new(ErrorKind::EvidenceInvalid, format!("parse: sample evidence {why}"))
        };
        let rd = primary
            .get("report_data")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no report_data"))?;
        let rd = STANDARD.decode(rd).map_err(|_| bad("report_data is not base64"))?;
        if rd.as_slice() != expected.get(..48).unwrap_or_default() {
            return Err(ApiError::new(
                ErrorKind::ReportDataMismatch,
                "report-data: sample report_data does not bind the session nonce and tee-pubkey",
            ));
        }
        let evidence_bytes = serde_json::to_vec(primary).unwrap_or_default();
        Ok(Claims {
            tee: Tee::Sample,
            // reason: the sample TEE has no hardware behind it; it is never "real" evidence.
            simulated: true,
            report_data: HexBytes(*expected),
            evidence_sha256: HexBytes(Sha256::digest(&evidence_bytes).into()),
            snp: None,
            tdx: None,
            azure: None,
        })
    }
}

fn verify_in(
    d: &Domain,
    evidence: &CocoEvidence,
    expected: &[u8; 64],
    now: Now,
    hw: &HardwareCollateral,
    revocation: &SnpRevocation,
) -> Result<Claims, VerifyError> {
    match evidence {
        CocoEvidence::Snp(ev) => {
            let endorsements =
                ev.endorsements().or_else(|| hw.snp.clone()).ok_or(VerifyError::new(
                    Step::Chain,
                    Reason::Missing { what: "VCEK or VLEK certificate in cert_chain" },
                ))?;
            d.snp.verify_with_revocation(&ev.report, &endorsements, Some(expected), now, revocation)
        }
        CocoEvidence::Tdx(ev) => {
            let collateral =
                hw.tdx.as_deref().or(d.tdx_collateral.as_ref()).ok_or(VerifyError::new(
                    Step::Collateral,
                    Reason::Missing { what: "TDX collateral (tdx_collateral is not configured)" },
                ))?;
            d.tdx.verify_with_event_log(
                &ev.quote,
                ev.cc_eventlog.as_deref(),
                collateral,
                Some(expected),
                now,
            )
        }
        CocoEvidence::AzSnpVtpm(ev) => {
            let inputs = AzSnpInputs { fallback: hw.snp.as_ref(), revocation: Some(revocation) };
            verify_decoded_az_snp(&d.snp, ev, inputs, Some(azure_nonce(expected)), now)
        }
        CocoEvidence::AzTdxVtpm(ev) => {
            let collateral = hw.tdx.as_deref().or(d.tdx_collateral.as_ref());
            verify_decoded_az_tdx(&d.tdx, ev, collateral, Some(azure_nonce(expected)), now)
        }
    }
}

/// The nonce an Azure vTPM quote must carry: guest-components' Azure attesters pass the
/// KBS binding (SHA-384 of nonce and tee-pubkey, 48 bytes) to `TPM2_Quote` unpadded, where the
/// SNP and TDX attesters zero-pad it into the 64-byte REPORT_DATA.
fn azure_nonce(expected: &[u8; 64]) -> &[u8] {
    expected.get(..48).unwrap_or(expected)
}

/// Verifies evidence at `at`: decodes it once, finds the hardware collateral it needs
/// ([`crate::collateral`]; a fetch only on a cache miss), then verifies off the async runtime
/// (CPU-bound). The unsigned `sample` TEE is checked here directly.
pub async fn verify_at(
    collateral: &crate::collateral::CollateralService,
    verifiers: &Arc<Verifiers>,
    tee: Tee,
    primary: Value,
    expected: [u8; 64],
    at: time::OffsetDateTime,
) -> Result<Claims, ApiError> {
    if tee == Tee::Sample {
        return verifiers.verify_sample(&primary, &expected);
    }
    let evidence = CocoEvidence::from_value(tee, &primary).map_err(|e| evidence_error(tee, &e))?;
    drop(primary);
    let hw = collateral.resolve(&evidence, at).await?;
    let verifiers = Arc::clone(verifiers);
    tokio::task::spawn_blocking(move || verifiers.verify_with(&evidence, &expected, at, &hw))
        .await
        .map_err(|e| ApiError::internal("evidence verification", &e))?
}

/// An SNP chain refused by an AMD CRL (`chain: ... revoked`), or an AMD CRL that is stale,
/// missing or badly signed (SNP's only collateral step).
fn is_revocation_failure(tee: Tee, e: &VerifyError) -> bool {
    matches!(tee, Tee::Snp | Tee::AzSnpVtpm)
        && (e.step == Step::Collateral || matches!(e.reason, Reason::RevokedBy { .. }))
}

/// A verification failure as the client sees it. SNP's collateral step (an AMD CRL not to be
/// had current and sound) is 503 `collateral-unavailable`: the evidence was not judged. A
/// revoked chain is `evidence-invalid` (ERRORS.md).
fn evidence_error(tee: Tee, e: &VerifyError) -> ApiError {
    let kind = match e.step {
        Step::ReportData => ErrorKind::ReportDataMismatch,
        Step::Collateral if matches!(tee, Tee::Snp | Tee::AzSnpVtpm) => {
            ErrorKind::CollateralUnavailable
        }
        _ => ErrorKind::EvidenceInvalid,
    };
    ApiError::new(kind, e.to_string())
}

fn simulated_refused() -> ApiError {
    ApiError::new(
        ErrorKind::SimulatedNotAllowed,
        "evidence is signed by the simulation PKI and this broker has allow_simulated = false",
    )
}

/// The TEE names `/kbs/v0/auth` accepts: `snp`, `tdx`, `az-snp-vtpm`, `az-tdx-vtpm`, and the
/// unsigned `sample` only with `allow_sample`.
#[must_use]
pub fn served_tees(allow_sample: bool) -> &'static [&'static str] {
    if allow_sample {
        &["snp", "tdx", "az-snp-vtpm", "az-tdx-vtpm", "sample"]
    } else {
        &["snp", "tdx", "az-snp-vtpm", "az-tdx-vtpm"]
    }
}

/// The refusal of the `sample` TEE when `allow_sample = false`.
#[must_use]
pub fn sample_refused() -> ApiError {
    ApiError::new(
        ErrorKind::SampleNotAllowed,
        "the unsigned sample TEE is disabled (allow_sample = false)",
    )
}

/// The init-data digest, by the TOML's own `algorithm` (sha256, sha384, sha512; default sha384,
/// as the guest agent assumes) over its raw text. Returns (algorithm, digest).
pub fn init_data_digest(format: &str, body: &str) -> Result<(&'static str, Vec<u8>), ApiError> {
    let bad = |d: String| ApiError::new(ErrorKind::BadRequest, d);
    if format != "toml" {
        return Err(bad(format!("init-data format {format:?} is not toml")));
    }
    let doc: toml::Table = body.parse().map_err(|_| bad("init-data body is not TOML".into()))?;
    let alg = doc.get("algorithm").and_then(toml::Value::as_str).unwrap_or("sha384");
    Ok(match alg {
        "sha256" => ("sha256", Sha256::digest(body.as_bytes()).to_vec()),
        "sha384" => ("sha384", Sha384::digest(body.as_bytes()).to_vec()),
        "sha512" => ("sha512", Sha512::digest(body.as_bytes()).to_vec()),
        other => {
            return Err(bad(format!("init-data algorithm {other:?} is not sha256/sha384/sha512")))
        }
    })
}

/// Checks the init-data digest against SNP HOST_DATA (32 bytes) or TDX MRCONFIGID (48 bytes),
/// the digest zero-padded or truncated to the field's size.
pub fn check_init_data(claims: &Claims, digest: &[u8]) -> Result<(), ApiError> {
    let (what, field): (&str, &[u8]) = match (&claims.snp, &claims.tdx) {
        (Some(snp), _) => ("snp.host_data", &snp.host_data.0),
        (None, Some(tdx)) => ("tdx.mr_config_id", &tdx.mr_config_id.0),
        (None, None) => return Ok(()),
    };
    let mut want = vec![0u8; field.len()];
    want.iter_mut().zip(digest).for_each(|(w, d)| *w = *d);
    if want.as_slice() == field {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::InitDataMismatch,
            format!(
                "init-data digest {} does not equal {what} {}",
                hex::encode(&want),
                hex::encode(field)
            ),
        ))
    }
}

/// Loads a simulation PKI written by `keylatch sim init`.
pub fn load_sim_pki(dir: &std::path::Path) -> anyhow::Result<verifier::sim::SimPki> {
    anyhow::Context::with_context(
        verifier::sim::SimPki::from_files(|name| std::fs::read(dir.join(name)).ok()),
        || format!("loading the simulation PKI from {}", dir.display()),
    )
}
